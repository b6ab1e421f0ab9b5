/*
 * engine/alloc.c - aligned, overflow-checked allocation with failure
 * injection for tests; huge-page advice for large arrays and the parser of
 * byte counts (--max-memory).
 */
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */
#include "imrt/alloc.h"
#include "util_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_long fail_countdown; /* 0 = disabled */
static atomic_long alloc_total;

void imrt_alloc_fail_after(long n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }

long imrt_alloc_count(void) { return atomic_load(&alloc_total); }

static int injected_failure(void)
{
    long c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return c == 1;
    }
    return 0;
}

void *imrt_malloc(size_t size)
{
    if (size == 0 || size > SIZE_MAX - IMRT_ALIGN)
        return NULL;
    atomic_fetch_add(&alloc_total, 1);
    if (injected_failure())
        return NULL;
    size_t rounded = (size + IMRT_ALIGN - 1) / IMRT_ALIGN * IMRT_ALIGN;
    return aligned_alloc(IMRT_ALIGN, rounded);
}

void *imrt_calloc(size_t n, size_t size)
{
    if (n == 0 || size == 0 || n > SIZE_MAX / size)
        return NULL;
    void *p = imrt_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void imrt_free(void *p) { free(p); }

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
