/*
 * tests/test_optimize.c - the solver: the known optimum of a small weighted
 * least-squares problem (LAPACKE_dgels), the non-negative optimum when the
 * unconstrained one has negative weights (active-set enumeration with
 * LAPACKE_dgels), x >= 0, a monotone log on a convex case, a hard max-dose
 * constraint that holds at the end, stopping rules, determinism for a fixed
 * thread count and agreement across thread counts.
 */
#include "imrt/objectives.h"
#include "imrt/optimize.h"
#include "imrt/phantom.h"
#include "imrt/spmv.h"

#include "test_dij_util.h"
#include "test_util.h"

#include <lapacke.h>
#include <math.h>

/* ---- a least-squares problem built from structures ------------------------ */

#define NS 4  /* structures */
#define NR 12 /* rows per structure */
#define NB 8  /* beamlets */

typedef struct {
    imrt_dij D;
    imrt_phantom *ph;
    imrt_objective_def defs[NS];
} lsq;

static int block_member(int s, int64_t r) { return r / NR == s; }

/* Structure s = rows s*NR .. s*NR+NR-1; beamlets 2s and 2s+1 aim at it,
 * every beamlet scatters a little everywhere. Objective s: squared
 * deviation from dref[s] with weight w[s]. */
static void make_lsq(lsq *P, uint64_t seed, const double dref[NS], const double w[NS])
{
    double A[NS * NR * NB];
    uint64_t st = seed;
    for (int r = 0; r < NS * NR; r++)
        for (int j = 0; j < NB; j++)
            A[r * NB + j] = 0.05 + 0.15 * tdu_uniform(&st) +
                            (j / 2 == r / NR ? 0.4 + 0.6 * tdu_uniform(&st) : 0.0);
    assert_int_equal(tdu_from_dense(&P->D, NS * NR, NB, A), 0);
    assert_ok(imrt_phantom_create(&P->D.grid, "lsq", 1.0f, &P->ph));
    for (int s = 0; s < NS; s++) {
        char name[16];
        snprintf(name, sizeof name, "S%d", s);
        int idx;
        assert_ok(imrt_phantom_add_structure(P->ph, name, s == 0 ? IMRT_KIND_TARGET : IMRT_KIND_OAR,
                                             1 + s, &idx));
        for (int64_t r = 0; r < P->D.nrows; r++)
            if (block_member(s, r))
                P->ph->structures[idx].mask[P->D.voxel[r]] = 1;
        imrt_structure_recount(P->ph, &P->ph->structures[idx]);
        memset(&P->defs[s], 0, sizeof P->defs[s]);
        snprintf(P->defs[s].structure, sizeof P->defs[s].structure, "%s", name);
        P->defs[s].kind = IMRT_OBJ_SQ_DEVIATION;
        P->defs[s].weight = w[s];
        P->defs[s].dose = dref[s];
    }
}

static void free_lsq(lsq *P)
{
    imrt_phantom_destroy(&P->ph);
    tdu_free(&P->D);
}

/* Weighted least squares over the columns in `use` (bit j = column j),
 * solved by LAPACKE_dgels on the float values the dij stores:
 * min sum_s (w_s/NR) sum_{i in s} (A_i x - dref_s)^2. Unused columns get 0. */
static void lsq_solve(const lsq *P, unsigned use, double x[NB])
{
    const int m = NS * NR;
    int cols[NB], nc = 0;
    for (int j = 0; j < NB; j++)
        if (use & (1u << j))
            cols[nc++] = j;
    double A[NS * NR * NB], b[NS * NR];
    memset(A, 0, sizeof A);
    for (int r = 0; r < m; r++) {
        const int s = r / NR;
        const double sw = sqrt(P->defs[s].weight / NR);
        for (int64_t k = P->D.rowptr[r]; k < P->D.rowptr[r + 1]; k++)
            for (int c = 0; c < nc; c++)
                if (cols[c] == P->D.col[k])
                    A[r * nc + c] = sw * (double)P->D.val[k];
        b[r] = sw * P->defs[s].dose;
    }
    lapack_int info = LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', m, nc, 1, A, nc, b, 1);
    assert_int_equal(info, 0);
    for (int j = 0; j < NB; j++)
        x[j] = 0.0;
    for (int c = 0; c < nc; c++)
        x[cols[c]] = b[c];
}

