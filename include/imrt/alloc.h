/*
 * imrt/alloc.h - the one allocator every engine buffer goes through.
 *
 * Blocks are 64-byte aligned (cache line, AVX-512 safe) and zero-filled by
 * imrt_calloc. Sizes are overflow-checked. For tests, the allocator can be
 * told to fail the n-th allocation from now (imrt_alloc_fail_after), so that
 * every error path can be exercised and checked for leaks. The counters are
 * the library's only process-wide state and exist for testing.
 *
 * Ownership: whoever calls imrt_malloc/imrt_calloc owns the block and frees it
 * with imrt_free (free(NULL) is a no-op).
 */
#ifndef IMRT_ALLOC_H
#define IMRT_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_ALIGN 64

/* Aligned allocation of `size` bytes (uninitialised). NULL on failure or
 * when size == 0. */
void *imrt_malloc(size_t size);

/* Aligned, zero-filled allocation of n * size bytes with overflow check.
 * NULL on failure, on overflow, or when n * size == 0. */
void *imrt_calloc(size_t n, size_t size);

/* Release a block from imrt_malloc/imrt_calloc; NULL is accepted. */
void imrt_free(void *p);

/* Testing hook: make the n-th allocation from now fail (n >= 1) and all
 * later ones succeed; n <= 0 disables failure injection. */
void imrt_alloc_fail_after(long n);

/* Number of allocations made since the process started (testing aid). */
long imrt_alloc_count(void);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_ALLOC_H */
