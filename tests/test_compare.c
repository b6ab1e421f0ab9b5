/*
 * tests/test_compare.c - IMRT vs 3D-CRT comparison: the "which is better"
 * rule row by row on two hand-made plan summaries (goals met beat goals
 * missed, goal direction, targets closer to the prescription, organs lower,
 * HI/CI/integral dose, ties), the terminal table (fits 100 columns, long
 * names shortened) and the metrics.json pieces (written, read back, compared
 * again).
 */
#include "imrt/alloc.h"
#include "imrt/compare.h"

#include "test_util.h"

static void set_structure(imrt_structure_metrics *s, const char *name, imrt_structure_kind kind,
                          double vol, const double v[8])
{
    snprintf(s->name, sizeof s->name, "%s", name);
    s->kind = kind;
    s->volume_cm3 = vol;
    s->voxels = (int64_t)(vol * 64.0);
    s->dmean = v[0];
    s->dmax = v[1];
    s->d003cc = v[2];
    s->d2 = v[3];
    s->d50 = v[4];
    s->d95 = v[5];
    s->d98 = v[6];
    s->dmin = v[7];
}

static void set_goal(imrt_goal_result *g, const char *st, const char *metric, imrt_goal_op op,
                     double value, int preferred, double achieved)
{
    memset(g, 0, sizeof *g);
    snprintf(g->goal.structure, sizeof g->goal.structure, "%s", st);
    snprintf(g->goal.metric, sizeof g->goal.metric, "%s", metric);
    g->goal.op = op;
    g->goal.value = value;
    g->goal.preferred = preferred;
    g->evaluated = 1;
    g->achieved = achieved;
    g->pass = op == IMRT_GOAL_LE ? achieved <= value : achieved >= value;
}

#define LONG_NAME "Left_brachial_plexus_and_the_rest_of_a_very_long_structure_name"

/* Plan A (IMRT) or B (3D-CRT) of the same case, prescription 50 Gy.
 * Metrics order: Dmean, Dmax, D0.03cc, D2, D50, D95, D98, Dmin. */
static imrt_plan_metrics *make_plan(int crt)
{
    imrt_plan_metrics *m = imrt_calloc(1, sizeof *m);
    assert_non_null(m);
    m->nstructures = 3;
    m->structures = imrt_calloc(3, sizeof *m->structures);
    m->ngoals = 6;
    m->goals = imrt_calloc(6, sizeof *m->goals);
    assert_non_null(m->structures);
    assert_non_null(m->goals);
    snprintf(m->target, sizeof m->target, "PTV");
    m->rx_gy = 50.0;
    m->norm_factor = 1.0;
    const double ptv_a[8] = {50.5, 53.0, 52.8, 52.5, 50.4, 50.0, 49.5, 47.0};
    const double ptv_b[8] = {50.1, 56.0, 55.9, 55.0, 51.2, 50.004, 48.0, 44.0};
    const double cord_a[8] = {10.0, 30.0, 29.0, 28.0, 9.0, 2.0, 1.5, 1.0};
    const double cord_b[8] = {20.0, 45.0, 44.0, 43.0, 19.0, 1.0, 0.8, 0.5};
    const double lng_a[8] = {5, 6, 6, 6, 5, 4, 4, 4};
    const double lng_b[8] = {5, 6, 6, 6, 5, 4, 4, 4};
    set_structure(&m->structures[0], "PTV", IMRT_KIND_TARGET, 120.0, crt ? ptv_b : ptv_a);
    set_structure(&m->structures[1], "Cord", IMRT_KIND_OAR, 20.0, crt ? cord_b : cord_a);
    set_structure(&m->structures[2], LONG_NAME, IMRT_KIND_OAR, 30.0, crt ? lng_b : lng_a);
    const imrt_structure_metrics *p = &m->structures[0], *c = &m->structures[1];
    set_goal(&m->goals[0], "PTV", "D95", IMRT_GOAL_GE, 50.0, 0, p->d95);
    set_goal(&m->goals[1], "PTV", "D2", IMRT_GOAL_LE, 53.5, 0, p->d2);
    set_goal(&m->goals[2], "Cord", "Dmax", IMRT_GOAL_LE, 40.0, 0, c->dmax);
    set_goal(&m->goals[3], "Cord", "Dmean", IMRT_GOAL_LE, 25.0, 1, c->dmean);
    set_goal(&m->goals[4], "Cord", "D0.03cc", IMRT_GOAL_LE, 20.0, 0, c->d003cc);
    set_goal(&m->goals[5], LONG_NAME, "V20", IMRT_GOAL_LE, 30.0, 0, crt ? 25.0 : 35.0);
    for (int k = 0; k < m->ngoals; k++)
        if (!m->goals[k].pass)
            m->goals_failed += !m->goals[k].goal.preferred;
    m->hi = crt ? 0.14 : 0.06;
    m->ci_paddick = crt ? 0.60 : 0.85;
    m->ci_rtog = crt ? 0.8 : 1.1;
    m->integral_dose_j = crt ? 100.0 : 120.0;
    return m;
}