/* Gradient of the weighted least-squares function, by hand. */
static void lsq_grad(const lsq *P, const double x[NB], double g[NB])
{
    for (int j = 0; j < NB; j++)
        g[j] = 0.0;
    for (int r = 0; r < NS * NR; r++) {
        const int s = r / NR;
        double d = 0.0;
        for (int64_t k = P->D.rowptr[r]; k < P->D.rowptr[r + 1]; k++)
            d += (double)P->D.val[k] * x[P->D.col[k]];
        const double e = 2.0 * P->defs[s].weight / NR * (d - P->defs[s].dose);
        for (int64_t k = P->D.rowptr[r]; k < P->D.rowptr[r + 1]; k++)
            g[P->D.col[k]] += e * (double)P->D.val[k];
    }
}

/* The non-negative least-squares optimum by enumerating active sets: the
 * subset whose least-squares solution is positive and whose left-out
 * columns have non-negative gradient (KKT; unique for a full-rank problem). */
static void nnls_enumerate(const lsq *P, double x[NB])
{
    for (unsigned use = (1u << NB) - 1; use > 0; use--) {
        double y[NB], g[NB];
        lsq_solve(P, use, y);
        int ok = 1;
        for (int j = 0; j < NB && ok; j++)
            if ((use & (1u << j)) && !(y[j] > 0.0))
                ok = 0;
        if (!ok)
            continue;
        lsq_grad(P, y, g);
        double gmax = 0.0;
        for (int j = 0; j < NB; j++)
            gmax = fmax(gmax, fabs(g[j]));
        for (int j = 0; j < NB && ok; j++)
            if (!(use & (1u << j)) && g[j] < -1e-9 * fmax(gmax, 1.0))
                ok = 0;
        if (ok) {
            memcpy(x, y, sizeof y);
            return;
        }
    }
    fail_msg("no active set satisfies the KKT conditions");
}

typedef struct {
    int n;
    int outer[4096];
    double L[4096];
    double f[4096];
    double share_sum[4096];
    int stop_at; /* stop when this iteration is reached (0 = never) */
} log_rec;

static int record(void *user, const imrt_iteration_info *info)
{
    log_rec *lr = user;
    if (lr->n < 4096) {
        double s = 0.0;
        for (int k = 0; k < info->nshares; k++)
            s += info->share[k];
        lr->outer[lr->n] = info->outer;
        lr->L[lr->n] = info->lagrangian;
        lr->f[lr->n] = info->f;
        lr->share_sum[lr->n] = s;
        lr->n++;
    }
    return lr->stop_at > 0 && info->iteration >= lr->stop_at;
}

/* The solver the tests run with (each test runs once per solver). */
static imrt_method g_method = IMRT_METHOD_LBFGS;

static int use_lbfgs(void **state)
{
    (void)state;
    g_method = IMRT_METHOD_LBFGS;
    return 0;
}

static int use_newton(void **state)
{
    (void)state;
    g_method = IMRT_METHOD_NEWTON;
    return 0;
}

static void tight(imrt_optimize_options *o)
{
    imrt_optimize_options_default(o);
    o->method = g_method;
    o->solver.max_iterations = 5000;
    o->solver.ftol_rel = 1e-15;
    o->solver.pgtol = 1e-13;
}

static double rel_diff(const double *a, const double *b, int n)
{
    double d = 0.0, m = 0.0;
    for (int j = 0; j < n; j++) {
        d = fmax(d, fabs(a[j] - b[j]));
        m = fmax(m, fabs(b[j]));
    }
    return d / m;
}

