/*
 * engine/alloc.c - aligned, overflow-checked allocation with failure
 * injection for tests.
 */
#include "imrt/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
