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
 * same results. The row loops are written once (always-inline, with the
 * index width a compile-time constant of each caller).
 *
 * Rows of a dij with scatter maps end in map entries that come in pairs of
 * adjacent columns (nodes p and p + 1 of one map row, dij.h). When the
 * workspace has checked that every row does so (its `npair` table: the
 * entries before the pairs), the kernels read each pair's two weights with
 * one 16-byte load of x and update the accumulator with one 16-byte
 * load/add/store: half the gathers and index reads on 55 % of the TG-119
 * dij's entries, the same products in the same order per entry.
 */
#include "spmv_impl.h"

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

#if defined(__GNUC__)
#define SPMV_INLINE static inline __attribute__((always_inline))
#else
#define SPMV_INLINE static inline
#endif

/* Column index storage of one call: 32-bit D->col or 16-bit packed, and
 * the workspace's pair table (NULL: no row has a pair section). */
typedef struct {
    const int32_t *c32;
    const uint16_t *c16;
    const uint16_t *lead;
} cols_t;

/* Start of row r's pair section (the row's end when there is none). */
SPMV_INLINE int64_t row_pairs(cols_t cl, const int64_t *restrict rowptr, int64_t r)
{
    return cl.lead ? rowptr[r] + cl.lead[r] : rowptr[r + 1];
}

/* Index k of either width (packed is a constant in every caller). */
SPMV_INLINE uint32_t col_at(cols_t cl, int packed, int64_t k)
{
    return packed ? (uint32_t)cl.c16[k] : (uint32_t)cl.c32[k];
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* Two column indices from one 8-byte load (x86 is little-endian: the low
 * half is col[k]). Halves the loads spent on indices, which together with
 * the x gather and the accumulator load/store bound these loops. */
static inline uint64_t col_pair(const int32_t *restrict col, int64_t k)
{
    uint64_t p;
    memcpy(&p, col + k, sizeof p);
    return p;
}
#define PAIR_LO(p) ((uint32_t)(p))
#define PAIR_HI(p) ((uint32_t)((p) >> 32))

/* Four 16-bit column indices from one 8-byte load. */
static inline uint64_t col_quad(const uint16_t *restrict col, int64_t k)
{
    uint64_t p;
    memcpy(&p, col + k, sizeof p);
    return p;
}
#define QUAD(p, i) ((uint32_t)((p) >> (16 * (i))) & 0xffffu)

/* Four two-lane partial sums of a row's dot product (they break the add
 * latency chain). Which entry goes to which sum depends only on the row,
 * never on the thread count or the index width. */
typedef struct {
    __m128d s0, s1, s2, s3;
} dot4;

/* (s0 + s1) + (s2 + s3), then its two lanes. */
static inline double hsum4(const dot4 *a)
{
    const __m128d s = _mm_add_pd(_mm_add_pd(a->s0, a->s1), _mm_add_pd(a->s2, a->s3));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* a += val[k] * x[k's column] for the eight entries at k, the columns of
 * entries k..k+7 given as x's addresses. */
static inline void dot8(dot4 *a, const float *restrict val, int64_t k, __m128d x0, __m128d x1,
                        __m128d x2, __m128d x3)
{
    const __m128 va = _mm_loadu_ps(val + k), vb = _mm_loadu_ps(val + k + 4);
    a->s0 = _mm_add_pd(a->s0, _mm_mul_pd(_mm_cvtps_pd(va), x0));
    a->s1 = _mm_add_pd(a->s1, _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(va, va)), x1));
    a->s2 = _mm_add_pd(a->s2, _mm_mul_pd(_mm_cvtps_pd(vb), x2));
    a->s3 = _mm_add_pd(a->s3, _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(vb, vb)), x3));
}

/* Leading entries [k, km) of a row, any columns: eight per step. */
static inline void lead_dot32(dot4 *a, const float *restrict val, const int32_t *restrict col,
                              const double *restrict x, int64_t k, int64_t km)
{
    for (; k + 8 <= km; k += 8) {
        const uint64_t p0 = col_pair(col, k), p1 = col_pair(col, k + 2);
        const uint64_t p2 = col_pair(col, k + 4), p3 = col_pair(col, k + 6);
        dot8(a, val, k, _mm_loadh_pd(_mm_load_sd(x + PAIR_LO(p0)), x + PAIR_HI(p0)),
             _mm_loadh_pd(_mm_load_sd(x + PAIR_LO(p1)), x + PAIR_HI(p1)),
             _mm_loadh_pd(_mm_load_sd(x + PAIR_LO(p2)), x + PAIR_HI(p2)),
             _mm_loadh_pd(_mm_load_sd(x + PAIR_LO(p3)), x + PAIR_HI(p3)));
    }
    for (; k < km; k++)
        a->s0 = _mm_add_sd(a->s0, _mm_set_sd((double)val[k] * x[col[k]]));
}

