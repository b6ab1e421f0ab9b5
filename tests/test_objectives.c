/*
 * tests/test_objectives.c - objective set: values of every kind against
 * hand-computed numbers, finite-difference checks of every gradient
 * (penalties and constraint terms, fused and two-pass forms, reference and
 * optimised kernels), fused = two-pass, the overlap-priority assignment,
 * name and parameter errors, the default start, and allocation failures.
 */
#include "imrt/objectives.h"
#include "imrt/phantom.h"
#include "imrt/spmv.h"

#include "test_dij_util.h"
#include "test_util.h"

#include <math.h>

/* A dose phantom on the dij's grid with structures given by row sets:
 * member(s, r) says whether row r (voxel dij->voxel[r]) is in structure s. */
typedef struct {
    const char *name;
    imrt_structure_kind kind;
    int priority;
} sdef;

static imrt_phantom *make_phantom(const imrt_dij *D, const sdef *defs, int ns,
                                  int (*member)(int s, int64_t r, void *u), void *u)
{
    imrt_phantom *ph = NULL;
    assert_ok(imrt_phantom_create(&D->grid, "test", 1.0f, &ph));
    for (int s = 0; s < ns; s++) {
        int idx;
        assert_ok(imrt_phantom_add_structure(ph, defs[s].name, defs[s].kind, defs[s].priority,
                                             &idx));
        for (int64_t r = 0; r < D->nrows; r++)
            if (member(s, r, u))
                ph->structures[idx].mask[D->voxel[r]] = 1;
        imrt_structure_recount(ph, &ph->structures[idx]);
    }
    return ph;
}

static imrt_objective_def obj(const char *st, imrt_objective_kind kind, double weight, double dose)
{
    imrt_objective_def d;
    memset(&d, 0, sizeof d);
    snprintf(d.structure, sizeof d.structure, "%s", st);
    d.kind = kind;
    d.weight = weight;
    d.dose = dose;
    d.volume_pct = 50.0;
    d.a = 1.0;
    return d;
}

/* ---- values by hand --------------------------------------------------- */

static int all_rows(int s, int64_t r, void *u)
{
    (void)s, (void)r, (void)u;
    return 1;
}

/* D = identity (5 x 5): the dose is x itself, so every value follows from
 * the formulas of include/imrt/objectives.h by hand. x = (1, 2, 3, 4, 5). */
