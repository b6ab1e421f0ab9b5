/*
 * imrt/optimize.h - fluence-map optimisation: minimise the objective set's
 * F(x) over beamlet weights x >= 0, hard constraints by an
 * augmented-Lagrangian outer loop, an iteration log through a caller
 * callback, and statistics.
 *
 * Solvers (imrt_method): a Newton method on the Gauss-Newton Hessian of
 * the objectives (imrt_objectives_hessian_*), whose steps minimise the
 * quadratic model under x >= 0 by a bound-constrained CG (MPRGP) with
 * Hessian-vector products over a subsample of the dij rows, followed by a
 * line search on the exact L; and NLopt's L-BFGS (NLOPT_LD_LBFGS, lower
 * bounds 0). By default Newton runs when its model is the exact Hessian
 * (no DVH or gEUD objective), L-BFGS otherwise. docs/optimization.md has
 * the details and the measurements behind that choice.
 *
 * Pipeline: imrt_objectives_create -> imrt_objectives_default_start ->
 * imrt_optimize -> imrt_spmv_dose (the dose of the optimised weights).
 *
 * Iterations: Newton: one accepted step. L-BFGS: NLopt does not report its
 * internal iterations, so an iteration there is an evaluation that lowers
 * the best value found so far (every accepted L-BFGS step is one; a line
 * search that improves twice counts twice). Iteration 0 is the starting
 * point. The log therefore shows a strictly decreasing L.
 *
 * Stopping rules of each run (the first that holds ends it), always on the
 * exact L and gradient of the whole dij:
 *   ftol:   L(i - w) - L(i) <= ftol_rel * max(|L(i)|, 1e-300) for the
 *           last w iterations (relative change below ftol_rel over a few
 *           iterations): w = ftol_window for L-BFGS, min(ftol_window, 2)
 *           for Newton (one Newton step does the work of many);
 *   pgtol:  ||P(x - grad) - x||_inf <= pgtol * max(1, |L|), the projected
 *           gradient of the bound-constrained problem;
 *   iterations: max_iterations iterations in this run;
 *   time:   max_time_s of wall time since imrt_optimize started (whole run);
 *   callback: the log callback returned non-zero;
 *   solver: the solver cannot make progress (Newton: no step length gives
 *           a sufficient decrease; NLopt: its own tolerances or a line
 *           search that cannot make progress in floating point).
 * With hard constraints the outer loop repeats runs (warm started)
 * after each multiplier update until every constraint holds within
 * constraint_tol (relative to its bound), max_outer rounds, or time/callback
 * ends it. Those rounds use ftol = max(ftol_rel, 1e-4); once every
 * constraint holds, one last round polishes at ftol_rel without changing
 * the multipliers.
 *
 * Units: x in the dij's weight units; F, L in Gy^2 (times objective weight
 * units); times in seconds (monotonic clock).
 * Ownership: nothing is kept after imrt_optimize returns (the objective set
 * keeps the Newton solver's compact row copy for later runs). The library
 * never prints; the caller's callback decides what and how often to log.
 * Thread safety: one optimisation per objective set at a time.
 */
#ifndef IMRT_OPTIMIZE_H
#define IMRT_OPTIMIZE_H

#include "imrt/context.h"
#include "imrt/objectives.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One log line, passed to the callback at every iteration (and for the
 * starting point of each round). Pointers are valid during the call only. */
typedef struct {
    int iteration;        /* 0 = starting point of the first round, then 1, 2, ... (whole run) */
    int outer;            /* augmented-Lagrangian round, 0-based (always 0 without constraints) */
    int evaluations;      /* F/gradient evaluations so far (whole run) */
    double f;             /* F: the penalties, Gy^2 */
    double lagrangian;    /* L: F plus the constraint terms (= F without constraints) */
    int nshares;          /* number of objective definitions */
    const double *share;  /* share of each definition, in definition order */
    double pg_norm;       /* projected-gradient infinity norm of L */
    double elapsed_s;     /* wall time since imrt_optimize started */
} imrt_iteration_info;

/* Log callback; return non-zero to stop the optimisation (IMRT_STOP_CALLBACK). */
typedef int (*imrt_iteration_fn)(void *user, const imrt_iteration_info *info);

/* Solver of the bound-constrained runs. */
typedef enum {
    IMRT_METHOD_AUTO = 0,   /* Newton when every objective is convex piecewise quadratic
                               (imrt_objectives_hessian_exact), else L-BFGS */
    IMRT_METHOD_LBFGS = 1,  /* NLopt's L-BFGS with lower bounds 0 */
    IMRT_METHOD_NEWTON = 2  /* Newton (also with DVH objectives; L-BFGS for gEUD objectives) */
} imrt_method;

