/*
 * engine/conformal.c - the 3D-conformal baseline: Lawson-Hanson NNLS on
 * LAPACKE_dgelsd, the per-beam target dose matrix of uniform apertures, the
 * beam-weight fit, the dose of beamlet weights and the normalised plan.
 */
#include "imrt/conformal.h"

#include "imrt/metrics.h"
#include "util_impl.h"

#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* NNLS                                                                     */
/* ------------------------------------------------------------------------ */

/* w = A^T (b - A x); resid receives b - A x. */
static void nnls_gradient(int m, int n, const double *a, int lda, const double *b,
                          const double *x, double *resid, double *w)
{
    for (int i = 0; i < m; i++)
        resid[i] = b[i];
    for (int j = 0; j < n; j++) {
        if (x[j] == 0.0)
            continue;
        const double *col = a + (size_t)j * (size_t)lda;
        for (int i = 0; i < m; i++)
            resid[i] -= col[i] * x[j];
    }
    for (int j = 0; j < n; j++) {
        const double *col = a + (size_t)j * (size_t)lda;
        double s = 0.0;
        for (int i = 0; i < m; i++)
            s += col[i] * resid[i];
        w[j] = s;
    }
}

/* Least squares on the passive columns: z[j] for j in P, 0 elsewhere. */
static imrt_status nnls_subproblem(int m, int n, const double *a, int lda, const double *b,
                                   const unsigned char *passive, double *ap, double *bb,
                                   double *sv, double *z)
{
    int k = 0;
    for (int j = 0; j < n; j++) {
        z[j] = 0.0;
        if (!passive[j])
            continue;
        memcpy(ap + (size_t)k * (size_t)m, a + (size_t)j * (size_t)lda, (size_t)m * sizeof *ap);
        k++;
    }
    if (k == 0)
        return IMRT_OK;
    int ldb = IMRT_MAX(m, k);
    memcpy(bb, b, (size_t)m * sizeof *bb);
    for (int i = m; i < ldb; i++)
        bb[i] = 0.0;
    lapack_int rank = 0;
    lapack_int info = LAPACKE_dgelsd(LAPACK_COL_MAJOR, m, k, 1, ap, m, bb, ldb, sv, -1.0, &rank);
    if (info != 0)
        return imrt_error(IMRT_ERR_NUMERIC, "NNLS: LAPACKE_dgelsd failed (info %d) on a %d x %d "
                                            "subproblem",
                          (int)info, m, k);
    k = 0;
    for (int j = 0; j < n; j++)
        if (passive[j])
            z[j] = bb[k++];
    return IMRT_OK;
}

