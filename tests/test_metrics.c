/*
 * tests/test_metrics.c - plan-level metrics on constructed cases worked out
 * by hand: mass density from RED (ICRU-44 tissue values), integral dose of a
 * uniform dose in a known mass, Paddick/RTOG conformity, goal pass/fail in
 * both directions, the normalisation factor, the per-plan summary and its
 * metrics.json object (keys of interface.md, written and read back).
 */
#include "imrt/alloc.h"
#include "imrt/metrics.h"

#include "test_util.h"

/* 10 x 10 x 10 voxels of 1 cm^3 (10 mm spacing), water. */
static imrt_phantom *cube_phantom(void)
{
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 10, 10, 10, 10.0, 10.0, 10.0, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "cube", 1.0f, &p));
    return p;
}

/* Add a structure painted over the box [i0,i1] x [j0,j1] x [k0,k1]. */
static int add_box(imrt_phantom *p, const char *name, imrt_structure_kind kind, int i0, int i1,
                   int j0, int j1, int k0, int k1)
{
    int s;
    assert_ok(imrt_phantom_add_structure(p, name, kind, 1, &s));
    imrt_structure *st = &p->structures[s];
    for (int k = k0; k <= k1; k++)
        for (int j = j0; j <= j1; j++)
            for (int i = i0; i <= i1; i++)
                st->mask[imrt_grid_index(&p->grid, i, j, k)] = 1;
    imrt_structure_recount(p, st);
    return s;
}

static void fill_box(const imrt_grid *g, float *dose, float value, int i0, int i1, int j0, int j1,
                     int k0, int k1)
{
    for (int k = k0; k <= k1; k++)
        for (int j = j0; j <= j1; j++)
            for (int i = i0; i <= i1; i++)
                dose[imrt_grid_index(g, i, j, k)] = value;
}

/* ICRU-44 tissues (rho, RED): adipose (0.95, 0.95), muscle (1.05, 1.04),
 * ICRP-23 bone (1.85, 1.72), CIRS cortical-bone insert (1.93, 1.78). */
static void test_mass_density(void **state)
{
    (void)state;
    assert_close(imrt_mass_density(1.0), 1.0, 1e-12, 0);
    assert_close(imrt_mass_density(0.95), 0.95, 1e-12, 0);
    assert_close(imrt_mass_density(1.04), 1.05, 1e-12, 0);
    assert_close(imrt_mass_density(1.72), 1.85, 1e-12, 0);
    assert_close(imrt_mass_density(1.78), 1.93, 0.01, 0);
    assert_close(imrt_mass_density(0.26), 0.26, 0.01, 0); /* inflated lung */
    assert_close(imrt_mass_density(0.0), 0.0, 0, 0);
    assert_close(imrt_mass_density(-1.0), 0.0, 0, 0);
    double prev = 0.0;
    for (double red = 0.01; red < 3.0; red += 0.01) { /* monotone */
        double rho = imrt_mass_density(red);
        assert_true(rho > prev);
        prev = rho;
    }
}

/* 2 Gy (J/kg) in 1000 cm^3 of water (1 kg) is 2 J; in muscle 2 x 1.05 J. */
static void test_integral_dose(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom();
    float *dose = calloc(1000, sizeof *dose);
    assert_non_null(dose);
    for (int v = 0; v < 1000; v++)
        dose[v] = 2.0f;
    double j;
    assert_ok(imrt_integral_dose(&p->grid, dose, p->density, NULL, &j));
    assert_close(j, 2.0, 1e-9, 0);
    int half = add_box(p, "half", IMRT_KIND_BODY, 0, 4, 0, 9, 0, 9);
    assert_ok(imrt_integral_dose(&p->grid, dose, p->density, p->structures[half].mask, &j));
    assert_close(j, 1.0, 1e-9, 0);
    for (int v = 0; v < 1000; v++)
        p->density[v] = 1.04f;
    assert_ok(imrt_integral_dose(&p->grid, dose, p->density, NULL, &j));
    assert_close(j, 2.0 * 1.05, 1e-6, 0);
    assert_int_equal(imrt_integral_dose(&p->grid, dose, NULL, NULL, &j), IMRT_ERR_ARG);
    free(dose);
    imrt_phantom_destroy(&p);
}

