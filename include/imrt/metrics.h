/*
 * imrt/metrics.h - dose metrics of a plan: dose-volume histograms (exact and
 * binned), Dx / Dxcc / Vx / Dmean / Dmax / Dmin, gEUD, the ICRU-83 homogeneity
 * index, the Paddick and RTOG conformity indices, integral dose, clinical-goal
 * evaluation, plan normalisation, a per-plan summary with its metrics.json
 * form, and the gamma index between two dose distributions.
 *
 * Inputs are plain arrays: a dose array (float, Gy, one value per voxel of an
 * imrt_grid, index order of imrt/grid.h) and a "dose phantom", i.e. an
 * imrt_phantom whose grid IS the dose grid (structure masks and RED resampled
 * to it). Units: Gy, cm^3, percent of a structure's volume, joules, mm.
 * Definitions, conventions (interpolation, tie rules) and references:
 * docs/metrics.md.
 *
 * Conventions in one place:
 *  - Cumulative DVH V(D) = fraction of the structure's voxels with dose >= D
 *    (every voxel counts its full volume; no partial-volume weighting).
 *  - Dx (hottest x % of the volume): with the doses sorted descending,
 *    d(1) >= d(2) >= ... >= d(n), the k-th hottest dose sits at the volume
 *    fraction k/n and Dx interpolates linearly between these points:
 *    Dx = d(k) + (v*n - k) * (d(k+1) - d(k)) for k <= v*n <= k+1, v = x/100,
 *    clamped to d(1) below v = 1/n. So Dx = d(k) exactly when x*n/100 = k
 *    (the minimum dose of the hottest x %), D0 = Dmax and D100 = Dmin.
 *    Dxcc uses the same curve at v = x cm^3 / structure volume.
 *  - Vx counts voxels exactly (no interpolation): 100 * #{d_i >= x} / n.
 *  - Metrics of an empty structure (no voxel on the dose grid) are NAN.
 *
 * Ownership: objects returned through `**out` are owned by the caller and
 * freed with the matching destroy function (which accepts NULL and clears the
 * pointer). Functions never keep pointers to their inputs.
 * Thread safety: every function is reentrant; the gamma index and the
 * conformal module parallelise internally with OpenMP (threads from the
 * context; results do not depend on the thread count).
 */
#ifndef IMRT_METRICS_H
#define IMRT_METRICS_H

#include "imrt/context.h"
#include "imrt/grid.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <jansson.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Exact cumulative DVH of one structure                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    int64_t n;        /* voxels in the structure (may be 0) */
    double voxel_cc;  /* volume of one voxel, cm^3 */
    double volume_cc; /* n * voxel_cc */
    double *dose;     /* n doses, Gy, sorted descending (dose[0] = max); owned, NULL if n = 0 */
    double mean;      /* mean dose, Gy (NAN if n = 0) */
} imrt_dvh;

/* Collect the doses of the voxels with mask[v] != 0 (mask NULL = every voxel
 * of the grid) and sort them. `dose` has imrt_grid_nvox(g) finite values.
 * Errors: IMRT_ERR_ARG (NULL g/dose/out), IMRT_ERR_RANGE (a non-finite dose,
 * naming the voxel), IMRT_ERR_NOMEM. */
imrt_status imrt_dvh_create(const imrt_grid *g, const float *dose, const uint8_t *mask,
                            imrt_dvh **out);

/* Free a DVH; accepts NULL, clears *p. */
void imrt_dvh_destroy(imrt_dvh **p);

/* Dx: dose (Gy) to the hottest `pct` % of the volume, pct clamped to [0, 100],
 * interpolated as stated above. NAN for an empty structure. */
double imrt_dvh_dose_at_pct(const imrt_dvh *h, double pct);

/* Dxcc: dose (Gy) to the hottest `cc` cm^3 (cc >= the structure volume gives
 * Dmin). NAN for an empty structure. */
double imrt_dvh_dose_at_cc(const imrt_dvh *h, double cc);

/* Vx: percent of the volume receiving at least dose_gy (exact count). */
double imrt_dvh_volume_pct(const imrt_dvh *h, double dose_gy);

/* Vx in cm^3: volume receiving at least dose_gy. */
double imrt_dvh_volume_cc(const imrt_dvh *h, double dose_gy);

/* Point maximum and minimum (Gy). NAN for an empty structure. */
double imrt_dvh_max(const imrt_dvh *h);
double imrt_dvh_min(const imrt_dvh *h);