imrt_status imrt_nnls(int m, int n, const double *a, int lda, const double *b, double *x,
                      double *rnorm)
{
    imrt_status status = IMRT_OK;
    double *ap = NULL, *bb = NULL, *sv = NULL, *z = NULL, *w = NULL, *resid = NULL;
    unsigned char *passive = NULL, *skip = NULL;
    if (!a || !b || !x)
        return imrt_error(IMRT_ERR_ARG, "imrt_nnls: NULL A, b or x");
    if (m < 1 || n < 1 || lda < m)
        return imrt_error(IMRT_ERR_ARG, "imrt_nnls: m = %d, n = %d, lda = %d (need m, n >= 1, "
                                        "lda >= m)",
                          m, n, lda);
    double norm1 = 0.0; /* largest column sum |A| */
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < m; i++) {
            double v = a[(size_t)j * (size_t)lda + (size_t)i];
            if (!isfinite(v))
                return imrt_error(IMRT_ERR_RANGE, "imrt_nnls: A[%d,%d] = %g is not finite", i, j,
                                  v);
            s += fabs(v);
        }
        norm1 = IMRT_MAX(norm1, s);
    }
    for (int i = 0; i < m; i++)
        if (!isfinite(b[i]))
            return imrt_error(IMRT_ERR_RANGE, "imrt_nnls: b[%d] = %g is not finite", i, b[i]);

    IMRT_ALLOC(ap, (size_t)m * (size_t)n);
    IMRT_ALLOC(bb, IMRT_MAX(m, n));
    IMRT_ALLOC(sv, IMRT_MIN(m, n));
    IMRT_ALLOC(z, n);
    IMRT_ALLOC(w, n);
    IMRT_ALLOC(resid, m);
    IMRT_ALLOC(passive, n);
    IMRT_ALLOC(skip, n);
    for (int j = 0; j < n; j++)
        x[j] = 0.0;
    /* the tolerance of MATLAB's lsqnonneg: 10 eps ||A||_1 max(m, n) */
    const double tol = 10.0 * DBL_EPSILON * norm1 * (double)IMRT_MAX(m, n);
    const int max_iter = 3 * n + 30;
    int iter = 0;
    nnls_gradient(m, n, a, lda, b, x, resid, w);
    for (;;) {
        /* the most promising index of the zero set */
        int t = -1;
        for (int j = 0; j < n; j++)
            if (!passive[j] && !skip[j] && w[j] > tol && (t < 0 || w[j] > w[t]))
                t = j;
        if (t < 0)
            break;
        if (++iter > max_iter)
            IMRT_FAIL(IMRT_ERR_NUMERIC, "NNLS (%d x %d) did not converge in %d iterations", m, n,
                      max_iter);
        passive[t] = 1;
        IMRT_TRY(nnls_subproblem(m, n, a, lda, b, passive, ap, bb, sv, z));
        if (!(z[t] > 0.0)) {
            /* Lawson-Hanson: the new index would not move off zero (rounding
             * or degeneracy); leave it and try the next best one. */
            passive[t] = 0;
            skip[t] = 1;
            continue;
        }
        int inner = 0;
        for (;;) {
            int feasible = 1;
            for (int j = 0; j < n; j++)
                if (passive[j] && !(z[j] > 0.0))
                    feasible = 0;
            if (feasible)
                break;
            if (++inner > max_iter)
                IMRT_FAIL(IMRT_ERR_NUMERIC, "NNLS (%d x %d): inner loop did not converge", m, n);
            /* step from x towards z as far as feasibility allows */
            double alpha = HUGE_VAL;
            for (int j = 0; j < n; j++)
                if (passive[j] && !(z[j] > 0.0))
                    alpha = IMRT_MIN(alpha, x[j] / (x[j] - z[j]));
            for (int j = 0; j < n; j++) {
                x[j] += alpha * (z[j] - x[j]);
                if (passive[j] && fabs(x[j]) <= tol) {
                    passive[j] = 0;
                    x[j] = 0.0;
                }
            }
            IMRT_TRY(nnls_subproblem(m, n, a, lda, b, passive, ap, bb, sv, z));
        }
        for (int j = 0; j < n; j++) {
            x[j] = passive[j] ? z[j] : 0.0;
            skip[j] = 0;
        }
        nnls_gradient(m, n, a, lda, b, x, resid, w);
    }
    if (rnorm) {
        nnls_gradient(m, n, a, lda, b, x, resid, w);
        double s = 0.0;
        for (int i = 0; i < m; i++)
            s += resid[i] * resid[i];
        *rnorm = sqrt(s);
    }
cleanup:
    imrt_free(ap);
    imrt_free(bb);
    imrt_free(sv);
    imrt_free(z);
    imrt_free(w);
    imrt_free(resid);
    imrt_free(passive);
    imrt_free(skip);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Conformal plan                                                           */
/* ------------------------------------------------------------------------ */

static int context_threads(const imrt_context *ctx)
{
    return ctx ? imrt_context_threads(ctx) : omp_get_max_threads();
}

static imrt_status check_dij(const imrt_dij *d)
{
    if (!d->rowptr || !d->voxel || !d->beam_start || (d->nnz > 0 && (!d->col || !d->val)))
        return imrt_error(IMRT_ERR_ARG, "dij with NULL arrays");
    if (d->nbeams < 1 || d->ncols < 1 || d->nrows < 0)
        return imrt_error(IMRT_ERR_ARG, "dij with %d beams, %d columns, %lld rows", d->nbeams,
                          (int)d->ncols, (long long)d->nrows);
    if (d->beam_start[0] != 0 || d->beam_start[d->nbeams] != d->ncols)
        return imrt_error(IMRT_ERR_ARG, "dij beam_start runs from %d to %d (need 0 to ncols = %d)",
                          (int)d->beam_start[0], (int)d->beam_start[d->nbeams], (int)d->ncols);
    for (int b = 0; b < d->nbeams; b++)
        if (d->beam_start[b + 1] < d->beam_start[b])
            return imrt_error(IMRT_ERR_ARG, "dij beam_start decreases at beam %d", b);
    return IMRT_OK;
}