static void test_values_by_hand(void **state)
{
    (void)state;
    double I[25] = {0};
    for (int i = 0; i < 5; i++)
        I[i * 5 + i] = 1.0;
    imrt_dij D;
    assert_int_equal(tdu_from_dense(&D, 5, 5, I), 0);
    const sdef sd[1] = {{"S", IMRT_KIND_OAR, 1}};
    imrt_phantom *ph = make_phantom(&D, sd, 1, all_rows, NULL);
    imrt_objective_def defs[9];
    defs[0] = obj("S", IMRT_OBJ_SQ_DEVIATION, 1.0, 2.0); /* (1+0+1+4+9)/5 = 3 */
    defs[1] = obj("S", IMRT_OBJ_SQ_OVERDOSE, 2.0, 3.5);  /* 2*(0.25+2.25)/5 = 1 */
    defs[2] = obj("S", IMRT_OBJ_SQ_UNDERDOSE, 1.0, 2.5); /* (2.25+0.25)/5 = 0.5 */
    defs[3] = obj("S", IMRT_OBJ_MEAN, 1.0, 2.0);         /* (3-2)^2 = 1 */
    defs[4] = obj("S", IMRT_OBJ_MEAN, 1.0, 4.0);         /* at most 4: mean 3 -> 0 */
    defs[4].at_most = 1;
    /* max DVH 2.5 Gy / 40 %: floor(2) = 2 voxels may exceed; d_(3) = 3;
     * window 2.5 < d <= 3 holds the voxel at 3: (0.5^2)/5 = 0.05 */
    defs[5] = obj("S", IMRT_OBJ_MAX_DVH, 1.0, 2.5);
    defs[5].volume_pct = 40.0;
    /* min DVH 3.5 Gy / 60 %: ceil(3) = 3 voxels must reach 3.5; d_(3) = 3;
     * window 3 <= d < 3.5 holds the voxel at 3: (0.5^2)/5 = 0.05 */
    defs[6] = obj("S", IMRT_OBJ_MIN_DVH, 1.0, 3.5);
    defs[6].volume_pct = 60.0;
    /* gEUD a = 2, D = 3: E = sqrt(mean d^2) = sqrt(11); (sqrt(11) - 3)^2 */
    defs[7] = obj("S", IMRT_OBJ_GEUD, 1.0, 3.0);
    defs[7].a = 2.0;
    /* gEUD a = -1, D = 3 (target form): E = 1/mean(1/d) = 5/(137/60) = 300/137;
     * shortfall (3 - 300/137)^2 */
    defs[8] = obj("S", IMRT_OBJ_GEUD, 1.0, 3.0);
    defs[8].a = -1.0;
    const double expect[9] = {3.0,
                              1.0,
                              0.5,
                              1.0,
                              0.0,
                              0.05,
                              0.05,
                              pow(sqrt(11.0) - 3.0, 2),
                              pow(3.0 - 300.0 / 137.0, 2)};
    const double x[5] = {1, 2, 3, 4, 5};
    for (int mode = 0; mode < 2; mode++) {
        imrt_objectives *s = NULL;
        assert_ok(imrt_objectives_create(NULL, &D, ph, defs, 9, &s));
        imrt_objectives_set_mode(s, (imrt_eval_mode)mode);
        assert_int_equal(imrt_objectives_count(s), 9);
        double f, g[5];
        assert_ok(imrt_objectives_eval(s, x, &f, g));
        double total = 0.0;
        for (int k = 0; k < 9; k++) {
            assert_close(imrt_objectives_share(s, k), expect[k], 1e-12, 1e-15);
            total += expect[k];
        }
        assert_close(f, total, 1e-12, 0);
        assert_close(imrt_objectives_penalty(s), total, 1e-12, 0);
        imrt_objectives_destroy(&s);
    }
    /* gradients by hand for single objectives (D = I: grad = dF/dd) */
    struct {
        int def;
        double g[5];
    } hand[] = {
        {0, {-0.4, 0.0, 0.4, 0.8, 1.2}},       /* 2(d - 2)/5 */
        {5, {0.0, 0.0, 0.2, 0.0, 0.0}},        /* 2(3 - 2.5)/5 on the window voxel */
        {6, {0.0, 0.0, -0.2, 0.0, 0.0}},       /* 2(3 - 3.5)/5 */
        {3, {0.4, 0.4, 0.4, 0.4, 0.4}},        /* 2(m - 2)/5 */
    };
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++)
        for (int mode = 0; mode < 2; mode++) {
            imrt_objectives *s = NULL;
            assert_ok(imrt_objectives_create(NULL, &D, ph, &defs[hand[h].def], 1, &s));
            imrt_objectives_set_mode(s, (imrt_eval_mode)mode);
            double f, g[5];
            assert_ok(imrt_objectives_eval(s, x, &f, g));
            for (int j = 0; j < 5; j++)
                assert_close(g[j], hand[h].g[j], 1e-12, 1e-14);
            imrt_objectives_destroy(&s);
        }
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}

/* ---- a random problem for gradient checks -------------------------------- */

typedef struct {
    imrt_dij D;
    imrt_phantom *ph;
    double *x;     /* ncols, in [0.5, 1.5] */
    double *dose;  /* at x */
} problem;

/* Rows r % 3 != 2 are PTV; rows r % 5 < 2 are OAR (so some overlap); all
 * rows are BODY. */
static int prob_member(int s, int64_t r, void *u)
{
    (void)u;
    if (s == 0)
        return r % 3 != 2;
    if (s == 1)
        return r % 5 < 2;
    return 1;
}