/* lead_dot32 with 16-bit indices: same partial sums, same order. */
static inline void lead_dot16(dot4 *a, const float *restrict val, const uint16_t *restrict col,
                              const double *restrict x, int64_t k, int64_t km)
{
    for (; k + 8 <= km; k += 8) {
        const uint64_t p0 = col_quad(col, k), p1 = col_quad(col, k + 4);
        dot8(a, val, k, _mm_loadh_pd(_mm_load_sd(x + QUAD(p0, 0)), x + QUAD(p0, 1)),
             _mm_loadh_pd(_mm_load_sd(x + QUAD(p0, 2)), x + QUAD(p0, 3)),
             _mm_loadh_pd(_mm_load_sd(x + QUAD(p1, 0)), x + QUAD(p1, 1)),
             _mm_loadh_pd(_mm_load_sd(x + QUAD(p1, 2)), x + QUAD(p1, 3)));
    }
    for (; k < km; k++)
        a->s0 = _mm_add_sd(a->s0, _mm_set_sd((double)val[k] * x[col[k]]));
}

/* Two floats from val + k (one 8-byte load, any alignment), widened. */
static inline __m128d val2(const float *restrict val, int64_t k)
{
    uint64_t b;
    memcpy(&b, val + k, sizeof b);
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_cvtsi64_si128((long long)b)));
}

/* Dot product of row [k0, k1) with x; entries [km, k1) are pairs of
 * adjacent columns, each pair's weights read with one load. */
SPMV_INLINE double row_dot(const float *restrict val, cols_t cl, int packed,
                           const double *restrict x, int64_t k0, int64_t km, int64_t k1)
{
    dot4 a = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
    if (packed)
        lead_dot16(&a, val, cl.c16, x, k0, km);
    else
        lead_dot32(&a, val, cl.c32, x, k0, km);
    int64_t k = km;
    for (; k + 8 <= k1; k += 8)
        dot8(&a, val, k, _mm_loadu_pd(x + col_at(cl, packed, k)),
             _mm_loadu_pd(x + col_at(cl, packed, k + 2)),
             _mm_loadu_pd(x + col_at(cl, packed, k + 4)),
             _mm_loadu_pd(x + col_at(cl, packed, k + 6)));
    for (; k < k1; k += 2)
        a.s0 = _mm_add_pd(a.s0, _mm_mul_pd(val2(val, k), _mm_loadu_pd(x + col_at(cl, packed, k))));
    return hsum4(&a);
}

/* acc[col[k]] += a * val[k] over the leading entries [k, km); columns
 * within a row are distinct, so the updates are independent of each other. */