imrt_status imrt_conformal_weights(const imrt_context *ctx, const imrt_dij *dij,
                                   const uint8_t *aperture, const imrt_phantom *dose_phantom,
                                   const char *target, double rx_gy, double *x,
                                   double *beam_weight)
{
    imrt_status status = IMRT_OK;
    int *beam_of = NULL;
    int64_t *rows = NULL;
    double *A = NULL, *rhs = NULL, *w = NULL, *xb = NULL, *xe = NULL;
    if (!dij || !aperture || !dose_phantom || !target || !x)
        return imrt_error(IMRT_ERR_ARG, "imrt_conformal_weights: NULL argument");
    IMRT_TRY(check_dij(dij));
    if (!imrt_grid_equal(&dij->grid, &dose_phantom->grid))
        IMRT_FAIL(IMRT_ERR_ARG, "conformal plan: the dose phantom's grid (%d x %d x %d) is not "
                                "the dij's dose grid (%d x %d x %d)",
                  dose_phantom->grid.nx, dose_phantom->grid.ny, dose_phantom->grid.nz,
                  dij->grid.nx, dij->grid.ny, dij->grid.nz);
    if (!(isfinite(rx_gy) && rx_gy > 0.0))
        IMRT_FAIL(IMRT_ERR_RANGE, "conformal plan: prescription %g Gy must be finite and > 0",
                  rx_gy);
    int s = imrt_phantom_find(dose_phantom, target);
    if (s < 0)
        IMRT_FAIL(IMRT_ERR_ARG, "conformal plan: no structure called '%s' in phantom '%s'",
                  target, dose_phantom->name);
    const uint8_t *mask = dose_phantom->structures[s].mask;
    const int nb = dij->nbeams;
    const int32_t nc = dij->ncols;

    IMRT_ALLOC(beam_of, nc);
    int open_beams = 0;
    for (int b = 0; b < nb; b++) {
        int any = 0;
        for (int32_t j = dij->beam_start[b]; j < dij->beam_start[b + 1]; j++) {
            beam_of[j] = b;
            any |= aperture[j] != 0;
        }
        open_beams += any;
    }
    if (open_beams == 0)
        IMRT_FAIL(IMRT_ERR_ARG, "conformal plan: every beam's aperture is empty (no beamlet "
                                "flagged)");

    int64_t m = 0;
    for (int64_t r = 0; r < dij->nrows; r++)
        m += mask[dij->voxel[r]] != 0;
    if (m == 0)
        IMRT_FAIL(IMRT_ERR_ARG, "conformal plan: target '%s' has no voxel among the dij rows",
                  target);
    if (m > INT32_MAX / 2)
        IMRT_FAIL(IMRT_ERR_RANGE, "conformal plan: %lld target rows is too many for the dense fit",
                  (long long)m);
    IMRT_ALLOC(rows, m);
    m = 0;
    for (int64_t r = 0; r < dij->nrows; r++)
        if (mask[dij->voxel[r]])
            rows[m++] = r;

    /* A (m x nb, column-major): dose of each beam's open aperture on the target rows */
    IMRT_ALLOC(A, (size_t)m * (size_t)nb);
    IMRT_ALLOC(rhs, m);
    IMRT_ALLOC(w, nb);
    const int nth = context_threads(ctx);
    /* column b: the dose of beam b's aperture at unit weight, through the
     * dij's map columns as well (imrt_dij_expand) */
    IMRT_ALLOC(xb, nc);
    IMRT_ALLOC(xe, IMRT_MAX(imrt_dij_width(dij), 1));
    for (int b = 0; b < nb; b++) {
        memset(xb, 0, (size_t)nc * sizeof *xb);
        for (int32_t j = dij->beam_start[b]; j < dij->beam_start[b + 1]; j++)
            xb[j] = aperture[j] ? 1.0 : 0.0;
        IMRT_TRY(imrt_dij_expand(dij, nth, xb, xe));
        double *Ab = A + (size_t)b * (size_t)m;
#pragma omp parallel for schedule(static) num_threads(nth)
        for (int64_t i = 0; i < m; i++) {
            const int64_t r = rows[i];
            double acc = 0.0;
            for (int64_t q = dij->rowptr[r]; q < dij->rowptr[r + 1]; q++)
                acc += (double)dij->val[q] * xe[dij->col[q]];
            Ab[i] = acc;
        }
    }
    IMRT_TRY(imrt_context_sum(ctx, A, m * nb)); /* distributed: rows of the other processes */
    for (int64_t i = 0; i < m; i++)
        rhs[i] = rx_gy;
    IMRT_TRY(imrt_nnls((int)m, nb, A, (int)m, rhs, w, NULL));

    double wsum = 0.0;
    for (int b = 0; b < nb; b++)
        wsum += w[b];
    if (!(wsum > 0.0))
        IMRT_FAIL(IMRT_ERR_NUMERIC, "conformal plan: every beam weight is 0 (the apertures give "
                                    "no dose to target '%s')",
                  target);
    for (int32_t j = 0; j < nc; j++)
        x[j] = aperture[j] ? w[beam_of[j]] : 0.0;
    if (beam_weight)
        memcpy(beam_weight, w, (size_t)nb * sizeof *w);
cleanup:
    imrt_free(xb);
    imrt_free(xe);
    imrt_free(beam_of);
    imrt_free(rows);
    imrt_free(A);
    imrt_free(rhs);
    imrt_free(w);
    return status;
}

