/*
 * bench/bench_optimize.c - the whole fluence optimisation of a case (the
 * default phantom; and matRad's box phantom with the peer's settings when
 * its MAT file is readable: positional argument, default
 * ../shared/data/BOXPHANTOM.mat) with the plan's solver settings: seconds,
 * iterations, evaluations, seconds per iteration and per evaluation, the
 * stop reason, and how fast F converges (iterations until F is within
 * 1 %, 0.1 % and 0.01 % of its final value), which says what a looser
 * stopping rule would save; for the Newton solver also its Hessian-vector
 * products and the fraction of the dij's non-zeros each reads.
 * IMRT_BENCH_METHOD, IMRT_BENCH_CG and IMRT_BENCH_STRIDE choose the solver,
 * its CG budget per step and its Hessian subsampling. The reference kernels
 * are checked against the optimised ones on the first evaluation before
 * timing. --quick: 5 mm grid,
 * at most 30 iterations, no box phantom.
 */
#include "case.h"
#include "common.h"

#include "imrt/alloc.h"
#include "imrt/objectives.h"
#include "imrt/optimize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXIT 100000

typedef struct {
    double *f;  /* F per iteration */
    double *t;  /* elapsed per iteration */
    int n;
} trace;

static int on_iter(void *user, const imrt_iteration_info *it)
{
    trace *tr = user;
    if (tr->n < MAXIT) {
        tr->f[tr->n] = it->f;
        tr->t[tr->n] = it->elapsed_s;
        tr->n++;
    }
    return 0;
}

typedef struct {
    const bench_case *c;
    imrt_objectives *obj;
    double *x;
    double rx;
    imrt_optimize_options opt;
    imrt_optimize_stats stats;
    trace tr;
} call;

static void run(void *a)
{
    call *c = a;
    c->tr.n = 0;
    if (imrt_objectives_default_start(c->obj, c->rx, c->x) != IMRT_OK ||
        imrt_optimize(c->c->ctx, c->obj, &c->opt, c->x, &c->stats) != IMRT_OK)
        bench_fail("bench_optimize: %s", imrt_last_error());
}

/* Check the optimised evaluation against the reference kernels near the
 * start: the uniform start itself gives many voxels exactly equal doses
 * (symmetry), where a DVH objective's window is decided by rounding, so
 * the weights are perturbed by up to 1 % first. */
static void verify(const bench_case *c, imrt_objectives *obj, double rx)
{
    const int32_t n = c->dij->ncols;
    double *x = imrt_calloc((size_t)n, sizeof *x), *g0 = imrt_calloc((size_t)n, sizeof *g0);
    double *g1 = imrt_calloc((size_t)n, sizeof *g1);
    imrt_context *ref = NULL;
    imrt_objectives *ro = NULL;
    if (!x || !g0 || !g1 || imrt_context_create(&ref) != IMRT_OK)
        bench_fail("bench_optimize: out of memory");
    imrt_context_set_kernels(ref, IMRT_KERNELS_REFERENCE);
    imrt_context_set_threads(ref, 1);
    double f0 = 0, f1 = 0;
    if (imrt_objectives_create(ref, c->dij, c->dose, c->defs, c->ndefs, &ro) != IMRT_OK ||
        imrt_objectives_default_start(obj, rx, x) != IMRT_OK)
        bench_fail("bench_optimize: %s", imrt_last_error());
    uint64_t seed = 7;
    for (int32_t j = 0; j < n; j++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[j] *= 1.0 + 0.01 * ((double)(seed >> 11) * 0x1.0p-53);
    }
    if (imrt_objectives_eval(ro, x, &f0, g0) != IMRT_OK ||
        imrt_objectives_eval(obj, x, &f1, g1) != IMRT_OK)
        bench_fail("bench_optimize: %s", imrt_last_error());
    const double ef = fabs(f1 - f0) / fmax(fabs(f0), 1e-300), eg = bench_rel_diff(g1, g0, (size_t)n);
    if (!(ef <= 1e-10) || !(eg <= 1e-9))
        bench_fail("bench_optimize: optimised evaluation differs from the reference: F %.3g, "
                   "gradient %.3g (relative)",
                   ef, eg);
    imrt_objectives_destroy(&ro);
    imrt_context_destroy(&ref);
    imrt_free(x);
    imrt_free(g0);
    imrt_free(g1);
}

