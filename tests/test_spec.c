/*
 * tests/test_spec.c - the JSON spec reader: every shipped phantom loads at
 * 2.5 and 4 mm with the structures its plan names and plausible volumes;
 * the plan part is read as written; typos (unknown key, wrong type,
 * missing key, negative size, syntax) give errors naming file, line and key;
 * overlaps and priorities; the grid option keeps the physical extent; the
 * reader survives mutated input and allocation failures without leaks.
 *
 * Expected line numbers are found in the test files' text by this test
 * (the line holding the offending token), not taken from the reader.
 */
#include "imrt/alloc.h"
#include "imrt/dose.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/spec.h"

#include "test_util.h"

#include <time.h>

#define PI 3.14159265358979323846

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (tests run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* 1-based line of the first occurrence of needle in the file. */
static int line_of(const char *path, const char *needle)
{
    char *t = read_text(path, NULL);
    char *hit = strstr(t, needle);
    if (!hit)
        fail_msg("'%s' not found in %s", needle, path);
    int line = 1;
    for (char *p = t; p < hit; p++)
        line += *p == '\n';
    free(t);
    return line;
}

static const imrt_structure *need(const imrt_phantom *p, const char *name)
{
    int s = imrt_phantom_find(p, name);
    if (s < 0)
        fail_msg("phantom %s has no structure '%s'", p->name, name);
    return &p->structures[s];
}

static double cc(const imrt_phantom *p, const char *name)
{
    return imrt_structure_volume_cc(p, need(p, name));
}

/* ---- the shipped phantoms ---- */

static const char *const PHANTOMS[] = {"phantoms/tg119_cshape.json", "phantoms/spine_vertebra.json",
                                       "phantoms/sacrum_chordoma.json",
                                       "phantoms/femur_osteosarcoma.json", "phantoms/water_box.json"};

/* Every structure a goal, objective or the prescription names exists; the
 * outline is BODY of kind body; the target is PTV of kind target. */
static void check_plan_refs(const imrt_phantom *p, const imrt_plan *plan, int has_target)
{
    const imrt_structure *body = need(p, "BODY");
    assert_int_equal(body->kind, IMRT_KIND_BODY);
    for (int i = 0; i < plan->ngoals; i++)
        need(p, plan->goals[i].structure);
    for (int i = 0; i < plan->nobjectives; i++)
        need(p, plan->objectives[i].structure);
    if (has_target) {
        assert_string_equal(plan->rx.target, "PTV");
        assert_int_equal(need(p, "PTV")->kind, IMRT_KIND_TARGET);
        assert_true(plan->rx.normalise);
        assert_true(plan->nbeams >= 5);
        assert_non_null(plan->description);
        assert_true(strlen(plan->description) > 200);
    }
    /* every structure lies inside the body outline (up to one voxel) */
    int64_t n = imrt_grid_nvox(&p->grid);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *st = &p->structures[s];
        int64_t outside = 0;
        for (int64_t v = 0; v < n; v++)
            outside += st->mask[v] && !body->mask[v];
        assert_true(outside <= st->count / 100);
    }
}

static void test_shipped_phantoms_load(void **state)
{
    (void)state;
    const double spacings[2] = {2.5, 4.0};
    double total = 0.0;
    for (int g = 0; g < 2; g++)
        for (size_t i = 0; i < sizeof PHANTOMS / sizeof PHANTOMS[0]; i++) {
            imrt_spec_options opt = {g == 0 ? 0.0 : spacings[g], 0};
            imrt_phantom *p = NULL;
            imrt_plan *plan = NULL;
            imrt_spec_info *info = NULL;
            assert_ok(imrt_spec_load_ex(PHANTOMS[i], &opt, &p, &plan, &info));
            assert_close(p->grid.dx, spacings[g], 0, 1e-12);
            assert_close(p->grid.dz, spacings[g], 0, 1e-12);
            total += info->seconds;
            int is_water = strstr(PHANTOMS[i], "water_box") != NULL;
            check_plan_refs(p, plan, !is_water);
            print_message("%-20s %4.1f mm: %d x %d x %d, built in %.3f s\n", p->name, spacings[g],
                          p->grid.nx, p->grid.ny, p->grid.nz, info->seconds);
            imrt_spec_info_destroy(&info);
            imrt_plan_destroy(&plan);
            imrt_phantom_destroy(&p);
        }
    print_message("all phantoms at 2.5 and 4 mm: %.2f s\n", total);
}