static const imrt_compare_row *find_row(const imrt_comparison *c, imrt_compare_row_kind kind,
                                        const char *structure, const char *item_prefix)
{
    for (int i = 0; i < c->nrows; i++) {
        const imrt_compare_row *r = &c->rows[i];
        if (r->kind == kind && strcmp(r->structure, structure) == 0 &&
            strncmp(r->item, item_prefix, strlen(item_prefix)) == 0)
            return r;
    }
    fail_msg("no comparison row %s %s", structure, item_prefix);
    return NULL;
}

static void expect(const imrt_comparison *c, imrt_compare_row_kind kind, const char *st,
                   const char *item, imrt_better better)
{
    const imrt_compare_row *r = find_row(c, kind, st, item);
    if (r->better != better)
        fail_msg("row %s %s: better = %d, expected %d (a %g, b %g)", st, item, r->better, better,
                 r->a, r->b);
}

static void test_better_rule(void **state)
{
    (void)state;
    imrt_plan_metrics *a = make_plan(0), *b = make_plan(1);
    imrt_comparison *c = NULL;
    assert_ok(imrt_compare_build(a, b, NULL, NULL, &c));
    assert_string_equal(c->name_a, "IMRT");
    assert_string_equal(c->name_b, "3D-CRT");
    assert_int_equal(c->nrows, 6 + 3 * 9 + 5);
    /* goals */
    expect(c, IMRT_ROW_GOAL, "PTV", "D95 >= 50 Gy", IMRT_BETTER_TIE); /* 50.000 vs 50.004 */
    expect(c, IMRT_ROW_GOAL, "PTV", "D2 <= 53.5 Gy", IMRT_BETTER_A);  /* pass beats fail */
    expect(c, IMRT_ROW_GOAL, "Cord", "Dmax", IMRT_BETTER_A);
    expect(c, IMRT_ROW_GOAL, "Cord", "Dmean", IMRT_BETTER_A);   /* both pass: lower */
    expect(c, IMRT_ROW_GOAL, "Cord", "D0.03cc", IMRT_BETTER_A); /* both fail: lower */
    expect(c, IMRT_ROW_GOAL, LONG_NAME, "V20 <= 30 %", IMRT_BETTER_B);
    const imrt_compare_row *r = find_row(c, IMRT_ROW_GOAL, "PTV", "D2");
    assert_int_equal(r->pass_a, 1);
    assert_int_equal(r->pass_b, 0);
    assert_close(r->diff, 52.5 - 55.0, 1e-12, 0);
    assert_string_equal(r->unit, "Gy");
    assert_int_equal(find_row(c, IMRT_ROW_GOAL, "Cord", "Dmean")->preferred, 1);
    /* target: closer to the prescription */
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "Dmax", IMRT_BETTER_A);  /* 3 vs 6 Gy off */
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "Dmean", IMRT_BETTER_B); /* 0.5 vs 0.1 off */
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "Dmin", IMRT_BETTER_A);
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "D95", IMRT_BETTER_TIE);
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "volume", IMRT_BETTER_NONE);
    /* organs: lower */
    expect(c, IMRT_ROW_STRUCTURE, "Cord", "Dmean", IMRT_BETTER_A);
    expect(c, IMRT_ROW_STRUCTURE, "Cord", "Dmin", IMRT_BETTER_B);
    expect(c, IMRT_ROW_STRUCTURE, LONG_NAME, "Dmax", IMRT_BETTER_TIE);
    /* plan indices */
    expect(c, IMRT_ROW_PLAN, "", "HI", IMRT_BETTER_A);
    expect(c, IMRT_ROW_PLAN, "", "CI Paddick", IMRT_BETTER_A);
    expect(c, IMRT_ROW_PLAN, "", "CI RTOG", IMRT_BETTER_A); /* |1.1-1| < |0.8-1| */
    expect(c, IMRT_ROW_PLAN, "", "Integral dose", IMRT_BETTER_B);
    expect(c, IMRT_ROW_PLAN, "", "Required goals missed", IMRT_BETTER_A); /* 2 vs 3 */
    assert_int_equal(c->wins_a + c->wins_b + c->ties, c->nrows - 3); /* volumes not ranked */
    imrt_compare_destroy(&c);
    assert_null(c);

    /* a tie needs equality to the shown digit or 0.1 %: 50.0 vs 50.2 is not */
    b->structures[0].d95 = 50.2;
    assert_ok(imrt_compare_build(a, b, "A", "B", &c));
    expect(c, IMRT_ROW_STRUCTURE, "PTV", "D95", IMRT_BETTER_A);
    imrt_compare_destroy(&c);
    /* missing values are not ranked; a goal or structure of one plan only still shows */
    b->structures[1].dmax = NAN;
    snprintf(b->structures[2].name, sizeof b->structures[2].name, "Esophagus");
    assert_ok(imrt_compare_build(a, b, "A", "B", &c));
    expect(c, IMRT_ROW_STRUCTURE, "Cord", "Dmax", IMRT_BETTER_NONE);
    expect(c, IMRT_ROW_STRUCTURE, "Esophagus", "Dmean", IMRT_BETTER_NONE);
    assert_int_equal(c->nrows, 6 + 4 * 9 + 5);
    imrt_compare_destroy(&c);
    imrt_plan_metrics_destroy(&a);
    imrt_plan_metrics_destroy(&b);
}