/* Target = 4x4x4 = 64 cm^3. */
static void test_conformity(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom();
    int t = add_box(p, "PTV", IMRT_KIND_TARGET, 2, 5, 2, 5, 2, 5);
    int b = add_box(p, "Body", IMRT_KIND_BODY, 0, 5, 0, 9, 0, 9);
    const uint8_t *tm = p->structures[t].mask, *bm = p->structures[b].mask;
    float *dose = calloc(1000, sizeof *dose);
    assert_non_null(dose);
    imrt_conformity c;

    /* 60 Gy over the target plus one 16-voxel slab beside it: PIV 80, TV_PIV 64 */
    fill_box(&p->grid, dose, 60.0f, 2, 6, 2, 5, 2, 5);
    assert_ok(imrt_conformity_eval(&p->grid, dose, tm, NULL, 60.0, &c));
    assert_close(c.tv_cc, 64.0, 1e-12, 0);
    assert_close(c.piv_cc, 80.0, 1e-12, 0);
    assert_close(c.tv_piv_cc, 64.0, 1e-12, 0);
    assert_close(c.paddick, 64.0 * 64.0 / (64.0 * 80.0), 1e-12, 0); /* 0.8 */
    assert_close(c.rtog, 80.0 / 64.0, 1e-12, 0);
    /* the slab lies outside the body (i = 6): PIV = TV, both indices 1 */
    assert_ok(imrt_conformity_eval(&p->grid, dose, tm, bm, 60.0, &c));
    assert_close(c.paddick, 1.0, 1e-12, 0);
    assert_close(c.rtog, 1.0, 1e-12, 0);
    /* half the target covered, nothing else: TV_PIV = PIV = 32 */
    memset(dose, 0, 1000 * sizeof *dose);
    fill_box(&p->grid, dose, 60.0f, 2, 3, 2, 5, 2, 5);
    assert_ok(imrt_conformity_eval(&p->grid, dose, tm, NULL, 60.0, &c));
    assert_close(c.paddick, 32.0 * 32.0 / (64.0 * 32.0), 1e-12, 0); /* 0.5 */
    assert_close(c.rtog, 0.5, 1e-12, 0);
    /* the prescription isodose is empty */
    assert_ok(imrt_conformity_eval(&p->grid, dose, tm, NULL, 61.0, &c));
    assert_true(isnan(c.paddick));
    assert_close(c.rtog, 0.0, 0, 0);
    assert_int_equal(imrt_conformity_eval(&p->grid, dose, tm, NULL, 0.0, &c), IMRT_ERR_RANGE);
    free(dose);
    imrt_phantom_destroy(&p);
}

/* 100 voxels (10 x 10 x 1, 1 cm^3 each) holding 1..100 Gy, all in "PTV". */
static imrt_phantom *ramp_phantom(float *dose)
{
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 10, 10, 1, 10.0, 10.0, 10.0, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "ramp", 1.0f, &p));
    int s;
    assert_ok(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &s));
    for (int v = 0; v < 100; v++) {
        p->structures[s].mask[v] = 1;
        dose[v] = (float)((37 * v) % 100 + 1);
    }
    imrt_structure_recount(p, &p->structures[s]);
    return p;
}