/* Volumes against the anatomy the specs describe (analytic where the
 * structure is one solid; ranges from the specs' dimensions otherwise). */
static void test_phantom_volumes(void **state)
{
    (void)state;
    for (int g = 0; g < 2; g++) {
        imrt_spec_options opt = {g == 0 ? 0.0 : 4.0, 0};
        /* voxel error allowed: 4 % at 2.5 mm, 15 % at 4 mm (small solids,
         * e.g. the 10 mm core is 2.5 voxels across at 4 mm) */
        double tol = g == 0 ? 0.04 : 0.15;
        imrt_phantom *p = NULL;
        imrt_plan *plan = NULL;

        assert_ok(imrt_spec_load("phantoms/tg119_cshape.json", &opt, &p, &plan));
        /* TG-119: C = 3/4 of an annulus r 15..37 mm, 80 mm long; core r 10, 100 mm */
        assert_close(cc(p, "PTV"), 0.75 * PI * (37.0 * 37.0 - 15.0 * 15.0) * 80.0e-3, tol, 0);
        assert_close(cc(p, "Core"), PI * 100.0 * 100.0e-3, tol, 0);
        assert_int_equal(plan->nbeams, 9);
        for (int b = 0; b < 9; b++)
            assert_close(plan->beams[b].gantry_deg, 40.0 * b, 0, 1e-12);
        assert_close(plan->rx.dose_gy, 50.0, 0, 1e-12);
        assert_int_equal(plan->ngoals, 4);
        assert_int_equal(plan->goals[3].preferred, 1);
        assert_close(plan->goals[3].value, 10.0, 0, 1e-12);
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);

        assert_ok(imrt_spec_load("phantoms/spine_vertebra.json", &opt, &p, &plan));
        /* kidneys: ellipsoids 56 x 44 x 110 mm */
        double kidney = 4.0 / 3.0 * PI * 28.0 * 22.0 * 55.0e-3;
        assert_close(cc(p, "Kidney_L"), kidney, tol, 0);
        assert_close(cc(p, "Kidney_R"), kidney, tol, 0);
        assert_in_range_d(cc(p, "PTV"), 200.0, 600.0);  /* vertebral body + extension + margins */
        /* cord: elliptic cylinder 12 x 10 mm over 150 mm, only 3-5 voxels
         * across: 10 % at 2.5 mm, 40 % at 4 mm */
        assert_close(cc(p, "Cord"), PI * 6.0 * 5.0 * 150.0e-3, g == 0 ? 0.10 : 0.40, 0);
        assert_in_range_d(cc(p, "Bowel"), 1500.0, 3500.0);
        assert_close(plan->rx.dose_gy, 55.8, 0, 1e-12);
        assert_int_equal(plan->rx.fractions, 31);
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);

        assert_ok(imrt_spec_load("phantoms/sacrum_chordoma.json", &opt, &p, &plan));
        double head = 4.0 / 3.0 * PI * 24.0 * 24.0 * 24.0e-3;
        assert_close(cc(p, "FemHead_L"), head, tol, 0);
        assert_close(cc(p, "FemHead_R"), head, tol, 0);
        assert_close(cc(p, "Bladder"), 4.0 / 3.0 * PI * 45.0 * 35.0 * 32.0e-3, tol, 0);
        assert_in_range_d(cc(p, "Rectum"), 50.0, 120.0);
        assert_in_range_d(cc(p, "PTV"), 300.0, 800.0);
        assert_in_range_d(cc(p, "SmallBowel"), 800.0, 3000.0);
        assert_close(plan->rx.dose_gy, 70.0, 0, 1e-12);
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);

        assert_ok(imrt_spec_load("phantoms/femur_osteosarcoma.json", &opt, &p, &plan));
        /* thigh: cylinder r 80 mm, 250 mm long */
        assert_close(cc(p, "BODY"), PI * 80.0 * 80.0 * 250.0e-3, tol, 0);
        assert_in_range_d(cc(p, "PTV"), 300.0, 1200.0);
        assert_in_range_d(cc(p, "SkinStrip"), 60.0, 200.0);
        assert_in_range_d(cc(p, "Joint"), 8.0, 30.0);
        /* Femur_outside_PTV is exactly Femur minus PTV */
        const imrt_structure *fe = need(p, "Femur"), *ptv = need(p, "PTV"),
                             *fo = need(p, "Femur_outside_PTV");
        int64_t n = imrt_grid_nvox(&p->grid);
        for (int64_t v = 0; v < n; v++)
            assert_int_equal(fo->mask[v], fe->mask[v] && !ptv->mask[v]);
        /* no beam passes through the spared strip: its centroid is more than
         * the PTV's half-width from every beam's central axis */
        double sc[3], pc[3], plo[3], phi[3];
        assert_ok(imrt_structure_geometry(p, need(p, "SkinStrip"), sc, NULL, NULL));
        assert_ok(imrt_structure_geometry(p, ptv, pc, plo, phi));
        double half_width = 0.5 * fmax(phi[0] - plo[0], phi[1] - plo[1]);
        for (int b = 0; b < plan->nbeams; b++) {
            double th = plan->beams[b].gantry_deg * PI / 180.0;
            double dir[2] = {sin(th), -cos(th)};
            double rx = sc[0] - pc[0], ry = sc[1] - pc[1];
            double off = fabs(rx * dir[1] - ry * dir[0]);
            assert_true(off > 0.8 * half_width);
        }
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);

        assert_ok(imrt_spec_load("phantoms/water_box.json", &opt, &p, &plan));
        assert_close(cc(p, "BODY"), 27000.0, 1e-9, 0);
        assert_int_equal(p->nstructures, 1);
        assert_close(p->density[imrt_grid_nvox(&p->grid) / 2], 1.0, 0, 1e-6);
        assert_int_equal(plan->nbeams, 1);
        assert_int_equal(plan->beams[0].open_field, 1);
        assert_close(plan->beams[0].field_mm[0], 100.0, 0, 1e-12);
        assert_close(plan->beams[0].isocentre[1], -150.0, 0, 1e-12);
        assert_int_equal(plan->rx.normalise, 0);
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);
    }
}

