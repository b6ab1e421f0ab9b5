/*
 * engine/optimize.c - the solver: NLopt L-BFGS with x >= 0 inside an
 * augmented-Lagrangian outer loop, our own stopping rules applied from the
 * objective callback (nlopt_force_stop), the iteration log and statistics.
 * In a distributed run every process takes the same steps; the wall-time
 * rule is decided jointly (time_up) and NLopt's own clock is not used.
 */
#include "imrt/optimize.h"

#include "util_impl.h"

#include <math.h>
#include <nlopt.h>
#include <string.h>
#include <time.h>

#define NLOPT_MAXEVAL_FACTOR 20 /* safety net: evaluations per allowed iteration */
#define AL_ROUND_FTOL 1e-4      /* ftol of the rounds whose multipliers will still change */

typedef struct {
    imrt_objectives *obj;
    const imrt_context *ctx;
    const imrt_optimize_options *o;
    nlopt_opt opt;
    int32_t n;
    double t0;            /* start of imrt_optimize, s */
    double *best_x;       /* best point of the current round, n */
    double *gtmp;         /* gradient when NLopt passes none, n */
    double best;          /* best L of the current round */
    int have_best;        /* best is set */
    double *hist;         /* last ftol_window + 1 values of L, ring */
    int round_iter;       /* iterations of the current round (improvements) */
    int iterations;       /* whole run */
    int evaluations;      /* whole run */
    int outer;            /* current round */
    double ftol;          /* ftol of the current round */
    int stop_set;         /* one of our rules fired */
    imrt_stop_reason stop;
    imrt_status failed;   /* evaluation error, IMRT_OK otherwise */
} run_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *imrt_stop_reason_name(imrt_stop_reason r)
{
    switch (r) {
    case IMRT_STOP_FTOL:
        return "ftol";
    case IMRT_STOP_PGTOL:
        return "pgtol";
    case IMRT_STOP_MAX_ITER:
        return "max_iterations";
    case IMRT_STOP_MAX_TIME:
        return "max_time";
    case IMRT_STOP_CALLBACK:
        return "callback";
    case IMRT_STOP_SOLVER:
        return "solver";
    }
    return "unknown";
}

void imrt_optimize_options_default(imrt_optimize_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->solver.max_iterations = 300;
    o->solver.ftol_rel = 1e-6;
    o->solver.pgtol = 1e-8;
    o->solver.max_time_s = 0.0;
    o->ftol_window = 5;
    o->max_outer = 20;
    o->constraint_tol = 1e-3;
    o->lbfgs_memory = 0;
}

/* Infinity norm of the projected gradient P(x - g) - x for x >= 0. */
static double pg_norm(const double *x, const double *g, int32_t n)
{
    double m = 0.0;
    for (int32_t j = 0; j < n; j++) {
        const double step = x[j] - fmax(0.0, x[j] - g[j]);
        m = fmax(m, fabs(step));
    }
    return m;
}

/* Has the wall-time limit passed? In a distributed run the processes agree
 * (any one over the limit stops all), so that they take the same steps. */
static int time_up(const run_state *R)
{
    const double lim = R->o->solver.max_time_s;
    if (!(lim > 0.0))
        return 0;
    double over = now_s() - R->t0 >= lim ? 1.0 : 0.0;
    if (imrt_context_comm(R->ctx) && imrt_context_sum(R->ctx, &over, 1) != IMRT_OK)
        return 1;
    return over > 0.0;
}

static void stop_with(run_state *R, imrt_stop_reason why)
{
    if (!R->stop_set) {
        R->stop_set = 1;
        R->stop = why;
    }
    nlopt_force_stop(R->opt);
}

/* Log one iteration; returns non-zero when the callback asks to stop. */
static int log_iteration(run_state *R, const double *x, const double *g, double L)
{
    if (!R->o->log)
        return 0;
    imrt_iteration_info info;
    info.iteration = R->iterations;
    info.outer = R->outer;
    info.evaluations = R->evaluations;
    info.f = imrt_objectives_penalty(R->obj);
    info.lagrangian = L;
    info.nshares = imrt_objectives_count(R->obj);
    info.share = imrt_objectives_shares(R->obj);
    info.pg_norm = pg_norm(x, g, R->n);
    info.elapsed_s = now_s() - R->t0;
    return R->o->log(R->o->log_user, &info);
}