static void expect_goal(const imrt_phantom *p, const float *dose, const char *metric,
                        imrt_goal_op op, double value, double achieved, int pass)
{
    imrt_goal_def g = {.op = op, .value = value};
    snprintf(g.structure, sizeof g.structure, "PTV");
    snprintf(g.metric, sizeof g.metric, "%s", metric);
    double a = -1;
    int ok = -1;
    assert_ok(imrt_goal_eval(&g, p, dose, &a, &ok));
    assert_close(a, achieved, 1e-12, 1e-12);
    if (ok != pass)
        fail_msg("goal PTV %s %s %g: achieved %g, pass = %d (expected %d)", metric,
                 op == IMRT_GOAL_LE ? "<=" : ">=", value, a, ok, pass);
}

static void test_goal_eval_both_directions(void **state)
{
    (void)state;
    float dose[100];
    imrt_phantom *p = ramp_phantom(dose);
    expect_goal(p, dose, "D95", IMRT_GOAL_GE, 5.0, 6.0, 1);
    expect_goal(p, dose, "D95", IMRT_GOAL_GE, 7.0, 6.0, 0);
    expect_goal(p, dose, "D95", IMRT_GOAL_LE, 6.0, 6.0, 1); /* equality passes */
    expect_goal(p, dose, "Dmax", IMRT_GOAL_LE, 100.0, 100.0, 1);
    expect_goal(p, dose, "Dmax", IMRT_GOAL_LE, 99.5, 100.0, 0);
    expect_goal(p, dose, "V20", IMRT_GOAL_LE, 81.0, 81.0, 1);
    expect_goal(p, dose, "V20", IMRT_GOAL_LE, 80.0, 81.0, 0);
    expect_goal(p, dose, "V20_cm3", IMRT_GOAL_GE, 82.0, 81.0, 0);
    expect_goal(p, dose, "D2cc", IMRT_GOAL_LE, 99.0, 99.0, 1);
    expect_goal(p, dose, "Dmean", IMRT_GOAL_GE, 50.0, 50.5, 1);
    expect_goal(p, dose, "Dmin", IMRT_GOAL_GE, 1.5, 1.0, 0);

    imrt_goal_def g = {.op = IMRT_GOAL_LE, .value = 1};
    snprintf(g.structure, sizeof g.structure, "Cord");
    snprintf(g.metric, sizeof g.metric, "Dmax");
    double a;
    assert_int_equal(imrt_goal_eval(&g, p, dose, &a, NULL), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "Cord"));
    snprintf(g.structure, sizeof g.structure, "PTV");
    snprintf(g.metric, sizeof g.metric, "Dhot");
    assert_int_equal(imrt_goal_eval(&g, p, dose, &a, NULL), IMRT_ERR_PARSE);
    imrt_phantom_destroy(&p);
}

static void test_normalisation_factor(void **state)
{
    (void)state;
    float dose[100];
    imrt_phantom *p = ramp_phantom(dose);
    imrt_prescription rx = {.dose_gy = 60.0, .fractions = 30, .normalise = 1};
    snprintf(rx.metric, sizeof rx.metric, "D95");
    snprintf(rx.target, sizeof rx.target, "PTV");
    double f = 0;
    assert_ok(imrt_normalisation_factor(&rx, p, dose, &f));
    assert_close(f, 60.0 / 6.0, 1e-12, 0); /* D95 = 6 Gy */
    imrt_dose_scale(dose, 100, f);
    double d95;
    imrt_goal_def g = {.op = IMRT_GOAL_GE, .value = 60.0};
    snprintf(g.structure, sizeof g.structure, "PTV");
    snprintf(g.metric, sizeof g.metric, "D95");
    int pass = 0;
    assert_ok(imrt_goal_eval(&g, p, dose, &d95, &pass));
    assert_close(d95, 60.0, 1e-6, 0);
    assert_int_equal(pass, 1);
    assert_ok(imrt_normalisation_factor(&rx, p, dose, &f)); /* already normalised */
    assert_close(f, 1.0, 1e-6, 0);

    imrt_dose_scale(dose, 100, 0.1); /* back to 1..100 */
    snprintf(rx.metric, sizeof rx.metric, "Dmean");
    rx.target[0] = '\0'; /* the first target structure */
    assert_ok(imrt_normalisation_factor(&rx, p, dose, &f));
    assert_close(f, 60.0 / 50.5, 1e-6, 0);
    rx.metric[0] = '\0'; /* default D95 */
    assert_ok(imrt_normalisation_factor(&rx, p, dose, &f));
    assert_close(f, 10.0, 1e-6, 0);
    rx.normalise = 0;
    assert_ok(imrt_normalisation_factor(&rx, p, dose, &f));
    assert_close(f, 1.0, 0, 0);
    rx.normalise = 1;
    snprintf(rx.metric, sizeof rx.metric, "V20");
    assert_int_equal(imrt_normalisation_factor(&rx, p, dose, &f), IMRT_ERR_ARG);
    snprintf(rx.metric, sizeof rx.metric, "D95");
    snprintf(rx.target, sizeof rx.target, "GTV");
    assert_int_equal(imrt_normalisation_factor(&rx, p, dose, &f), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "GTV"));
    rx.target[0] = '\0';
    memset(dose, 0, sizeof dose);
    assert_int_equal(imrt_normalisation_factor(&rx, p, dose, &f), IMRT_ERR_NUMERIC);
    rx.dose_gy = -1.0;
    assert_int_equal(imrt_normalisation_factor(&rx, p, dose, &f), IMRT_ERR_RANGE);
    imrt_phantom_destroy(&p);
}