static void test_least_squares_optimum(void **state)
{
    (void)state;
    const double dref[NS] = {2.0, 1.0, 1.5, 0.8}, w[NS] = {10.0, 1.0, 2.0, 1.0};
    lsq P;
    double xls[NB];
    int found = 0;
    for (uint64_t seed = 1; seed < 200 && !found; seed++) {
        make_lsq(&P, seed, dref, w);
        lsq_solve(&P, (1u << NB) - 1, xls);
        found = 1;
        for (int j = 0; j < NB; j++)
            found &= xls[j] > 0.05;
        if (!found)
            free_lsq(&P);
    }
    assert_true(found); /* a problem whose unconstrained optimum is positive */
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, P.defs, NS, &s));
    double x[NB];
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    imrt_optimize_options o;
    tight(&o);
    log_rec *lr = imrt_calloc(1, sizeof *lr);
    o.log = record;
    o.log_user = lr;
    imrt_optimize_stats st;
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    /* the known optimum */
    print_message("least squares: |x - x_dgels|/|x| = %.3g after %d iterations (%s)\n",
                  rel_diff(x, xls, NB), st.iterations, imrt_stop_reason_name(st.stop));
    if (!(rel_diff(x, xls, NB) < 1e-6))
        fail_msg("x differs from the LAPACKE solution by %.3g (relative)", rel_diff(x, xls, NB));
    for (int j = 0; j < NB; j++)
        assert_true(x[j] >= 0.0);
    /* F at the optimum equals the least-squares residual */
    double g[NB], fls = 0.0;
    for (int r = 0; r < NS * NR; r++) {
        double d = 0.0;
        for (int64_t k = P.D.rowptr[r]; k < P.D.rowptr[r + 1]; k++)
            d += (double)P.D.val[k] * xls[P.D.col[k]];
        fls += w[r / NR] / NR * (d - dref[r / NR]) * (d - dref[r / NR]);
    }
    assert_close(st.f, fls, 1e-9, 0);
    lsq_grad(&P, x, g);
    /* monotone decrease of the logged values (convex case, one round) */
    assert_true(lr->n >= 3);
    assert_int_equal(lr->n, st.iterations + 1);
    for (int i = 1; i < lr->n; i++) {
        assert_true(lr->L[i] < lr->L[i - 1]);
        assert_int_equal(lr->outer[i], 0);
        assert_close(lr->f[i], lr->L[i], 1e-15, 0);        /* no constraints: L = F */
        assert_close(lr->share_sum[i], lr->f[i], 1e-12, 0); /* shares add up to F */
    }
    assert_close(lr->L[0], st.f_start, 1e-15, 0);
    assert_true(st.f < st.f_start);
    assert_true(st.evaluations > st.iterations);
    assert_int_equal(st.outer_iterations, 1);
    assert_int_equal(st.nconstraints, 0);
    imrt_free(lr);
    imrt_objectives_destroy(&s);
    free_lsq(&P);
}

static void test_bounds_active_nnls(void **state)
{
    (void)state;
    /* structure 1 wants far less dose than its neighbours give it: the
     * unconstrained optimum needs negative weights */
    const double dref[NS] = {2.0, 0.05, 1.5, 0.8}, w[NS] = {1.0, 30.0, 1.0, 1.0};
    lsq P;
    double xls[NB];
    int found = 0;
    for (uint64_t seed = 1; seed < 200 && !found; seed++) {
        make_lsq(&P, seed, dref, w);
        lsq_solve(&P, (1u << NB) - 1, xls);
        for (int j = 0; j < NB; j++)
            found |= xls[j] < -0.01;
        if (!found)
            free_lsq(&P);
    }
    assert_true(found);
    double xnn[NB];
    nnls_enumerate(&P, xnn);
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, P.defs, NS, &s));
    double x[NB];
    assert_ok(imrt_objectives_default_start(s, 1.0, x));
    imrt_optimize_options o;
    tight(&o);
    imrt_optimize_stats st;
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    int zeros = 0;
    for (int j = 0; j < NB; j++) {
        assert_true(x[j] >= 0.0); /* exactly, no negative rounding */
        zeros += xnn[j] == 0.0;
    }
    assert_true(zeros >= 1); /* the bound is active at the optimum */
    double xmax = 0.0;
    for (int j = 0; j < NB; j++)
        xmax = fmax(xmax, xnn[j]);
    for (int j = 0; j < NB; j++)
        assert_close(x[j], xnn[j], 0, 1e-6 * xmax);
    imrt_objectives_destroy(&s);
    free_lsq(&P);
}

/* ---- hard max-dose constraint ---------------------------------------------- */

/* PTV rows 0..29 want 60 Gy; OAR rows 30..49 get much dose from beamlets
 * 0-3 and little from 4-7. */
static int ptv_oar_member(int s, int64_t r) { return s == 0 ? r < 30 : r >= 30; }

static void make_ptv_oar(imrt_dij *D, imrt_phantom **ph, uint64_t seed)
{
    double A[50 * 8];
    uint64_t st = seed;
    for (int r = 0; r < 50; r++)
        for (int j = 0; j < 8; j++) {
            double u = tdu_uniform(&st);
            A[r * 8 + j] = r < 30 ? 0.2 + 0.8 * u : (j < 4 ? 0.5 + 0.5 * u : 0.02 + 0.08 * u);
        }
    assert_int_equal(tdu_from_dense(D, 50, 8, A), 0);
    assert_ok(imrt_phantom_create(&D->grid, "po", 1.0f, ph));
    const char *names[2] = {"PTV", "OAR"};
    for (int s = 0; s < 2; s++) {
        int idx;
        assert_ok(imrt_phantom_add_structure(*ph, names[s], s ? IMRT_KIND_OAR : IMRT_KIND_TARGET,
                                             1 + s, &idx));
        for (int64_t r = 0; r < D->nrows; r++)
            if (ptv_oar_member(s, r))
                (*ph)->structures[idx].mask[D->voxel[r]] = 1;
        imrt_structure_recount(*ph, &(*ph)->structures[idx]);
    }
}

