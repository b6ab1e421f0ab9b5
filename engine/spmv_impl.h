/*
 * engine/spmv_impl.h - private parts of the spmv module (never installed):
 * the workspace layout, the per-voxel term evaluation shared by every fused
 * kernel, and the kernel variants that the kernel tables point to.
 */
#ifndef IMRT_SPMV_IMPL_H
#define IMRT_SPMV_IMPL_H

#include "imrt/spmv.h"

#include <math.h>
#include <stddef.h>

/* Chunks of rows per thread when threads > 1, at most: the chunks are handed
 * out to the team dynamically, so that a thread the scheduler pauses (a
 * shared machine) delays the pass by at most one chunk instead of half the
 * work. Each chunk owns its accumulator block and the blocks are summed in
 * chunk order, so the result depends on the chunk count and never on which
 * thread ran which chunk. Every chunk's block is cleared and summed on each
 * transposed pass, so a wide dij (scatter-map columns) gets fewer chunks:
 * as many as keep that traffic (2 x chunks x block doubles) under
 * 1/IMRT_SPMV_ACC_SHARE of the matrix's entries, at least one per thread.
 * The count is fixed by the dij, the channels and the thread count. */
#define IMRT_SPMV_CHUNKS_PER_THREAD 8
#define IMRT_SPMV_ACC_SHARE 64

/* The dij a workspace table was made from: the tables are used only while
 * the kernel's dij is that one (same arrays and size). */
typedef struct {
    const imrt_dij *dij;
    const int64_t *rowptr;
    const int32_t *col;
    int64_t nnz;
} imrt_spmv_tie;

static inline imrt_spmv_tie imrt_spmv_tie_to(const imrt_dij *D)
{
    return (imrt_spmv_tie){D, D->rowptr, D->col, D->nnz};
}

static inline int imrt_spmv_tied(const imrt_spmv_tie *t, const imrt_dij *D)
{
    return t->dij == D && t->rowptr == D->rowptr && t->col == D->col && t->nnz == D->nnz;
}

struct imrt_spmv_ws {
    int threads;     /* team size */
    int nchunks;     /* chunks of rows (1, or threads x 1..IMRT_SPMV_CHUNKS_PER_THREAD), one
                        private accumulator block each */
    int nchannels;   /* accumulators per block */
    int32_t ncols;   /* columns of the dij it was made for */
    size_t stride;   /* doubles per channel in a block: ncols rounded up to 8 (one cache line) */
    size_t block;    /* doubles per block: nchannels * stride */
    int64_t *split;  /* nchunks + 1 row offsets: chunk c is rows split[c] .. split[c+1]-1 */
    double *acc;     /* nchunks * block doubles, 64-byte aligned blocks */
    /* Compact column indices (imrt_spmv_ws_pack), or NULL: col16[k] ==
     * D->col[k] for the dij `packed`. */
    uint16_t *col16; /* packed_nnz entries */
    imrt_spmv_tie packed;
    /* Pair sections (dij with scatter maps), or NULL: row r's entries from
     * rowptr[r] + lead[r] to its end are pairs of adjacent columns,
     * col[k + 1] == col[k] + 1 for every even k - rowptr[r] - lead[r]
     * (imrt_spmv_ws_create checks every row, or leaves this NULL). */
    uint16_t *lead;  /* nrows entries */
    imrt_spmv_tie paired;
};

/* Compact indices for D from ws, or NULL when the workspace has none for it. */
static inline const uint16_t *imrt_spmv_ws_col16(const imrt_spmv_ws *ws, const imrt_dij *D)
{
    return (ws && ws->col16 && imrt_spmv_tied(&ws->packed, D)) ? ws->col16 : NULL;
}

/* Pair table for D from ws, or NULL. */
static inline const uint16_t *imrt_spmv_ws_lead(const imrt_spmv_ws *ws, const imrt_dij *D)
{
    return (ws && ws->lead && imrt_spmv_tied(&ws->paired, D)) ? ws->lead : NULL;
}

/* Derivative contributed by one term at dose d (see imrt_voxel_term). */
static inline double imrt_term_eval(const imrt_voxel_term *t, double d)
{
    if (t->type == IMRT_TERM_WINDOW)
        return (d > t->lo && d <= t->hi) ? t->coef * (d - t->t) : 0.0;
    return d > t->lo ? t->coef * pow(d / t->t, t->e) : 0.0;
}

/* Reference kernels (engine/spmv_ref.c). */
void imrt_spmv_csr_matvec_ref(const imrt_dij *D, const double *restrict x, double *restrict d,
                              imrt_spmv_ws *ws);
void imrt_spmv_csr_rmatvec_ref(const imrt_dij *D, const double *restrict w, double *restrict g,
                               imrt_spmv_ws *ws);
void imrt_spmv_csr_rows_ref(const imrt_dij *D, int64_t n, const int64_t *restrict rows,
                            const double *restrict w, double *restrict g, imrt_spmv_ws *ws);
void imrt_spmv_csr_fused_ref(const imrt_dij *D, const double *restrict x,
                             const imrt_voxel_program *p, double *restrict d, double *restrict g,
                             imrt_spmv_ws *ws);

/* OpenMP kernels (engine/spmv_omp.c). */
void imrt_spmv_csr_matvec_omp(const imrt_dij *D, const double *restrict x, double *restrict d,
                              imrt_spmv_ws *ws);
void imrt_spmv_csr_rmatvec_omp(const imrt_dij *D, const double *restrict w, double *restrict g,
                               imrt_spmv_ws *ws);
void imrt_spmv_csr_rows_omp(const imrt_dij *D, int64_t n, const int64_t *restrict rows,
                            const double *restrict w, double *restrict g, imrt_spmv_ws *ws);
void imrt_spmv_csr_fused_omp(const imrt_dij *D, const double *restrict x,
                             const imrt_voxel_program *p, double *restrict d, double *restrict g,
                             imrt_spmv_ws *ws);

#endif /* IMRT_SPMV_IMPL_H */