static void test_table_fits_100_columns(void **state)
{
    (void)state;
    imrt_plan_metrics *a = make_plan(0), *b = make_plan(1);
    imrt_comparison *c = NULL;
    char *t = NULL;
    assert_ok(imrt_compare_build(a, b, NULL, NULL, &c));
    assert_ok(imrt_compare_table(c, &t));
    assert_non_null(strstr(t, "IMRT vs 3D-CRT (prescription 50.00 Gy)"));
    assert_non_null(strstr(t, "PTV D2 <= 53.5 Gy"));
    assert_non_null(strstr(t, "Cord Dmean <= 25 Gy*"));
    assert_non_null(strstr(t, "* preferred goal"));
    assert_non_null(strstr(t, "~ V20 <= 30 %")); /* shortened structure name */
    assert_non_null(strstr(t, "CI Paddick"));
    assert_non_null(strstr(t, "Integral dose [J]"));
    int lines = 0;
    for (const char *s = t; *s;) {
        const char *e = strchr(s, '\n');
        assert_non_null(e);
        if (e - s > 100)
            fail_msg("table line %d is %d columns wide: %.*s", lines + 1, (int)(e - s),
                     (int)(e - s), s);
        lines++;
        s = e + 1;
    }
    assert_true(lines >= c->nrows);
    /* the PTV D2 goal row reads: values, pass/FAIL, signed difference, winner */
    const char *row = strstr(t, "PTV D2 <= 53.5 Gy");
    char line[128];
    sscanf(row, "%127[^\n]", line);
    assert_non_null(strstr(line, "52.50 pass"));
    assert_non_null(strstr(line, "55.00 FAIL"));
    assert_non_null(strstr(line, "-2.50"));
    assert_non_null(strstr(line, "IMRT"));
    imrt_free(t);
    /* allocation failures of the table */
    for (long n = 1; n <= 4; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_compare_table(c, &t);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK)
            imrt_free(t);
        else
            assert_int_equal(st, IMRT_ERR_NOMEM);
    }
    imrt_compare_destroy(&c);
    imrt_plan_metrics_destroy(&a);
    imrt_plan_metrics_destroy(&b);
}

