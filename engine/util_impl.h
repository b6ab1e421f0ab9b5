/*
 * engine/util_impl.h - private helpers shared by the engine sources (never
 * installed): the single-exit error macros and small numeric utilities.
 *
 * Convention: a function that can fail declares `imrt_status status = IMRT_OK;`
 * and ends with a `cleanup:` label that frees what it owns and returns status.
 *   IMRT_FAIL(code, fmt, ...)   record a message and jump to cleanup
 *   IMRT_TRY(expr)              propagate a failing status (message kept)
 *   IMRT_ALLOC(ptr, n)          allocate n elements of *ptr or fail with NOMEM
 */
#ifndef IMRT_UTIL_IMPL_H
#define IMRT_UTIL_IMPL_H

#include "imrt/alloc.h"
#include "imrt/status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define IMRT_FAIL(code, ...)                      \
    do {                                          \
        status = imrt_error((code), __VA_ARGS__); \
        goto cleanup;                             \
    } while (0)

#define IMRT_TRY(expr)                    \
    do {                                  \
        imrt_status imrt_try_s_ = (expr); \
        if (imrt_try_s_ != IMRT_OK) {     \
            status = imrt_try_s_;         \
            goto cleanup;                 \
        }                                 \
    } while (0)

/* In functions without a cleanup label: return the status of a failed call. */
#define IMRT_TRY_RET(expr)                \
    do {                                  \
        imrt_status imrt_try_s_ = (expr); \
        if (imrt_try_s_ != IMRT_OK)       \
            return imrt_try_s_;           \
    } while (0)

#define IMRT_ALLOC(ptr, n)                                                     \
    do {                                                                       \
        (ptr) = imrt_calloc((size_t)(n), sizeof *(ptr));                       \
        if ((ptr) == NULL && (size_t)(n) != 0)                                 \
            IMRT_FAIL(IMRT_ERR_NOMEM, "%s:%d: cannot allocate %zu bytes for %s", \
                      __FILE__, __LINE__, (size_t)(n) * sizeof *(ptr), #ptr);  \
    } while (0)

#define IMRT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define IMRT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IMRT_PI 3.14159265358979323846

/* Ask for transparent huge pages on a large array (best effort, Linux; no-op
 * elsewhere): one fault per 2 MiB on first touch, fewer TLB misses when streamed. */
void imrt_advise_huge(void *p, size_t bytes);

/* Parse a byte count with an optional K/M/G/T suffix (powers of 1024) and an
 * optional trailing B; 1 on success, 0 if malformed, not positive or too large. */
int imrt_parse_bytes(const char *s, uint64_t *out);

/* Parse a whole string as a finite decimal number in [lo, hi]; 1 on success. */
int imrt_parse_double(const char *s, double lo, double hi, double *out);

#endif /* IMRT_UTIL_IMPL_H */