static void make_problem(problem *P, uint64_t seed)
{
    assert_int_equal(tdu_random(&P->D, 240, 24, 0.3, 0.05, 1.0, 0, seed), 0);
    /* rows are every other voxel, to check the voxel mapping */
    for (int64_t r = 0; r < P->D.nrows; r++)
        P->D.voxel[r] = 2 * r + 1;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&P->D.grid, 16, 16, 2, 2.5, 2.5, 2.5, o));
    const sdef sd[3] = {{"PTV", IMRT_KIND_TARGET, 1},
                        {"OAR", IMRT_KIND_OAR, 2},
                        {"BODY", IMRT_KIND_BODY, 9}};
    P->ph = make_phantom(&P->D, sd, 3, prob_member, NULL);
    P->x = imrt_calloc((size_t)P->D.ncols, sizeof(double));
    P->dose = imrt_calloc((size_t)P->D.nrows, sizeof(double));
    uint64_t s = seed * 7 + 1;
    for (int32_t j = 0; j < P->D.ncols; j++)
        P->x[j] = 0.5 + tdu_uniform(&s);
    assert_ok(imrt_spmv_dose(NULL, &P->D, P->x, P->dose));
}

static void free_problem(problem *P)
{
    imrt_phantom_destroy(&P->ph);
    imrt_free(P->x);
    imrt_free(P->dose);
    tdu_free(&P->D);
}

/* Dose quantile (fraction q of the rows, ascending) of rows with member(s). */
static double dose_quantile(const problem *P, int s, double q)
{
    double *v = imrt_calloc((size_t)P->D.nrows, sizeof(double));
    int64_t n = 0;
    for (int64_t r = 0; r < P->D.nrows; r++)
        if (prob_member(s, r, NULL))
            v[n++] = P->dose[r];
    for (int64_t i = 1; i < n; i++) /* insertion sort: small */
        for (int64_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    double out = v[(int64_t)(q * (double)(n - 1))];
    imrt_free(v);
    return out;
}

/* Largest deviation of the analytic gradient from central differences,
 * relative to the gradient's largest component. */
static double fd_error(imrt_objectives *s, const double *x0, int32_t n)
{
    double *x = imrt_calloc((size_t)n, sizeof(double));
    double *g = imrt_calloc((size_t)n, sizeof(double));
    memcpy(x, x0, (size_t)n * sizeof *x);
    double f;
    assert_ok(imrt_objectives_eval(s, x, &f, g));
    double gmax = 0.0, err = 0.0;
    for (int32_t j = 0; j < n; j++)
        gmax = fmax(gmax, fabs(g[j]));
    for (int32_t j = 0; j < n; j++) {
        const double h = 1e-6 * fmax(1.0, fabs(x0[j]));
        double fp, fm;
        x[j] = x0[j] + h;
        assert_ok(imrt_objectives_eval(s, x, &fp, NULL));
        x[j] = x0[j] - h;
        assert_ok(imrt_objectives_eval(s, x, &fm, NULL));
        x[j] = x0[j];
        err = fmax(err, fabs((fp - fm) / (2.0 * h) - g[j]));
    }
    imrt_free(x);
    imrt_free(g);
    assert_true(gmax > 0.0); /* the objective is active: a real check */
    if (getenv("FD_PRINT"))
        print_message("fd error %.3g (gmax %.3g)\n", err / gmax, gmax);
    return err / gmax;
}

/* One objective definition per kind and variant, parameters placed inside
 * the dose range of the random problem so that every term is active. */
static int all_kinds(const problem *P, imrt_objective_def *d)
{
    const double ptv_mid = dose_quantile(P, 0, 0.5), oar_mid = dose_quantile(P, 1, 0.5);
    int n = 0;
    d[n++] = obj("PTV", IMRT_OBJ_SQ_DEVIATION, 3.0, ptv_mid);
    d[n++] = obj("OAR", IMRT_OBJ_SQ_OVERDOSE, 2.0, oar_mid);
    d[n++] = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 5.0, dose_quantile(P, 0, 0.6));
    d[n++] = obj("OAR", IMRT_OBJ_MEAN, 1.5, 0.8 * oar_mid);
    d[n] = obj("BODY", IMRT_OBJ_MEAN, 1.0, 0.7 * dose_quantile(P, 2, 0.5));
    d[n++].at_most = 1;
    d[n] = obj("OAR", IMRT_OBJ_MAX_DVH, 4.0, dose_quantile(P, 1, 0.3));
    d[n++].volume_pct = 35.0;
    d[n] = obj("PTV", IMRT_OBJ_MIN_DVH, 4.0, dose_quantile(P, 0, 0.6));
    d[n++].volume_pct = 90.0;
    d[n] = obj("OAR", IMRT_OBJ_GEUD, 2.0, 0.9 * oar_mid);
    d[n++].a = 8.0;
    d[n] = obj("PTV", IMRT_OBJ_GEUD, 2.0, 1.1 * ptv_mid);
    d[n++].a = -10.0;
    return n;
}