/* The grid option keeps the physical extent at every spacing from 2 to 5 mm. */
static void test_grid_override(void **state)
{
    (void)state;
    const double hs[] = {2.0, 3.0, 4.0, 5.0};
    for (size_t i = 0; i < 4; i++) {
        imrt_spec_options opt = {hs[i], 0};
        imrt_phantom *p = NULL;
        assert_ok(imrt_spec_load("tests/specs/small.json", &opt, &p, NULL));
        /* size_mm [100, 80, 60]: n = ceil(size / h), centred on 0 */
        double lo[3], hi[3];
        imrt_grid_bounds(&p->grid, lo, hi);
        assert_true(hi[0] - lo[0] >= 100.0 - 1e-9 && hi[0] - lo[0] < 100.0 + hs[i]);
        assert_true(hi[2] - lo[2] >= 60.0 - 1e-9 && hi[2] - lo[2] < 60.0 + hs[i]);
        assert_close(0.5 * (lo[1] + hi[1]), 0.0, 0, 1e-9);
        /* the CTV sphere r 10 mm: voxel volume within the 2-5 mm error */
        assert_close(cc(p, "CTV"), 4.0 / 3.0 * PI * 1.0, 0.35, 0);
        imrt_phantom_destroy(&p);
    }
    imrt_spec_options bad = {0.3, 0};
    imrt_phantom *p = NULL;
    assert_int_equal(imrt_spec_load("tests/specs/small.json", &bad, &p, NULL), IMRT_ERR_ARG);
    assert_null(p);
}