static double oar_max(const imrt_dij *D, const double *x)
{
    double d[50], m = 0.0;
    assert_ok(imrt_spmv_dose(NULL, D, x, d));
    for (int r = 30; r < 50; r++)
        m = fmax(m, d[r]);
    return m;
}

static void test_max_dose_constraint_holds(void **state)
{
    (void)state;
    imrt_dij D;
    imrt_phantom *ph = NULL;
    make_ptv_oar(&D, &ph, 3);
    imrt_objective_def d[3];
    memset(d, 0, sizeof d);
    snprintf(d[0].structure, sizeof d[0].structure, "PTV");
    d[0].kind = IMRT_OBJ_SQ_DEVIATION;
    d[0].weight = 10.0;
    d[0].dose = 60.0;
    snprintf(d[1].structure, sizeof d[1].structure, "OAR");
    d[1].kind = IMRT_OBJ_SQ_OVERDOSE;
    d[1].weight = 1.0;
    d[1].dose = 20.0;
    imrt_optimize_options o;
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_iterations = 1000;
    o.solver.ftol_rel = 1e-10;
    /* without the constraint the OAR maximum is far above the limit */
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 2, &s));
    double x[8];
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    imrt_optimize_stats st;
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    const double free_max = oar_max(&D, x);
    const double free_f = st.f;
    imrt_objectives_destroy(&s);
    const double limit = 0.6 * free_max;
    /* the same plan with a hard maximum of `limit` on the OAR */
    snprintf(d[2].structure, sizeof d[2].structure, "OAR");
    d[2].kind = IMRT_OBJ_SQ_OVERDOSE;
    d[2].dose = limit;
    d[2].constraint = 1;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 3, &s));
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    log_rec *lr = imrt_calloc(1, sizeof *lr);
    o.log = record;
    o.log_user = lr;
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    const double con_max = oar_max(&D, x);
    print_message("max-dose constraint: free max %.3f Gy, limit %.3f Gy, final max %.4f Gy "
                  "(%+.3f %%), %d rounds, %d iterations\n",
                  free_max, limit, con_max, 100.0 * (con_max / limit - 1.0), st.outer_iterations,
                  st.iterations);
    assert_true(con_max <= limit * 1.005);
    assert_true(con_max >= limit * 0.95); /* active, not over-satisfied */
    assert_int_equal(st.nconstraints, 1);
    assert_int_equal(st.constraints_held, 1);
    assert_true(st.max_violation <= o.constraint_tol);
    imrt_constraint_status cs;
    assert_ok(imrt_objectives_constraint(s, 0, 0.005, &cs));
    assert_int_equal(cs.def, 2);
    assert_true(cs.holds);
    assert_close(cs.value, con_max, 1e-12, 0);
    assert_true(st.f > free_f); /* the constraint costs objective value */
    for (int j = 0; j < 8; j++)
        assert_true(x[j] >= 0.0);
    assert_true(st.outer_iterations > 1);
    assert_true(lr->outer[lr->n - 1] == st.outer_iterations - 1);
    imrt_free(lr);
    imrt_objectives_destroy(&s);
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}

/* ---- stopping rules and option checks ---------------------------------------- */