#define FD_TOL 1e-4

static void test_gradients_of_every_kind(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 5);
    imrt_objective_def d[16];
    const int n = all_kinds(&P, d);
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    for (int kern = 0; kern < 2; kern++) {
        imrt_context_set_kernels(ctx, kern ? IMRT_KERNELS_REFERENCE : IMRT_KERNELS_OPTIMISED);
        for (int k = 0; k < n; k++)
            for (int mode = 0; mode < 2; mode++) {
                imrt_objectives *s = NULL;
                assert_ok(imrt_objectives_create(ctx, &P.D, P.ph, &d[k], 1, &s));
                imrt_objectives_set_mode(s, (imrt_eval_mode)mode);
                double e = fd_error(s, P.x, P.D.ncols);
                if (!(e < FD_TOL))
                    fail_msg("objective %d (kind %d), mode %d: FD relative error %.3g", k,
                             (int)d[k].kind, mode, e);
                imrt_objectives_destroy(&s);
            }
        /* all together */
        imrt_objectives *s = NULL;
        assert_ok(imrt_objectives_create(ctx, &P.D, P.ph, d, n, &s));
        assert_true(fd_error(s, P.x, P.D.ncols) < FD_TOL);
        imrt_objectives_destroy(&s);
    }
    imrt_context_destroy(&ctx);
    free_problem(&P);
}

/* Constraint terms: violated constraints, multipliers made non-zero by an
 * outer step, then the gradient of the augmented Lagrangian checked. */
static void test_gradients_of_constraint_terms(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 9);
    imrt_objective_def d[8];
    int n = 0;
    d[n++] = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 1.0, dose_quantile(&P, 0, 0.7));
    d[n] = obj("OAR", IMRT_OBJ_SQ_OVERDOSE, 0.0, dose_quantile(&P, 1, 0.6));
    d[n++].constraint = 1;
    d[n] = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 0.0, dose_quantile(&P, 0, 0.3));
    d[n++].constraint = 1;
    d[n] = obj("OAR", IMRT_OBJ_MEAN, 0.0, 0.9 * dose_quantile(&P, 1, 0.5));
    d[n].at_most = 1;
    d[n++].constraint = 1;
    d[n] = obj("BODY", IMRT_OBJ_MEAN, 0.0, 1.3 * dose_quantile(&P, 2, 0.5));
    d[n++].constraint = 1; /* equality */
    d[n] = obj("OAR", IMRT_OBJ_GEUD, 0.0, 0.9 * dose_quantile(&P, 1, 0.5));
    d[n].a = 6.0;
    d[n++].constraint = 1;
    d[n] = obj("OAR", IMRT_OBJ_MAX_DVH, 0.0, dose_quantile(&P, 1, 0.4));
    d[n].volume_pct = 30.0;
    d[n++].constraint = 1;
    d[n] = obj("PTV", IMRT_OBJ_MIN_DVH, 0.0, dose_quantile(&P, 0, 0.5));
    d[n].volume_pct = 80.0;
    d[n++].constraint = 1;
    for (int mode = 0; mode < 2; mode++) {
        imrt_objectives *s = NULL;
        assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, d, n, &s));
        imrt_objectives_set_mode(s, (imrt_eval_mode)mode);
        assert_int_equal(imrt_objectives_nconstraints(s), n - 1);
        double f;
        assert_ok(imrt_objectives_eval(s, P.x, &f, NULL));
        /* every constraint is violated at x */
        for (int i = 0; i < n - 1; i++) {
            imrt_constraint_status st;
            assert_ok(imrt_objectives_constraint(s, i, 1e-3, &st));
            assert_int_equal(st.def, i + 1);
            if (st.holds)
                fail_msg("constraint %d holds: value %g, bound %g, violation %g", i, st.value,
                         st.bound, st.violation);
            assert_true(st.violation > 0.0);
            assert_false(st.holds);
        }
        assert_true(imrt_objectives_al_update(s, 1e-3) > 0.0);
        /* multipliers now non-zero; check at a nearby point */
        double *x1 = imrt_calloc((size_t)P.D.ncols, sizeof(double));
        for (int32_t j = 0; j < P.D.ncols; j++)
            x1[j] = P.x[j] * (j % 2 ? 0.97 : 1.02);
        double e = fd_error(s, x1, P.D.ncols);
        if (!(e < FD_TOL))
            fail_msg("constraint terms, mode %d: FD relative error %.3g", mode, e);
        /* each constraint term on its own */
        for (int k = 1; k < n; k++) {
            imrt_objectives *s1 = NULL;
            assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, &d[k], 1, &s1));
            imrt_objectives_set_mode(s1, (imrt_eval_mode)mode);
            assert_ok(imrt_objectives_eval(s1, P.x, &f, NULL));
            imrt_objectives_al_update(s1, 1e-3);
            e = fd_error(s1, x1, P.D.ncols);
            if (!(e < FD_TOL))
                fail_msg("constraint %d (kind %d), mode %d: FD relative error %.3g", k,
                         (int)d[k].kind, mode, e);
            imrt_objectives_destroy(&s1);
        }
        imrt_free(x1);
        imrt_objectives_al_reset(s);
        imrt_objectives_destroy(&s);
    }
    free_problem(&P);
}

