/*
 * engine/spmv_omp.c - OpenMP kernels of the dij products (spmv_csr_*_omp).
 *
 * Rows are split into the workspace's chunks (about equal non-zeros, fixed
 * at workspace creation, several per thread) that the team takes in turn
 * (schedule(dynamic, 1)). D·x is row-parallel. D^T products accumulate each
 * chunk into its own cache-line-aligned private vector (no false sharing,
 * no atomics) and then sum the chunk vectors in chunk order, the columns
 * shared out among the threads: bitwise reproducible for a fixed chunk
 * count. The fused pass streams every active row once: its dot product
 * with x, the per-voxel derivative, and the scatter of the same row
 * (still in L1/L2) into the chunk's accumulator.
 *
 * Every kernel reads its column indices either from D->col (32 bits) or,
 * when the workspace holds a packed copy (imrt_spmv_ws_pack), from 16-bit
 * indices: the same loops with a narrower load, so both give bitwise the
 * same results. The row loops are written once (engine/spmv_row_impl.h,
 * always-inline, with the index width a compile-time constant of each
 * caller), with each row's pair section when the workspace has a pair
 * table (imrt_spmv_ws_create: every row of a dij with scatter maps).
 */
#include "spmv_impl.h"
#include "spmv_row_impl.h"

#include "util_impl.h"

#include <omp.h>
#include <string.h>

/* Rows handled per block by the fused pass: their dot products first
 * (streaming from memory), then their derivatives and scatters while the
 * rows are still in L1/L2. Keeps the memory stream busy in long bursts and
 * the scatter loop free of the dot product's latency. */
#define FUSED_BLOCK_ROWS 64

/* Below this many non-zeros a kernel runs its chunks on one thread: the
 * team's start-up and barriers would cost more than the work. The chunks
 * and their reduction order are the same, so the result is bitwise
 * identical to a parallel run with the same chunk count. */
#define SPMV_OMP_MIN_NNZ 16384


/* out[j] (+)= sum over chunks c of acc_c[j] for j < n, columns shared out
 * among the team; called inside a parallel region after a barrier. */
static void reduce_chunks(const imrt_spmv_ws *ws, size_t offset, double *restrict out, size_t n,
                          int accumulate)
{
    const int nc = ws->nchunks;
#pragma omp for schedule(static)
    for (size_t j = 0; j < n; j++) {
        double s = accumulate ? out[j] : 0.0;
        for (int c = 0; c < nc; c++)
            s += ws->acc[(size_t)c * ws->block + offset + j];
        out[j] = s;
    }
}

SPMV_INLINE void matvec_body(const imrt_dij *D, cols_t cl, int packed,
                             const double *restrict x, double *restrict d, imrt_spmv_ws *ws)
{
    const int64_t *rowptr = D->rowptr;
    const float *val = D->val;
    const int nc = ws->nchunks;
#pragma omp parallel for num_threads(ws->threads) schedule(dynamic, 1) \
    if (D->nnz >= SPMV_OMP_MIN_NNZ)
    for (int c = 0; c < nc; c++)
        for (int64_t r = ws->split[c]; r < ws->split[c + 1]; r++)
            d[r] = row_dot(val, cl, packed, x, rowptr[r], row_pairs(cl, rowptr, r),
                           rowptr[r + 1]);
}

void imrt_spmv_csr_matvec_omp(const imrt_dij *D, const double *restrict x, double *restrict d,
                              imrt_spmv_ws *ws)
{
    const cols_t cl = {D->col, imrt_spmv_ws_col16(ws, D), imrt_spmv_ws_lead(ws, D)};
    if (cl.c16)
        matvec_body(D, cl, 1, x, d, ws);
    else
        matvec_body(D, cl, 0, x, d, ws);
}

SPMV_INLINE void rmatvec_body(const imrt_dij *D, cols_t cl, int packed,
                              const double *restrict w, double *restrict g, imrt_spmv_ws *ws)
{
    const int64_t *rowptr = D->rowptr;
    const float *val = D->val;
    const int nc = ws->nchunks;
    const size_t ncols = (size_t)imrt_dij_width(D);
#pragma omp parallel num_threads(ws->threads) if (D->nnz >= SPMV_OMP_MIN_NNZ)
    {
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < nc; c++) {
            double *acc = ws->acc + (size_t)c * ws->block;
            memset(acc, 0, ncols * sizeof *acc);
            for (int64_t r = ws->split[c]; r < ws->split[c + 1]; r++)
                if (w[r] != 0.0)
                    row_axpy(val, cl, packed, acc, w[r], rowptr[r], row_pairs(cl, rowptr, r),
                             rowptr[r + 1]);
        }
        reduce_chunks(ws, 0, g, ncols, 0);
    }
}

void imrt_spmv_csr_rmatvec_omp(const imrt_dij *D, const double *restrict w, double *restrict g,
                               imrt_spmv_ws *ws)
{
    const cols_t cl = {D->col, imrt_spmv_ws_col16(ws, D), imrt_spmv_ws_lead(ws, D)};
    if (cl.c16)
        rmatvec_body(D, cl, 1, w, g, ws);
    else
        rmatvec_body(D, cl, 0, w, g, ws);
}