/* Generalised EUD ((1/n) sum d_i^a)^(1/a) (Niemierko 1999), Gy. a = 1 is the
 * mean, a -> +inf the maximum, a -> -inf the minimum, a = 0 the geometric
 * mean. For a < 0 a voxel with dose <= 0 makes the gEUD 0. NAN for an empty
 * structure or a non-finite a. */
double imrt_dvh_geud(const imrt_dvh *h, double a);

/* ICRU-83 homogeneity index (D2 - D98) / D50. NAN if empty or D50 <= 0. */
double imrt_dvh_homogeneity(const imrt_dvh *h);

/* Value of a named metric (imrt_metric_parse names: "D95", "D0.03cc", "V20",
 * "V45_cm3", "Dmean", "Dmax", "Dmin") in Gy, % or cm^3.
 * Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_PARSE (unknown metric name),
 * IMRT_ERR_RANGE (empty structure: the metric has no value). */
imrt_status imrt_dvh_metric(const imrt_dvh *h, const char *metric, double *value);

/* Binned cumulative DVH for output (dvh.csv, plots). */
typedef struct {
    int nbins;          /* points: dose_gy[j] = j * bin_gy, j = 0 .. nbins-1 */
    double bin_gy;      /* bin width, Gy */
    double *dose_gy;    /* nbins dose levels, Gy; owned */
    double *volume_pct; /* nbins: % of the structure with dose >= dose_gy[j] (exact); owned */
    double *volume_cc;  /* nbins: the same in cm^3; owned */
} imrt_dvh_binned;

/* Sample the cumulative DVH at 0, bin_gy, 2*bin_gy, ... up to and including
 * the first level above max_gy (max_gy <= 0: the structure's maximum dose), so
 * the curve always ends at 0 %. bin_gy in (0, 1e4]; at most 1e6 points.
 * Errors: IMRT_ERR_ARG, IMRT_ERR_RANGE (bin width, too many bins), IMRT_ERR_NOMEM. */
imrt_status imrt_dvh_bin(const imrt_dvh *h, double bin_gy, double max_gy,
                         imrt_dvh_binned **out);

/* Free a binned DVH; accepts NULL, clears *p. */
void imrt_dvh_binned_destroy(imrt_dvh_binned **p);

/* ------------------------------------------------------------------------ */
/* Mass, integral dose, conformity                                          */
/* ------------------------------------------------------------------------ */

/* Mass density (g/cm^3) of a tissue of relative electron density `red`:
 * piecewise-linear through the ICRU-44 tissues (air, adipose, water, muscle,
 * cartilage, bone mixtures, cortical bone; table in docs/metrics.md), constant
 * ratio rho/RED beyond the last point, 0 for red <= 0. Water (RED 1) -> 1. */
double imrt_mass_density(double red);

/* Integral dose, joules: sum over voxels (mask NULL = whole grid) of
 * dose [Gy = J/kg] x mass density(RED) x voxel volume. `red` has nvox values.
 * Errors: IMRT_ERR_ARG (NULL g/dose/red/joules). */
imrt_status imrt_integral_dose(const imrt_grid *g, const float *dose, const float *red,
                               const uint8_t *mask, double *joules);

typedef struct {
    double tv_cc;     /* target volume */
    double piv_cc;    /* prescription isodose volume: voxels of the body (or grid) with dose >= Rx */
    double tv_piv_cc; /* target volume receiving >= Rx */
    double paddick;   /* TV_PIV^2 / (TV x PIV) (Paddick 2000); NAN if TV or PIV is 0 */
    double rtog;      /* PIV / TV (Shaw et al. 1993); NAN if TV is 0 */
} imrt_conformity;

/* Conformity of the prescription isodose to a target. `body` NULL counts the
 * PIV over the whole grid. Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_RANGE (rx_gy
 * not finite and > 0). */
imrt_status imrt_conformity_eval(const imrt_grid *g, const float *dose, const uint8_t *target,
                                 const uint8_t *body, double rx_gy, imrt_conformity *out);

/* ------------------------------------------------------------------------ */
/* Clinical goals and normalisation                                         */
/* ------------------------------------------------------------------------ */

/* Relative tolerance of a goal comparison (float rounding of stored doses):
 * "<=" passes when achieved <= value * (1 + tol) (+ tol when value is 0),
 * ">=" when achieved >= value * (1 - tol) (- tol when value is 0). */
