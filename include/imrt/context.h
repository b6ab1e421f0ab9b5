/*
 * imrt/context.h - the run context: thread count, memory budget, kernel
 * choice and progress reporting, created once and passed to every stage.
 *
 * The context is an opaque handle. It holds no global state of the library:
 * two contexts can drive two independent computations in one process.
 * Thread safety: a context may be read by many threads; setters are not
 * thread-safe and belong before the computation starts.
 */
#ifndef IMRT_CONTEXT_H
#define IMRT_CONTEXT_H

#include "imrt/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct imrt_context imrt_context;

/* Progress callback: `stage` names the long step ("dij", "optimize"),
 * `fraction` runs from 0 to 1. Called from the thread that runs the stage
 * (never from inside an OpenMP worker). */
typedef void (*imrt_progress_fn)(void *user, const char *stage, double fraction);

/* Create a context: threads = OpenMP default, memory budget = 70 % of the
 * physical memory, reference kernels overridden by the optimised ones,
 * no progress callback. Returns IMRT_ERR_ARG (out NULL) or IMRT_ERR_NOMEM. */
imrt_status imrt_context_create(imrt_context **out);

/* Destroy a context; accepts NULL and a pointer to NULL, clears *ctx. */
void imrt_context_destroy(imrt_context **ctx);

/* Threads used by parallel stages (>= 1). IMRT_ERR_RANGE outside 1..4096. */
imrt_status imrt_context_set_threads(imrt_context *ctx, int threads);
int imrt_context_threads(const imrt_context *ctx);

/* Memory budget in bytes for the large arrays (dij, depth cubes). */
imrt_status imrt_context_set_max_memory(imrt_context *ctx, uint64_t bytes);
uint64_t imrt_context_max_memory(const imrt_context *ctx);

/* Kernel variant: IMRT_KERNELS_REFERENCE forces the plain reference kernels
 * everywhere (tests compare against them); IMRT_KERNELS_OPTIMISED (default)
 * uses the fastest variant of each kernel. The environment variable
 * IMRT_KERNELS=reference|optimised sets the default at creation. */
typedef enum { IMRT_KERNELS_OPTIMISED = 0, IMRT_KERNELS_REFERENCE = 1 } imrt_kernel_choice;
void imrt_context_set_kernels(imrt_context *ctx, imrt_kernel_choice choice);
imrt_kernel_choice imrt_context_kernels(const imrt_context *ctx);

void imrt_context_set_progress(imrt_context *ctx, imrt_progress_fn fn, void *user);
/* Report progress through the context's callback (no-op without one). */
void imrt_context_progress(const imrt_context *ctx, const char *stage, double fraction);

/* ---- distributed runs (MPI or any other message layer) ------------------
 *
 * The library has no MPI in it: a program that runs one process per node or
 * socket (build-mpi/imrt-mpi, docs/cluster.md) hands the context a set of
 * collective operations. With a communicator of size > 1:
 *   - imrt_dij_build computes only this process's block of dij rows
 *     (imrt_dij_partition: contiguous rows of about equal non-zero count);
 *     the other rows are present but empty (dij.h, row_begin/row_end);
 *   - the objective set gathers the row doses of every evaluation and sums
 *     the gradient over the processes, so every process runs the same
 *     solver steps;
 *   - doses on the grid, the conformal fit's matrix and the dij's non-zero
 *     count are summed over the processes.
 * Every process must make the same calls in the same order (collectives).
 * Each operation returns IMRT_OK or an error status after recording a
 * message; the result must be the same bits on every process. */
typedef struct {
    int rank;   /* this process, 0..size-1 */
    int size;   /* processes, >= 1 */
    void *user; /* passed to the operations (e.g. the MPI communicator) */
    /* buf[0..n) <- sum over the processes of their buf[0..n) */
    imrt_status (*sum)(void *user, double *buf, int64_t n);
    imrt_status (*sum_float)(void *user, float *buf, int64_t n);
    /* v has n entries; this process holds v[begin..end); on return v holds
     * every process's block. The blocks must tile 0..n-1 in rank order. */
    imrt_status (*gather)(void *user, double *v, int64_t n, int64_t begin, int64_t end);
} imrt_comm;

/* Install (copy) a communicator; NULL or size 1 = a single process (the
 * default). IMRT_ERR_ARG for a NULL ctx, size < 1, rank outside 0..size-1
 * or a missing operation. */
imrt_status imrt_context_set_comm(imrt_context *ctx, const imrt_comm *comm);

/* The communicator, or NULL when the run is a single process. */
const imrt_comm *imrt_context_comm(const imrt_context *ctx);

/* Collectives through the context's communicator; with none (or ctx NULL)
 * they leave the data as it is and return IMRT_OK. */
imrt_status imrt_context_sum(const imrt_context *ctx, double *buf, int64_t n);
imrt_status imrt_context_sum_float(const imrt_context *ctx, float *buf, int64_t n);
imrt_status imrt_context_gather(const imrt_context *ctx, double *v, int64_t n, int64_t begin,
                                int64_t end);

/* Physical memory of this machine in bytes (0 if unknown). */
uint64_t imrt_physical_memory(void);

/* Library version string, e.g. "0.1.0". */
const char *imrt_version(void);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_CONTEXT_H */
