/*
 * engine/optimize.c - the solver: Newton on the Gauss-Newton Hessian of the
 * objectives (bound-constrained model steps by MPRGP) or NLopt L-BFGS with
 * x >= 0, inside an augmented-Lagrangian outer loop; our own stopping rules
 * (applied from the objective callback for NLopt through nlopt_force_stop),
 * the iteration log and statistics. In a distributed run every process
 * takes the same steps (L-BFGS only: the Hessian model is not distributed);
 * the wall-time rule is decided jointly (time_up) and NLopt's own clock is
 * not used.
 */
#include "imrt/optimize.h"

#include "util_impl.h"

#include <math.h>
#include <nlopt.h>
#include <string.h>
#include <time.h>

#define NLOPT_MAXEVAL_FACTOR 20 /* safety net: evaluations per allowed iteration */
#define AL_ROUND_FTOL 1e-4      /* ftol of the rounds whose multipliers will still change */
#define NEWTON_WINDOW 2         /* Newton: iterations the ftol rule looks back (at most) */
#define NEWTON_ARMIJO 1e-4      /* sufficient-decrease factor of the projected line search */
#define NEWTON_MAX_BACKTRACK 30 /* line-search trials per Newton step */
#define NEWTON_ETA_MAX 0.5      /* loosest relative CG residual (forcing term) */
#define NEWTON_AUTO_STRIDE_ROWS 200000 /* automatic subsampling from this many dij rows */
#define NEWTON_AUTO_SUBSAMPLE 40000.0  /* ... down to about this many rows per large objective */

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
    /* Newton */
    int stride;           /* Hessian subsampling */
    int hessvec;          /* Hessian-vector products */
    double hrows_sum;     /* sum of the non-zero fractions of the prepared models */
    int nprepared;        /* models prepared */
    int set_holds_x;      /* the set's last evaluation is at x (its L in L_cur, gradient in g) */
    double L_cur;
    double *g, *gt, *diag, *step, *xt; /* Newton work arrays, n each */
    double *qp;           /* Newton: model solver arrays, 10 n */
    double lam;           /* Newton: estimate of the largest eigenvalue of the scaled Hessian */
    double eta_max;       /* Newton: loosest relative model gradient of a step */
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