static void test_plan_part(void **state)
{
    (void)state;
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    assert_ok(imrt_spec_load("tests/specs/small.json", NULL, &p, &plan));
    assert_string_equal(p->name, "small");
    assert_close(plan->rx.dose_gy, 60.0, 0, 1e-12);
    assert_int_equal(plan->rx.fractions, 30);
    assert_string_equal(plan->rx.target, "PTV");
    assert_string_equal(plan->rx.metric, "D95");
    assert_int_equal(plan->nbeams, 5);
    assert_string_equal(plan->beams[0].name, "G000");
    assert_close(plan->beams[1].gantry_deg, 72.0, 0, 1e-12);
    assert_close(plan->beams[2].couch_deg, 10.0, 0, 1e-12);
    assert_string_equal(plan->beams[2].name, "G144C+10");
    assert_string_equal(plan->beams[3].name, "open");
    assert_int_equal(plan->beams[3].open_field, 1);
    assert_int_equal(plan->beams[3].has_isocentre, 1);
    assert_close(plan->beams[3].field_mm[1], 40.0, 0, 1e-12);
    assert_close(plan->beamlet_mm, 4.0, 0, 1e-12);
    assert_close(plan->beamlet_margin_mm, 5.0, 0, 1e-12); /* default */
    assert_close(plan->dose_grid_mm[2], 5.0, 0, 1e-12);
    assert_close(plan->cutoff, 0.002, 0, 1e-15);
    assert_true(plan->lateral_cutoff_mm == 0.0); /* absent: none */
    assert_int_equal(plan->nobjectives, 4);
    assert_int_equal(plan->objectives[0].kind, IMRT_OBJ_SQ_DEVIATION);
    assert_close(plan->objectives[0].weight, 100.0, 0, 1e-12);
    assert_int_equal(plan->objectives[1].kind, IMRT_OBJ_MAX_DVH);
    assert_close(plan->objectives[1].volume_pct, 20.0, 0, 1e-12);
    assert_int_equal(plan->objectives[2].kind, IMRT_OBJ_MEAN);
    assert_int_equal(plan->objectives[2].at_most, 1); /* default for mean */
    assert_close(plan->objectives[2].weight, 1.0, 0, 1e-12);
    assert_int_equal(plan->objectives[3].kind, IMRT_OBJ_GEUD);
    assert_close(plan->objectives[3].a, 8.0, 0, 1e-12);
    assert_int_equal(plan->objectives[3].constraint, 1);
    assert_int_equal(plan->ngoals, 2);
    assert_int_equal(plan->goals[0].op, IMRT_GOAL_GE);
    assert_int_equal(plan->goals[1].op, IMRT_GOAL_LE);
    assert_string_equal(plan->goals[1].metric, "D0.03cc");
    assert_int_equal(plan->goals[1].preferred, 1);
    assert_int_equal(plan->crt_nbeams, 3);
    assert_close(plan->crt_margin_mm, 8.0, 0, 1e-12);
    assert_int_equal(plan->solver.max_iterations, 150);
    assert_close(plan->solver.max_time_s, 60.0, 0, 1e-12);
    assert_non_null(strstr(plan->description, "small test phantom"));
    /* densities: the rod is bone, the body water, outside air */
    const imrt_grid *g = &p->grid;
    int ijk[3];
    const double in_rod[3] = {0, 20, 0}, in_water[3] = {30, 0, 0}, in_air[3] = {48, 38, 0};
    assert_true(imrt_grid_locate(g, in_rod, ijk));
    assert_close(p->density[imrt_grid_index(g, ijk[0], ijk[1], ijk[2])], 1.7, 0, 1e-6);
    assert_true(imrt_grid_locate(g, in_water, ijk));
    assert_close(p->density[imrt_grid_index(g, ijk[0], ijk[1], ijk[2])], 1.0, 0, 1e-6);
    assert_true(imrt_grid_locate(g, in_air, ijk));
    assert_close(p->density[imrt_grid_index(g, ijk[0], ijk[1], ijk[2])], 0.001, 0, 1e-6);
    /* PTV = CTV + 5 mm contains the CTV */
    const imrt_structure *ctv = need(p, "CTV"), *ptv = need(p, "PTV");
    for (int64_t v = 0; v < imrt_grid_nvox(g); v++)
        if (ctv->mask[v])
            assert_true(ptv->mask[v]);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

/* ---- errors naming file, line and key ---- */

static void expect_error(const char *file, imrt_status want, const char *needle_line,
                         const char *key, const char *what)
{
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_status st = imrt_spec_load(file, NULL, &p, &plan);
    const char *msg = imrt_last_error();
    print_message("%s -> %s\n", file, msg);
    assert_int_equal(st, want);
    assert_null(p);
    assert_null(plan);
    char where[512];
    snprintf(where, sizeof where, "%s:%d:", file, line_of(file, needle_line));
    if (strncmp(msg, where, strlen(where)) != 0)
        fail_msg("message '%s' does not start with '%s'", msg, where);
    if (key && !strstr(msg, key))
        fail_msg("message '%s' does not name the key '%s'", msg, key);
    if (what && !strstr(msg, what))
        fail_msg("message '%s' does not say '%s'", msg, what);
}

static void test_errors_name_file_line_key(void **state)
{
    (void)state;
    expect_error("tests/specs/bad_unknown_key.json", IMRT_ERR_PARSE, "\"radius\"",
                 "phantom.shapes[2].radius", "did you mean 'radius_mm'");
    expect_error("tests/specs/bad_type.json", IMRT_ERR_PARSE, "\"spacing_mm\"",
                 "phantom.grid.spacing_mm", "must be a number in [0.5, 50] mm (got a string)");
    expect_error("tests/specs/bad_missing.json", IMRT_ERR_PARSE, "{\"name\": \"Rod\"",
                 "phantom.structures[2].kind", "missing required key 'kind'");
    expect_error("tests/specs/bad_negative.json", IMRT_ERR_RANGE, "\"margin_mm\": -2",
                 "phantom.structures[1].margin_mm", "must be >= 0");
    expect_error("tests/specs/bad_negative_size.json", IMRT_ERR_RANGE, "\"radius_mm\": -6",
                 "phantom.shapes[1].radius_mm", "must be > 0");
    expect_error("tests/specs/bad_goal_structure.json", IMRT_ERR_RANGE, "\"Cord\"",
                 "goals[1].structure", "unknown structure 'Cord'");
    expect_error("tests/specs/bad_huge_grid.json", IMRT_ERR_RANGE, "\"size_mm\"",
                 "phantom.grid.size_mm", "voxels");
    expect_error("tests/specs/bad_metric.json", IMRT_ERR_RANGE, "D95%", "goals[0].metric",
                 "unknown metric");
    /* syntax errors come from jansson with line and column */
    imrt_phantom *p = NULL;
    assert_int_equal(imrt_spec_load("tests/specs/bad_syntax.json", NULL, &p, NULL), IMRT_ERR_PARSE);
    char where[256];
    snprintf(where, sizeof where, "tests/specs/bad_syntax.json:%d:",
             line_of("tests/specs/bad_syntax.json", "\"objectives\""));
    assert_non_null(strstr(imrt_last_error(), where));
    assert_non_null(strstr(imrt_last_error(), "syntax"));
    /* a file that does not exist */
    assert_int_equal(imrt_spec_load("tests/specs/no_such_file.json", NULL, &p, NULL), IMRT_ERR_IO);
    assert_int_equal(imrt_spec_load(NULL, NULL, &p, NULL), IMRT_ERR_ARG);
}

/* Errors in specs held in memory (imrt_spec_parse). */
static void expect_parse_error(const char *text, imrt_status want, const char *needle)
{
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_status st = imrt_spec_parse(text, strlen(text), "mem.json", NULL, NULL, &p, &plan, NULL);
    if (st != want || !strstr(imrt_last_error(), needle))
        fail_msg("for %s\n  got %d '%s', wanted %d and '%s'", text, st, imrt_last_error(), want,
                 needle);
    assert_null(p);
    assert_null(plan);
}

#define GRID "\"grid\": {\"size_mm\": [20, 20, 20], \"spacing_mm\": 2}, \"materials\": {\"w\": 1.0}"

static void test_errors_in_memory(void **state)
{
    (void)state;
    expect_parse_error("[]", IMRT_ERR_PARSE, "must be a JSON object");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": []}}",
                       IMRT_ERR_RANGE, "at least one structure");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [{\"type\": \"cube\", \"centre_mm\": [0,0,0]}],"
                       " \"structures\": []}}",
                       IMRT_ERR_RANGE, "unknown shape type 'cube'");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [{\"type\": \"sphere\", \"centre_mm\": [0,0],"
                       " \"radius_mm\": 5}], \"structures\": []}}",
                       IMRT_ERR_PARSE, "phantom.shapes[0].centre_mm: must be an array of 3 numbers");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"union\": [\"nothing\"]}]}}",
                       IMRT_ERR_RANGE, "'nothing' is not a shape or structure");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"organ\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 5}]}}",
                       IMRT_ERR_RANGE, "must be \"target\", \"oar\" or \"body\"");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [90,0,0], \"radius_mm\": 5}]}}",
                       IMRT_ERR_RANGE, "contains no voxel centre");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 5,"
                       " \"shell\": \"x\"}]}}",
                       IMRT_ERR_PARSE, "give only one of");
    expect_parse_error("{\"phantom\": {\"grid\": {\"size_mm\": [20, 20, 20], \"spacing_mm\": 2},"
                       " \"materials\": {\"steel\": 7.9}, \"shapes\": [], \"structures\": []}}",
                       IMRT_ERR_RANGE, "allow_metal");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 5}]},"
                       " \"beams\": [360]}",
                       IMRT_ERR_RANGE, "beams[0]: must be in [0, 360)");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 5}]},"
                       " \"objectives\": [{\"structure\": \"A\", \"type\": \"mean\", \"dose_gy\": 5, \"volume_pct\": 3}]}",
                       IMRT_ERR_PARSE, "objectives[0].volume_pct: is only used by max_dvh and min_dvh");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 5}]},"
                       " \"prescription\": {\"dose_gy\": 60}}",
                       IMRT_ERR_PARSE, "prescription.target: missing required key 'target'");
    expect_parse_error("{\"a\": 1, \"a\": 2}", IMRT_ERR_PARSE, "duplicate");
    expect_parse_error("{\"phantom\": {" GRID ", \"shapes\": [], \"structures\": [{\"name\": \"A\","
                       " \"kind\": \"oar\", \"type\": \"sphere\", \"centre_mm\": [0,0,0], \"radius_mm\": 1e999}]}}",
                       IMRT_ERR_PARSE, "syntax");
    /* deep nesting is refused, not followed */
    char deep[4096];
    size_t k = (size_t)snprintf(deep, sizeof deep,
                                "{\"phantom\": {" GRID ", \"shapes\": [{\"name\": \"s\", \"type\": \"sphere\","
                                " \"centre_mm\": [0,0,0], \"radius_mm\": 5}], \"structures\": [{\"name\": \"A\","
                                " \"kind\": \"oar\", \"expand\": ");
    for (int i = 0; i < 20; i++)
        k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"expand\": ");
    k += (size_t)snprintf(deep + k, sizeof deep - k, "\"s\"");
    for (int i = 0; i < 20; i++)
        k += (size_t)snprintf(deep + k, sizeof deep - k, ", \"margin_mm\": 1}");
    snprintf(deep + k, sizeof deep - k, ", \"margin_mm\": 1}]}}");
    expect_parse_error(deep, IMRT_ERR_RANGE, "nest deeper");
}

