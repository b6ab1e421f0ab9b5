/*
 * imrt/conformal.h - the conventional (3D-conformal, 3D-CRT) baseline plan:
 * one uniform-fluence aperture per beam, beam weights from a non-negative
 * least-squares fit of the target dose to the prescription
 * (optimization.md "Conventional (3D-conformal) plan"), then the same
 * normalisation as the IMRT plan; and the dense NNLS solver behind it.
 *
 * Inputs: a dij (imrt/dij.h: CSR rows = dose-grid voxels, columns = beamlets
 * ordered beam by beam, beam b owning columns beam_start[b] ..
 * beam_start[b+1]-1), a per-beamlet aperture flag (1 = the beamlet's central
 * ray passes through the beam's aperture, i.e. the target projection dilated
 * by the conformal margin; computed by the dose engine), and the dose
 * phantom (structures on the dij's dose grid). Units: Gy, Gy per unit
 * beamlet weight; weights are dimensionless beamlet weights.
 *
 * Ownership: outputs go to caller-allocated arrays; nothing is retained.
 * Thread safety: reentrant; the per-beam dose matrix and the dose are built
 * with OpenMP (threads from the context, NULL = OpenMP default); the results
 * do not depend on the thread count.
 */
#ifndef IMRT_CONFORMAL_H
#define IMRT_CONFORMAL_H

#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Non-negative least squares: x = argmin ||A x - b||_2 subject to x >= 0, by
 * the Lawson-Hanson active-set method (Lawson & Hanson 1974, ch. 23), the
 * unconstrained subproblem on the passive set solved with LAPACKE_dgelsd
 * (SVD, so rank-deficient subproblems are handled). A is m x n, column-major
 * with leading dimension lda >= m; b has m entries; x receives n entries;
 * rnorm (may be NULL) receives ||A x - b||_2. Small dense problems only
 * (n up to a few hundred). Inputs are not modified.
 * Errors: IMRT_ERR_ARG (NULL, m or n < 1, lda < m), IMRT_ERR_RANGE (a
 * non-finite entry), IMRT_ERR_NUMERIC (LAPACK failure or no convergence in
 * 3n + 30 outer iterations), IMRT_ERR_NOMEM. */
imrt_status imrt_nnls(int m, int n, const double *a, int lda, const double *b, double *x,
                      double *rnorm);

/* Weights of the conformal plan. For each beam b, A[:, b] = the dose on the
 * target's dij rows of beam b's aperture beamlets at unit weight each; the
 * beam weights w = NNLS(A, rx_gy * 1). x (dij->ncols entries) receives
 * w_b on every aperture beamlet of beam b and 0 elsewhere; beam_weight
 * (nbeams entries, may be NULL) receives w. The target is the structure
 * called `target` of dose_phantom (whose grid must equal dij->grid). A beam
 * with an empty aperture gets weight 0. The result still needs the plan
 * normalisation (imrt_conformal_plan does both).
 * Errors: IMRT_ERR_ARG (NULL, grid mismatch, unknown target, a target with
 * no dij row, every aperture empty), IMRT_ERR_RANGE (rx_gy not > 0),
 * IMRT_ERR_NUMERIC (NNLS failure or every weight 0), IMRT_ERR_NOMEM. */
imrt_status imrt_conformal_weights(const imrt_context *ctx, const imrt_dij *dij,
                                   const uint8_t *aperture, const imrt_phantom *dose_phantom,
                                   const char *target, double rx_gy, double *x,
                                   double *beam_weight);

/* Dose of beamlet weights x on the whole dose grid: dose[voxel[r]] =
 * sum_j D[r, j] x[j] for every dij row, 0 on voxels that are no row.
 * dose has imrt_grid_nvox(&dij->grid) entries.
 * Errors: IMRT_ERR_ARG (NULL). */
imrt_status imrt_conformal_dose(const imrt_context *ctx, const imrt_dij *dij, const double *x,
                                float *dose);

/* The whole conformal plan: weights for rx->target (or the first target
 * structure) at rx->dose_gy, the dose, and the plan normalisation
 * (imrt_normalisation_factor, default D95 = Rx), applied to both x and dose.
 * factor (may be NULL) receives the normalisation factor.
 * Errors: those of imrt_conformal_weights and imrt_normalisation_factor. */
imrt_status imrt_conformal_plan(const imrt_context *ctx, const imrt_dij *dij,
                                const uint8_t *aperture, const imrt_phantom *dose_phantom,
                                const imrt_prescription *rx, double *x, float *dose,
                                double *factor);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_CONFORMAL_H */