const char *imrt_method_name(imrt_method m)
{
    switch (m) {
    case IMRT_METHOD_AUTO:
        return "auto";
    case IMRT_METHOD_LBFGS:
        return "lbfgs";
    case IMRT_METHOD_NEWTON:
        return "newton";
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
    o->method = IMRT_METHOD_AUTO;
    o->cg_max = 20;
    o->hessian_stride = 0;
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

/* ---- projected Newton-CG ------------------------------------------------------ */

static double dot_v(const double *a, const double *b, int32_t n)
{
    double s = 0.0;
    for (int32_t j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* Stopping rules after Newton iteration R->round_iter (the set holds x). */
static int newton_should_stop(run_state *R, const double *x, const double *g, double L)
{
    const imrt_solver_settings *s = &R->o->solver;
    const int w = R->o->ftol_window < NEWTON_WINDOW ? R->o->ftol_window : NEWTON_WINDOW;
    R->hist[R->round_iter % (w + 1)] = L;
    if (log_iteration(R, x, g, L)) {
        R->stop_set = 1;
        R->stop = IMRT_STOP_CALLBACK;
        return 1;
    }
    if (s->max_iterations > 0 && R->iterations > 0)
        imrt_context_progress(R->ctx, "optimize",
                              fmin(1.0, (double)R->round_iter / (double)s->max_iterations));
    imrt_stop_reason why;
    if (pg_norm(x, g, R->n) <= s->pgtol * fmax(1.0, fabs(L)))
        why = IMRT_STOP_PGTOL;
    else if (R->round_iter >= w &&
             R->hist[(R->round_iter - w) % (w + 1)] - L <= R->ftol * fmax(fabs(L), 1e-300))
        why = IMRT_STOP_FTOL;
    else if (R->round_iter >= s->max_iterations)
        why = IMRT_STOP_MAX_ITER;
    else if (s->max_time_s > 0.0 && now_s() - R->t0 >= s->max_time_s)
        why = IMRT_STOP_MAX_TIME;
    else
        return 0;
    R->stop_set = 1;
    R->stop = why;
    return 1;
}

/* Free and chopped gradient of the scaled model at y (bounds lo):
 * phi = gr on free variables, beta = min(gr, 0) on those at their bound. */
static void split_gradient(const double *y, const double *lo, const double *gr, double *phi,
                           double *beta, int32_t n, double *pp, double *bb)
{
    double a = 0.0, b = 0.0;
    for (int32_t j = 0; j < n; j++) {
        if (y[j] > lo[j]) {
            phi[j] = gr[j];
            beta[j] = 0.0;
        } else {
            phi[j] = 0.0;
            beta[j] = fmin(gr[j], 0.0);
        }
        a += phi[j] * phi[j];
        b += beta[j] * beta[j];
    }
    *pp = a;
    *bb = b;
}

/* v_out = C H C v (C = diag(c)); tmp n. */
static imrt_status scaled_hv(run_state *R, const double *c, const double *v, double *tmp,
                             double *out)
{
    const int32_t n = R->n;
    for (int32_t j = 0; j < n; j++)
        tmp[j] = c[j] * v[j];
    IMRT_TRY_RET(imrt_objectives_hessian_vec(R->obj, tmp, out));
    R->hessvec++;
    for (int32_t j = 0; j < n; j++)
        out[j] *= c[j];
    return IMRT_OK;
}

/* The Newton step st: the minimiser of the model g's + s'Hs/2 subject to
 * x + s >= 0 in the Jacobi-scaled variables y = s / c, c = diag(H)^(-1/2),
 * by MPRGP (Dostal & Schoberl 2005: CG on the free variables, expansion by
 * a projected gradient step when CG meets a bound, proportioning steps that
 * release bound variables; when CG meets a bound, the whole CG step
 * projected onto the bounds is tried first), until the model's projected
 * gradient falls below eta times its value at s = 0 (eta = min(0.5,
 * sqrt(|pg| / |pg of the round's first step|)): loose far from the optimum,
 * tighter near it) or after cg_max iterations. pg_ref < 0 on the
 * first call; *gnorm receives the model's projected gradient at s = 0. */
static imrt_status qp_step(run_state *R, const double *x, const double *g, const double *diag,
                           double *st, double pg_ref, double *gnorm)
{
    const int32_t n = R->n;
    double *c = R->qp, *lo = c + n, *y = lo + n, *gr = y + n, *p = gr + n, *Ap = p + n,
           *phi = Ap + n, *beta = phi + n, *tmp = beta + n, *yh = tmp + n;
    for (int32_t j = 0; j < n; j++) {
        c[j] = 1.0 / sqrt(diag[j]);
        lo[j] = -x[j] / c[j];
        y[j] = 0.0;
        gr[j] = c[j] * g[j];
    }
    double pp, bb;
    split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
    const double g0 = sqrt(pp + bb);
    *gnorm = g0;
    const double ref = pg_ref > 0.0 ? pg_ref : g0;
    const double eta = fmin(R->eta_max, sqrt(g0 / fmax(ref, 1e-300)));
    const double tol2 = eta * eta * (pp + bb);
    if (!(R->lam > 0.0)) {
        /* largest eigenvalue of C H C: a few power iterations, with margin */
        for (int32_t j = 0; j < n; j++)
            p[j] = 1.0;
        double lam = 1.0;
        for (int it = 0; it < 8; it++) {
            IMRT_TRY_RET(scaled_hv(R, c, p, tmp, Ap));
            const double nrm = sqrt(dot_v(Ap, Ap, n)), pn = sqrt(dot_v(p, p, n));
            lam = nrm / fmax(pn, 1e-300);
            for (int32_t j = 0; j < n; j++)
                p[j] = Ap[j] / fmax(nrm, 1e-300);
        }
        R->lam = 1.2 * lam;
    }
    memcpy(p, phi, (size_t)n * sizeof *p);
    int k = 0;
    while (k < R->o->cg_max && pp + bb > tol2) {
        k++;
        if (bb <= pp) {
            IMRT_TRY_RET(scaled_hv(R, c, p, tmp, Ap));
            const double pAp = dot_v(p, Ap, n);
            if (!(pAp > 0.0))
                break;
            R->lam = fmax(R->lam, pAp / dot_v(p, p, n));
            const double acg = dot_v(gr, p, n) / pAp;
            double af = INFINITY;
            int32_t block = -1;
            for (int32_t j = 0; j < n; j++)
                if (p[j] > 0.0) {
                    const double a = (y[j] - lo[j]) / p[j];
                    if (a < af) {
                        af = a;
                        block = j;
                    }
                }
            if (acg <= af) {
                for (int32_t j = 0; j < n; j++) {
                    y[j] -= acg * p[j];
                    gr[j] -= acg * Ap[j];
                }
                split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
                const double gamma = dot_v(phi, Ap, n) / pAp;
                for (int32_t j = 0; j < n; j++)
                    p[j] = phi[j] - gamma * p[j];
            } else {
                {
                    /* the whole CG step, projected: many variables reach
                     * their bound at once; kept when it lowers the model
                     * below its value at the first bound */
                    double fa = 0.0;
                    for (int32_t j = 0; j < n; j++) {
                        const double ya = fmax(lo[j], y[j] - af * p[j]);
                        fa += 0.5 * ya * (gr[j] - af * Ap[j] + c[j] * g[j]);
                        yh[j] = fmax(lo[j], y[j] - acg * p[j]);
                    }
                    IMRT_TRY_RET(scaled_hv(R, c, yh, tmp, phi));
                    double fc = 0.0;
                    for (int32_t j = 0; j < n; j++)
                        fc += 0.5 * yh[j] * (phi[j] + 2.0 * c[j] * g[j]);
                    if (fc < fa) {
                        memcpy(y, yh, (size_t)n * sizeof *y);
                        for (int32_t j = 0; j < n; j++)
                            gr[j] = phi[j] + c[j] * g[j];
                        split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
                        memcpy(p, phi, (size_t)n * sizeof *p);
                        continue;
                    }
                }
                /* to the first bound, then a projected step of the free gradient */
                for (int32_t j = 0; j < n; j++) {
                    y[j] = fmax(lo[j], y[j] - af * p[j]);
                    gr[j] -= af * Ap[j];
                }
                if (block >= 0)
                    y[block] = lo[block];
                split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
                /* model value f = y'(gr + b)/2, b = c g */
                double fh = 0.0;
                for (int32_t j = 0; j < n; j++)
                    fh += 0.5 * y[j] * (gr[j] + c[j] * g[j]);
                memcpy(yh, y, (size_t)n * sizeof *y);
                for (int tries = 0; tries < 8; tries++) {
                    const double abar = 1.9 / R->lam;
                    for (int32_t j = 0; j < n; j++)
                        y[j] = fmax(lo[j], yh[j] - abar * phi[j]);
                    IMRT_TRY_RET(scaled_hv(R, c, y, tmp, Ap));
                    double fe = 0.0;
                    for (int32_t j = 0; j < n; j++) {
                        gr[j] = Ap[j] + c[j] * g[j];
                        fe += 0.5 * y[j] * (gr[j] + c[j] * g[j]);
                    }
                    if (fe <= fh)
                        break;
                    R->lam *= 2.0; /* the step was too long for the curvature */
                }
                split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
                memcpy(p, phi, (size_t)n * sizeof *p);
            }
        } else {
            /* proportioning: release variables whose bound holds them back */
            IMRT_TRY_RET(scaled_hv(R, c, beta, tmp, Ap));
            const double dAd = dot_v(beta, Ap, n);
            if (!(dAd > 0.0))
                break;
            const double a = dot_v(gr, beta, n) / dAd;
            for (int32_t j = 0; j < n; j++) {
                y[j] -= a * beta[j];
                gr[j] -= a * Ap[j];
            }
            split_gradient(y, lo, gr, phi, beta, n, &pp, &bb);
            memcpy(p, phi, (size_t)n * sizeof *p);
        }
    }
    for (int32_t j = 0; j < n; j++)
        st[j] = fmax(c[j] * y[j], -x[j]);
    return IMRT_OK;
}

/* One bound-constrained run by Newton's method on the Gauss-Newton Hessian
 * H: each step s minimises the model g's + s'Hs/2 over x + s >= 0
 * approximately (qp_step), then a backtracking line search on x + a s
 * (a <= 1 stays feasible) accepts the first point with sufficient decrease
 * of L. Every accepted step is one iteration; the stopping rules use the
 * exact L and gradient of the full dij. x is the start on entry and the
 * result on return; R->set_holds_x says whether the set's last evaluation
 * is at x. */
static imrt_status newton_round(run_state *R, double *x)
{
    imrt_status status = IMRT_OK;
    const int32_t n = R->n;
    double *g = R->g, *gt = R->gt, *diag = R->diag, *st = R->step, *xt = R->xt;
    double L = R->L_cur;
    if (!R->set_holds_x) {
        IMRT_TRY(imrt_objectives_eval(R->obj, x, &L, g));
        R->evaluations++;
        R->set_holds_x = 1;
    }
    R->round_iter = 0;
    R->hist[0] = L;
    if (log_iteration(R, x, g, L)) {
        R->stop_set = 1;
        R->stop = IMRT_STOP_CALLBACK;
        return IMRT_OK;
    }
    if (pg_norm(x, g, n) <= R->o->solver.pgtol * fmax(1.0, fabs(L))) {
        R->stop_set = 1;
        R->stop = IMRT_STOP_PGTOL;
        return IMRT_OK;
    }
    double pg0 = 0.0;
    for (;;) {
        double frac = 0.0;
        IMRT_TRY(imrt_objectives_hessian_prepare(R->obj, R->stride, diag, &frac));
        R->hrows_sum += frac;
        R->nprepared++;
        /* the step: the bound-constrained quadratic model, x + st >= 0 */
        double gnorm = 0.0;
        IMRT_TRY(qp_step(R, x, g, diag, st, pg0 == 0.0 ? -1.0 : pg0, &gnorm));
        if (pg0 == 0.0)
            pg0 = gnorm;
        /* backtracking line search (Armijo) */
        double a = 1.0, Lt = L;
        int accepted = 0;
        for (int t = 0; t < NEWTON_MAX_BACKTRACK; t++) {
            double pred = 0.0; /* first-order change along the arc */
            for (int32_t j = 0; j < n; j++) {
                xt[j] = fmax(0.0, x[j] + a * st[j]);
                pred += g[j] * (xt[j] - x[j]);
            }
            IMRT_TRY(imrt_objectives_eval(R->obj, xt, &Lt, gt));
            R->evaluations++;
            if (Lt <= L + NEWTON_ARMIJO * pred && Lt < L) {
                accepted = 1;
                break;
            }
            if (!(pred < 0.0))
                break;
            /* minimiser of the quadratic through L, slope pred/a and Lt, kept in [0.1a, 0.5a] */
            const double curv = Lt - L - pred;
            double an = curv > 0.0 ? 0.5 * a * (-pred) / curv : 0.5 * a;
            a = fmin(0.5 * a, fmax(0.1 * a, an));
            if (R->o->solver.max_time_s > 0.0 && now_s() - R->t0 >= R->o->solver.max_time_s)
                break;
        }
        if (!accepted) {
            /* no progress possible along this step: the set holds a trial
             * point, x is the best */
            R->set_holds_x = 0;
            R->stop_set = 1;
            R->stop = R->o->solver.max_time_s > 0.0 && now_s() - R->t0 >= R->o->solver.max_time_s
                          ? IMRT_STOP_MAX_TIME
                          : IMRT_STOP_SOLVER;
            break;
        }
        memcpy(x, xt, (size_t)n * sizeof *x);
        double *tmp = R->g;
        R->g = g = gt;
        R->gt = gt = tmp;
        L = Lt;
        R->round_iter++;
        R->iterations++;
        if (newton_should_stop(R, x, g, L))
            break;
    }
cleanup:
    return status;
}

/* Automatic Hessian subsampling: none below NEWTON_AUTO_STRIDE_ROWS dij
 * rows; above, the smallest lattice stride s >= 2 that leaves at most
 * NEWTON_AUTO_SUBSAMPLE rows of the largest objectives (rows / s^3). On
 * matRad's box phantom (531 441 rows) stride 3 with 20 CG steps reached the
 * same optimum as stride 2 with 40 in 2.4 s instead of 3.4 s (same F to
 * six digits; docs/performance.md). */
static int auto_stride(const imrt_objectives *obj)
{
    const double n = (double)imrt_objectives_nrows(obj);
    if (n < NEWTON_AUTO_STRIDE_ROWS)
        return 1;
    int s = 2;
    while (s < 16 && n / ((double)s * s * s) > NEWTON_AUTO_SUBSAMPLE)
        s++;
    return s;
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
    if ((unsigned)o->method > (unsigned)IMRT_METHOD_NEWTON)
        return imrt_error(IMRT_ERR_RANGE, "method = %d is not a solver (0 auto, 1 L-BFGS, 2 Newton)",
                          (int)o->method);
    if (o->cg_max < 1 || o->cg_max > 10000)
        return imrt_error(IMRT_ERR_RANGE, "cg_max = %d is outside 1..10000", o->cg_max);
    if (o->hessian_stride < 0 || o->hessian_stride > 16)
        return imrt_error(IMRT_ERR_RANGE, "hessian_stride = %d is outside 0..16",
                          o->hessian_stride);
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

    /* auto: Newton where its model is the exact Hessian (convex piecewise
     * quadratic objectives); with DVH objectives the model moves with the
     * windows and L-BFGS is cheaper per unit of progress (docs/optimization.md) */
    const int newton = opt->method == IMRT_METHOD_NEWTON ? imrt_objectives_hessian_supported(obj)
                       : opt->method == IMRT_METHOD_AUTO ? imrt_objectives_hessian_exact(obj)
                                                         : 0;
    if (newton) {
        IMRT_ALLOC(R.g, n);
        IMRT_ALLOC(R.gt, n);
        IMRT_ALLOC(R.diag, n);
        IMRT_ALLOC(R.step, n);
        IMRT_ALLOC(R.qp, 10 * (size_t)n);
        R.eta_max = NEWTON_ETA_MAX;
        IMRT_ALLOC(R.xt, n);
        R.stride = opt->hessian_stride > 0 ? opt->hessian_stride : auto_stride(obj);
    }
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
    if (newton) {
        memcpy(R.g, R.gtmp, (size_t)n * sizeof *x);
        R.L_cur = L0;
        R.set_holds_x = 1;
    }

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
        if (newton) {
            IMRT_TRY(newton_round(&R, x));
            if (!R.set_holds_x) {
                IMRT_TRY(imrt_objectives_eval(obj, x, &L_final, R.g));
                R.evaluations++;
                R.set_holds_x = 1;
            } else {
                L_final = R.hist[R.round_iter % (IMRT_MIN(opt->ftol_window, NEWTON_WINDOW) + 1)];
            }
            memcpy(R.gtmp, R.g, (size_t)n * sizeof *x);
            R.L_cur = L_final;
            if (ncons == 0 || R.stop == IMRT_STOP_CALLBACK || R.stop == IMRT_STOP_MAX_TIME)
                break;
            int held_n;
            constraint_summary(obj, opt->constraint_tol, &held_n);
            if (polish || R.outer + 1 == opt->max_outer)
                break;
            if (held_n == ncons) {
                polish = 1;
            } else {
                imrt_objectives_al_update(obj, opt->constraint_tol);
                R.set_holds_x = 0; /* L and its gradient changed with the multipliers */
            }
            continue;
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
        stats->method = newton ? IMRT_METHOD_NEWTON : IMRT_METHOD_LBFGS;
        stats->hessian_products = R.hessvec;
        stats->hessian_rows = R.nprepared > 0 ? R.hrows_sum / R.nprepared : 0.0;
    }
cleanup:
    if (R.opt)
        nlopt_destroy(R.opt);
    imrt_free(R.best_x);
    imrt_free(R.gtmp);
    imrt_free(R.hist);
    imrt_free(R.g);
    imrt_free(R.gt);
    imrt_free(R.diag);
    imrt_free(R.step);
    imrt_free(R.qp);
    imrt_free(R.xt);
    return status;
}