static inline void lead_axpy32(const float *restrict val, const int32_t *restrict col,
                               double *restrict acc, __m128d av, int64_t k, int64_t km)
{
    for (; k + 4 <= km; k += 4) {
        const uint64_t p0 = col_pair(col, k), p1 = col_pair(col, k + 2);
        const __m128 v = _mm_loadu_ps(val + k);
        const __m128d q0 = _mm_mul_pd(av, _mm_cvtps_pd(v));
        const __m128d q1 = _mm_mul_pd(av, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
        double *a0 = acc + PAIR_LO(p0), *a1 = acc + PAIR_HI(p0);
        double *a2 = acc + PAIR_LO(p1), *a3 = acc + PAIR_HI(p1);
        _mm_store_sd(a0, _mm_add_sd(_mm_load_sd(a0), q0));
        _mm_store_sd(a1, _mm_add_sd(_mm_load_sd(a1), _mm_unpackhi_pd(q0, q0)));
        _mm_store_sd(a2, _mm_add_sd(_mm_load_sd(a2), q1));
        _mm_store_sd(a3, _mm_add_sd(_mm_load_sd(a3), _mm_unpackhi_pd(q1, q1)));
    }
    for (; k < km; k++)
        acc[col[k]] += _mm_cvtsd_f64(av) * (double)val[k];
}

/* lead_axpy32 with 16-bit indices. */
static inline void lead_axpy16(const float *restrict val, const uint16_t *restrict col,
                               double *restrict acc, __m128d av, int64_t k, int64_t km)
{
    for (; k + 4 <= km; k += 4) {
        const uint64_t p = col_quad(col, k);
        const __m128 v = _mm_loadu_ps(val + k);
        const __m128d q0 = _mm_mul_pd(av, _mm_cvtps_pd(v));
        const __m128d q1 = _mm_mul_pd(av, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
        double *a0 = acc + QUAD(p, 0), *a1 = acc + QUAD(p, 1);
        double *a2 = acc + QUAD(p, 2), *a3 = acc + QUAD(p, 3);
        _mm_store_sd(a0, _mm_add_sd(_mm_load_sd(a0), q0));
        _mm_store_sd(a1, _mm_add_sd(_mm_load_sd(a1), _mm_unpackhi_pd(q0, q0)));
        _mm_store_sd(a2, _mm_add_sd(_mm_load_sd(a2), q1));
        _mm_store_sd(a3, _mm_add_sd(_mm_load_sd(a3), _mm_unpackhi_pd(q1, q1)));
    }
    for (; k < km; k++)
        acc[col[k]] += _mm_cvtsd_f64(av) * (double)val[k];
}

/* acc[c], acc[c + 1] += q for the pair at k (one 16-byte load/add/store). */
SPMV_INLINE void pair_add(double *restrict acc, cols_t cl, int packed, int64_t k, __m128d q)
{
    double *p = acc + col_at(cl, packed, k);
    _mm_storeu_pd(p, _mm_add_pd(_mm_loadu_pd(p), q));
}

/* acc[col[k]] += a * val[k] over row [k0, k1), the pairs [km, k1) two at a
 * time; the same product per entry as the leading loop. */
SPMV_INLINE void row_axpy(const float *restrict val, cols_t cl, int packed,
                          double *restrict acc, double a, int64_t k0, int64_t km, int64_t k1)
{
    const __m128d av = _mm_set1_pd(a);
    if (packed)
        lead_axpy16(val, cl.c16, acc, av, k0, km);
    else
        lead_axpy32(val, cl.c32, acc, av, k0, km);
    int64_t k = km;
    for (; k + 4 <= k1; k += 4) {
        const __m128 v = _mm_loadu_ps(val + k);
        pair_add(acc, cl, packed, k, _mm_mul_pd(av, _mm_cvtps_pd(v)));
        pair_add(acc, cl, packed, k + 2, _mm_mul_pd(av, _mm_cvtps_pd(_mm_movehl_ps(v, v))));
    }
    for (; k < k1; k += 2)
        pair_add(acc, cl, packed, k, _mm_mul_pd(av, val2(val, k)));
}

#else /* portable C: every entry on its own (the pair section needs no
         special case), in four partial sums */

SPMV_INLINE double row_dot(const float *restrict val, cols_t cl, int packed,
                           const double *restrict x, int64_t k0, int64_t km, int64_t k1)
{
    (void)km;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        s0 += (double)val[k] * x[col_at(cl, packed, k)];
        s1 += (double)val[k + 1] * x[col_at(cl, packed, k + 1)];
        s2 += (double)val[k + 2] * x[col_at(cl, packed, k + 2)];
        s3 += (double)val[k + 3] * x[col_at(cl, packed, k + 3)];
    }
    for (; k < k1; k++)
        s0 += (double)val[k] * x[col_at(cl, packed, k)];
    return (s0 + s1) + (s2 + s3);
}

SPMV_INLINE void row_axpy(const float *restrict val, cols_t cl, int packed,
                          double *restrict acc, double a, int64_t k0, int64_t km, int64_t k1)
{
    (void)km;
    for (int64_t k = k0; k < k1; k++)
        acc[col_at(cl, packed, k)] += a * (double)val[k];
}

#endif

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
            d[r] = row_dot(val, cl, packed, x, rowptr[r], row_pairs(cl, rowptr, r), rowptr[r + 1]);
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
                d[r] = row_dot(val, cl, packed, x, rowptr[r], row_pairs(cl, rowptr, r), rowptr[r + 1]);
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