#define IMRT_GOAL_REL_TOL 1e-6

/* Evaluate a goal on a dose: `dose` has one value per voxel of
 * dose_phantom->grid. Fills *achieved (Gy, % or cm^3 as the metric implies)
 * and *pass (1/0; pass may be NULL).
 * Errors: IMRT_ERR_ARG (NULL, unknown structure name), IMRT_ERR_PARSE (bad
 * metric), IMRT_ERR_RANGE (structure empty on the dose grid, non-finite dose),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_goal_eval(const imrt_goal_def *goal, const imrt_phantom *dose_phantom,
                           const float *dose, double *achieved, int *pass);

/* The structure a prescription refers to: rx->target, or the first structure
 * of kind target when rx->target is empty. Returns its index, or -1. */
int imrt_rx_target_index(const imrt_prescription *rx, const imrt_phantom *dose_phantom);

/* Normalisation factor s such that metric(target, s x dose) = rx->dose_gy
 * (optimization.md "After optimisation"; default metric "D95" of the
 * target). Every dose metric is proportional to the scale, so
 * s = rx->dose_gy / metric(dose). rx->normalise == 0 gives s = 1.
 * Errors: IMRT_ERR_ARG (NULL, no such target, a volume metric "Vx" which
 * cannot be normalised to a dose), IMRT_ERR_PARSE (bad metric),
 * IMRT_ERR_RANGE (dose_gy not > 0, empty target), IMRT_ERR_NUMERIC (the
 * metric is 0: the target receives no dose), IMRT_ERR_NOMEM. */
imrt_status imrt_normalisation_factor(const imrt_prescription *rx,
                                      const imrt_phantom *dose_phantom, const float *dose,
                                      double *factor);

/* dose[v] *= factor for v < n (in place). */
void imrt_dose_scale(float *dose, int64_t n, double factor);

/* ------------------------------------------------------------------------ */
/* Per-plan summary (the "plans.<name>" object of metrics.json)             */
/* ------------------------------------------------------------------------ */

typedef struct {
    char name[IMRT_NAME_MAX];
    imrt_structure_kind kind;
    int64_t voxels;    /* voxels on the dose grid */
    double volume_cm3; /* voxels x voxel volume */
    /* Gy; NAN when the structure is empty on the dose grid */
    double dmean, dmax, d003cc, d2, d50, d95, d98, dmin;
} imrt_structure_metrics;

typedef struct {
    imrt_goal_def goal; /* copy of the goal */
    int evaluated;      /* 0: the structure is empty on the dose grid */
    double achieved;    /* Gy, % or cm^3; NAN when not evaluated */
    int pass;           /* 1 pass, 0 fail (or not evaluated) */
} imrt_goal_result;

typedef struct {
    char target[IMRT_NAME_MAX]; /* structure of HI and CI ("" if the phantom has no target) */
    double rx_gy;               /* prescription dose, Gy */
    double norm_factor;         /* scale applied to the plan (recorded by the caller, 1 by default) */
    int nstructures;
    imrt_structure_metrics *structures; /* phantom order; owned */
    double hi;                  /* ICRU-83 (D2 - D98)/D50 of the target */
    double ci_paddick;          /* Paddick conformity index */
    double ci_rtog;             /* RTOG conformity index PIV/TV */
    double integral_dose_j;     /* over the body (whole grid without a body structure), J */
    imrt_conformity conformity; /* TV, PIV, TV_PIV behind the indices */
    int ngoals;
    imrt_goal_result *goals;    /* ngoals; owned */
    int goals_failed;           /* required goals (preferred == 0) not met */
    int preferred_failed;       /* preferred goals not met */
} imrt_plan_metrics;

/* Summarise a plan's dose: every structure of the dose phantom, HI and CI of
 * the prescription target at rx->dose_gy, integral dose from the phantom's
 * RED, and every goal (goals may be NULL when ngoals == 0). A goal on an
 * unknown structure is an error; on an empty structure it is "not evaluated".
 * Errors: IMRT_ERR_ARG, IMRT_ERR_PARSE (bad goal metric), IMRT_ERR_RANGE
 * (non-finite dose, rx dose not > 0), IMRT_ERR_NOMEM. */
imrt_status imrt_plan_metrics_compute(const imrt_phantom *dose_phantom, const float *dose,
                                      const imrt_prescription *rx, const imrt_goal_def *goals,
                                      int ngoals, imrt_plan_metrics **out);