/* ---- overlaps, priorities, painting order, booleans ---- */

static void test_overlaps_and_priorities(void **state)
{
    (void)state;
    imrt_phantom *p = NULL;
    assert_ok(imrt_spec_load("tests/specs/overlap.json", NULL, &p, NULL));
    const imrt_grid *g = &p->grid;
    int64_t n = imrt_grid_nvox(g);
    uint8_t *labels = calloc((size_t)n, 1);
    imrt_phantom_label_map(p, labels);
    int iL = imrt_phantom_find(p, "L"), iR = imrt_phantom_find(p, "R"),
        iL2 = imrt_phantom_find(p, "L2");
    const double both[3] = {1, 1, 1}, only_left[3] = {-11, 1, 1}, only_right[3] = {11, 1, 1},
                 none[3] = {-19, -19, -9};
    int ijk[3];
    /* overlap of left (a, 1.5) and right (b, 0.5): painted later wins */
    assert_true(imrt_grid_locate(g, both, ijk));
    int64_t v = imrt_grid_index(g, ijk[0], ijk[1], ijk[2]);
    assert_close(p->density[v], 0.5, 0, 1e-6);
    /* the disabled shape paints nothing */
    assert_close(p->density[imrt_grid_index(g, g->nx / 2, g->ny / 2, g->nz / 2)], 0.5, 0, 1e-6);
    /* label: R (priority 1) beats L and L2 (priority 2) */
    assert_int_equal(labels[v], iR + 1);
    /* only left: L and L2 tie at priority 2, the later one (L2) owns it */
    assert_true(imrt_grid_locate(g, only_left, ijk));
    v = imrt_grid_index(g, ijk[0], ijk[1], ijk[2]);
    assert_close(p->density[v], 1.5, 0, 1e-6);
    assert_int_equal(labels[v], iL2 + 1);
    assert_true(imrt_grid_locate(g, only_right, ijk));
    assert_int_equal(labels[imrt_grid_index(g, ijk[0], ijk[1], ijk[2])], iR + 1);
    assert_true(imrt_grid_locate(g, none, ijk));
    v = imrt_grid_index(g, ijk[0], ijk[1], ijk[2]);
    assert_int_equal(labels[v], 0);
    assert_close(p->density[v], 1.0, 0, 1e-6); /* numeric background */
    /* booleans voxel by voxel */
    const uint8_t *L = p->structures[iL].mask, *R = p->structures[iR].mask;
    const uint8_t *B = need(p, "Both")->mask, *E = need(p, "Either")->mask,
                  *O = need(p, "OnlyLeft")->mask;
    for (int64_t u = 0; u < n; u++) {
        assert_int_equal(B[u], L[u] && R[u]);
        assert_int_equal(E[u], L[u] || R[u]);
        assert_int_equal(O[u], L[u] && !R[u]);
    }
    /* the disabled shape still defines geometry for structures */
    assert_true(need(p, "Hidden")->count > 0);
    free(labels);
    imrt_phantom_destroy(&p);
}