static double objective_cb(unsigned n, const double *x, double *grad, void *data)
{
    run_state *R = data;
    (void)n;
    if (R->failed != IMRT_OK) {
        nlopt_force_stop(R->opt);
        return HUGE_VAL;
    }
    double *g = grad ? grad : R->gtmp;
    double L;
    imrt_status st = imrt_objectives_eval(R->obj, x, &L, g);
    R->evaluations++;
    if (st != IMRT_OK) {
        R->failed = st;
        nlopt_force_stop(R->opt);
        return HUGE_VAL;
    }
    if (R->have_best && !(L < R->best))
        return L;

    /* an improvement: the next iteration */
    const int first = !R->have_best;
    R->have_best = 1;
    R->best = L;
    memcpy(R->best_x, x, (size_t)R->n * sizeof *x);
    if (!first) {
        R->round_iter++;
        R->iterations++;
    }
    const imrt_solver_settings *s = &R->o->solver;
    const int w = R->o->ftol_window;
    R->hist[R->round_iter % (w + 1)] = L;
    if (log_iteration(R, x, g, L))
        stop_with(R, IMRT_STOP_CALLBACK);
    if (s->max_iterations > 0 && R->iterations > 0)
        imrt_context_progress(R->ctx, "optimize",
                              fmin(1.0, (double)R->round_iter / (double)s->max_iterations));
    if (first)
        return L;
    if (pg_norm(x, g, R->n) <= s->pgtol * fmax(1.0, fabs(L)))
        stop_with(R, IMRT_STOP_PGTOL);
    else if (R->round_iter >= w &&
             R->hist[(R->round_iter - w) % (w + 1)] - L <= R->ftol * fmax(fabs(L), 1e-300))
        stop_with(R, IMRT_STOP_FTOL);
    else if (R->round_iter >= s->max_iterations)
        stop_with(R, IMRT_STOP_MAX_ITER);
    else if (time_up(R))
        stop_with(R, IMRT_STOP_MAX_TIME);
    return L;
}

static imrt_status check_options(const imrt_optimize_options *o)
{
    const imrt_solver_settings *s = &o->solver;
    if (s->max_iterations < 1 || s->max_iterations > 100000000)
        return imrt_error(IMRT_ERR_RANGE, "solver max_iterations = %d is outside 1..1e8",
                          s->max_iterations);
    if (!(isfinite(s->ftol_rel) && s->ftol_rel >= 0.0 && s->ftol_rel < 1.0))
        return imrt_error(IMRT_ERR_RANGE, "solver ftol_rel = %g is outside [0, 1)", s->ftol_rel);
    if (!(isfinite(s->pgtol) && s->pgtol >= 0.0))
        return imrt_error(IMRT_ERR_RANGE, "solver pgtol = %g must be finite and >= 0", s->pgtol);
    if (!(isfinite(s->max_time_s) && s->max_time_s >= 0.0))
        return imrt_error(IMRT_ERR_RANGE, "solver max_time_s = %g must be finite and >= 0",
                          s->max_time_s);
    if (o->ftol_window < 1 || o->ftol_window > 1000)
        return imrt_error(IMRT_ERR_RANGE, "ftol_window = %d is outside 1..1000", o->ftol_window);
    if (o->max_outer < 1 || o->max_outer > 1000)
        return imrt_error(IMRT_ERR_RANGE, "max_outer = %d is outside 1..1000", o->max_outer);
    if (!(isfinite(o->constraint_tol) && o->constraint_tol >= 0.0))
        return imrt_error(IMRT_ERR_RANGE, "constraint_tol = %g must be finite and >= 0",
                          o->constraint_tol);
    if (o->lbfgs_memory < 0 || o->lbfgs_memory > 10000)
        return imrt_error(IMRT_ERR_RANGE, "lbfgs_memory = %d is outside 0..10000",
                          o->lbfgs_memory);
    return IMRT_OK;
}

/* Largest relative constraint violation at the last evaluation and how
 * many constraints hold. */
static double constraint_summary(const imrt_objectives *obj, double tol, int *held)
{
    double worst = 0.0;
    *held = 0;
    const int nc = imrt_objectives_nconstraints(obj);
    for (int i = 0; i < nc; i++) {
        imrt_constraint_status st;
        if (imrt_objectives_constraint(obj, i, tol, &st) != IMRT_OK)
            continue;
        worst = i == 0 ? st.violation : fmax(worst, st.violation);
        *held += st.holds;
    }
    return worst;
}

