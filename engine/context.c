/*
 * engine/context.c - the run context (threads, memory budget, kernels,
 * progress callback, communicator of a distributed run).
 */
#include "imrt/context.h"

#include "imrt/alloc.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef IMRT_VERSION
#define IMRT_VERSION "0.1.0"
#endif

struct imrt_context {
    int threads;                /* OpenMP threads for parallel stages */
    uint64_t max_memory;        /* bytes allowed for large arrays */
    imrt_kernel_choice kernels; /* reference or optimised kernels */
    imrt_progress_fn progress;  /* may be NULL */
    void *progress_user;        /* passed back to progress */
    imrt_comm comm;             /* distributed run; comm.size == 0: single process */
};

const char *imrt_version(void) { return IMRT_VERSION; }

uint64_t imrt_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return 0;
    return (uint64_t)pages * (uint64_t)page;
}

imrt_status imrt_context_create(imrt_context **out)
{
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_context_create: out is NULL");
    *out = NULL;
    imrt_context *c = imrt_calloc(1, sizeof *c);
    if (!c)
        return imrt_error(IMRT_ERR_NOMEM, "cannot allocate the run context");
    c->threads = omp_get_max_threads();
    if (c->threads < 1)
        c->threads = 1;
    uint64_t phys = imrt_physical_memory();
    c->max_memory = phys ? phys / 10 * 7 : (uint64_t)4 << 30;
    c->kernels = IMRT_KERNELS_OPTIMISED;
    const char *k = getenv("IMRT_KERNELS");
    if (k && strcmp(k, "reference") == 0)
        c->kernels = IMRT_KERNELS_REFERENCE;
    *out = c;
    return IMRT_OK;
}

void imrt_context_destroy(imrt_context **ctx)
{
    if (!ctx || !*ctx)
        return;
    imrt_free(*ctx);
    *ctx = NULL;
}

imrt_status imrt_context_set_threads(imrt_context *ctx, int threads)
{
    if (!ctx)
        return imrt_error(IMRT_ERR_ARG, "imrt_context_set_threads: ctx is NULL");
    if (threads < 1 || threads > 4096)
        return imrt_error(IMRT_ERR_RANGE, "threads = %d is outside 1..4096", threads);
    ctx->threads = threads;
    return IMRT_OK;
}

int imrt_context_threads(const imrt_context *ctx) { return ctx ? ctx->threads : 1; }

imrt_status imrt_context_set_max_memory(imrt_context *ctx, uint64_t bytes)
{
    if (!ctx)
        return imrt_error(IMRT_ERR_ARG, "imrt_context_set_max_memory: ctx is NULL");
    if (bytes < ((uint64_t)1 << 20))
        return imrt_error(IMRT_ERR_RANGE, "memory budget of %llu bytes is below the 1 MiB minimum",
                          (unsigned long long)bytes);
    ctx->max_memory = bytes;
    return IMRT_OK;
}

uint64_t imrt_context_max_memory(const imrt_context *ctx)
{
    return ctx ? ctx->max_memory : 0;
}

void imrt_context_set_kernels(imrt_context *ctx, imrt_kernel_choice choice)
{
    if (ctx)
        ctx->kernels = choice;
}

imrt_kernel_choice imrt_context_kernels(const imrt_context *ctx)
{
    return ctx ? ctx->kernels : IMRT_KERNELS_REFERENCE;
}

void imrt_context_set_progress(imrt_context *ctx, imrt_progress_fn fn, void *user)
{
    if (!ctx)
        return;
    ctx->progress = fn;
    ctx->progress_user = user;
}

void imrt_context_progress(const imrt_context *ctx, const char *stage, double fraction)
{
    if (ctx && ctx->progress)
        ctx->progress(ctx->progress_user, stage, fraction);
}

/* ---- distributed runs --------------------------------------------------- */

imrt_status imrt_context_set_comm(imrt_context *ctx, const imrt_comm *comm)
{
    if (!ctx)
        return imrt_error(IMRT_ERR_ARG, "imrt_context_set_comm: ctx is NULL");
    if (!comm || comm->size == 1) {
        memset(&ctx->comm, 0, sizeof ctx->comm);
        return IMRT_OK;
    }
    if (comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size)
        return imrt_error(IMRT_ERR_ARG, "communicator rank %d of size %d is invalid", comm->rank,
                          comm->size);
    if (!comm->sum || !comm->sum_float || !comm->gather)
        return imrt_error(IMRT_ERR_ARG, "communicator lacks an operation (sum, sum_float, gather)");
    ctx->comm = *comm;
    return IMRT_OK;
}

const imrt_comm *imrt_context_comm(const imrt_context *ctx)
{
    return ctx && ctx->comm.size > 1 ? &ctx->comm : NULL;
}

imrt_status imrt_context_sum(const imrt_context *ctx, double *buf, int64_t n)
{
    const imrt_comm *c = imrt_context_comm(ctx);
    return c ? c->sum(c->user, buf, n) : IMRT_OK;
}

imrt_status imrt_context_sum_float(const imrt_context *ctx, float *buf, int64_t n)
{
    const imrt_comm *c = imrt_context_comm(ctx);
    return c ? c->sum_float(c->user, buf, n) : IMRT_OK;
}

imrt_status imrt_context_gather(const imrt_context *ctx, double *v, int64_t n, int64_t begin,
                                int64_t end)
{
    const imrt_comm *c = imrt_context_comm(ctx);
    return c ? c->gather(c->user, v, n, begin, end) : IMRT_OK;
}
