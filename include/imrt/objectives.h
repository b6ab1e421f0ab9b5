/*
 * imrt/objectives.h - the optimisation objectives of a plan over a dij:
 * F(x) = sum_k p_k f_k(D x) and its gradient D^T dF/dd, plus the hard
 * constraints (augmented-Lagrangian terms) that the solver honours.
 *
 * An objective set is created from a dij, a "dose phantom" (an imrt_phantom
 * on the dij's dose grid, same dimensions, whose structure masks say which
 * voxels belong to which structure) and the plan's objective definitions
 * (imrt/plan.h). Structures are referred to by name.
 *
 * Kinds and formulas (S = the voxels the objective acts on, n = |S|, d_i
 * the dose of voxel i in Gy, D the objective's dose, p its weight):
 *   squared deviation   (1/n) sum (d_i - D)^2
 *   squared overdose    (1/n) sum max(0, d_i - D)^2
 *   squared underdose   (1/n) sum max(0, D - d_i)^2
 *   mean dose           (m - D)^2, m = (1/n) sum d_i; at_most: max(0, m - D)^2
 *   max DVH (D, V%)     (1/n) sum over D < d_i <= d_(k+1) of (d_i - D)^2, where
 *                       d_(j) is the j-th highest dose in S and k = floor(V n/100)
 *                       voxels are allowed above D (Wu & Mohan 2000)
 *   min DVH (D, V%)     (1/n) sum over d_(q) <= d_i < D of (d_i - D)^2 with
 *                       q = ceil(V n/100) voxels required at or above D
 *   gEUD (a, D)         E = D ((1/n) sum (d_i/D)^a)^(1/a); a >= 1: max(0, E - D)^2,
 *                       a < 0: max(0, D - E)^2 (doses below 1e-3 D count as 1e-3 D
 *                       so that d^a stays finite for a < 0)
 * Every objective's share p_k f_k is in Gy^2 (times the weight's unit).
 *
 * Overlap priority (penalties only): a voxel in several structures that
 * carry penalty objectives of the same kind belongs, for that kind, to one
 * of them: targets before other structures, then the smallest priority
 * number, then (ties) the structure listed later in the phantom, as in
 * imrt_phantom_label_map. Hard constraints always act on their whole
 * structure.
 *
 * Hard constraints (def.constraint = 1): squared overdose = "every voxel of
 * S at most D" and squared underdose = "every voxel at least D" (one
 * multiplier per voxel); mean: "mean at most D" (at_most) or "mean equal to
 * D"; gEUD: "E at most D" (a >= 1) or "at least D" (a < 0); max/min DVH: the
 * DVH point, enforced as a penalty whose weight the outer loop raises.
 * A squared-deviation objective cannot be a constraint. The function the
 * solver minimises is the augmented Lagrangian
 *   L(x) = F(x) + sum over constraints of their multiplier terms,
 * which equals F(x) when there are no constraints. docs/optimization.md
 * gives the formulas.
 *
 * Evaluation: by default one fused pass over the dij rows (each row read
 * once: dose, derivative, D^T accumulation) followed by short passes over
 * the few rows whose derivative needs a global quantity (DVH thresholds,
 * constraint multipliers); the two-pass form (D x, then the per-voxel
 * derivative, then D^T) computes the same thing and exists for checking
 * and benchmarking.
 *
 * Distributed runs (a communicator in ctx, imrt/context.h): the dij holds
 * this process's block of rows; each evaluation gathers the row doses from
 * every process and sums the gradient, so that every process gets the same
 * L and gradient (the target and mean-dose vectors are summed at creation).
 * Every process must call create, eval and default_start together.
 *
 * Ownership: the set keeps a pointer to the dij (which must outlive it and
 * stay unchanged) and copies everything else it needs from the phantom and
 * the definitions. Thread safety: one set serves one evaluation at a time;
 * each evaluation is internally parallel (threads and kernels from the
 * context given at creation).
 */
#ifndef IMRT_OBJECTIVES_H
#define IMRT_OBJECTIVES_H

#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct imrt_objectives imrt_objectives;

typedef enum {
    IMRT_EVAL_FUSED = 0,   /* one fused pass plus short correction passes (default) */
    IMRT_EVAL_TWO_PASS = 1 /* D x, per-voxel derivative, D^T w */
} imrt_eval_mode;

/* Build an objective set. `dose_phantom` must have the dij's grid
 * dimensions; its masks are read only during this call. ndefs may be 0
 * (F = 0). Errors: IMRT_ERR_ARG (NULL arguments; a dij that fails
 * imrt_spmv_check; grid mismatch; an unknown structure, named in the
 * message; a bad parameter, named with its allowed range; a
 * squared-deviation constraint), IMRT_ERR_RANGE (more than 65535 distinct
 * structure overlaps), IMRT_ERR_NOMEM. */