typedef struct {
    imrt_solver_settings solver; /* max_iterations (per L-BFGS run, >= 1), ftol_rel (>= 0),
                                    pgtol (>= 0), max_time_s (>= 0, 0 = none) */
    int ftol_window;             /* iterations the ftol rule looks back, >= 1, default 5 */
    int max_outer;               /* augmented-Lagrangian rounds, >= 1, default 20 */
    double constraint_tol;       /* relative tolerance for "holds", >= 0, default 1e-3 */
    int lbfgs_memory;            /* L-BFGS correction pairs, 0 = NLopt's default */
    imrt_method method;          /* default IMRT_METHOD_AUTO */
    int cg_max;                  /* Newton: CG iterations per Newton step, 1..10000, default 20 */
    int hessian_stride;          /* Newton: Hessian row subsampling (see
                                    imrt_objectives_hessian_prepare), 0 = automatic, 1 = exact */
    imrt_iteration_fn log;       /* may be NULL */
    void *log_user;              /* passed to log */
} imrt_optimize_options;

/* Defaults: the plan defaults of imrt_solver_settings (300 iterations,
 * ftol_rel 1e-6, pgtol 1e-8, no time limit) and the values above
 * (automatic Hessian subsampling: stride 2 from 200 000 dij rows, else 1). */
void imrt_optimize_options_default(imrt_optimize_options *o);

typedef enum {
    IMRT_STOP_FTOL = 0,     /* relative change of L below ftol_rel over ftol_window iterations */
    IMRT_STOP_PGTOL = 1,    /* projected-gradient norm below pgtol */
    IMRT_STOP_MAX_ITER = 2, /* iteration limit */
    IMRT_STOP_MAX_TIME = 3, /* wall-time limit */
    IMRT_STOP_CALLBACK = 4, /* the log callback asked to stop */
    IMRT_STOP_SOLVER = 5    /* NLopt stopped on its own (converged or roundoff-limited) */
} imrt_stop_reason;

/* Short name of a stop reason ("ftol", "pgtol", "max_iterations", "max_time",
 * "callback", "solver"). */
const char *imrt_stop_reason_name(imrt_stop_reason r);

typedef struct {
    int iterations;        /* over all rounds */
    int evaluations;       /* F/gradient evaluations over all rounds */
    int outer_iterations;  /* L-BFGS runs (augmented-Lagrangian rounds) */
    double f;              /* final F (penalties) */
    double lagrangian;     /* final L */
    double f_start;        /* F at the starting point */
    double pg_norm;        /* final projected-gradient infinity norm of L */
    double wall_s;         /* wall time of imrt_optimize */
    imrt_stop_reason stop; /* why the last L-BFGS run ended */
    int nlopt_result;      /* NLopt's return code of the last run (L-BFGS only) */
    int nconstraints;      /* hard constraints */
    int constraints_held;  /* how many hold within constraint_tol at the end */
    double max_violation;  /* largest relative violation at the end (<= 0: all hold exactly) */
    imrt_method method;    /* the solver that ran (LBFGS or NEWTON) */
    int hessian_products;  /* Newton: Hessian-vector products (passes over the rows with
                              curvature, or over the subsample) */
    double hessian_rows;   /* Newton: mean fraction of the dij's non-zeros a product reads */
} imrt_optimize_stats;

/* "lbfgs", "newton" or "auto". */
const char *imrt_method_name(imrt_method m);

/* Optimise the weights x (ncols entries; in: the start, finite and >= 0;
 * out: the optimum, >= 0). Constraint multipliers start from their initial
 * values (imrt_objectives_al_reset). On return the objective set holds the
 * final evaluation (shares, constraint status via imrt_objectives_constraint).
 * ctx (may be NULL) receives progress reports ("optimize", fraction of the
 * iteration limit). stats may be NULL.
 * Errors: IMRT_ERR_ARG (NULL obj/x/opt), IMRT_ERR_RANGE (a start weight that
 * is negative or not finite, an option outside its range; the message names
 * it), IMRT_ERR_NUMERIC (F not finite), IMRT_ERR_NOMEM, IMRT_ERR_INTERNAL
 * (NLopt refused its arguments). Stopping on a limit is not an error. */
imrt_status imrt_optimize(const imrt_context *ctx, imrt_objectives *obj,
                          const imrt_optimize_options *opt, double *x,
                          imrt_optimize_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_OPTIMIZE_H */