static void test_stopping_rules(void **state)
{
    (void)state;
    const double dref[NS] = {2.0, 1.0, 1.5, 0.8}, w[NS] = {10.0, 1.0, 2.0, 1.0};
    lsq P;
    make_lsq(&P, 7, dref, w);
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, P.defs, NS, &s));
    double x[NB];
    imrt_optimize_options o;
    imrt_optimize_stats st;
    /* iteration limit */
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_iterations = 3;
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    assert_int_equal(st.stop, IMRT_STOP_MAX_ITER);
    assert_int_equal(st.iterations, 3);
    assert_string_equal(imrt_stop_reason_name(st.stop), "max_iterations");
    /* the callback stops it */
    log_rec *lr = imrt_calloc(1, sizeof *lr);
    lr->stop_at = 2;
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.log = record;
    o.log_user = lr;
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    assert_int_equal(st.stop, IMRT_STOP_CALLBACK);
    assert_int_equal(st.iterations, 2);
    /* wall-time limit */
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_time_s = 1e-9;
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    assert_int_equal(st.stop, IMRT_STOP_MAX_TIME);
    /* default tolerances: a convergence rule ends it, near the optimum */
    imrt_optimize_options_default(&o);
    o.method = g_method;
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    assert_true(st.stop == IMRT_STOP_FTOL || st.stop == IMRT_STOP_PGTOL ||
                st.stop == IMRT_STOP_SOLVER);
    double xls[NB];
    lsq_solve(&P, (1u << NB) - 1, xls);
    double fls = 0.0;
    {
        double g[NB];
        lsq_grad(&P, xls, g);
        (void)g;
        for (int r = 0; r < NS * NR; r++) {
            double dd = 0.0;
            for (int64_t k = P.D.rowptr[r]; k < P.D.rowptr[r + 1]; k++)
                dd += (double)P.D.val[k] * xls[P.D.col[k]];
            fls += w[r / NR] / NR * (dd - dref[r / NR]) * (dd - dref[r / NR]);
        }
    }
    if (xls[0] > 0 && xls[1] > 0 && xls[2] > 0 && xls[3] > 0 && xls[4] > 0 && xls[5] > 0 &&
        xls[6] > 0 && xls[7] > 0)
        assert_close(st.f, fls, 1e-5, 0);
    /* option and start checks */
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.ftol_rel = -1.0;
    assert_int_equal(imrt_optimize(NULL, s, &o, x, &st), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "ftol_rel = -1"));
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_iterations = 0;
    assert_int_equal(imrt_optimize(NULL, s, &o, x, &st), IMRT_ERR_RANGE);
    imrt_optimize_options_default(&o);
    o.method = g_method;
    x[5] = -0.5;
    assert_int_equal(imrt_optimize(NULL, s, &o, x, &st), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "x[5] = -0.5"));
    assert_int_equal(imrt_optimize(NULL, NULL, &o, x, &st), IMRT_ERR_ARG);
    /* allocation failures are reported, nothing leaks */
    assert_ok(imrt_objectives_default_start(s, 2.0, x));
    for (long k = 1; k <= 3; k++) {
        imrt_alloc_fail_after(k);
        imrt_status stt = imrt_optimize(NULL, s, &o, x, &st);
        imrt_alloc_fail_after(0);
        assert_int_equal(stt, IMRT_ERR_NOMEM);
    }
    imrt_free(lr);
    imrt_objectives_destroy(&s);
    free_lsq(&P);
}

/* ---- determinism ----------------------------------------------------------------- */

static int rand_member(int s, int64_t r)
{
    if (s == 0)
        return r % 4 != 3;
    if (s == 1)
        return r % 6 < 2;
    return 1;
}

/* A sparse random problem large enough for the kernels to split work. */
static void make_random_plan(imrt_dij *D, imrt_phantom **ph)
{
    assert_int_equal(tdu_random(D, 3000, 60, 0.2, 0.05, 1.0, 0, 99), 0);
    assert_ok(imrt_phantom_create(&D->grid, "rp", 1.0f, ph));
    const char *names[3] = {"PTV", "OAR", "BODY"};
    const imrt_structure_kind kinds[3] = {IMRT_KIND_TARGET, IMRT_KIND_OAR, IMRT_KIND_BODY};
    for (int s = 0; s < 3; s++) {
        int idx;
        assert_ok(imrt_phantom_add_structure(*ph, names[s], kinds[s], 1 + s, &idx));
        for (int64_t r = 0; r < D->nrows; r++)
            if (rand_member(s, r))
                (*ph)->structures[idx].mask[D->voxel[r]] = 1;
        imrt_structure_recount(*ph, &(*ph)->structures[idx]);
    }
}

static void set_def(imrt_objective_def *d, const char *st, imrt_objective_kind k, double w,
                    double dose)
{
    memset(d, 0, sizeof *d);
    snprintf(d->structure, sizeof d->structure, "%s", st);
    d->kind = k;
    d->weight = w;
    d->dose = dose;
}

