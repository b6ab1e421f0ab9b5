/*
 * bench/stages.c - the timed planning stages of bench/stages.h.
 */
#include "stages.h"

#include "imrt/alloc.h"
#include "imrt/metrics.h"
#include "imrt/objectives.h"
#include "imrt/spmv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* IMRT_BENCH_TRACE=N: one line on stderr every N iterations. */
static int trace_every;
static int trace(void *user, const imrt_iteration_info *it)
{
    (void)user;
    if (trace_every > 0 && it->iteration % trace_every == 0)
        fprintf(stderr, "  iteration %5d  evaluations %5d  F %.8g  |pg| %.3g  %.3f s\n",
                it->iteration, it->evaluations, it->f, it->pg_norm, it->elapsed_s);
    return 0;
}

void bench_plan_run(const bench_opts *o, const bench_case *c, bench_plan_result *r)
{
    memset(r, 0, sizeof *r);
    const imrt_dij *D = c->dij;
    imrt_objectives *obj = NULL;
    double *x = imrt_calloc((size_t)D->ncols, sizeof *x);
    double *d = imrt_calloc((size_t)D->nrows, sizeof *d);
    const int64_t nvox = imrt_grid_nvox(&D->grid);
    r->dose = imrt_calloc((size_t)nvox, sizeof *r->dose);
    if (!x || !d || !r->dose)
        bench_fail("%s: out of memory", o->prog);

    double t0 = bench_now();
    if (imrt_objectives_create(c->ctx, D, c->dose, c->defs, c->ndefs, &obj) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    r->objectives_s = bench_now() - t0;

    const double rx = c->plan && c->plan->rx.dose_gy > 0 ? c->plan->rx.dose_gy : 50.0;
    t0 = bench_now();
    if (imrt_objectives_default_start(obj, rx, x) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    r->start_s = bench_now() - t0;

    imrt_optimize_options opt;
    imrt_optimize_options_default(&opt);
    if (c->plan)
        opt.solver = c->plan->solver;
    const char *tr = getenv("IMRT_BENCH_TRACE");
    trace_every = tr ? atoi(tr) : 0;
    if (trace_every > 0)
        opt.log = trace;
    const char *mem = getenv("IMRT_BENCH_LBFGS_MEMORY"); /* tuning: L-BFGS correction pairs */
    if (mem)
        opt.lbfgs_memory = atoi(mem);
    if (o->quick && opt.solver.max_iterations > BENCH_QUICK_ITERATIONS)
        opt.solver.max_iterations = BENCH_QUICK_ITERATIONS;
    t0 = bench_now();
    if (imrt_optimize(c->ctx, obj, &opt, x, &r->stats) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    r->optimize_s = bench_now() - t0;
    r->rss_optimize = bench_peak_rss();

    t0 = bench_now();
    if (imrt_spmv_dose(c->ctx, D, x, d) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    for (int64_t i = 0; i < D->nrows; i++)
        r->dose[D->voxel[i]] = (float)d[i];
    r->dose_s = bench_now() - t0;

    t0 = bench_now();
    r->norm_factor = 1.0;
    if (c->plan && c->plan->rx.normalise) {
        if (imrt_normalisation_factor(&c->plan->rx, c->dose, r->dose, &r->norm_factor) !=
            IMRT_OK)
            bench_fail("%s: %s", o->prog, imrt_last_error());
        imrt_dose_scale(r->dose, nvox, r->norm_factor);
    }
    if (c->plan)
        for (int g = 0; g < c->plan->ngoals && r->ngoals < BENCH_MAX_GOALS; g++) {
            const int k = r->ngoals++;
            r->goal[k] = c->plan->goals[g];
            if (imrt_goal_eval(&r->goal[k], c->dose, r->dose, &r->achieved[k], &r->pass[k]) !=
                IMRT_OK) {
                r->achieved[k] = NAN;
                r->pass[k] = 0;
            }
        }
    r->metrics_s = bench_now() - t0;

    imrt_objectives_destroy(&obj);
    imrt_free(x);
    imrt_free(d);
}

double bench_plan_metric(const bench_case *c, const bench_plan_result *r, const char *structure,
                         const char *metric)
{
    imrt_goal_def g;
    memset(&g, 0, sizeof g);
    snprintf(g.structure, sizeof g.structure, "%s", structure);
    snprintf(g.metric, sizeof g.metric, "%s", metric);
    double v = NAN;
    if (imrt_goal_eval(&g, c->dose, r->dose, &v, NULL) != IMRT_OK)
        return NAN;
    return v;
}

void bench_plan_result_free(bench_plan_result *r)
{
    imrt_free(r->dose);
    memset(r, 0, sizeof *r);
}
