/*
 * bench/bench_objective.c - one F, grad F evaluation of the default
 * phantom's objectives (imrt_objectives_eval) at the starting point and at
 * the optimum: the fused form (default) and the two-pass form, optimised
 * and reference kernels, 1..N threads. The fused-pass bound is the time to
 * read the rows the pass needs at the same run's STREAM read bandwidth;
 * the evaluation is reported as % of that bound (pct_stream).
 */
#include "case.h"
#include "common.h"

#include "imrt/alloc.h"
#include "imrt/objectives.h"
#include "imrt/optimize.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    imrt_objectives *obj;
    const double *x;
    double *g;
    double f;
} call;

static void run(void *a)
{
    call *c = a;
    if (imrt_objectives_eval(c->obj, c->x, &c->f, c->g) != IMRT_OK)
        bench_fail("bench_objective: %s", imrt_last_error());
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    int tl[16];
    const int nt = bench_thread_list(o.threads, tl, 16);
    bench_stream st[16];
    for (int i = 0; i < nt; i++)
        bench_stream_measure(&o, "objective", tl[i], &st[i]);
    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    const imrt_dij *D = c.dij;
    const size_t n = (size_t)D->ncols;
    double *x0 = imrt_calloc(n, sizeof *x0), *xo = imrt_calloc(n, sizeof *xo);
    double *g0 = imrt_calloc(n, sizeof *g0), *g1 = imrt_calloc(n, sizeof *g1);
    if (!x0 || !xo || !g0 || !g1)
        bench_fail("bench_objective: out of memory");
    const double rx = c.plan && c.plan->rx.dose_gy > 0 ? c.plan->rx.dose_gy : 50.0;

    /* the two points: the start (perturbed by up to 1 % to break the symmetric
     * start's dose ties, see bench_optimize.c) and the optimum */
    imrt_objectives *obj = NULL;
    if (imrt_objectives_create(c.ctx, D, c.dose, c.defs, c.ndefs, &obj) != IMRT_OK ||
        imrt_objectives_default_start(obj, rx, x0) != IMRT_OK)
        bench_fail("bench_objective: %s", imrt_last_error());
    uint64_t seed = 7;
    for (size_t j = 0; j < n; j++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x0[j] *= 1.0 + 0.01 * ((double)(seed >> 11) * 0x1.0p-53);
    }
    memcpy(xo, x0, n * sizeof *xo);
    imrt_optimize_options oo;
    imrt_optimize_options_default(&oo);
    if (c.plan)
        oo.solver = c.plan->solver;
    oo.solver.max_iterations = o.quick ? 15 : 100;
    if (imrt_optimize(c.ctx, obj, &oo, xo, NULL) != IMRT_OK)
        bench_fail("bench_objective: %s", imrt_last_error());
    imrt_objectives_destroy(&obj);

    /* bytes the fused pass must read: every row an objective reads per voxel */
    bench_program bp;
    bench_program_plan(&c, &bp);
    const double bytes = 8.0 * (double)bp.active_nnz + 18.0 * (double)bp.active_rows +
                         2.0 * (double)D->nrows;
    bench_program_free(&bp);

    /* verify: optimised (both forms) against the reference kernels at both points */
    imrt_context *ref = NULL;
    if (imrt_context_create(&ref) != IMRT_OK)
        bench_fail("bench_objective: %s", imrt_last_error());
    imrt_context_set_kernels(ref, IMRT_KERNELS_REFERENCE);
    imrt_context_set_threads(ref, 1);
    imrt_objectives *ro = NULL;
    if (imrt_objectives_create(ref, D, c.dose, c.defs, c.ndefs, &ro) != IMRT_OK)
        bench_fail("bench_objective: %s", imrt_last_error());
    for (int p = 0; p < 2; p++)
        for (int mode = 0; mode < 2; mode++) {
            const double *x = p ? xo : x0;
            double f0, f1;
            if (imrt_objectives_create(c.ctx, D, c.dose, c.defs, c.ndefs, &obj) != IMRT_OK)
                bench_fail("bench_objective: %s", imrt_last_error());
            imrt_objectives_set_mode(obj, mode ? IMRT_EVAL_TWO_PASS : IMRT_EVAL_FUSED);
            if (imrt_objectives_eval(ro, x, &f0, g0) != IMRT_OK ||
                imrt_objectives_eval(obj, x, &f1, g1) != IMRT_OK)
                bench_fail("bench_objective: %s", imrt_last_error());
            const double ef = fabs(f1 - f0) / fmax(fabs(f0), 1e-300);
            const double eg = bench_rel_diff(g1, g0, n);
            if (!(ef <= 1e-10) || !(eg <= 1e-9))
                bench_fail("bench_objective: %s form at the %s differs from the reference "
                           "kernels: F %.3g, gradient %.3g (relative)",
                           mode ? "two-pass" : "fused", p ? "optimum" : "start", ef, eg);
            imrt_objectives_destroy(&obj);
        }

    char size[160];
    static const char *pt[2] = {"start", "optimum"};
    for (int i = 0; i < nt; i++) {
        const int th = tl[i];
        imrt_context_set_threads(c.ctx, th);
        for (int mode = 0; mode < 2; mode++) {
            if (imrt_objectives_create(c.ctx, D, c.dose, c.defs, c.ndefs, &obj) != IMRT_OK)
                bench_fail("bench_objective: %s", imrt_last_error());
            imrt_objectives_set_mode(obj, mode ? IMRT_EVAL_TWO_PASS : IMRT_EVAL_FUSED);
            for (int p = 0; p < 2; p++) {
                call cl = {obj, p ? xo : x0, g1, 0.0};
                bench_bw bw;
                bench_timing t = bench_time_paired(run, &cl, o.repeats, &st[i], bytes, &bw);
                snprintf(size, sizeof size, "%s at %s", c.name, pt[p]);
                char extra[128];
                snprintf(extra, sizeof extra, "\"ms\": %.3f, \"f\": %.6g", t.median_s * 1e3, cl.f);
                bench_report(&o, "objective", mode ? "eval_two_pass" : "eval_fused", th, size,
                             &t, &bw, extra);
                if (th == tl[nt - 1] && mode == 0)
                    bench_roofline(&o, "objective", "eval_fused", th, size, &t, &bw, &st[i],
                                   "memory; scatter of the rows with a non-zero derivative");
            }
            imrt_objectives_destroy(&obj);
        }
    }
    /* the reference kernels once */
    {
        call cl = {ro, xo, g1, 0.0};
        bench_timing t = bench_time(run, &cl, o.quick ? 1 : 3);
        snprintf(size, sizeof size, "%s at optimum", c.name);
        bench_report(&o, "objective", "eval_reference", 1, size, &t, NULL, NULL);
    }
    imrt_objectives_destroy(&ro);
    imrt_context_destroy(&ref);
    imrt_free(x0);
    imrt_free(xo);
    imrt_free(g0);
    imrt_free(g1);
    bench_case_free(&c);
    for (int i = 0; i < nt; i++)
        bench_stream_free(&st[i]);
    return 0;
}