static void run_plan(imrt_dij *D, imrt_phantom *ph, const imrt_objective_def *d, int nd,
                     int threads, const imrt_optimize_options *o, double *x)
{
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_ok(imrt_context_set_threads(ctx, threads));
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(ctx, D, ph, d, nd, &s));
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    imrt_optimize_stats st;
    assert_ok(imrt_optimize(ctx, s, o, x, &st));
    imrt_objectives_destroy(&s);
    imrt_context_destroy(&ctx);
}

static void test_determinism(void **state)
{
    (void)state;
    imrt_dij D;
    imrt_phantom *ph = NULL;
    make_random_plan(&D, &ph);
    const int n = D.ncols;
    double *x1 = imrt_calloc((size_t)n, sizeof(double));
    double *x2 = imrt_calloc((size_t)n, sizeof(double));
    /* every kind of term, nonconvex included: bitwise equal for the same
     * thread count */
    imrt_objective_def d[6];
    set_def(&d[0], "PTV", IMRT_OBJ_SQ_UNDERDOSE, 10, 60);
    set_def(&d[1], "PTV", IMRT_OBJ_SQ_OVERDOSE, 10, 63);
    set_def(&d[2], "OAR", IMRT_OBJ_MAX_DVH, 2, 30);
    d[2].volume_pct = 30;
    set_def(&d[3], "OAR", IMRT_OBJ_GEUD, 1, 25);
    d[3].a = 8;
    set_def(&d[4], "BODY", IMRT_OBJ_MEAN, 1, 20);
    d[4].at_most = 1;
    set_def(&d[5], "OAR", IMRT_OBJ_SQ_OVERDOSE, 0, 45);
    d[5].constraint = 1;
    imrt_optimize_options o;
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_iterations = 60;
    for (int threads = 1; threads <= 2; threads++) {
        run_plan(&D, ph, d, 6, threads, &o, x1);
        run_plan(&D, ph, d, 6, threads, &o, x2);
        assert_memory_equal(x1, x2, (size_t)n * sizeof(double));
    }
    /* without the gEUD term (the Newton solver covers every other kind) */
    d[3] = d[5];
    for (int threads = 1; threads <= 2; threads++) {
        run_plan(&D, ph, d, 5, threads, &o, x1);
        run_plan(&D, ph, d, 5, threads, &o, x2);
        assert_memory_equal(x1, x2, (size_t)n * sizeof(double));
    }
    /* a strictly convex plan converged tightly: 1 and 2 threads agree */
    imrt_objective_def c[3];
    set_def(&c[0], "PTV", IMRT_OBJ_SQ_DEVIATION, 10, 60);
    set_def(&c[1], "OAR", IMRT_OBJ_SQ_DEVIATION, 1, 20);
    set_def(&c[2], "BODY", IMRT_OBJ_SQ_DEVIATION, 0.5, 30);
    tight(&o);
    run_plan(&D, ph, c, 3, 1, &o, x1);
    run_plan(&D, ph, c, 3, 2, &o, x2);
    double e = rel_diff(x2, x1, n);
    print_message("1 vs 2 threads: largest weight difference %.3g (relative)\n", e);
    assert_true(e < 1e-6);
    imrt_free(x1), imrt_free(x2);
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}


/* Other constraint kinds on the same plan: a mean-dose limit, a DVH point
 * and a minimum dose, each reported as holding at the end. */