/* Free a summary; accepts NULL, clears *p. */
void imrt_plan_metrics_destroy(imrt_plan_metrics **p);

/* Index of a structure in the summary, or -1. */
int imrt_plan_metrics_find(const imrt_plan_metrics *m, const char *name);

/* The "plans.<name>" object of metrics.json (interface.md): "structures"
 * {name: {Dmean, Dmax, D0.03cc, D2, D50, D95, D98, Dmin, volume_cm3, voxels,
 * kind}}, "goals" [{structure, metric, op, value, achieved, pass, preferred,
 * evaluated}], "hi", "ci_paddick", "ci_rtog", "integral_dose_j", "target",
 * "rx_gy", "normalisation_factor", "tv_cm3", "piv_cm3", "tv_piv_cm3",
 * "goals_failed". NAN values are written as null. The caller adds "solver".
 * *out is a new reference. Errors: IMRT_ERR_ARG, IMRT_ERR_NOMEM. */
imrt_status imrt_plan_metrics_to_json(const imrt_plan_metrics *m, json_t **out);

/* Read such an object back (e.g. `imrt compare DIR` on a finished plan);
 * null values become NAN; keys beyond those listed are ignored.
 * Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_FORMAT (a required key missing or of
 * the wrong type, named in the message), IMRT_ERR_NOMEM. */
imrt_status imrt_plan_metrics_from_json(const json_t *obj, imrt_plan_metrics **out);

/* ------------------------------------------------------------------------ */
/* Gamma index (Low et al. 1998)                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    double dose_pct;      /* dose-difference criterion, % (default 3), in (0, 100] */
    double dist_mm;       /* distance-to-agreement criterion, mm (default 3), > 0 */
    double threshold_pct; /* skip reference points below this % of norm (default 10), [0, 100) */
    int local;            /* 0: global (% of norm, default); 1: local (% of the reference point) */
    double norm_gy;       /* global normalisation dose; 0 = maximum of the reference (default) */
    double search_mm;     /* search radius, >= dist_mm; 0 = 2 x dist_mm (default) */
    double step_mm;       /* sampling step of the evaluated dose; 0 = dist_mm / 10 (default);
                             search_mm / step_mm <= 64 */
} imrt_gamma_options;

typedef struct {
    int64_t evaluated;    /* reference points above the threshold with an evaluated dose nearby */
    int64_t passed;       /* of those, gamma <= 1 */
    double pass_rate_pct; /* 100 x passed / evaluated (NAN if none evaluated) */
    double mean;          /* mean gamma over evaluated points */
    double max;           /* largest gamma (capped, see gamma_cap) */
    double gamma_cap;     /* search_mm / dist_mm: larger gammas are reported as this value */
} imrt_gamma_result;

/* Defaults: 3 %, 3 mm, 10 % threshold, global, norm = reference maximum. */
void imrt_gamma_defaults(imrt_gamma_options *opt);

/* Gamma index of `eval` (on eval_grid) against `ref` (on ref_grid), the
 * grids may differ (the evaluated dose is interpolated trilinearly). For each
 * reference voxel r with dose >= threshold: gamma(r) = min over samples e of
 * sqrt(|e - r|^2 / dist^2 + (D_eval(e) - D_ref(r))^2 / dD^2), the samples
 * lying on a lattice of pitch step_mm around r within search_mm, inside the
 * evaluated grid (axes of the evaluated grid with one voxel are not searched).
 * The search visits samples in order of distance and stops once the distance
 * term alone exceeds the best gamma; the best sample is then refined by
 * Gauss-Newton steps on the trilinear interpolant (exact where the evaluated
 * dose is linear, so steep gradients are not under-resolved by the lattice).
 * Reference points whose surroundings lie
 * wholly outside the evaluated grid are not evaluated.
 * `map` (optional, nvox(ref_grid) floats) receives gamma, -1 where not
 * evaluated. ctx may be NULL (OpenMP default threads).
 * Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_RANGE (options out of range, a
 * non-finite dose, global norm <= 0), IMRT_ERR_NOMEM. */
imrt_status imrt_gamma(const imrt_context *ctx, const imrt_grid *ref_grid, const float *ref,
                       const imrt_grid *eval_grid, const float *eval,
                       const imrt_gamma_options *opt, imrt_gamma_result *res, float *map);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_METRICS_H */
