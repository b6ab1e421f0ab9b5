/*
 * engine/spmv_row_impl.h - the row kernels every optimised dij product is
 * built from (private, never installed): a row's dot product with a vector
 * and a row added, times a factor, into an accumulator, on 32- or 16-bit
 * column indices, with a row's pair section (adjacent map columns, one
 * 16-byte access per pair) when the caller has a pair table. Used by the
 * OpenMP kernels (engine/spmv_omp.c) and the Newton solver's row subsets
 * (engine/rowset.c). SSE2 on x86-64, portable C elsewhere.
 *
 * Rows of a dij with scatter maps end in map entries that come in pairs of
 * adjacent columns (nodes p and p + 1 of one map row, dij.h). Where the
 * caller has a pair table (a spmv workspace's, imrt_spmv_ws_create: the
 * entries of each row before its pairs), the kernels read each pair's two
 * weights with one 16-byte load and update the accumulator with one
 * 16-byte load/add/store: half the gathers and index reads on 55 % of the
 * TG-119 dij's entries, the same product per entry and an order fixed by
 * the row.
 */
#ifndef IMRT_SPMV_ROW_IMPL_H
#define IMRT_SPMV_ROW_IMPL_H

#include <stdint.h>
#include <string.h>

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

/* acc[c0..c3] += av * val[k..k+3], one entry at a time; columns within a
 * row are distinct, so the updates are independent of each other. */
static inline void axpy4(double *restrict acc, const float *restrict val, int64_t k, __m128d av,
                         uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3)
{
    const __m128 v = _mm_loadu_ps(val + k);
    const __m128d q0 = _mm_mul_pd(av, _mm_cvtps_pd(v));
    const __m128d q1 = _mm_mul_pd(av, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
    double *a0 = acc + c0, *a1 = acc + c1, *a2 = acc + c2, *a3 = acc + c3;
    _mm_store_sd(a0, _mm_add_sd(_mm_load_sd(a0), q0));
    _mm_store_sd(a1, _mm_add_sd(_mm_load_sd(a1), _mm_unpackhi_pd(q0, q0)));
    _mm_store_sd(a2, _mm_add_sd(_mm_load_sd(a2), q1));
    _mm_store_sd(a3, _mm_add_sd(_mm_load_sd(a3), _mm_unpackhi_pd(q1, q1)));
}

/* acc[col[k]] += a * val[k] over the leading entries [k, km). */
static inline void lead_axpy32(const float *restrict val, const int32_t *restrict col,
                               double *restrict acc, __m128d av, int64_t k, int64_t km)
{
    for (; k + 4 <= km; k += 4) {
        const uint64_t p0 = col_pair(col, k), p1 = col_pair(col, k + 2);
        axpy4(acc, val, k, av, PAIR_LO(p0), PAIR_HI(p0), PAIR_LO(p1), PAIR_HI(p1));
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
        axpy4(acc, val, k, av, QUAD(p, 0), QUAD(p, 1), QUAD(p, 2), QUAD(p, 3));
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

#endif /* IMRT_SPMV_ROW_IMPL_H */