/* The summary case: PTV 4x4x4 at 60 Gy plus a 16-voxel 60 Gy slab beside it
 * (inside the body), a 10-voxel cord line with 0, 2, ..., 18 Gy, an empty
 * structure, and goals that pass and fail. */
typedef struct {
    imrt_phantom *p;
    float *dose;
    imrt_prescription rx;
    imrt_goal_def goals[5];
} summary_case;

static void set_goal(imrt_goal_def *g, const char *st, const char *metric, imrt_goal_op op,
                     double value, int preferred)
{
    memset(g, 0, sizeof *g);
    snprintf(g->structure, sizeof g->structure, "%s", st);
    snprintf(g->metric, sizeof g->metric, "%s", metric);
    g->op = op;
    g->value = value;
    g->preferred = preferred;
}

static void summary_case_make(summary_case *c)
{
    memset(c, 0, sizeof *c);
    c->p = cube_phantom();
    add_box(c->p, "PTV", IMRT_KIND_TARGET, 2, 5, 2, 5, 2, 5);
    add_box(c->p, "Cord", IMRT_KIND_OAR, 8, 8, 8, 8, 0, 9);
    add_box(c->p, "Body", IMRT_KIND_BODY, 0, 9, 0, 9, 0, 9);
    int e;
    assert_ok(imrt_phantom_add_structure(c->p, "Ghost", IMRT_KIND_OAR, 2, &e));
    c->dose = calloc(1000, sizeof *c->dose);
    assert_non_null(c->dose);
    fill_box(&c->p->grid, c->dose, 60.0f, 2, 6, 2, 5, 2, 5);
    for (int k = 0; k < 10; k++)
        c->dose[imrt_grid_index(&c->p->grid, 8, 8, k)] = (float)(2 * k);
    c->rx = (imrt_prescription){.dose_gy = 60.0, .fractions = 30, .normalise = 1};
    snprintf(c->rx.target, sizeof c->rx.target, "PTV");
    snprintf(c->rx.metric, sizeof c->rx.metric, "D95");
    set_goal(&c->goals[0], "PTV", "D95", IMRT_GOAL_GE, 57.0, 0);   /* 60: pass */
    set_goal(&c->goals[1], "Cord", "Dmax", IMRT_GOAL_LE, 15.0, 0);  /* 18: fail */
    set_goal(&c->goals[2], "Cord", "D50", IMRT_GOAL_LE, 12.0, 1);   /* 10: pass (preferred) */
    set_goal(&c->goals[3], "Cord", "V10", IMRT_GOAL_LE, 40.0, 0);   /* 50 %: fail */
    set_goal(&c->goals[4], "Ghost", "Dmean", IMRT_GOAL_LE, 5.0, 0); /* not evaluated */
}

