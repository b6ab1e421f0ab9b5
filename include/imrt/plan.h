/*
 * imrt/plan.h - what a plan spec says beyond the anatomy: prescription,
 * beams, beamlet and dose-grid settings, objectives, clinical goals, the
 * conformal (3D-CRT) baseline and solver settings.
 *
 * Plain data filled by the spec reader (imrt/spec.h) or by a program; the
 * dose engine, optimiser, conformal planner and report read it. Units: Gy,
 * mm, degrees. Structure references are by name and resolved against the
 * phantom when a stage starts (an unknown name is an IMRT_ERR_ARG there).
 *
 * Ownership: an imrt_plan owns its arrays and description; free it with
 * imrt_plan_destroy.
 */
#ifndef IMRT_PLAN_H
#define IMRT_PLAN_H

#include "imrt/phantom.h"
#include "imrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_METRIC_MAX 32 /* longest metric name incl. NUL ("D0.03cc", "V20_cm3") */

/* One treatment beam (IEC 61217 angles). */
typedef struct {
    char name[IMRT_NAME_MAX]; /* e.g. "G040" */
    double gantry_deg;        /* [0, 360) */
    double couch_deg;         /* (-90, 90], 0 = default */
    int has_isocentre;        /* 0: target centroid */
    double isocentre[3];      /* mm, LPS, when has_isocentre */
    int open_field;           /* 1: open rectangular field instead of target-shaped beamlets */
    double field_mm[2];       /* open field size at the isocentre, BEV u x v, mm */
} imrt_beam_def;

typedef enum {
    IMRT_OBJ_SQ_DEVIATION = 0, /* (1/|S|) sum (d - D_ref)^2 */
    IMRT_OBJ_SQ_OVERDOSE,      /* (1/|S|) sum max(0, d - D_max)^2 */
    IMRT_OBJ_SQ_UNDERDOSE,     /* (1/|S|) sum max(0, D_min - d)^2 */
    IMRT_OBJ_MEAN,             /* (mean - D_ref)^2, or one-sided when at_most */
    IMRT_OBJ_MAX_DVH,          /* Wu & Mohan max DVH (dose, volume_pct) */
    IMRT_OBJ_MIN_DVH,          /* Wu & Mohan min DVH (dose, volume_pct) */
    IMRT_OBJ_GEUD              /* gEUD with exponent a against dose */
} imrt_objective_kind;

typedef struct {
    char structure[IMRT_NAME_MAX]; /* structure name */
    imrt_objective_kind kind;
    double weight;      /* p_k >= 0 */
    double dose;        /* the objective's dose parameter, Gy */
    double volume_pct;  /* DVH objectives: V in percent (0, 100) */
    double a;           /* gEUD exponent (a >= 1 for OARs, a < 0 for targets) */
    int at_most;        /* mean dose: 1 = penalise only above dose */
    int constraint;     /* 1 = hard constraint instead of a penalty */
} imrt_objective_def;

typedef enum { IMRT_GOAL_LE = 0, IMRT_GOAL_GE = 1 } imrt_goal_op;

/* A clinical goal, e.g. {"PTV", "D95", GE, 50.0}. Metric names:
 * "Dx" (dose to the hottest x % of the volume, x may be fractional), "Dxcc"
 * (hottest x cm^3, e.g. "D0.03cc"), "Vx" (% of the volume receiving >= x Gy),
 * "Vx_cm3", "Dmean", "Dmax", "Dmin". */
typedef struct {
    char structure[IMRT_NAME_MAX];
    char metric[IMRT_METRIC_MAX];
    imrt_goal_op op;
    double value;      /* Gy, % or cm^3 as the metric implies */
    int preferred;     /* 1: an "also report" goal that does not fail a plan */
} imrt_goal_def;

typedef struct {
    double dose_gy;                 /* prescription dose, Gy (total) */
    int fractions;                  /* number of fractions (>= 1) */
    char target[IMRT_NAME_MAX];     /* structure the normalisation refers to */
    char metric[IMRT_METRIC_MAX];   /* normalisation metric, default "D95" */
    int normalise;                  /* 1 = scale so that metric(target) = dose_gy */
} imrt_prescription;

typedef struct {
    int max_iterations;  /* L-BFGS iteration limit, default 300 */
    double ftol_rel;     /* relative change of F, default 1e-6 */
    double pgtol;        /* projected-gradient norm tolerance, default 1e-8 */
    double max_time_s;   /* wall-time limit, 0 = none */
} imrt_solver_settings;

typedef struct {
    char *description;           /* free text with sources; owned, may be NULL */
    imrt_prescription rx;
    int nbeams;
    imrt_beam_def *beams;        /* IMRT beams, nbeams entries; owned */
    double beamlet_mm;           /* beamlet pitch w at the isocentre, default 5 */
    double beamlet_margin_mm;    /* target-projection margin, default 5 */
    double dose_grid_mm[3];      /* dose-grid spacing; 0 = the phantom grid */
    double cutoff;               /* lateral relative cut-off, default 1e-3 */
    double lateral_cutoff_mm;    /* geometric lateral cut-off, mm; 0 = none (default);
                                    imrt_dose_options.lateral_cutoff_mm */
    int nobjectives;
    imrt_objective_def *objectives; /* owned */
    int ngoals;
    imrt_goal_def *goals;        /* owned */
    int crt_nbeams;              /* 0 = same beams as IMRT */
    imrt_beam_def *crt_beams;    /* conformal beam set when crt_nbeams > 0; owned */
    double crt_margin_mm;        /* conformal aperture margin, default 7 */
    imrt_solver_settings solver;
} imrt_plan;

/* Allocate a plan with the defaults above and no beams/objectives/goals. */
imrt_status imrt_plan_create(imrt_plan **out);

/* Free a plan and its arrays; accepts NULL, clears *p. */
void imrt_plan_destroy(imrt_plan **p);

/* Parse a goal/normalisation metric name. On success fills *kind
 * ('D' dose-at-volume %, 'C' dose-at-volume cm3, 'V' volume % at dose,
 * 'W' volume cm3 at dose, 'M' mean, 'X' max, 'N' min) and *param.
 * IMRT_ERR_PARSE with a message listing the accepted forms otherwise. */
imrt_status imrt_metric_parse(const char *metric, char *kind, double *param);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_PLAN_H */