static void bench_case_opt(const bench_opts *o, const bench_case *c, const char *label, int rep)
{
    call cl;
    memset(&cl, 0, sizeof cl);
    cl.c = c;
    cl.rx = c->plan && c->plan->rx.dose_gy > 0 ? c->plan->rx.dose_gy : 50.0;
    cl.x = imrt_calloc((size_t)c->dij->ncols, sizeof *cl.x);
    cl.tr.f = calloc(MAXIT, sizeof *cl.tr.f);
    cl.tr.t = calloc(MAXIT, sizeof *cl.tr.t);
    if (!cl.x || !cl.tr.f || !cl.tr.t)
        bench_fail("bench_optimize: out of memory");
    const double t0 = bench_now();
    if (imrt_objectives_create(c->ctx, c->dij, c->dose, c->defs, c->ndefs, &cl.obj) != IMRT_OK)
        bench_fail("bench_optimize: %s", imrt_last_error());
    const double tcreate = bench_now() - t0;
    verify(c, cl.obj, cl.rx);
    imrt_optimize_options_default(&cl.opt);
    if (c->plan)
        cl.opt.solver = c->plan->solver;
    if (o->quick && cl.opt.solver.max_iterations > 30)
        cl.opt.solver.max_iterations = 30;
    cl.opt.log = on_iter;
    cl.opt.log_user = &cl.tr;
    /* tuning knobs: IMRT_BENCH_METHOD=lbfgs|newton|auto, IMRT_BENCH_CG=N (CG
     * products per Newton step), IMRT_BENCH_STRIDE=S (Hessian subsampling) */
    const char *m = getenv("IMRT_BENCH_METHOD");
    if (m)
        cl.opt.method = strcmp(m, "lbfgs") == 0    ? IMRT_METHOD_LBFGS
                        : strcmp(m, "newton") == 0 ? IMRT_METHOD_NEWTON
                                                   : IMRT_METHOD_AUTO;
    if (getenv("IMRT_BENCH_CG"))
        cl.opt.cg_max = atoi(getenv("IMRT_BENCH_CG"));
    if (getenv("IMRT_BENCH_STRIDE"))
        cl.opt.hessian_stride = atoi(getenv("IMRT_BENCH_STRIDE"));
    /* the whole optimisation, repeated (deterministic: same path every time) */
    double s[8];
    bench_cpu_snap c0, c1;
    bench_cpu_snap_take(&c0);
    for (int r = 0; r < rep; r++) {
        const double ta = bench_now();
        run(&cl);
        s[r] = bench_now() - ta;
    }
    bench_cpu_snap_take(&c1);
    bench_timing t = bench_stats(s, rep);
    t.other_cpu = bench_cpu_other(&c0, &c1);
    const imrt_optimize_stats *st = &cl.stats;
    /* convergence of F */
    const double ff = st->f;
    int k1 = -1, k01 = -1, k001 = -1;
    for (int i = 0; i < cl.tr.n; i++) {
        const double rel = (cl.tr.f[i] - ff) / fmax(fabs(ff), 1e-300);
        if (k1 < 0 && rel <= 1e-2)
            k1 = i;
        if (k01 < 0 && rel <= 1e-3)
            k01 = i;
        if (k001 < 0 && rel <= 1e-4)
            k001 = i;
    }
    char extra[1024];
    snprintf(extra, sizeof extra,
             "\"method\": \"%s\", \"hessian_products\": %d, \"hessian_nnz_fraction\": %.3f, "
             "\"iterations\": %d, \"evaluations\": %d, \"s_per_iteration\": %.4f, "
             "\"s_per_evaluation\": %.4f, \"stop\": \"%s\", \"f_start\": %.6g, \"f\": %.6g, "
             "\"iter_to_1pct\": %d, \"iter_to_0.1pct\": %d, \"iter_to_0.01pct\": %d, "
             "\"time_to_0.1pct_s\": %.3f, \"nnz\": %lld, \"objectives_create_s\": %.3f",
             imrt_method_name(st->method), st->hessian_products, st->hessian_rows,
             st->iterations, st->evaluations, t.median_s / fmax(1, st->iterations),
             t.median_s / fmax(1, st->evaluations), imrt_stop_reason_name(st->stop), st->f_start,
             st->f, k1, k01, k001, k01 >= 0 ? cl.tr.t[k01] : -1.0, (long long)c->dij->nnz,
             tcreate);
    bench_report(o, "optimize", imrt_method_name(st->method), o->threads, label, &t, NULL, extra);
    imrt_objectives_destroy(&cl.obj);
    imrt_free(cl.x);
    free(cl.tr.f);
    free(cl.tr.t);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    bench_case_opt(&o, &c, c.name, o.quick ? 1 : 3);
    bench_case_free(&c);
    char abs[4096];
    if (o.quick || o.synthetic || !bench_box_mat(&o, abs, sizeof abs)) {
        bench_note(&o, "box phantom skipped (--quick, --synthetic, or its MAT file is not "
                       "readable)");
        return 0;
    }
    bench_case_spec(&o, BENCH_BOX_SPEC, abs, 0.0, &c);
    snprintf(c.name, sizeof c.name, "boxphantom 3mm");
    bench_case_opt(&o, &c, c.name, 1); /* bench_plan repeats the box phantom end to end */
    bench_case_free(&c);
    return 0;
}