static void test_fused_equals_two_pass(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 13);
    imrt_objective_def d[16];
    int n = all_kinds(&P, d);
    d[n] = obj("OAR", IMRT_OBJ_SQ_OVERDOSE, 0.0, dose_quantile(&P, 1, 0.8));
    d[n++].constraint = 1;
    const int32_t nc = P.D.ncols;
    double *g1 = imrt_calloc((size_t)nc, sizeof(double));
    double *g2 = imrt_calloc((size_t)nc, sizeof(double));
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, d, n, &s));
    double f1, f2;
    assert_ok(imrt_objectives_eval(s, P.x, &f1, NULL));
    imrt_objectives_al_update(s, 1e-3);
    assert_int_equal(imrt_objectives_mode(s), IMRT_EVAL_FUSED);
    assert_ok(imrt_objectives_eval(s, P.x, &f1, g1));
    double shares1[16];
    memcpy(shares1, imrt_objectives_shares(s), (size_t)n * sizeof(double));
    imrt_objectives_set_mode(s, IMRT_EVAL_TWO_PASS);
    assert_ok(imrt_objectives_eval(s, P.x, &f2, g2));
    assert_close(f1, f2, 1e-12, 0);
    for (int k = 0; k < n; k++)
        assert_close(shares1[k], imrt_objectives_share(s, k), 1e-11, 1e-15);
    double gmax = 0.0;
    for (int32_t j = 0; j < nc; j++)
        gmax = fmax(gmax, fabs(g2[j]));
    for (int32_t j = 0; j < nc; j++)
        assert_close(g1[j], g2[j], 0, 1e-12 * gmax);
    imrt_objectives_destroy(&s);
    imrt_free(g1), imrt_free(g2);
    free_problem(&P);
}

/* ---- overlap priority ------------------------------------------------------ */

/* 16 voxels (4 x 4 x 1), one row each. PTV 0-5 (target, priority 2),
 * OAR1 4-9 (priority 1), OAR2 8-11 (priority 3), OAR3 11-13 (priority 3,
 * listed after OAR2), BODY everything (priority 10). */