static void test_other_constraints_hold(void **state)
{
    (void)state;
    imrt_dij D;
    imrt_phantom *ph = NULL;
    make_ptv_oar(&D, &ph, 5);
    imrt_optimize_options o;
    imrt_optimize_options_default(&o);
    o.method = g_method;
    o.solver.max_iterations = 1000;
    o.solver.ftol_rel = 1e-10;
    imrt_objective_def d[3];
    set_def(&d[0], "PTV", IMRT_OBJ_SQ_DEVIATION, 10, 60);
    set_def(&d[1], "OAR", IMRT_OBJ_SQ_OVERDOSE, 1, 20);
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 2, &s));
    double x[8], dose[50];
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    imrt_optimize_stats st;
    assert_ok(imrt_optimize(NULL, s, &o, x, &st));
    assert_ok(imrt_spmv_dose(NULL, &D, x, dose));
    double free_mean = 0.0, free_min = 1e300;
    for (int r = 30; r < 50; r++)
        free_mean += dose[r] / 20.0;
    for (int r = 0; r < 30; r++)
        free_min = fmin(free_min, dose[r]);
    imrt_objectives_destroy(&s);
    struct {
        imrt_objective_kind kind;
        const char *st;
        double dose;
        double vol;
        int at_most;
    } cases[3] = {
        {IMRT_OBJ_MEAN, "OAR", 0.7 * free_mean, 0, 1},
        {IMRT_OBJ_MAX_DVH, "OAR", 0.8 * free_mean, 40.0, 0},
        {IMRT_OBJ_SQ_UNDERDOSE, "PTV", 1.02 * free_min, 0, 0},
    };
    for (int c = 0; c < 3; c++) {
        set_def(&d[2], cases[c].st, cases[c].kind, 0, cases[c].dose);
        d[2].volume_pct = cases[c].vol;
        d[2].at_most = cases[c].at_most;
        d[2].constraint = 1;
        assert_ok(imrt_objectives_create(NULL, &D, ph, d, 3, &s));
        assert_ok(imrt_objectives_default_start(s, 60.0, x));
        assert_ok(imrt_optimize(NULL, s, &o, x, &st));
        imrt_constraint_status cs;
        assert_ok(imrt_objectives_constraint(s, 0, o.constraint_tol, &cs));
        print_message("constraint kind %d: value %.4f, bound %.4f, violation %+.2e, %d rounds\n",
                      (int)cases[c].kind, cs.value, cs.bound, cs.violation, st.outer_iterations);
        assert_true(cs.holds);
        assert_int_equal(st.constraints_held, 1);
        /* check the value independently */
        assert_ok(imrt_spmv_dose(NULL, &D, x, dose));
        if (cases[c].kind == IMRT_OBJ_MEAN) {
            double m = 0.0;
            for (int r = 30; r < 50; r++)
                m += dose[r] / 20.0;
            assert_true(m <= cases[c].dose * (1.0 + o.constraint_tol));
        } else if (cases[c].kind == IMRT_OBJ_MAX_DVH) {
            int above = 0;
            for (int r = 30; r < 50; r++)
                above += dose[r] > cases[c].dose * (1.0 + o.constraint_tol);
            assert_true(above <= 8); /* 40 % of 20 voxels */
        } else {
            for (int r = 0; r < 30; r++)
                assert_true(dose[r] >= cases[c].dose * (1.0 - o.constraint_tol));
        }
        imrt_objectives_destroy(&s);
    }
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}

/* ---- the Hessian model ---------------------------------------------------------- */

/* H v of the Gauss-Newton model equals the change of the gradient along v
 * for piecewise-quadratic objectives (exact away from the kinks: the
 * difference quotient is taken over a step too small to cross one), and
 * diag(H) equals e_j' H e_j; the stats report which solver ran. */