SPMV_INLINE void rows_body(const imrt_dij *D, cols_t cl, int packed, int64_t n,
                           const int64_t *restrict rows, const double *restrict w,
                           double *restrict g, imrt_spmv_ws *ws)
{
    const int64_t *rowptr = D->rowptr;
    const float *val = D->val;
    const int nc = ws->nchunks;
    const size_t ncols = (size_t)imrt_dij_width(D);
#pragma omp parallel num_threads(ws->threads) if (D->nnz >= SPMV_OMP_MIN_NNZ)
    {
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < nc; c++) {
            double *acc = ws->acc + (size_t)c * ws->block;
            memset(acc, 0, ncols * sizeof *acc);
            const int64_t i0 = n * c / nc, i1 = n * (c + 1) / nc;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t r = rows[i];
                row_axpy(val, cl, packed, acc, w[i], rowptr[r], row_pairs(cl, rowptr, r),
                         rowptr[r + 1]);
            }
        }
        reduce_chunks(ws, 0, g, ncols, 1);
    }
}

void imrt_spmv_csr_rows_omp(const imrt_dij *D, int64_t n, const int64_t *restrict rows,
                            const double *restrict w, double *restrict g, imrt_spmv_ws *ws)
{
    if (n <= 0)
        return;
    const cols_t cl = {D->col, imrt_spmv_ws_col16(ws, D), imrt_spmv_ws_lead(ws, D)};
    if (cl.c16)
        rows_body(D, cl, 1, n, rows, w, g, ws);
    else
        rows_body(D, cl, 0, n, rows, w, g, ws);
}

/* Derivative program of row r (class cls >= 1, dose s): scatter the row
 * into each channel with a non-zero derivative. */
SPMV_INLINE void scatter_row(const imrt_dij *D, cols_t cl, int packed,
                             const imrt_voxel_program *p, int cls, double s, int64_t r,
                             double *restrict acc, size_t stride)
{
    const int32_t *cs = p->class_start;
    const imrt_voxel_term *term = p->term;
    int32_t t = cs[cls];
    const int32_t te = cs[cls + 1];
    while (t < te) {
        const int32_t ch = term[t].channel;
        double deriv = 0.0;
        do {
            deriv += imrt_term_eval(&term[t], s);
            t++;
        } while (t < te && term[t].channel == ch);
        if (deriv != 0.0)
            row_axpy(D->val, cl, packed, acc + (size_t)ch * stride, deriv, D->rowptr[r],
                     row_pairs(cl, D->rowptr, r), D->rowptr[r + 1]);
    }
}

/* One chunk of the fused pass, software-pipelined by blocks of rows: while
 * the dot products of block b stream from memory, the rows of block b-1
 * (read a block ago, still in L2) are scattered, one scatter between two
 * dot products, so that the out-of-order core overlaps the scatter's
 * arithmetic with the stream's memory latency and the hardware prefetcher
 * never sees the stream stop. Rows are scattered in row order, as in the
 * unpipelined loop: the result does not depend on the blocking. */
SPMV_INLINE void fused_chunk(const imrt_dij *D, cols_t cl, int packed, const double *restrict x,
                             const imrt_voxel_program *p, double *restrict d,
                             double *restrict acc, size_t stride, int64_t r0, int64_t r1)
{
    const int64_t *rowptr = D->rowptr;
    const float *val = D->val;
    const uint16_t *rc = p->row_class;
    int64_t pb = r0, pe = r0; /* previous block, still to scatter */
    for (int64_t rb = r0; rb < r1; rb += FUSED_BLOCK_ROWS) {
        const int64_t re = IMRT_MIN(rb + FUSED_BLOCK_ROWS, r1);
        for (int64_t i = 0; i < re - rb; i++) {
            const int64_t r = rb + i, q = pb + i;
            if (rc[r])
                d[r] = row_dot(val, cl, packed, x, rowptr[r], row_pairs(cl, rowptr, r),
                               rowptr[r + 1]);
            if (q < pe && rc[q])
                scatter_row(D, cl, packed, p, rc[q], d[q], q, acc, stride);
        }
        for (int64_t q = pb + (re - rb); q < pe; q++) /* the last block may be short */
            if (rc[q])
                scatter_row(D, cl, packed, p, rc[q], d[q], q, acc, stride);
        pb = rb;
        pe = re;
    }
    for (int64_t q = pb; q < pe; q++)
        if (rc[q])
            scatter_row(D, cl, packed, p, rc[q], d[q], q, acc, stride);
}

SPMV_INLINE void fused_body(const imrt_dij *D, cols_t cl, int packed, const double *restrict x,
                            const imrt_voxel_program *p, double *restrict d,
                            double *restrict g, imrt_spmv_ws *ws)
{
    const int nc = ws->nchunks;
    const int nch = p->nchannels;
    const size_t ncols = (size_t)imrt_dij_width(D);
    const size_t stride = ws->stride;
#pragma omp parallel num_threads(ws->threads) if (D->nnz >= SPMV_OMP_MIN_NNZ)
    {
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < nc; c++) {
            double *acc = ws->acc + (size_t)c * ws->block;
            memset(acc, 0, (size_t)nch * stride * sizeof *acc);
            fused_chunk(D, cl, packed, x, p, d, acc, stride, ws->split[c], ws->split[c + 1]);
        }
        for (int ch = 0; ch < nch; ch++)
            reduce_chunks(ws, (size_t)ch * stride, g + (size_t)ch * ncols, ncols, 0);
    }
}

void imrt_spmv_csr_fused_omp(const imrt_dij *D, const double *restrict x,
                             const imrt_voxel_program *p, double *restrict d, double *restrict g,
                             imrt_spmv_ws *ws)
{
    const cols_t cl = {D->col, imrt_spmv_ws_col16(ws, D), imrt_spmv_ws_lead(ws, D)};
    if (cl.c16)
        fused_body(D, cl, 1, x, p, d, g, ws);
    else
        fused_body(D, cl, 0, x, p, d, g, ws);
}