imrt_status imrt_conformal_dose(const imrt_context *ctx, const imrt_dij *dij, const double *x,
                                float *dose)
{
    if (!dij || !x || !dose || !dij->rowptr || !dij->voxel || (dij->nnz > 0 && (!dij->col || !dij->val)))
        return imrt_error(IMRT_ERR_ARG, "imrt_conformal_dose: NULL argument");
    imrt_status status = IMRT_OK;
    double *xe = NULL;
    int64_t nvox = imrt_grid_nvox(&dij->grid);
    const int nth = context_threads(ctx);
    IMRT_ALLOC(xe, IMRT_MAX(imrt_dij_width(dij), 1)); /* beamlets and scatter-map nodes */
    IMRT_TRY(imrt_dij_expand(dij, nth, x, xe));
    memset(dose, 0, (size_t)nvox * sizeof *dose);
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t r = 0; r < dij->nrows; r++) {
        double s = 0.0;
        for (int64_t q = dij->rowptr[r]; q < dij->rowptr[r + 1]; q++)
            s += (double)dij->val[q] * xe[dij->col[q]];
        dose[dij->voxel[r]] = (float)s;
    }
    status = imrt_context_sum_float(ctx, dose, nvox); /* distributed: rows of the other processes */
cleanup:
    imrt_free(xe);
    return status;
}

imrt_status imrt_conformal_plan(const imrt_context *ctx, const imrt_dij *dij,
                                const uint8_t *aperture, const imrt_phantom *dose_phantom,
                                const imrt_prescription *rx, double *x, float *dose,
                                double *factor)
{
    if (!rx || !dose_phantom || !dose)
        return imrt_error(IMRT_ERR_ARG, "imrt_conformal_plan: NULL argument");
    int s = imrt_rx_target_index(rx, dose_phantom);
    if (s < 0)
        return imrt_error(IMRT_ERR_ARG, "conformal plan: prescription target '%s' is not a "
                                        "structure of phantom '%s'",
                          rx->target[0] ? rx->target : "(first target)", dose_phantom->name);
    imrt_status st = imrt_conformal_weights(ctx, dij, aperture, dose_phantom,
                                            dose_phantom->structures[s].name, rx->dose_gy, x,
                                            NULL);
    if (st != IMRT_OK)
        return st;
    st = imrt_conformal_dose(ctx, dij, x, dose);
    if (st != IMRT_OK)
        return st;
    double f = 1.0;
    st = imrt_normalisation_factor(rx, dose_phantom, dose, &f);
    if (st != IMRT_OK)
        return st;
    for (int32_t j = 0; j < dij->ncols; j++)
        x[j] *= f;
    imrt_dose_scale(dose, imrt_grid_nvox(&dij->grid), f);
    if (factor)
        *factor = f;
    return IMRT_OK;
}
