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

/* Memory budget in bytes for the large arrays (phantom, dij and its build,
 * doses, optimiser): stages estimate first and refuse with IMRT_ERR_BUDGET
 * before allocating (docs/robustness.md, "The memory model"). */
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

/* Physical memory of this machine in bytes (0 if unknown). */
uint64_t imrt_physical_memory(void);

/* Library version string, e.g. "0.1.0". */
const char *imrt_version(void);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_CONTEXT_H */
