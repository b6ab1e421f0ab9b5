/*
 * bench/stages.h - the planning stages after the dij (objective set,
 * starting point, optimisation, dose on the grid, normalisation, clinical
 * goals), timed one by one for the end-to-end and scaling benchmarks.
 */
#ifndef IMRT_BENCH_STAGES_H
#define IMRT_BENCH_STAGES_H

#include "case.h"

#include "imrt/optimize.h"

#define BENCH_MAX_GOALS 32
#define BENCH_QUICK_ITERATIONS 30 /* --quick: iteration cap of the optimisation */

typedef struct {
    double objectives_s;  /* imrt_objectives_create */
    double start_s;       /* imrt_objectives_default_start */
    double optimize_s;    /* imrt_optimize */
    double dose_s;        /* dose of the optimised weights on the dose grid */
    double metrics_s;     /* normalisation and goals */
    double rss_optimize;  /* peak resident memory after the optimisation, bytes */
    imrt_optimize_stats stats;
    double norm_factor;   /* dose scale applied (1 without normalisation) */
    int ngoals;
    imrt_goal_def goal[BENCH_MAX_GOALS];
    double achieved[BENCH_MAX_GOALS];
    int pass[BENCH_MAX_GOALS];
    float *dose;          /* nvox of the dose grid, Gy, after normalisation; owned */
} bench_plan_result;

/* Run the stages on case c with its plan's solver settings (--quick: at
 * most BENCH_QUICK_ITERATIONS iterations). Tuning through the environment:
 * IMRT_BENCH_TRACE=N prints F every N iterations on stderr,
 * IMRT_BENCH_LBFGS_MEMORY=M sets the L-BFGS memory. Exits the program on
 * failure. */
void bench_plan_run(const bench_opts *o, const bench_case *c, bench_plan_result *r);

/* A metric ("D95", "Dmean", ...) of a structure on r->dose. NAN on error. */
double bench_plan_metric(const bench_case *c, const bench_plan_result *r, const char *structure,
                         const char *metric);

void bench_plan_result_free(bench_plan_result *r);

#endif /* IMRT_BENCH_STAGES_H */
