/*
 * imrt/pipeline.h - the whole planning run behind `imrt plan`: spec ->
 * phantom -> dose grid -> beams -> dij -> IMRT optimisation and
 * normalisation -> 3D-conformal baseline -> metrics and goals -> output
 * folder (NIfTI volumes, DVH table and plot, dose pictures, fluence maps,
 * metrics.json, report.html).
 *
 * The run is a transparent record of every stage's product, so that a
 * program can drive the stages, inspect the dose or write its own outputs.
 * Units: Gy, mm, seconds. Ownership: an imrt_run owns everything it points
 * to; free it with imrt_run_destroy. Thread safety: one run per thread.
 */
#ifndef IMRT_PIPELINE_H
#define IMRT_PIPELINE_H

#include "imrt/beam.h"
#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/metrics.h"
#include "imrt/optimize.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/spec.h"
#include "imrt/status.h"

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A line of progress or solver log (no trailing newline). */
typedef void (*imrt_log_fn)(void *user, const char *line);

typedef struct {
    double grid_mm;      /* phantom grid spacing override, mm (0 = the spec's) */
    int log_every;       /* solver log line every N iterations (default 10; 1 = all) */
    imrt_log_fn log;     /* may be NULL */
    void *log_user;
    uint64_t max_memory; /* budget for the phantom check at load, bytes (0 = none; the
                            later stages use the context's budget) */
} imrt_run_options;

void imrt_run_options_default(imrt_run_options *o);

/* One plan (IMRT or 3D-CRT) of the run. */
typedef struct {
    const imrt_beamset *beams; /* the beams it uses (aliases run->beams or run->crt_beams) */
    const imrt_dij *dij;       /* its dij (aliases run->dij or run->crt_dij) */
    double *x;                 /* beamlet weights after normalisation, dij->ncols; owned */
    float *dose;               /* dose on the dose grid, Gy, nvox; owned */
    double norm_factor;        /* normalisation scale applied to x and dose */
    imrt_plan_metrics *metrics;/* summary and goals; owned */
} imrt_run_plan_result;

typedef struct {
    char spec_path[4096];
    imrt_run_options opt;       /* options the run was loaded with */
    char target[IMRT_NAME_MAX]; /* prescription target */
    imrt_phantom *phantom;      /* anatomy on the phantom grid; owned */
    imrt_plan *plan;            /* plan settings; owned */
    imrt_spec_info *info;       /* volumes and discretisation errors; owned */
    imrt_phantom *dose_phantom; /* anatomy on the dose grid; owned */
    imrt_beamset *beams;        /* IMRT beams; owned */
    imrt_dij *dij;              /* IMRT dij; owned (a distributed run: this process's rows) */
    int64_t dij_nnz;            /* non-zeros of the whole IMRT dij, over every process */
    imrt_beamset *crt_beams;    /* conformal beams when they differ, else NULL; owned */
    imrt_dij *crt_dij;          /* their dij, else NULL; owned */
    uint8_t *aperture;          /* conformal aperture flag per beamlet of its beam set; owned */
    double *crt_beam_weight;    /* conformal weight per beam (before normalisation); owned */
    imrt_run_plan_result imrt;  /* the optimised plan */
    imrt_run_plan_result crt;   /* the 3D-conformal plan */
    imrt_optimize_stats stats;  /* solver statistics */
    int nconstraints;           /* hard constraints and whether each holds */
    imrt_constraint_status *constraints; /* owned */
    char *log;                  /* the solver log and stage lines, NUL-terminated; owned */
    size_t log_len, log_cap;
    double t_phantom, t_dij, t_optimize, t_crt, t_metrics, t_output, t_total; /* s */
    int threads;
} imrt_run;

/* Stage 1: read the spec, build the phantom, its dose-grid copy and the IMRT
 * beams. Errors: those of imrt_spec_load (IMRT_ERR_BUDGET for a phantom
 * over opt->max_memory), imrt_beamset_create; IMRT_ERR_RANGE when no
 * beamlet's central ray crosses the prescription target. */
imrt_status imrt_run_load(const char *spec_path, const imrt_run_options *opt, imrt_run **out);

/* Stage 2: the dij of the IMRT beams (unless one was set) and, when the spec
 * gives its own conformal beams, theirs. Errors: those of imrt_dij_build
 * (IMRT_ERR_BUDGET over the context's memory budget). */
imrt_status imrt_run_dij(const imrt_context *ctx, imrt_run *run);

/* Use a dij loaded from a file instead of stage 2 (takes ownership, clears
 * *dij). IMRT_ERR_ARG when its grid or beams do not match the spec's. */
imrt_status imrt_run_set_dij(imrt_run *run, imrt_dij **dij);

/* Stage 3: optimise the IMRT weights, compute the dose, normalise, and
 * evaluate the goals (run->imrt). Errors: those of imrt_optimize;
 * IMRT_ERR_BUDGET when the doses, weights and optimiser arrays on top of
 * the phantoms and dij held exceed the context's budget. */
imrt_status imrt_run_optimise(const imrt_context *ctx, imrt_run *run);

/* Stage 4: the 3D-conformal plan (run->crt), normalised like the IMRT one. */
imrt_status imrt_run_conformal(const imrt_context *ctx, imrt_run *run);

/* All four stages (no files written).
 * Errors: those of the stages (spec: PARSE/RANGE/IO; dij: BUDGET; ...). */
imrt_status imrt_run_plan(const imrt_context *ctx, const char *spec_path,
                          const imrt_run_options *opt, imrt_run **out);

/* metrics.json of a run (interface.md shape). *out is a new reference. */
imrt_status imrt_run_metrics_json(const imrt_run *run, json_t **out);

/* Write the IMRT beamlet weights (after imrt_run_optimise) to `path` atomically:
 * a '#' comment line naming `program` and the spec, then one weight per line,
 * beamlet by beamlet, beam by beam, with `digits` significant digits (1-17;
 * 17 reproduces the doubles exactly). `imrt dose --weights` reads this file. */
imrt_status imrt_run_write_weights(const imrt_run *run, const char *path, const char *program,
                                   int digits);

/* Write the output folder `dir` (after all four stages) (refused if it exists, unless force):
 * every file is written into a staging folder that is renamed into place
 * only when all succeeded. */
imrt_status imrt_run_write(imrt_run *run, const char *dir, int force);

/* Free a run; accepts NULL, clears *run. */
void imrt_run_destroy(imrt_run **run);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_PIPELINE_H */