static void summary_case_free(summary_case *c)
{
    free(c->dose);
    imrt_phantom_destroy(&c->p);
}

static void check_summary(const imrt_plan_metrics *m)
{
    assert_int_equal(m->nstructures, 4);
    assert_string_equal(m->target, "PTV");
    assert_close(m->rx_gy, 60.0, 0, 0);
    const imrt_structure_metrics *ptv = &m->structures[0], *cord = &m->structures[1];
    assert_string_equal(ptv->name, "PTV");
    assert_int_equal(ptv->kind, IMRT_KIND_TARGET);
    assert_close(ptv->volume_cm3, 64.0, 1e-9, 0);
    assert_close(ptv->d95, 60.0, 1e-9, 0);
    assert_close(ptv->dmean, 60.0, 1e-9, 0);
    assert_close(m->hi, 0.0, 0, 1e-12);
    assert_close(m->ci_paddick, 0.8, 1e-9, 0);
    assert_close(m->ci_rtog, 1.25, 1e-9, 0);
    /* cord doses 18, 16, ..., 0 over 10 cm^3 */
    assert_close(cord->dmax, 18.0, 1e-9, 0);
    assert_close(cord->d003cc, 18.0, 1e-9, 0); /* 0.03 cc is under one voxel */
    assert_close(cord->d50, 10.0, 1e-9, 0);
    assert_close(cord->dmean, 9.0, 1e-9, 0);
    assert_close(cord->dmin, 0.0, 0, 1e-12);
    assert_close(cord->volume_cm3, 10.0, 1e-9, 0);
    assert_true(isnan(m->structures[3].dmean)); /* Ghost is empty */
    /* (80 x 60 + 90) Gy x 1 g each x 1e-3 kg/g */
    assert_close(m->integral_dose_j, 4.89, 1e-6, 0);
    assert_int_equal(m->ngoals, 5);
    const int pass[5] = {1, 0, 1, 0, 0};
    const double achieved[4] = {60.0, 18.0, 10.0, 50.0};
    for (int k = 0; k < 5; k++)
        assert_int_equal(m->goals[k].pass, pass[k]);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(m->goals[k].evaluated, 1);
        assert_close(m->goals[k].achieved, achieved[k], 1e-9, 0);
    }
    assert_int_equal(m->goals[4].evaluated, 0);
    assert_true(isnan(m->goals[4].achieved));
    assert_int_equal(m->goals_failed, 3);
    assert_int_equal(m->preferred_failed, 0);
}

static void test_plan_summary(void **state)
{
    (void)state;
    summary_case c;
    summary_case_make(&c);
    imrt_plan_metrics *m = NULL;
    assert_ok(imrt_plan_metrics_compute(c.p, c.dose, &c.rx, c.goals, 5, &m));
    check_summary(m);
    assert_int_equal(imrt_plan_metrics_find(m, "Cord"), 1);
    assert_int_equal(imrt_plan_metrics_find(m, "cord"), -1);
    imrt_plan_metrics_destroy(&m);
    assert_null(m);

    imrt_goal_def bad = c.goals[0];
    snprintf(bad.structure, sizeof bad.structure, "Lens");
    assert_int_equal(imrt_plan_metrics_compute(c.p, c.dose, &c.rx, &bad, 1, &m), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "Lens"));
    assert_null(m);
    summary_case_free(&c);
}

/* The "plans.<name>" object carries the keys interface.md shows and reads
 * back (through text, as `imrt compare DIR` does) to the same summary. */