static void test_hessian_model(void **state)
{
    (void)state;
    imrt_dij D;
    imrt_phantom *ph = NULL;
    make_random_plan(&D, &ph);
    const int n = D.ncols;
    imrt_objective_def d[5];
    set_def(&d[0], "PTV", IMRT_OBJ_SQ_UNDERDOSE, 10, 60);
    set_def(&d[1], "PTV", IMRT_OBJ_SQ_OVERDOSE, 10, 63);
    set_def(&d[2], "OAR", IMRT_OBJ_SQ_DEVIATION, 2, 30);
    set_def(&d[3], "BODY", IMRT_OBJ_MEAN, 1, 20);
    set_def(&d[4], "OAR", IMRT_OBJ_MAX_DVH, 2, 30);
    d[4].volume_pct = 30;
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 5, &s));
    assert_true(imrt_objectives_hessian_supported(s));
    double *x = imrt_calloc((size_t)n, sizeof *x), *v = imrt_calloc((size_t)n, sizeof *v);
    double *g0 = imrt_calloc((size_t)n, sizeof *g0), *g1 = imrt_calloc((size_t)n, sizeof *g1);
    double *hv = imrt_calloc((size_t)n, sizeof *hv), *dg = imrt_calloc((size_t)n, sizeof *dg);
    double *e = imrt_calloc((size_t)n, sizeof *e), *he = imrt_calloc((size_t)n, sizeof *he);
    assert_ok(imrt_objectives_default_start(s, 61.0, x));
    uint64_t st = 5;
    for (int j = 0; j < n; j++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[j] *= 0.7 + 0.6 * (double)(st >> 11) / 9007199254740992.0;
        v[j] = (double)(st >> 40) / 16777216.0 - 0.5;
    }
    double L0, L1, frac;
    assert_ok(imrt_objectives_eval(s, x, &L0, g0));
    assert_ok(imrt_objectives_hessian_prepare(s, 1, dg, &frac));
    assert_true(frac > 0.0 && frac <= 1.0);
    assert_ok(imrt_objectives_hessian_vec(s, v, hv));
    const double h = 1e-7;
    for (int j = 0; j < n; j++)
        e[j] = x[j] + h * v[j];
    assert_ok(imrt_objectives_eval(s, e, &L1, g1));
    double num = 0.0, den = 0.0;
    for (int j = 0; j < n; j++) {
        const double fd = (g1[j] - g0[j]) / h;
        num = fmax(num, fabs(fd - hv[j]));
        den = fmax(den, fabs(hv[j]));
    }
    print_message("Hessian model: |Hv - dg/h| / |Hv| = %.3g\n", num / den);
    assert_true(num / den < 1e-5);
    /* the diagonal */
    assert_ok(imrt_objectives_eval(s, x, &L0, g0));
    assert_ok(imrt_objectives_hessian_prepare(s, 1, dg, NULL));
    for (int j = 0; j < n; j += 7) {
        memset(e, 0, (size_t)n * sizeof *e);
        e[j] = 1.0;
        assert_ok(imrt_objectives_hessian_vec(s, e, he));
        assert_close(dg[j], he[j], 1e-12, 1e-300);
    }
    /* NULL and unprepared arguments */
    assert_int_equal(imrt_objectives_hessian_vec(NULL, v, hv), IMRT_ERR_ARG);
    assert_int_equal(imrt_objectives_hessian_prepare(s, 0, dg, NULL), IMRT_ERR_ARG);
    /* a gEUD objective has no model: Newton falls back to L-BFGS */
    set_def(&d[2], "OAR", IMRT_OBJ_GEUD, 1, 25);
    d[2].a = 8;
    imrt_objectives *sg = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 3, &sg));
    assert_false(imrt_objectives_hessian_supported(sg));
    assert_int_equal(imrt_objectives_hessian_prepare(sg, 1, dg, NULL), IMRT_ERR_ARG);
    imrt_optimize_options o;
    imrt_optimize_options_default(&o);
    o.method = IMRT_METHOD_NEWTON;
    o.solver.max_iterations = 5;
    imrt_optimize_stats os;
    assert_ok(imrt_objectives_default_start(sg, 60.0, x));
    assert_ok(imrt_optimize(NULL, sg, &o, x, &os));
    assert_int_equal(os.method, IMRT_METHOD_LBFGS);
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &os));
    assert_int_equal(os.method, IMRT_METHOD_NEWTON);
    assert_true(os.hessian_products > 0);
    assert_string_equal(imrt_method_name(IMRT_METHOD_NEWTON), "newton");
    /* automatic choice: L-BFGS with a DVH objective, Newton without */
    assert_false(imrt_objectives_hessian_exact(s));
    o.method = IMRT_METHOD_AUTO;
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    assert_ok(imrt_optimize(NULL, s, &o, x, &os));
    assert_int_equal(os.method, IMRT_METHOD_LBFGS);
    imrt_objectives *sq = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 2, &sq));
    assert_true(imrt_objectives_hessian_exact(sq));
    assert_ok(imrt_objectives_default_start(sq, 60.0, x));
    assert_ok(imrt_optimize(NULL, sq, &o, x, &os));
    assert_int_equal(os.method, IMRT_METHOD_NEWTON);
    for (int j = 0; j < n; j++)
        assert_true(x[j] >= 0.0);
    imrt_objectives_destroy(&sq);
    o.method = IMRT_METHOD_NEWTON;
    o.cg_max = 0;
    assert_int_equal(imrt_optimize(NULL, s, &o, x, &os), IMRT_ERR_RANGE);
    imrt_objectives_destroy(&sg);
    imrt_objectives_destroy(&s);
    imrt_free(x), imrt_free(v), imrt_free(g0), imrt_free(g1), imrt_free(hv), imrt_free(dg);
    imrt_free(e), imrt_free(he);
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}

int main(void)
{
#define BOTH(t) cmocka_unit_test_setup(t, use_lbfgs), cmocka_unit_test_setup(t, use_newton)
    const struct CMUnitTest tests[] = {
        BOTH(test_least_squares_optimum),
        BOTH(test_bounds_active_nnls),
        BOTH(test_max_dose_constraint_holds),
        BOTH(test_stopping_rules),
        BOTH(test_other_constraints_hold),
        BOTH(test_determinism),
        cmocka_unit_test(test_hessian_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