/* ---- robustness ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Mutated specs (byte changes, deletions, truncations, duplicated spans)
 * must give a status, never a crash (ASan watches memory). */
static void test_mutations_do_not_crash(void **state)
{
    (void)state;
    size_t len = 0;
    char *orig = read_text("tests/specs/small.json", &len);
    char *buf = malloc(len + 256);
    const char tokens[] = "{}[]\",:-0123456789eE.ntf ";
    int ok = 0, failed = 0;
    imrt_spec_options opt = {5.0, 0};
    for (int it = 0; it < 400; it++) {
        memcpy(buf, orig, len);
        size_t n = len;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && n > 2; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 4) {
            case 0:
                buf[at] = tokens[rnd() % (sizeof tokens - 1)];
                break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            case 2:
                n = at + 1;
                break;
            default: {
                size_t span = 1 + rnd() % 16;
                if (at + span < n && n + span < len + 256) {
                    memmove(buf + at + span, buf + at, n - at);
                    n += span;
                }
            }
            }
        }
        imrt_phantom *p = NULL;
        imrt_plan *plan = NULL;
        imrt_status st = imrt_spec_parse(buf, n, "mutant.json", NULL, &opt, &p, &plan, NULL);
        if (st == IMRT_OK) {
            ok++;
            assert_non_null(p);
        } else {
            failed++;
            assert_null(p);
            assert_true(strlen(imrt_last_error()) > 0);
        }
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);
    }
    print_message("mutants: %d loaded, %d refused\n", ok, failed);
    free(buf);
    free(orig);
}

