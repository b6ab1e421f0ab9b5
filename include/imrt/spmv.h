/*
 * imrt/spmv.h - the optimiser's hot loop over the dose-influence matrix:
 * dose D·x, transposed product D^T·w, and the fused single pass that reads
 * each row once (dose, per-voxel derivative, D^T accumulation).
 *
 * Kernels in layers: every kernel has a typed function pointer, a plain
 * reference implementation (serial, obvious loops) and an optimised OpenMP
 * variant. A kernel table is filled with the reference kernels and then
 * overridden by the optimised ones unless the context asks for the
 * reference kernels (IMRT_KERNELS=reference), so tests and benchmarks reach
 * every variant through the same entry points.
 *
 * Columns: the kernels work on the stored matrix, whose columns are the
 * beamlets followed by the scatter-map columns (imrt/dij.h); every "ncols"
 * below is imrt_dij_width(D). Weights enter through imrt_dij_expand and
 * gradients leave through imrt_dij_contract (the objective set does both);
 * imrt_spmv_dose takes beamlet weights and expands them itself.
 *
 * Precision: matrix values are float (Gy per unit weight); weights x,
 * doses and every accumulation are double.
 *
 * Determinism: the optimised kernels split the rows into chunks of about
 * equal non-zero count (one chunk for one thread, one to eight per thread
 * otherwise: fewer for a wide dij, see engine/spmv_impl.h), fixed when the
 * workspace is created; the team takes the chunks in turn (so a thread
 * paused by the OS costs one chunk, not half the pass); each chunk
 * accumulates D^T products into its own private vector and the chunk
 * vectors are summed in chunk order. Results are therefore bitwise
 * reproducible for a fixed thread count (whatever the OpenMP scheduler
 * does) and agree across thread counts to rounding. D·x is computed row by
 * row with the same summation order whatever the thread count.
 *
 * Ownership and aliasing: kernels never allocate and never keep pointers;
 * output arrays must not alias input arrays (restrict). A workspace owns its
 * accumulators; one workspace serves one kernel call at a time.
 * Thread safety: a kernel call is internally parallel; distinct workspaces
 * may run concurrently on the same dij.
 */
#ifndef IMRT_SPMV_H
#define IMRT_SPMV_H

#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- per-voxel derivative program of the fused pass ------------------- */

/* Term types. With d the voxel's dose (Gy):
 *   IMRT_TERM_WINDOW: coef * (d - t)            when lo < d <= hi, else 0
 *   IMRT_TERM_POWER:  coef * (d / t)^e          when d > lo,       else 0
 * A window covers the squared deviation (lo = -inf, hi = +inf), overdose
 * (lo = t = D_max, hi = +inf) and underdose (lo = -inf, hi = t = D_min)
 * derivatives; a power term is the voxel factor of a gEUD derivative. */
enum { IMRT_TERM_WINDOW = 0, IMRT_TERM_POWER = 1 };

typedef struct {
    int32_t type;    /* IMRT_TERM_WINDOW or IMRT_TERM_POWER */
    int32_t channel; /* accumulator the term's derivative goes to, 0..nchannels-1 */
    double coef;     /* factor, 1/Gy^2 units of the objective per Gy */
    double t;        /* window: reference dose, Gy; power: dose scale (> 0), Gy */
    double lo, hi;   /* window: active for lo < d <= hi (Gy, may be +-inf); power: floor lo */
    double e;        /* power: exponent */
} imrt_voxel_term;

/* Which terms act on which row. Rows with row_class[r] == 0 are skipped by
 * the fused pass (no dose, no derivative: nothing needs them); a row of
 * class c >= 1 gets its dose computed and stored and the terms
 * term[class_start[c] .. class_start[c+1]-1] applied. Terms of one class are
 * sorted by channel; a class may have no terms (dose only). The derivative
 * of channel k at row r is the sum of its terms; it multiplies row r into
 * accumulator k, so that g[k*ncols + j] = sum_r D[r][j] * deriv_k(d_r). */
typedef struct {
    const uint16_t *row_class;   /* nrows entries, 0 = skip */
    const int32_t *class_start;  /* nclasses + 1 offsets into term; class 0 has none */
    const imrt_voxel_term *term; /* class_start[nclasses] terms */
    int32_t nclasses;            /* classes including the empty class 0, >= 1 */
    int32_t nchannels;           /* accumulators, >= 1 */
} imrt_voxel_program;

/* ---- workspace ---------------------------------------------------------- */

/* Opaque: thread count, the row split into chunks, and one private
 * accumulator block (nchannels x ncols doubles, cache-line padded) per
 * chunk (1 to 8 chunks per thread when threads > 1), and the pair table
 * of a dij with scatter maps. */
typedef struct imrt_spmv_ws imrt_spmv_ws;

/* Create a workspace for dij D for `threads` threads (>= 1) and
 * `nchannels` accumulators per chunk (>= 1). When row_class is not NULL,
 * the chunks balance the non-zeros of rows with row_class[r] != 0 only
 * (the rows a fused pass with that program reads). For a dij with scatter
 * maps (nvirt > 0) it also reads the column indices once to find each
 * row's pair section: from the first map column on, a row whose entries
 * come in pairs of adjacent columns (as the dij build stores a voxel's
 * map nodes) lets the optimised kernels read and update each pair with
 * one 16-byte access (2 bytes per row kept; imrt_spmv_ws_paired tells).
 * Results agree with the reference to rounding either way. The dij must
 * stay unchanged while the workspace is in use.
 * Errors: IMRT_ERR_ARG (NULL D/out, threads or nchannels < 1),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_spmv_ws_create(const imrt_dij *D, int threads, int nchannels,
                                const uint16_t *row_class, imrt_spmv_ws **out);

/* Free a workspace; accepts NULL and a pointer to NULL, clears *ws. */
void imrt_spmv_ws_destroy(imrt_spmv_ws **ws);

