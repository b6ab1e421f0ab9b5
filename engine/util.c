/*
 * engine/util.c - small helpers shared by the engine, the imrt command and
 * imrt-mpi: huge-page advice for large arrays and strict parsers of numbers
 * and byte counts given on the command line (declared in util_impl.h).
 */
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */
#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Ask for transparent huge pages on a large array (best effort, Linux): the
 * first touch of a dij costs one fault per 2 MiB instead of per 4 KiB. */
void imrt_advise_huge(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t page = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + bytes) & ~(page - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* Parse a byte count with an optional K/M/G/T suffix (powers of 1024). */
int imrt_parse_bytes(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0))
        return 0;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1048576.0; end++; break;
    case 'g': case 'G': mult = 1073741824.0; end++; break;
    case 't': case 'T': mult = 1099511627776.0; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || v * mult > 1.8e19)
        return 0;
    *out = (uint64_t)(v * mult);
    return 1;
}

int imrt_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || !(v >= lo && v <= hi))
        return 0;
    *out = v;
    return 1;
}