imrt_status imrt_optimize(const imrt_context *ctx, imrt_objectives *obj,
                          const imrt_optimize_options *opt, double *x,
                          imrt_optimize_stats *stats)
{
    imrt_status status = IMRT_OK;
    run_state R;
    memset(&R, 0, sizeof R);
    R.opt = NULL;
    if (!obj || !x || !opt)
        return imrt_error(IMRT_ERR_ARG, "imrt_optimize: NULL objective set, weights or options");
    IMRT_TRY(check_options(opt));
    const int32_t n = imrt_objectives_ncols(obj);
    for (int32_t j = 0; j < n; j++)
        if (!(isfinite(x[j]) && x[j] >= 0.0))
            IMRT_FAIL(IMRT_ERR_RANGE, "start weight x[%d] = %g must be finite and >= 0", (int)j,
                      x[j]);
    R.obj = obj;
    R.ctx = ctx;
    R.o = opt;
    R.n = n;
    R.t0 = now_s();
    R.failed = IMRT_OK;
    IMRT_ALLOC(R.best_x, n);
    IMRT_ALLOC(R.gtmp, n);
    IMRT_ALLOC(R.hist, opt->ftol_window + 1);

    R.opt = nlopt_create(NLOPT_LD_LBFGS, (unsigned)n);
    if (!R.opt)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot create the NLopt L-BFGS optimiser for %d weights",
                  (int)n);
    if (nlopt_set_lower_bounds1(R.opt, 0.0) < 0 ||
        nlopt_set_min_objective(R.opt, objective_cb, &R) < 0 ||
        /* our rules stop the runs; NLopt's own tolerances only as a backstop */
        nlopt_set_ftol_rel(R.opt, 0.0) < 0 || nlopt_set_xtol_rel(R.opt, 0.0) < 0 ||
        nlopt_set_maxeval(R.opt, (int)fmin(1e9, NLOPT_MAXEVAL_FACTOR *
                                                      (double)opt->solver.max_iterations +
                                                  100.0)) < 0 ||
        (opt->lbfgs_memory > 0 &&
         nlopt_set_vector_storage(R.opt, (unsigned)opt->lbfgs_memory) < 0))
        IMRT_FAIL(IMRT_ERR_INTERNAL, "NLopt refused the L-BFGS settings");

    /* every run starts from the same multipliers: repeated runs agree */
    imrt_objectives_al_reset(obj);

    /* starting point: F for the statistics and the first log line */
    double L0;
    IMRT_TRY(imrt_objectives_eval(obj, x, &L0, R.gtmp));
    R.evaluations++;
    const double f_start = imrt_objectives_penalty(obj);

    double L_final = L0;
    const int ncons = imrt_objectives_nconstraints(obj);
    nlopt_result res = NLOPT_SUCCESS;
    int rounds = 0;
    /* With constraints, rounds whose multipliers will still change stop at a
     * looser ftol; once every constraint holds, a last round polishes at
     * the requested ftol with the multipliers as they are. */
    const double loose = fmax(opt->solver.ftol_rel, AL_ROUND_FTOL);
    int polish = ncons == 0 || !(loose > opt->solver.ftol_rel);
    for (R.outer = 0; R.outer < opt->max_outer; R.outer++) {
        rounds++;
        R.ftol = polish ? opt->solver.ftol_rel : loose;
        R.have_best = 0;
        R.round_iter = 0;
        R.stop_set = 0;
        memcpy(R.best_x, x, (size_t)n * sizeof *x);
        if (opt->solver.max_time_s > 0.0) {
            const double left = opt->solver.max_time_s - (now_s() - R.t0);
            if (time_up(&R)) {
                R.stop_set = 1;
                R.stop = IMRT_STOP_MAX_TIME;
                break;
            }
            if (!imrt_context_comm(ctx)) /* NLopt's clock would differ between processes */
                nlopt_set_maxtime(R.opt, left);
        }
        double minf = 0.0;
        res = nlopt_optimize(R.opt, x, &minf);
        if (R.failed != IMRT_OK) {
            status = R.failed; /* the evaluation recorded the message */
            goto cleanup;
        }
        if (res == NLOPT_OUT_OF_MEMORY)
            IMRT_FAIL(IMRT_ERR_NOMEM, "NLopt ran out of memory (%d weights)", (int)n);
        if (res == NLOPT_INVALID_ARGS)
            IMRT_FAIL(IMRT_ERR_INTERNAL, "NLopt reported invalid arguments");
        if (!R.stop_set)
            R.stop = res == NLOPT_MAXTIME_REACHED ? IMRT_STOP_MAX_TIME
                     : res == NLOPT_MAXEVAL_REACHED ? IMRT_STOP_MAX_ITER
                                                    : IMRT_STOP_SOLVER;
        /* the round's best point, evaluated again so that the set holds it */
        if (R.have_best)
            memcpy(x, R.best_x, (size_t)n * sizeof *x);
        for (int32_t j = 0; j < n; j++)
            x[j] = fmax(0.0, x[j]);
        IMRT_TRY(imrt_objectives_eval(obj, x, &L_final, R.gtmp));
        R.evaluations++;
        if (ncons == 0 || R.stop == IMRT_STOP_CALLBACK || R.stop == IMRT_STOP_MAX_TIME)
            break;
        int held;
        constraint_summary(obj, opt->constraint_tol, &held);
        if (polish || R.outer + 1 == opt->max_outer)
            break;
        if (held == ncons)
            polish = 1; /* the next round is the last */
        else
            imrt_objectives_al_update(obj, opt->constraint_tol);
    }

    if (stats) {
        /* the set holds the evaluation at the returned x */
        memset(stats, 0, sizeof *stats);
        stats->iterations = R.iterations;
        stats->evaluations = R.evaluations;
        stats->outer_iterations = rounds;
        stats->f = imrt_objectives_penalty(obj);
        stats->lagrangian = L_final;
        stats->f_start = f_start;
        stats->pg_norm = pg_norm(x, R.gtmp, n);
        stats->wall_s = now_s() - R.t0;
        stats->stop = R.stop;
        stats->nlopt_result = (int)res;
        stats->nconstraints = ncons;
        stats->max_violation = constraint_summary(obj, opt->constraint_tol,
                                                  &stats->constraints_held);
    }
cleanup:
    if (R.opt)
        nlopt_destroy(R.opt);
    imrt_free(R.best_x);
    imrt_free(R.gtmp);
    imrt_free(R.hist);
    return status;
}