static void test_metrics_json_round_trip(void **state)
{
    (void)state;
    imrt_plan_metrics *a = make_plan(0), *b = make_plan(1), *a2 = NULL, *b2 = NULL;
    json_t *o = NULL;
    assert_ok(imrt_compare_metrics_json(a, b, &o));
    json_t *plans = json_object_get(o, "plans");
    assert_non_null(json_object_get(plans, "imrt"));
    assert_non_null(json_object_get(plans, "3dcrt"));
    json_t *cmp = json_object_get(o, "comparison");
    assert_int_equal(json_array_size(json_object_get(cmp, "rows")), 6 + 27 + 5);
    json_t *row1 = json_array_get(json_object_get(cmp, "rows"), 1); /* PTV D2 goal */
    assert_string_equal(json_string_value(json_object_get(row1, "better")), "a");
    assert_string_equal(json_string_value(json_object_get(row1, "better_plan")), "IMRT");
    assert_true(json_is_false(json_object_get(row1, "pass_b")));

    /* written to text and read back, the plans compare the same way */
    char *text = json_dumps(o, 0);
    json_error_t err;
    json_t *o2 = json_loads(text, 0, &err);
    assert_non_null(o2);
    json_t *p2 = json_object_get(o2, "plans");
    assert_ok(imrt_plan_metrics_from_json(json_object_get(p2, "imrt"), &a2));
    assert_ok(imrt_plan_metrics_from_json(json_object_get(p2, "3dcrt"), &b2));
    imrt_comparison *c1 = NULL, *c2 = NULL;
    assert_ok(imrt_compare_build(a, b, NULL, NULL, &c1));
    assert_ok(imrt_compare_build(a2, b2, NULL, NULL, &c2));
    assert_int_equal(c1->nrows, c2->nrows);
    for (int i = 0; i < c1->nrows; i++) {
        assert_int_equal(c1->rows[i].better, c2->rows[i].better);
        assert_string_equal(c1->rows[i].item, c2->rows[i].item);
    }
    json_t *wins = json_object_get(cmp, "wins");
    assert_int_equal(json_integer_value(json_object_get(wins, "IMRT")), c1->wins_a);
    assert_int_equal(json_integer_value(json_object_get(wins, "3D-CRT")), c1->wins_b);

    /* one plan only: no comparison */
    json_t *solo = NULL;
    assert_ok(imrt_compare_metrics_json(a, NULL, &solo));
    assert_null(json_object_get(solo, "comparison"));
    assert_null(json_object_get(json_object_get(solo, "plans"), "3dcrt"));
    json_decref(solo);
    assert_int_equal(imrt_compare_metrics_json(NULL, NULL, &solo), IMRT_ERR_ARG);

    for (long n = 1; n <= 12; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_compare_metrics_json(a, b, &solo);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK)
            json_decref(solo);
        else
            assert_int_equal(st, IMRT_ERR_NOMEM);
    }
    imrt_compare_destroy(&c1);
    imrt_compare_destroy(&c2);
    free(text);
    json_decref(o2);
    json_decref(o);
    imrt_plan_metrics_destroy(&a);
    imrt_plan_metrics_destroy(&b);
    imrt_plan_metrics_destroy(&a2);
    imrt_plan_metrics_destroy(&b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_better_rule),
        cmocka_unit_test(test_table_fits_100_columns),
        cmocka_unit_test(test_metrics_json_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
