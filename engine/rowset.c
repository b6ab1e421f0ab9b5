/*
 * engine/rowset.c - compact copies of dij row subsets and the products of
 * the Newton solver's Hessian model over them (engine/rowset_impl.h): each
 * chunk of rows accumulates into its own vector, the chunk vectors are
 * summed in chunk order (bitwise reproducible for a fixed thread count).
 * The products run on the dij kernels' row loops (engine/spmv_row_impl.h),
 * with the dij's pair sections when the caller passes its pair table.
 */
#include "rowset_impl.h"

#include "spmv_row_impl.h"

#include "util_impl.h"

#include <string.h>

#define ROWSET_MIN_NNZ 16384 /* below this a product runs its chunks on one thread */

void imrt_rowset_destroy(imrt_rowset **sp)
{
    if (!sp || !*sp)
        return;
    imrt_rowset *s = *sp;
    imrt_free(s->row);
    imrt_free(s->ptr);
    imrt_free(s->col16);
    imrt_free(s->col32);
    imrt_free(s->val);
    imrt_free(s->lead);
    imrt_free(s->split);
    imrt_free(s->acc);
    imrt_free(s);
    *sp = NULL;
}

imrt_status imrt_rowset_create(const imrt_dij *D, const int64_t *rows, int64_t n,
                               const uint16_t *lead, int threads, imrt_rowset **out)
{
    imrt_status status = IMRT_OK;
    imrt_rowset *s = NULL;
    if (!out || !D || (n > 0 && !rows) || n < 0)
        return imrt_error(IMRT_ERR_ARG, "imrt_rowset_create: bad arguments");
    *out = NULL;
    IMRT_ALLOC(s, 1);
    s->nrows = n;
    s->ncols = imrt_dij_width(D);
    s->threads = threads > 0 ? threads : 1;
    IMRT_ALLOC(s->row, n > 0 ? n : 1);
    IMRT_ALLOC(s->ptr, n + 1);
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) {
        s->row[i] = rows[i];
        nnz += D->rowptr[rows[i] + 1] - D->rowptr[rows[i]];
        s->ptr[i + 1] = nnz;
    }
    s->nnz = nnz;
    const int narrow = imrt_dij_width(D) <= 65536;
    if (narrow)
        IMRT_ALLOC(s->col16, nnz > 0 ? nnz : 1);
    else
        IMRT_ALLOC(s->col32, nnz > 0 ? nnz : 1);
    IMRT_ALLOC(s->val, nnz > 0 ? nnz : 1);
    for (int64_t i = 0; i < n; i++) {
        const int64_t k0 = D->rowptr[rows[i]], len = D->rowptr[rows[i] + 1] - k0;
        memcpy(s->val + s->ptr[i], D->val + k0, (size_t)len * sizeof *s->val);
        if (narrow)
            for (int64_t k = 0; k < len; k++)
                s->col16[s->ptr[i] + k] = (uint16_t)D->col[k0 + k];
        else
            memcpy(s->col32 + s->ptr[i], D->col + k0, (size_t)len * sizeof *s->col32);
    }
    if (lead && n > 0) {
        IMRT_ALLOC(s->lead, n);
        for (int64_t i = 0; i < n; i++)
            s->lead[i] = lead[rows[i]];
    }
    IMRT_ALLOC(s->split, s->threads + 1);
    for (int t = 1, i = 0; t < s->threads; t++) {
        const int64_t want = nnz * t / s->threads;
        while (i < n && s->ptr[i] < want)
            i++;
        s->split[t] = i;
    }
    s->split[s->threads] = n;
    s->stride = ((size_t)s->ncols + 7) / 8 * 8;
    IMRT_ALLOC(s->acc, s->stride * (size_t)s->threads);
    *out = s;
    s = NULL;
cleanup:
    imrt_rowset_destroy(&s);
    return status;
}

/* Chunk t: acc_t = sum over its rows of w_i (S_i v) S_i (square = 0) or
 * w_i S_ij^2 (square = 1); `packed` (16-bit indices) is a constant of each
 * caller. */
SPMV_INLINE void chunk_rows(imrt_rowset *s, cols_t cl, int packed, int t,
                            const double *restrict w, const double *restrict v, int square)
{
    double *restrict a = s->acc + (size_t)t * s->stride;
    memset(a, 0, (size_t)s->ncols * sizeof *a);
    const float *restrict val = s->val;
    const int64_t *restrict ptr = s->ptr;
    for (int64_t i = s->split[t]; i < s->split[t + 1]; i++) {
        const double wi = w[i];
        if (wi == 0.0)
            continue;
        const int64_t k0 = ptr[i], k1 = ptr[i + 1];
        if (square) {
            for (int64_t k = k0; k < k1; k++)
                a[col_at(cl, packed, k)] += wi * (double)val[k] * (double)val[k];
            continue;
        }
        const int64_t km = row_pairs(cl, ptr, i);
        const double f = wi * row_dot(val, cl, packed, v, k0, km, k1);
        row_axpy(val, cl, packed, a, f, k0, km, k1);
    }
}

static void chunk(imrt_rowset *s, int t, const double *restrict w, const double *restrict v,
                  int square)
{
    const cols_t cl = {s->col32, s->col16, s->lead};
    if (s->col16)
        chunk_rows(s, cl, 1, t, w, v, square);
    else
        chunk_rows(s, cl, 0, t, w, v, square);
}

static void product(imrt_rowset *s, const double *w, const double *v, double *out, int square)
{
    const int T = s->threads;
    const int par = s->nnz >= ROWSET_MIN_NNZ && T > 1;
#pragma omp parallel num_threads(T) if (par)
    {
#pragma omp for schedule(static, 1)
        for (int t = 0; t < T; t++)
            chunk(s, t, w, v, square);
#pragma omp for schedule(static)
        for (int32_t j = 0; j < s->ncols; j++) {
            double sum = 0.0;
            for (int t = 0; t < T; t++)
                sum += s->acc[(size_t)t * s->stride + (size_t)j];
            out[j] = sum;
        }
    }
}

void imrt_rowset_wtw(imrt_rowset *s, const double *w, const double *v, double *out)
{
    product(s, w, v, out, 0);
}

void imrt_rowset_diag(imrt_rowset *s, const double *w, double *out)
{
    product(s, w, NULL, out, 1);
}