imrt_status imrt_objectives_create(const imrt_context *ctx, const imrt_dij *dij,
                                   const imrt_phantom *dose_phantom,
                                   const imrt_objective_def *defs, int ndefs,
                                   imrt_objectives **out);

/* Free a set; accepts NULL and a pointer to NULL, clears *s. */
void imrt_objectives_destroy(imrt_objectives **s);

void imrt_objectives_set_mode(imrt_objectives *s, imrt_eval_mode mode);
imrt_eval_mode imrt_objectives_mode(const imrt_objectives *s);

/* Evaluate at weights x (ncols entries, >= 0 expected): *f = L(x) (the
 * augmented Lagrangian; F(x) without constraints) and, when grad is not
 * NULL, grad = dL/dx (ncols entries). Also records each objective's share,
 * F and the dose for the accessors below. Errors: IMRT_ERR_ARG (NULL s, x or
 * f), IMRT_ERR_NUMERIC (L not finite, e.g. x holds NaN). */
imrt_status imrt_objectives_eval(imrt_objectives *s, const double *x, double *f, double *grad);

/* Number of objective definitions (penalties and constraints) and of
 * beamlets (columns). */
int imrt_objectives_count(const imrt_objectives *s);
int32_t imrt_objectives_ncols(const imrt_objectives *s);

/* Results of the last evaluation: F (the penalties only, no constraint
 * terms), and the share of definition k in definition order: p_k f_k for a
 * penalty, its multiplier term for a constraint (0 before any evaluation).
 * shares() returns an array of count() entries owned by the set, valid until
 * the next evaluation. */
double imrt_objectives_penalty(const imrt_objectives *s);
double imrt_objectives_share(const imrt_objectives *s, int k);
const double *imrt_objectives_shares(const imrt_objectives *s);

/* The rows (dij row indices, increasing) that definition k acts on after
 * the overlap rule; returns their count and sets *rows (owned by the set)
 * unless rows is NULL. -1 for k out of range. */
int64_t imrt_objectives_rows(const imrt_objectives *s, int k, const int64_t **rows);

/* Dose (Gy, nrows entries, owned by the set) of the last evaluation. In the
 * fused mode only rows that some objective reads per voxel are filled; use
 * imrt_spmv_dose for the full dose. */
const double *imrt_objectives_dose(const imrt_objectives *s);

/* ---- hard constraints ---------------------------------------------------- */

typedef struct {
    int def;          /* index of the definition */
    double value;     /* constrained quantity at the last evaluation, Gy: max dose
                         (overdose), min dose (underdose), mean, gEUD, DVH dose
                         d_(k+1) (max DVH) or d_(q) (min DVH) */
    double bound;     /* the definition's dose, Gy */
    double violation; /* relative excess (value - bound)/bound for "at most",
                         (bound - value)/bound for "at least", |.| for "equal";
                         <= 0 when the constraint holds */
    int holds;        /* violation <= tol */
} imrt_constraint_status;

/* Number of hard constraints; they are numbered in definition order. */
int imrt_objectives_nconstraints(const imrt_objectives *s);

/* Status of constraint i at the last evaluation, judged with relative
 * tolerance tol (>= 0). Errors: IMRT_ERR_ARG (NULL, i out of range). */
imrt_status imrt_objectives_constraint(const imrt_objectives *s, int i, double tol,
                                       imrt_constraint_status *st);

/* Outer step of the augmented Lagrangian, from the last evaluation: update
 * every constraint's multipliers and raise its penalty parameter when its
 * violation did not fall by 4x since the previous step. Returns the largest
 * relative violation (<= 0 when every constraint holds exactly; 0 without
 * constraints). */
double imrt_objectives_al_update(imrt_objectives *s, double tol);

/* Multipliers back to their starting values. */
void imrt_objectives_al_reset(imrt_objectives *s);

/* ---- starting point ------------------------------------------------------ */

/* The default starting point: every weight equal, scaled so that the mean
 * dose over the target rows equals dose_gy. Target rows are the voxels of
 * the target-kind structures that the definitions name (all target
 * structures of the dose phantom when they name none, every row when it has
 * none). x has ncols entries. Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_RANGE
 * (dose_gy not finite and > 0; the target receives no dose). */
imrt_status imrt_objectives_default_start(const imrt_objectives *s, double dose_gy, double *x);

/* Mean dose (Gy) over the target rows (as above) for weights x. */
double imrt_objectives_target_mean(const imrt_objectives *s, const double *x);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_OBJECTIVES_H */