static void test_plan_summary_json(void **state)
{
    (void)state;
    summary_case c;
    summary_case_make(&c);
    imrt_plan_metrics *m = NULL, *back = NULL;
    assert_ok(imrt_plan_metrics_compute(c.p, c.dose, &c.rx, c.goals, 5, &m));
    json_t *o = NULL;
    assert_ok(imrt_plan_metrics_to_json(m, &o));
    json_t *ptv = json_object_get(json_object_get(o, "structures"), "PTV");
    assert_non_null(ptv);
    const char *skeys[] = {"Dmean", "Dmax", "D2", "D50", "D95", "D98", "volume_cm3"};
    for (size_t i = 0; i < sizeof skeys / sizeof skeys[0]; i++)
        assert_true(json_is_number(json_object_get(ptv, skeys[i])));
    assert_close(json_number_value(json_object_get(ptv, "D95")), 60.0, 1e-9, 0);
    json_t *g0 = json_array_get(json_object_get(o, "goals"), 0);
    assert_string_equal(json_string_value(json_object_get(g0, "structure")), "PTV");
    assert_string_equal(json_string_value(json_object_get(g0, "metric")), "D95");
    assert_string_equal(json_string_value(json_object_get(g0, "op")), ">=");
    assert_close(json_number_value(json_object_get(g0, "value")), 57.0, 0, 0);
    assert_close(json_number_value(json_object_get(g0, "achieved")), 60.0, 1e-9, 0);
    assert_true(json_is_true(json_object_get(g0, "pass")));
    for (const char *const *k = (const char *const[]){"hi", "ci_paddick", "integral_dose_j", NULL};
         *k; k++)
        assert_true(json_is_number(json_object_get(o, *k)));
    /* empty structure: null, not NaN (JSON has no NaN) */
    assert_true(json_is_null(
        json_object_get(json_object_get(json_object_get(o, "structures"), "Ghost"), "Dmean")));

    char *text = json_dumps(o, JSON_INDENT(2));
    assert_non_null(text);
    json_error_t err;
    json_t *o2 = json_loads(text, 0, &err);
    assert_non_null(o2);
    assert_ok(imrt_plan_metrics_from_json(o2, &back));
    check_summary(back);
    assert_close(back->conformity.tv_piv_cc, 64.0, 1e-9, 0);

    /* a missing required key is named */
    imrt_plan_metrics *none = NULL;
    json_object_del(o2, "hi");
    assert_int_equal(imrt_plan_metrics_from_json(o2, &none), IMRT_ERR_FORMAT);
    assert_non_null(strstr(imrt_last_error(), "\"hi\""));
    json_object_del(json_object_get(json_object_get(o2, "structures"), "PTV"), "D95");
    assert_int_equal(imrt_plan_metrics_from_json(o2, &none), IMRT_ERR_FORMAT);
    assert_non_null(strstr(imrt_last_error(), "PTV.D95"));
    assert_null(none);

    free(text);
    json_decref(o2);
    json_decref(o);
    imrt_plan_metrics_destroy(&back);
    imrt_plan_metrics_destroy(&m);
    summary_case_free(&c);
}

static void test_summary_allocation_failures(void **state)
{
    (void)state;
    summary_case c;
    summary_case_make(&c);
    int failures = 0;
    for (long n = 1; n <= 40; n++) {
        imrt_plan_metrics *m = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_plan_metrics_compute(c.p, c.dose, &c.rx, c.goals, 5, &m);
        imrt_alloc_fail_after(0);
        if (st != IMRT_OK) {
            assert_int_equal(st, IMRT_ERR_NOMEM);
            assert_null(m);
            failures++;
        }
        imrt_plan_metrics_destroy(&m);
    }
    assert_true(failures >= 5);
    summary_case_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mass_density),
        cmocka_unit_test(test_integral_dose),
        cmocka_unit_test(test_conformity),
        cmocka_unit_test(test_goal_eval_both_directions),
        cmocka_unit_test(test_normalisation_factor),
        cmocka_unit_test(test_plan_summary),
        cmocka_unit_test(test_plan_summary_json),
        cmocka_unit_test(test_summary_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