/* Threads (= chunks) of a workspace. */
int imrt_spmv_ws_threads(const imrt_spmv_ws *ws);

/* Give the workspace a compact copy of D's column indices, 16 bits each
 * (D must have ncols <= IMRT_SPMV_PACK16_MAX_COLS). The optimised kernels
 * called with this workspace and the same D then read the compact indices
 * instead of D->col: 6 bytes per stored entry (float value + index) instead
 * of 8, so the memory-bound products move a quarter fewer bytes. Results
 * are bitwise identical to the unpacked kernels (same arithmetic, same
 * order). Costs 2 bytes per non-zero of memory (164 MB for an 82 M-entry
 * dij) for as long as the workspace lives. The reference kernels ignore the
 * copy. D must stay unchanged while the workspace is in use; calling again
 * with the same D does nothing.
 * Errors: IMRT_ERR_ARG (NULL, or ws made for another shape),
 * IMRT_ERR_RANGE (ncols too large), IMRT_ERR_NOMEM. */
#define IMRT_SPMV_PACK16_MAX_COLS 65536
imrt_status imrt_spmv_ws_pack(imrt_spmv_ws *ws, const imrt_dij *D);

/* 1 when the workspace holds a compact index copy for D, else 0. */
int imrt_spmv_ws_packed(const imrt_spmv_ws *ws, const imrt_dij *D);

/* 1 when the workspace found pair sections in every row of D (see
 * imrt_spmv_ws_create) and the kernels use them, else 0. */
int imrt_spmv_ws_paired(const imrt_spmv_ws *ws, const imrt_dij *D);

/* ---- kernels ------------------------------------------------------------ */

/* d[r] = sum_k val[k] * x[col[k]] for every row (x: ncols, d: nrows). */
typedef void (*imrt_spmv_matvec_fn)(const imrt_dij *D, const double *x,
                                    double *d, imrt_spmv_ws *ws);

/* g[j] = sum_r D[r][j] * w[r] (w: nrows, g: ncols, overwritten). */
typedef void (*imrt_spmv_rmatvec_fn)(const imrt_dij *D, const double *w,
                                     double *g, imrt_spmv_ws *ws);

/* g[j] += sum_i D[rows[i]][j] * w[i] for i < n (a D^T product over a list
 * of rows; rows may repeat; g: ncols, accumulated into). */
typedef void (*imrt_spmv_rows_fn)(const imrt_dij *D, int64_t n, const int64_t *rows,
                                  const double *w, double *g,
                                  imrt_spmv_ws *ws);

/* The fused pass: for every row r with row_class[r] != 0, d[r] = D_r·x
 * (stored) and, for each channel k, g[k*ncols + j] += D[r][j] * deriv_k(d[r]).
 * g (nchannels * ncols) is overwritten; d of skipped rows is not written.
 * The workspace must have at least p->nchannels channels. */
typedef void (*imrt_spmv_fused_fn)(const imrt_dij *D, const double *x,
                                   const imrt_voxel_program *p, double *d,
                                   double *g, imrt_spmv_ws *ws);

typedef struct {
    imrt_spmv_matvec_fn matvec;
    imrt_spmv_rmatvec_fn rmatvec;
    imrt_spmv_rows_fn rows;
    imrt_spmv_fused_fn fused;
    const char *name_matvec, *name_rmatvec, *name_rows, *name_fused; /* e.g. "spmv_csr_omp" */
} imrt_spmv_kernels;

/* The plain reference kernels (serial; they ignore the workspace's split). */
void imrt_spmv_kernels_reference(imrt_spmv_kernels *k);

/* The optimised kernels (OpenMP, thread count from the workspace). */
void imrt_spmv_kernels_optimised(imrt_spmv_kernels *k);

/* Reference kernels, overridden by the optimised ones unless ctx selects
 * IMRT_KERNELS_REFERENCE (ctx may be NULL: optimised). */
void imrt_spmv_kernels_select(imrt_spmv_kernels *k, const imrt_context *ctx);

/* ---- checked entry points ---------------------------------------------- */

/* Validate a dij's CSR structure: non-NULL arrays, nrows >= 1, ncols >= 1,
 * rowptr[0] == 0, rowptr non-decreasing up to rowptr[nrows] == nnz, column
 * indices in 0..ncols-1, values finite and >= 0. O(nnz).
 * Errors: IMRT_ERR_ARG naming the first defect. */
imrt_status imrt_spmv_check(const imrt_dij *D);

/* Dose on the dij rows, d = D·x (x: D->ncols beamlet weights, expanded
 * to the map columns here; weights >= 0 are not required
 * here; d: nrows, Gy), with the context's kernels and threads. Allocates a
 * workspace for the call. Errors: IMRT_ERR_ARG (NULL arguments),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_spmv_dose(const imrt_context *ctx, const imrt_dij *D, const double *x,
                           double *d);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_SPMV_H */