/* Fail the n-th allocation for every n: each failure is reported as
 * IMRT_ERR_NOMEM (or recovered from) and leaks nothing (ASan). */
static void test_allocation_failures(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = read_text("tests/specs/small.json", &len);
    int nomem = 0;
    for (long n = 1; n < 20000; n++) {
        imrt_phantom *p = NULL;
        imrt_plan *plan = NULL;
        imrt_spec_info *info = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_spec_parse(text, len, "small.json", NULL, NULL, &p, &plan, &info);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            assert_non_null(p);
            assert_non_null(plan);
            assert_non_null(info);
            imrt_spec_info_destroy(&info);
            imrt_plan_destroy(&plan);
            imrt_phantom_destroy(&p);
            break;
        }
        if (st != IMRT_ERR_NOMEM)
            fail_msg("allocation %ld failing gave %d: %s", n, st, imrt_last_error());
        assert_null(p);
        assert_null(plan);
        assert_null(info);
        nomem++;
    }
    assert_true(nomem > 10);
    free(text);
}

/* lateral_cutoff_mm: parsed into the plan; outside [20, 1000] mm refused. */
static void test_lateral_cutoff_key(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = read_text("tests/specs/small.json", &len);
    const char *key = "\"cutoff\": 0.002";
    char *at = strstr(text, key);
    assert_non_null(at);
    const double vals[3] = {50.0, 19.9, 1000.5};
    for (int i = 0; i < 3; i++) {
        char *buf = malloc(len + 64);
        const size_t head = (size_t)(at - text);
        memcpy(buf, text, head);
        int n = snprintf(buf + head, 64, "\"cutoff\": 0.002, \"lateral_cutoff_mm\": %g", vals[i]);
        strcpy(buf + head + (size_t)n, at + strlen(key));
        imrt_phantom *p = NULL;
        imrt_plan *plan = NULL;
        imrt_status st = imrt_spec_parse(buf, strlen(buf), "small.json", NULL, NULL, &p, &plan,
                                         NULL);
        if (i == 0) {
            assert_int_equal(st, IMRT_OK);
            assert_true(plan->lateral_cutoff_mm == 50.0);
            imrt_dose_options o;
            imrt_dose_options_from_plan(plan, &o);
            assert_true(o.lateral_cutoff_mm == 50.0);
        } else {
            assert_int_equal(st, IMRT_ERR_RANGE);
            if (!strstr(imrt_last_error(), "lateral_cutoff_mm") ||
                !strstr(imrt_last_error(), "[20, 1000]"))
                fail_msg("message '%s' does not name the key and range", imrt_last_error());
        }
        imrt_plan_destroy(&plan);
        imrt_phantom_destroy(&p);
        free(buf);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_phantoms_load),
        cmocka_unit_test(test_lateral_cutoff_key),
        cmocka_unit_test(test_phantom_volumes),
        cmocka_unit_test(test_grid_override),
        cmocka_unit_test(test_plan_part),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_errors_in_memory),
        cmocka_unit_test(test_overlaps_and_priorities),
        cmocka_unit_test(test_mutations_do_not_crash),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