static int overlap_member(int s, int64_t r, void *u)
{
    (void)u;
    switch (s) {
    case 0:
        return r <= 5;
    case 1:
        return r >= 4 && r <= 9;
    case 2:
        return r >= 8 && r <= 11;
    case 3:
        return r >= 11 && r <= 13;
    default:
        return 1;
    }
}

static void expect_rows(const imrt_objectives *s, int k, int64_t lo, int64_t hi)
{
    const int64_t *rows = NULL;
    const int64_t n = imrt_objectives_rows(s, k, &rows);
    if (n != hi - lo + 1)
        fail_msg("objective %d has %lld rows, expected %lld (rows %lld..%lld)", k, (long long)n,
                 (long long)(hi - lo + 1), (long long)lo, (long long)hi);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(rows[i], lo + i);
}

static void test_overlap_priority(void **state)
{
    (void)state;
    double A[16 * 2];
    for (int i = 0; i < 32; i++)
        A[i] = 0.5 + 0.01 * i;
    imrt_dij D;
    assert_int_equal(tdu_from_dense(&D, 16, 2, A), 0);
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&D.grid, 4, 4, 1, 2.5, 2.5, 2.5, o));
    const sdef sd[5] = {{"PTV", IMRT_KIND_TARGET, 2},
                        {"OAR1", IMRT_KIND_OAR, 1},
                        {"OAR2", IMRT_KIND_OAR, 3},
                        {"OAR3", IMRT_KIND_OAR, 3},
                        {"BODY", IMRT_KIND_BODY, 10}};
    imrt_phantom *ph = make_phantom(&D, sd, 5, overlap_member, NULL);
    imrt_objective_def d[9];
    d[0] = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 1, 60);
    d[1] = obj("PTV", IMRT_OBJ_SQ_OVERDOSE, 1, 63);
    d[2] = obj("OAR1", IMRT_OBJ_SQ_OVERDOSE, 1, 30);
    d[3] = obj("OAR2", IMRT_OBJ_SQ_OVERDOSE, 1, 30);
    d[4] = obj("OAR3", IMRT_OBJ_SQ_OVERDOSE, 1, 30);
    d[5] = obj("BODY", IMRT_OBJ_SQ_OVERDOSE, 1, 40);
    d[6] = obj("OAR2", IMRT_OBJ_MEAN, 1, 20);
    d[7] = obj("OAR1", IMRT_OBJ_SQ_OVERDOSE, 0, 45);
    d[7].constraint = 1;
    d[8] = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 2, 58); /* same structure and kind as d[0] */
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &D, ph, d, 9, &s));
    expect_rows(s, 0, 0, 5);   /* only PTV carries underdose: all of it */
    expect_rows(s, 1, 0, 5);   /* PTV wins 4-5 from OAR1 although priority 2 > 1: target */
    expect_rows(s, 2, 6, 9);   /* OAR1 (priority 1) wins 8-9 from OAR2 */
    expect_rows(s, 3, 10, 10); /* OAR2 keeps 10; 11 goes to OAR3 (same priority, later) */
    expect_rows(s, 4, 11, 13);
    expect_rows(s, 5, 14, 15); /* BODY keeps what nobody else claims */
    expect_rows(s, 6, 8, 11);  /* the only mean objective keeps its whole structure */
    expect_rows(s, 7, 4, 9);   /* constraints act on the whole structure */
    expect_rows(s, 8, 0, 5);
    assert_int_equal(imrt_objectives_rows(s, 9, NULL), -1);
    imrt_objectives_destroy(&s);
    imrt_phantom_destroy(&ph);
    tdu_free(&D);
}

/* ---- errors, start, allocation failures ----------------------------------- */

