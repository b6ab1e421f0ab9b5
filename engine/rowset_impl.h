/*
 * engine/rowset_impl.h - a compact copy of a subset of dij rows (16-bit
 * column indices when the dij has at most 65536 columns) and the two
 * products the Newton solver's Hessian model needs over it: S^T W S v and
 * diag(S^T W S). Private to the library (the objective set owns one).
 */
#ifndef IMRT_ROWSET_IMPL_H
#define IMRT_ROWSET_IMPL_H

#include "imrt/dij.h"
#include "imrt/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t nrows;   /* rows of the subset */
    int32_t ncols;   /* columns (= the dij's) */
    int64_t nnz;     /* stored entries */
    int64_t *row;    /* nrows: the dij row of each subset row */
    int64_t *ptr;    /* nrows + 1 offsets */
    uint16_t *col16; /* nnz column indices when ncols <= 65536, else NULL */
    int32_t *col32;  /* nnz column indices otherwise, else NULL */
    float *val;      /* nnz values */
    uint16_t *lead;  /* nrows: entries before each row's pair section (copied from the
                        dij's pair table), or NULL */
    int threads;     /* chunks (fixed: results are reproducible per thread count) */
    int64_t *split;  /* threads + 1 row offsets, balanced by non-zeros */
    size_t stride;   /* doubles per chunk accumulator (ncols rounded up to 8) */
    double *acc;     /* threads * stride */
} imrt_rowset;

/* Copy rows[0..n-1] (increasing dij row indices) of D. lead: the pair table
 * of D (a spmv workspace's, imrt_spmv_ws_lead: one entry per dij row), or
 * NULL; the copy keeps its entries for the copied rows. Errors:
 * IMRT_ERR_ARG, IMRT_ERR_NOMEM. */
imrt_status imrt_rowset_create(const imrt_dij *D, const int64_t *rows, int64_t n,
                               const uint16_t *lead, int threads, imrt_rowset **out);

/* Free; accepts NULL, clears *s. */
void imrt_rowset_destroy(imrt_rowset **s);

/* out = S^T diag(w) S v (w: nrows of the subset, rows with w == 0 are
 * skipped; v, out: ncols). */
void imrt_rowset_wtw(imrt_rowset *s, const double *w, const double *v, double *out);

/* out_j = sum_i w_i S_ij^2 (ncols). */
void imrt_rowset_diag(imrt_rowset *s, const double *w, double *out);

#endif /* IMRT_ROWSET_IMPL_H */