static void test_errors_name_the_problem(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 17);
    imrt_objectives *s = NULL;
    imrt_objective_def d = obj("Rectum", IMRT_OBJ_SQ_OVERDOSE, 1, 50);
    assert_int_equal(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "unknown structure 'Rectum'"));
    assert_null(s);
    d = obj("OAR", IMRT_OBJ_GEUD, 1, 20);
    d.a = 0.5;
    assert_int_equal(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "a = 0.5"));
    d = obj("OAR", IMRT_OBJ_MAX_DVH, 1, 20);
    d.volume_pct = 100.0;
    assert_int_equal(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "volume_pct = 100"));
    d = obj("PTV", IMRT_OBJ_SQ_DEVIATION, 1, 60);
    d.constraint = 1;
    assert_int_equal(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "cannot be a hard constraint"));
    d = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, -1, 60);
    assert_int_equal(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "weight = -1"));
    /* a phantom on another grid */
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 8, 8, 8, 2.5, 2.5, 2.5, o));
    imrt_phantom *other = NULL;
    assert_ok(imrt_phantom_create(&g, "other", 1.0f, &other));
    d = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 1, 60);
    assert_int_equal(imrt_objectives_create(NULL, &P.D, other, &d, 1, &s), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "differs from the dij grid"));
    imrt_phantom_destroy(&other);
    /* no definitions: F = 0 */
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, NULL, 0, &s));
    double f = -1.0, gz[24];
    assert_ok(imrt_objectives_eval(s, P.x, &f, gz));
    assert_close(f, 0.0, 0, 0);
    for (int j = 0; j < P.D.ncols; j++)
        assert_close(gz[j], 0.0, 0, 0);
    /* NaN weights */
    P.x[3] = NAN;
    assert_int_equal(imrt_objectives_eval(s, P.x, &f, gz), IMRT_OK); /* F = 0 has no dose term */
    imrt_objectives_destroy(&s);
    d = obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 1, 60);
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, &d, 1, &s));
    assert_int_equal(imrt_objectives_eval(s, P.x, &f, gz), IMRT_ERR_NUMERIC);
    imrt_objectives_destroy(&s);
    free_problem(&P);
}

static void test_default_start(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 19);
    imrt_objective_def d[2] = {obj("OAR", IMRT_OBJ_SQ_OVERDOSE, 1, 10),
                               obj("PTV", IMRT_OBJ_SQ_UNDERDOSE, 1, 60)};
    imrt_objectives *s = NULL;
    assert_ok(imrt_objectives_create(NULL, &P.D, P.ph, d, 2, &s));
    double *x = imrt_calloc((size_t)P.D.ncols, sizeof(double));
    assert_ok(imrt_objectives_default_start(s, 60.0, x));
    for (int32_t j = 1; j < P.D.ncols; j++)
        assert_close(x[j], x[0], 1e-15, 0);
    assert_true(x[0] > 0.0);
    /* the mean PTV dose from an independent dose computation equals 60 Gy */
    assert_ok(imrt_spmv_dose(NULL, &P.D, x, P.dose));
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t r = 0; r < P.D.nrows; r++)
        if (prob_member(0, r, NULL))
            sum += P.dose[r], n++;
    assert_close(sum / (double)n, 60.0, 1e-12, 0);
    assert_close(imrt_objectives_target_mean(s, x), 60.0, 1e-12, 0);
    assert_int_equal(imrt_objectives_default_start(s, 0.0, x), IMRT_ERR_RANGE);
    assert_int_equal(imrt_objectives_default_start(s, NAN, x), IMRT_ERR_RANGE);
    imrt_objectives_destroy(&s);
    imrt_free(x);
    free_problem(&P);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    problem P;
    make_problem(&P, 23);
    imrt_objective_def d[16];
    int n = all_kinds(&P, d);
    d[n] = obj("OAR", IMRT_OBJ_SQ_OVERDOSE, 0.0, 50.0);
    d[n++].constraint = 1;
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        imrt_objectives *s = NULL;
        imrt_alloc_fail_after(k);
        imrt_status st = imrt_objectives_create(NULL, &P.D, P.ph, d, n, &s);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            imrt_objectives_destroy(&s);
            break;
        }
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(s);
        failures++;
    }
    assert_true(failures > 20);
    free_problem(&P);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_by_hand),
        cmocka_unit_test(test_gradients_of_every_kind),
        cmocka_unit_test(test_gradients_of_constraint_terms),
        cmocka_unit_test(test_fused_equals_two_pass),
        cmocka_unit_test(test_overlap_priority),
        cmocka_unit_test(test_errors_name_the_problem),
        cmocka_unit_test(test_default_start),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
