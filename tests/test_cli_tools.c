/*
 * tests/test_cli_tools.c - `imrt compare`, `imrt dvh` and `imrt gamma` run as
 * a user runs them, on files this test writes with the library into a
 * temporary folder: the comparison table and JSON of a metrics.json with
 * hand-known doses, DVH CSV and summary against hand-computed values (doses
 * 1..100 Gy in 100 voxels), gamma of identical, uniformly scaled and
 * block-scaled doses with pass rates worked out by hand, and the exit codes
 * and one-line messages of bad options and bad files. The binary comes from
 * $IMRT (set by `make test`), else build/imrt. IMRT_TEST_KEEP=1 keeps the
 * temporary folder.
 */
#include "imrt.h"

#include "test_util.h"

#include <sys/wait.h>

static char tmp[256];

static const char *imrt_bin(void)
{
    const char *b = getenv("IMRT");
    return b && *b ? b : "build/imrt";
}

/* Run `imrt ARGS` in a shell; stdout (and stderr too when merge is set, else
 * stderr is discarded) goes into out. Returns the exit code. */
static int run(const char *args, int merge, char *out, size_t outsz)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", imrt_bin(), args, merge ? "2>&1" : "2>/dev/null");
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, outsz - 1, f);
    out[n] = '\0';
    while (fgetc(f) != EOF) {
    }
    int st = pclose(f);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Path of a file in the temporary folder (static ring of buffers). */
static const char *tp(const char *name)
{
    static char buf[8][512];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", tmp, name);
    return b;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The line of `text` that starts with `prefix` (copied into line), or fail. */
static void find_line(const char *text, const char *prefix, char *line, size_t size)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= pl && strncmp(p, prefix, pl) == 0) {
            snprintf(line, size, "%.*s", (int)len, p);
            return;
        }
        p = nl ? nl + 1 : NULL;
    }
    fail_msg("no line starting with '%s' in:\n%s", prefix, text);
}

/* A value after "key: " on its own line. */
static double value_after(const char *text, const char *key)
{
    char line[512];
    find_line(text, key, line, sizeof line);
    return strtod(line + strlen(key), NULL);
}

static void expect_exit(const char *args, int code, const char *needle)
{
    char out[8192];
    int rc = run(args, 1, out, sizeof out);
    if (rc != code)
        fail_msg("'imrt %s' exited %d, expected %d; output:\n%s", args, rc, code, out);
    if (needle && !strstr(out, needle))
        fail_msg("'imrt %s': output lacks '%s':\n%s", args, needle, out);
}

/* A usage error: exit 2 with exactly one line on stderr. */
static void expect_usage(const char *args)
{
    char out[8192];
    int rc = run(args, 1, out, sizeof out);
    if (rc != 2 || count_lines(out) != 1)
        fail_msg("'imrt %s' exited %d with %d lines (expected 2 with one line):\n%s", args, rc,
                 count_lines(out), out);
}

static void write_text(const char *path, const char *text)
{
    assert_ok(imrt_io_write_file(path, text, strlen(text)));
}

/* ------------------------------------------------------------------------ */
/* Fixtures: files written once for all tests                               */
/* ------------------------------------------------------------------------ */

static imrt_grid grid_2mm(int nx, int ny, int nz)
{
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, nx, ny, nz, 2.0, 2.0, 2.0, o));
    return g;
}

/* DVH case on 10 x 10 x 3 voxels of 2 mm (0.008 cm^3): slice z=0 is label 1
 * "PTV" with doses 1, 2, ..., 100 Gy; z=1 label 2 "Spinal cord" at 7 Gy;
 * z=2 half label 3 "Lung,L" at 50 Gy, half unlabelled. Label 4 "Empty" is in
 * the legend only. */
static void write_dvh_files(void)
{
    imrt_grid g = grid_2mm(10, 10, 3);
    float dose[300];
    uint8_t lab[300];
    for (int v = 0; v < 300; v++) {
        int k = v / 100, i = v % 10;
        dose[v] = k == 0 ? (float)(v + 1) : k == 1 ? 7.0f : 50.0f;
        lab[v] = (uint8_t)(k == 0 ? 1 : k == 1 ? 2 : (i < 5 ? 3 : 0));
    }
    assert_ok(imrt_nifti_write_float(tp("dose.nii.gz"), &g, dose, "test dose"));
    assert_ok(imrt_nifti_write_labels(tp("structures.nii.gz"), &g, lab, "test labels"));
    assert_ok(imrt_nifti_write_labels(tp("nolegend.nii.gz"), &g, lab, "test labels"));
    const imrt_label_entry e[] = {{1, "PTV", IMRT_KIND_TARGET, {255, 0, 0}},
                                  {2, "Spinal cord", IMRT_KIND_OAR, {0, 255, 0}},
                                  {3, "Lung,L", IMRT_KIND_OAR, {0, 0, 255}},
                                  {4, "Empty", IMRT_KIND_OAR, {9, 9, 9}}};
    assert_ok(imrt_nifti_write_legend(tp("structures.ctbl"), e, 4));
    /* a foreign colour table and a broken one */
    write_text(tp("other.ctbl"), "# made by hand\n0 Background 0 0 0 0\n1 Target 255 0 0 255\n"
                                 "\n  2 Cord 0 255 0 255\n300 Unused 1 1 1 255\n");
    write_text(tp("broken.ctbl"), "# made by hand\n1 Target 255 0 0 255\nCord 0 255 0 255\n");
    /* a label map on another grid, and a "label map" holding fractions */
    imrt_grid g2 = grid_2mm(10, 10, 2);
    assert_ok(imrt_nifti_write_labels(tp("labels_small.nii.gz"), &g2, lab, "other grid"));
    float frac[300];
    for (int v = 0; v < 300; v++)
        frac[v] = 0.5f;
    assert_ok(imrt_nifti_write_float(tp("fraction.nii.gz"), &g, frac, "not labels"));
    write_text(tp("notnifti.nii.gz"), "this is not a NIfTI file\n");
}

/* Gamma cases on 10 x 10 x 10 voxels of 2 mm. */
static void write_gamma_files(void)
{
    imrt_grid g = grid_2mm(10, 10, 10);
    float a[1000], b[1000];
    /* 100 Gy with a 5 Gy slab (i = 0, 1) below the 10 % threshold */
    for (int v = 0; v < 1000; v++)
        a[v] = v % 10 < 2 ? 5.0f : 100.0f;
    assert_ok(imrt_nifti_write_float(tp("slab.nii.gz"), &g, a, "slab"));
    assert_ok(imrt_nifti_write_float(tp("slab_copy.nii.gz"), &g, a, "slab"));
    /* uniform 100 Gy and its copy scaled by 1.05 */
    for (int v = 0; v < 1000; v++) {
        a[v] = 100.0f;
        b[v] = 105.0f;
    }
    assert_ok(imrt_nifti_write_float(tp("u100.nii.gz"), &g, a, "uniform"));
    assert_ok(imrt_nifti_write_float(tp("u105.nii.gz"), &g, b, "uniform x1.05"));
    /* x1.05 inside the block [2,7]^3, x1.02 outside */
    for (int v = 0; v < 1000; v++) {
        int i, j, k;
        imrt_grid_ijk(&g, v, &i, &j, &k);
        int in = i >= 2 && i <= 7 && j >= 2 && j <= 7 && k >= 2 && k <= 7;
        b[v] = in ? 105.0f : 102.0f;
    }
    assert_ok(imrt_nifti_write_float(tp("block.nii.gz"), &g, b, "block x1.05 in x1.02"));
    /* uniform 100 Gy on a 1 mm grid covering the same extent, and far away */
    imrt_grid fine;
    const double of[3] = {-0.5, -0.5, -0.5};
    assert_ok(imrt_grid_init(&fine, 20, 20, 20, 1.0, 1.0, 1.0, of));
    float *f = malloc(8000 * sizeof *f);
    assert_non_null(f);
    for (int v = 0; v < 8000; v++)
        f[v] = 100.0f;
    assert_ok(imrt_nifti_write_float(tp("fine100.nii.gz"), &fine, f, "uniform, 1 mm"));
    const double ofar[3] = {500.0, 500.0, 500.0};
    assert_ok(imrt_grid_init(&fine, 20, 20, 20, 1.0, 1.0, 1.0, ofar));
    assert_ok(imrt_nifti_write_float(tp("far100.nii.gz"), &fine, f, "uniform, elsewhere"));
    free(f);
    for (int v = 0; v < 1000; v++)
        a[v] = 0.0f;
    assert_ok(imrt_nifti_write_float(tp("zero.nii.gz"), &g, a, "zero"));
}

/* Compare case: 10 x 10 x 1 voxels of 2 mm, water. PTV = columns i < 5 (50
 * voxels), Cord = i >= 7 (30), Body = all. IMRT: PTV 50, Cord 10, rest 20 Gy;
 * 3D-CRT: PTV 50, Cord 30, rest 40 Gy. Body Dmean 32 vs 42 Gy. Goals: PTV D95
 * >= 47.5 Gy, Cord Dmax <= 20 Gy (IMRT passes, 3D-CRT fails). */
static imrt_plan_metrics *cmp_plans[2];

static void write_compare_files(void)
{
    imrt_grid g = grid_2mm(10, 10, 1);
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "cmp", 1.0f, &p));
    int ptv, cord, body;
    assert_ok(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &ptv));
    assert_ok(imrt_phantom_add_structure(p, "Cord", IMRT_KIND_OAR, 2, &cord));
    assert_ok(imrt_phantom_add_structure(p, "Body", IMRT_KIND_BODY, 3, &body));
    float dose[2][100];
    for (int v = 0; v < 100; v++) {
        int i = v % 10;
        p->structures[ptv].mask[v] = i < 5;
        p->structures[cord].mask[v] = i >= 7;
        p->structures[body].mask[v] = 1;
        dose[0][v] = i < 5 ? 50.0f : i >= 7 ? 10.0f : 20.0f;
        dose[1][v] = i < 5 ? 50.0f : i >= 7 ? 30.0f : 40.0f;
    }
    for (int s = 0; s < 3; s++)
        imrt_structure_recount(p, &p->structures[s]);
    imrt_prescription rx;
    memset(&rx, 0, sizeof rx);
    rx.dose_gy = 50.0;
    rx.fractions = 25;
    snprintf(rx.target, sizeof rx.target, "PTV");
    snprintf(rx.metric, sizeof rx.metric, "D95");
    imrt_goal_def goals[2];
    memset(goals, 0, sizeof goals);
    snprintf(goals[0].structure, sizeof goals[0].structure, "PTV");
    snprintf(goals[0].metric, sizeof goals[0].metric, "D95");
    goals[0].op = IMRT_GOAL_GE;
    goals[0].value = 47.5;
    snprintf(goals[1].structure, sizeof goals[1].structure, "Cord");
    snprintf(goals[1].metric, sizeof goals[1].metric, "Dmax");
    goals[1].op = IMRT_GOAL_LE;
    goals[1].value = 20.0;
    for (int k = 0; k < 2; k++)
        assert_ok(imrt_plan_metrics_compute(p, dose[k], &rx, goals, 2, &cmp_plans[k]));
    imrt_phantom_destroy(&p);

    json_t *root = NULL;
    assert_ok(imrt_compare_metrics_json(cmp_plans[0], cmp_plans[1], &root));
    json_object_set_new(root, "version", json_string(imrt_version()));
    assert_int_equal(mkdir(tp("plan"), 0755), 0);
    assert_int_equal(json_dump_file(root, tp("plan/metrics.json"), JSON_INDENT(1)), 0);
    /* broken variants */
    assert_int_equal(mkdir(tp("empty"), 0755), 0);
    write_text(tp("noplans.json"), "{\"version\": \"0.1.0\"}\n");
    write_text(tp("syntax.json"), "{\"plans\": {\n  \"imrt\": [1, 2,\n}\n");
    json_t *one = json_deep_copy(root);
    json_object_del(json_object_get(one, "plans"), "3dcrt");
    assert_int_equal(json_dump_file(one, tp("onlyimrt.json"), 0), 0);
    json_object_del(json_object_get(json_object_get(one, "plans"), "imrt"), "structures");
    json_object_set(json_object_get(one, "plans"), "3dcrt",
                    json_object_get(json_object_get(root, "plans"), "imrt"));
    assert_int_equal(json_dump_file(one, tp("nostructs.json"), 0), 0);
    json_decref(one);
    json_decref(root);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "%s", imrt_test_tmpdir());
    write_dvh_files();
    write_gamma_files();
    write_compare_files();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    imrt_plan_metrics_destroy(&cmp_plans[0]);
    imrt_plan_metrics_destroy(&cmp_plans[1]);
    if (getenv("IMRT_TEST_KEEP")) { /* keep the files to look at them */
        fprintf(stderr, "kept %s\n", tmp);
        return 0;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* imrt compare                                                             */
/* ------------------------------------------------------------------------ */

/* The first three numbers after `after` in a table row (value a, value b,
 * difference); words such as pass/FAIL are skipped. */
static void row_values(const char *line, const char *after, double v[3])
{
    const char *p = strstr(line, after);
    assert_non_null(p);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", p + strlen(after));
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 3;
         t = strtok_r(NULL, " ", &save)) {
        char *end;
        double x = strtod(t, &end);
        if (end != t && *end == '\0')
            v[n++] = x;
    }
    if (n < 3)
        fail_msg("fewer than 3 numbers in row '%s'", line);
}

static void test_compare_table(void **state)
{
    (void)state;
    static char out[65536];
    char args[1024], line[512];
    snprintf(args, sizeof args, "compare '%s'", tp("plan"));
    assert_int_equal(run(args, 0, out, sizeof out), 0);
    find_line(out, "IMRT vs 3D-CRT (prescription 50.00 Gy)", line, sizeof line);

    /* goal rows: Cord Dmax 10 (pass) vs 30 (FAIL), IMRT better */
    find_line(out, "  Cord Dmax <= 20 Gy", line, sizeof line);
    double v[3];
    row_values(line, "Gy", v);
    assert_close(v[0], 10.0, 0, 1e-9);
    assert_close(v[1], 30.0, 0, 1e-9);
    assert_close(v[2], -20.0, 0, 1e-9);
    assert_non_null(strstr(line, "pass"));
    assert_non_null(strstr(line, "FAIL"));
    assert_true(strlen(line) >= 4 && strcmp(line + strlen(line) - 4, "IMRT") == 0);
    /* PTV D95 50 vs 50: both pass, a tie */
    find_line(out, "  PTV D95 >= 47.5 Gy", line, sizeof line);
    row_values(line, "Gy", v);
    assert_close(v[0], 50.0, 0, 1e-9);
    assert_close(v[1], 50.0, 0, 1e-9);
    assert_true(line[strlen(line) - 1] == '=');

    /* Body Dmean (32 vs 42 Gy): the Dmean row of the Body section */
    const char *body = strstr(out, "\nBody\n");
    assert_non_null(body);
    find_line(body + 6, "  Dmean [Gy]", line, sizeof line);
    row_values(line, "[Gy]", v);
    assert_close(v[0], 32.0, 0, 1e-9);
    assert_close(v[1], 42.0, 0, 1e-9);
    assert_close(v[2], -10.0, 0, 1e-9);

    /* the whole table equals the library's table of the plans written */
    imrt_comparison *c = NULL;
    char *table = NULL;
    assert_ok(imrt_compare_build(cmp_plans[0], cmp_plans[1], "IMRT", "3D-CRT", &c));
    assert_ok(imrt_compare_table(c, &table));
    assert_string_equal(out, table);
    imrt_free(table);
    imrt_compare_destroy(&c);

    /* the metrics file itself instead of the folder */
    static char out2[65536];
    snprintf(args, sizeof args, "compare '%s' --quiet --threads 1", tp("plan/metrics.json"));
    assert_int_equal(run(args, 0, out2, sizeof out2), 0);
    assert_string_equal(out, out2);
}

static void test_compare_json(void **state)
{
    (void)state;
    static char out[262144];
    char args[1024];
    snprintf(args, sizeof args, "compare --json '%s'", tp("plan"));
    assert_int_equal(run(args, 0, out, sizeof out), 0);
    json_error_t err;
    json_t *o = json_loads(out, 0, &err);
    if (!o)
        fail_msg("not JSON (line %d: %s):\n%.300s", err.line, err.text, out);
    json_t *plans = json_object_get(o, "plans");
    assert_string_equal(json_string_value(json_array_get(plans, 0)), "IMRT");
    assert_string_equal(json_string_value(json_array_get(plans, 1)), "3D-CRT");
    size_t i;
    json_t *row;
    int found = 0;
    json_array_foreach(json_object_get(o, "rows"), i, row)
    {
        const char *st = json_string_value(json_object_get(row, "structure"));
        const char *item = json_string_value(json_object_get(row, "item"));
        const char *kind = json_string_value(json_object_get(row, "kind"));
        if (st && item && kind && strcmp(st, "Cord") == 0 && strcmp(item, "Dmax") == 0 &&
            strcmp(kind, "goal") != 0) {
            assert_close(json_number_value(json_object_get(row, "a")), 10.0, 0, 1e-9);
            assert_close(json_number_value(json_object_get(row, "b")), 30.0, 0, 1e-9);
            assert_string_equal(json_string_value(json_object_get(row, "better")), "a");
            found++;
        }
    }
    assert_int_equal(found, 1);
    json_decref(o);
}

static void test_compare_errors(void **state)
{
    (void)state;
    char args[1024];
    snprintf(args, sizeof args, "compare '%s'", tp("nowhere"));
    expect_exit(args, 3, tp("nowhere"));
    snprintf(args, sizeof args, "compare '%s'", tp("empty"));
    expect_exit(args, 3, tp("empty/metrics.json"));
    snprintf(args, sizeof args, "compare '%s'", tp("noplans.json"));
    expect_exit(args, 3, "\"plans\"");
    snprintf(args, sizeof args, "compare '%s'", tp("onlyimrt.json"));
    expect_exit(args, 3, "\"3dcrt\"");
    snprintf(args, sizeof args, "compare '%s'", tp("syntax.json"));
    expect_exit(args, 3, "line 3");
    snprintf(args, sizeof args, "compare '%s'", tp("nostructs.json"));
    expect_exit(args, 3, "plans.imrt");
    expect_exit(args, 3, "\"structures\"");
    /* usage */
    expect_usage("compare");
    snprintf(args, sizeof args, "compare '%s' '%s'", tp("plan"), tp("plan"));
    expect_usage(args);
    snprintf(args, sizeof args, "compare --table '%s'", tp("plan"));
    expect_usage(args);
    snprintf(args, sizeof args, "compare --force '%s'", tp("plan"));
    expect_usage(args);
    snprintf(args, sizeof args, "compare --threads 0 '%s'", tp("plan"));
    expect_usage(args);
    expect_exit("compare --help", 0, "usage: imrt compare DIR");
}

/* ------------------------------------------------------------------------ */
/* imrt dvh                                                                 */
/* ------------------------------------------------------------------------ */

/* Summary row of a structure: voxels, volume, Dmean, Dmax, D2, D50, D95, D98. */
static void summary_row(const char *out, const char *name, double v[8])
{
    char line[512], prefix[128];
    snprintf(prefix, sizeof prefix, "%-24s ", name);
    find_line(out, prefix, line, sizeof line);
    const char *p = line + strlen(prefix);
    char *end;
    for (int i = 0; i < 8; i++) {
        v[i] = strtod(p, &end);
        if (end == p)
            fail_msg("no value %d in '%s'", i, line);
        p = end;
    }
}

/* volume_pct and volume_cm3 of the CSV row (structure field as written, dose). */
static int csv_row(const char *csv, const char *field, double dose, double *pct, double *cc)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s,", field);
    size_t pl = strlen(prefix);
    int rows = 0;
    for (const char *p = csv; p && *p;) {
        if (strncmp(p, prefix, pl) == 0) {
            char *end;
            double d = strtod(p + pl, &end);
            rows++;
            if (fabs(d - dose) < 1e-9 && pct && cc) {
                *pct = strtod(end + 1, &end);
                *cc = strtod(end + 1, NULL);
            }
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return rows;
}

static void test_dvh_summary_and_csv(void **state)
{
    (void)state;
    static char out[65536], csv[65536];
    char args[1024];
    snprintf(args, sizeof args, "dvh '%s' '%s' --bin 1 -o '%s'", tp("dose.nii.gz"),
             tp("structures.nii.gz"), tp("dvh.csv"));
    assert_int_equal(run(args, 0, out, sizeof out), 0);

    /* 1..100 Gy in 100 voxels (docs/metrics.md): D95 = 6, D98 = 3, D50 = 51, D2 = 99 */
    double v[8];
    summary_row(out, "PTV", v);
    const double ptv[8] = {100, 0.8, 50.5, 100, 99, 51, 6, 3};
    for (int i = 0; i < 8; i++)
        assert_close(v[i], ptv[i], 0, 1e-9);
    /* names of imrt's legend keep their spaces */
    summary_row(out, "Spinal cord", v);
    const double cord[8] = {100, 0.8, 7, 7, 7, 7, 7, 7};
    for (int i = 0; i < 8; i++)
        assert_close(v[i], cord[i], 0, 1e-9);
    summary_row(out, "Lung,L", v);
    assert_close(v[0], 50, 0, 0);
    assert_close(v[1], 0.4, 0, 1e-9);
    assert_close(v[2], 50, 0, 1e-9);
    assert_non_null(strstr(out, "Empty"));
    assert_non_null(strstr(out, "no voxel"));

    /* CSV: header, V(D) exact at 1 Gy steps from 0 to the first level above 100 Gy */
    size_t n = 0;
    char *text = NULL;
    assert_ok(imrt_io_read_file(tp("dvh.csv"), &text, &n));
    snprintf(csv, sizeof csv, "%s", text);
    imrt_free(text);
    assert_int_equal(strncmp(csv, "structure,dose_gy,volume_pct,volume_cm3\n", 40), 0);
    double pct = -1, cc = -1;
    assert_int_equal(csv_row(csv, "PTV", 20.0, &pct, &cc), 102);
    assert_close(pct, 81.0, 0, 1e-9); /* V20 of 1..100 Gy */
    assert_close(cc, 81 * 0.008, 1e-9, 0);
    csv_row(csv, "PTV", 0.0, &pct, &cc);
    assert_close(pct, 100.0, 0, 1e-9);
    csv_row(csv, "PTV", 95.0, &pct, &cc);
    assert_close(pct, 6.0, 0, 1e-9);
    csv_row(csv, "PTV", 100.0, &pct, &cc);
    assert_close(pct, 1.0, 0, 1e-9);
    csv_row(csv, "PTV", 101.0, &pct, &cc);
    assert_close(pct, 0.0, 0, 0);
    /* every structure on the same dose axis */
    assert_int_equal(csv_row(csv, "Spinal cord", 7.0, &pct, &cc), 102);
    assert_close(pct, 100.0, 0, 1e-9);
    csv_row(csv, "Spinal cord", 8.0, &pct, &cc);
    assert_close(pct, 0.0, 0, 0);
    /* a name with a comma is quoted */
    assert_int_equal(csv_row(csv, "\"Lung,L\"", 50.0, &pct, &cc), 102);
    assert_close(pct, 100.0, 0, 1e-9);
    assert_close(cc, 0.4, 1e-9, 0);
    assert_int_equal(csv_row(csv, "Empty", 0.0, NULL, NULL), 0);
    assert_int_equal(count_lines(csv), 1 + 3 * 102);

    /* an existing CSV needs --force */
    expect_exit(args, 5, "--force");
    char args2[1100];
    snprintf(args2, sizeof args2, "%s --force --quiet", args);
    static char quiet[65536];
    assert_int_equal(run(args2, 1, quiet, sizeof quiet), 0);
    assert_null(strstr(quiet, "wrote"));
    assert_null(strstr(quiet, "names from"));
}

static void test_dvh_names_and_stdout(void **state)
{
    (void)state;
    static char out[65536];
    char args[1024];
    double v[8];
    /* no sibling legend: "label N" */
    snprintf(args, sizeof args, "dvh '%s' '%s'", tp("dose.nii.gz"), tp("nolegend.nii.gz"));
    assert_int_equal(run(args, 0, out, sizeof out), 0);
    summary_row(out, "label 1", v);
    assert_close(v[6], 6.0, 0, 1e-9);
    summary_row(out, "label 3", v);
    assert_null(strstr(out, "PTV"));
    /* an explicit foreign colour table (label 3 not in it, label 300 ignored) */
    snprintf(args, sizeof args, "dvh '%s' '%s' --legend '%s'", tp("dose.nii.gz"),
             tp("structures.nii.gz"), tp("other.ctbl"));
    assert_int_equal(run(args, 0, out, sizeof out), 0);
    summary_row(out, "Target", v);
    assert_close(v[4], 99.0, 0, 1e-9);
    summary_row(out, "Cord", v);
    summary_row(out, "label 3", v);
    assert_null(strstr(out, "Unused"));
    /* -o -: the CSV on stdout, the summary on stderr */
    snprintf(args, sizeof args, "dvh '%s' '%s' --bin 50 -o - --quiet", tp("dose.nii.gz"),
             tp("structures.nii.gz"));
    assert_int_equal(run(args, 1, out, sizeof out), 0);
    assert_string_equal(out, "structure,dose_gy,volume_pct,volume_cm3\n"
                             "PTV,0,100,0.8\nPTV,50,51,0.408\nPTV,100,1,0.008\nPTV,150,0,0\n"
                             "Spinal cord,0,100,0.8\nSpinal cord,50,0,0\nSpinal cord,100,0,0\n"
                             "Spinal cord,150,0,0\n"
                             "\"Lung,L\",0,100,0.4\n\"Lung,L\",50,100,0.4\n\"Lung,L\",100,0,0\n"
                             "\"Lung,L\",150,0,0\n");
}

static void test_dvh_errors(void **state)
{
    (void)state;
    char args[2048];
    char d[300], s[300]; /* copies: tp() reuses its buffers */
    snprintf(d, sizeof d, "%s", tp("dose.nii.gz"));
    snprintf(s, sizeof s, "%s", tp("structures.nii.gz"));
    /* grids differ: both files named */
    snprintf(args, sizeof args, "dvh '%s' '%s'", d, tp("labels_small.nii.gz"));
    expect_exit(args, 3, "labels_small.nii.gz");
    expect_exit(args, 3, "dose.nii.gz");
    expect_exit(args, 3, "10 x 10 x 2");
    snprintf(args, sizeof args, "dvh '%s' '%s'", d, tp("fraction.nii.gz"));
    expect_exit(args, 3, "not a label map");
    snprintf(args, sizeof args, "dvh '%s' '%s'", tp("missing.nii.gz"), s);
    expect_exit(args, 3, "missing.nii.gz");
    snprintf(args, sizeof args, "dvh '%s' '%s'", tp("notnifti.nii.gz"), s);
    expect_exit(args, 3, "notnifti.nii.gz");
    snprintf(args, sizeof args, "dvh '%s' '%s' --legend '%s'", d, s, tp("broken.ctbl"));
    expect_exit(args, 3, "line 3");
    snprintf(args, sizeof args, "dvh '%s' '%s' --legend '%s'", d, s, tp("nolegend.ctbl"));
    expect_exit(args, 3, "nolegend.ctbl");
    snprintf(args, sizeof args, "dvh '%s' '%s' -o '%s'", d, s, tp("no/such/dir/dvh.csv"));
    expect_exit(args, 5, "no/such/dir");
    /* usage */
    const char *bad[] = {"--bin 0", "--bin -1", "--bin abc", "--bin 1e5", "--bin 1e-5 -o -",
                         "--threads 0", "--threads x", "--frobnicate", "--legend", "-o ''",
                         "--local"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "dvh '%s' '%s' %s", d, s, bad[i]);
        expect_usage(args);
    }
    snprintf(args, sizeof args, "dvh '%s'", d);
    expect_usage(args);
    snprintf(args, sizeof args, "dvh '%s' '%s' '%s'", d, s, s);
    expect_usage(args);
    expect_exit("dvh --help", 0, "priority");
}

/* ------------------------------------------------------------------------ */
/* imrt gamma                                                               */
/* ------------------------------------------------------------------------ */

static void gamma_run(const char *a, const char *b, const char *opts, char *out, size_t size)
{
    char args[1024];
    snprintf(args, sizeof args, "gamma '%s' '%s' %s", tp(a), tp(b), opts);
    int rc = run(args, 0, out, size);
    if (rc != 0)
        fail_msg("'imrt %s' exited %d:\n%s", args, rc, out);
}

static void test_gamma_identical(void **state)
{
    (void)state;
    static char out[8192];
    /* 200 of the 1000 voxels (5 Gy) lie below 10 % of 100 Gy */
    gamma_run("slab.nii.gz", "slab_copy.nii.gz", "", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 800, 0, 0);
    assert_close(value_after(out, "pass rate: "), 100.0, 0, 1e-9);
    assert_close(value_after(out, "mean gamma: "), 0.0, 0, 1e-12);
    assert_close(value_after(out, "95th percentile: "), 0.0, 0, 1e-12);
    gamma_run("slab.nii.gz", "slab_copy.nii.gz", "--threshold 0", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 1000, 0, 0);
    gamma_run("slab.nii.gz", "slab_copy.nii.gz", "--threshold 5.01", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 800, 0, 0);

}

static void test_gamma_map(void **state)
{
    (void)state;
    static char out[8192];
    char opts[600];
    snprintf(opts, sizeof opts, "-o '%s' --quiet", tp("gamma.nii.gz"));
    char args[1400];
    snprintf(args, sizeof args, "gamma '%s' '%s' %s", tp("slab.nii.gz"), tp("slab_copy.nii.gz"),
             opts);
    assert_int_equal(run(args, 1, out, sizeof out), 0);
    assert_null(strstr(out, "wrote"));
    imrt_grid g, want = grid_2mm(10, 10, 10);
    float *m = NULL;
    assert_ok(imrt_nifti_read(tp("gamma.nii.gz"), &g, &m, NULL));
    assert_true(imrt_grid_equal(&g, &want));
    for (int v = 0; v < 1000; v++)
        assert_close(m[v], v % 10 < 2 ? -1.0 : 0.0, 0, 1e-12);
    imrt_free(m);
    /* exists: refused without --force, replaced with it */
    expect_exit(args, 5, "--force");
    char args2[1500];
    snprintf(args2, sizeof args2, "%s --force", args);
    expect_exit(args2, 0, NULL);
    snprintf(args, sizeof args, "gamma '%s' '%s' -o '%s'", tp("slab.nii.gz"),
             tp("slab_copy.nii.gz"), tp("no/such/gamma.nii.gz"));
    expect_exit(args, 5, "no/such");
}

static void test_gamma_scaled(void **state)
{
    (void)state;
    static char out[8192];
    /* uniform x1.05: |dD| = 5 Gy against 3 % of 100 Gy, gamma = 5/3 everywhere */
    gamma_run("u100.nii.gz", "u105.nii.gz", "", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 1000, 0, 0);
    assert_close(value_after(out, "pass rate: "), 0.0, 0, 0);
    assert_close(value_after(out, "mean gamma: "), 5.0 / 3.0, 0, 1e-4);
    assert_close(value_after(out, "95th percentile: "), 5.0 / 3.0, 0, 1e-4);
    assert_close(value_after(out, "max gamma: "), 5.0 / 3.0, 0, 1e-4);
    /* 6 %: gamma = 5/6; local 3 % of 100 Gy is the same 3 Gy */
    gamma_run("u100.nii.gz", "u105.nii.gz", "--dose 6", out, sizeof out);
    assert_close(value_after(out, "pass rate: "), 100.0, 0, 1e-9);
    assert_close(value_after(out, "mean gamma: "), 5.0 / 6.0, 0, 1e-4);
    gamma_run("u100.nii.gz", "u105.nii.gz", "--local --dta 2", out, sizeof out);
    assert_close(value_after(out, "pass rate: "), 0.0, 0, 0);
    assert_close(value_after(out, "mean gamma: "), 5.0 / 3.0, 0, 1e-4);
    /* the same dose on a finer, shifted grid agrees everywhere */
    gamma_run("u100.nii.gz", "fine100.nii.gz", "", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 1000, 0, 0);
    assert_close(value_after(out, "pass rate: "), 100.0, 0, 1e-9);
}

/* x1.05 in the block [2,7]^3, x1.02 elsewhere (2 mm voxels, 3 %/3 mm of 100
 * Gy). Outside: gamma = 2/3. A block voxel on the block's surface reaches the
 * 102 Gy neighbour 2 mm away: gamma <= sqrt(4/9 + 4/9) = 0.943, pass. One
 * voxel deeper, the nearest point below 105 Gy lies 2 mm away and B only
 * falls to 102 Gy at 4 mm: min over u of (u^2 + (5 - 1.5(u - 2))^2)/9 is 2.2
 * at u = 3.7 mm, gamma 1.48, fail; deeper, 5/3. So the 4^3 = 64 inner block
 * voxels fail: pass rate 936/1000. */
static void test_gamma_block(void **state)
{
    (void)state;
    static char out[8192], out1[8192];
    gamma_run("u100.nii.gz", "block.nii.gz", "--threads 2", out, sizeof out);
    assert_close(value_after(out, "points evaluated: "), 1000, 0, 0);
    assert_close(value_after(out, "pass rate: "), 93.6, 0, 1e-9);
    assert_non_null(strstr(out, "(936 of 1000 points"));
    assert_close(value_after(out, "max gamma: "), 5.0 / 3.0, 0, 1e-4);
    /* rank 950 of the ascending gammas: one of the 56 voxels one layer deep,
     * sqrt(min_u (u^2 + (8 - 1.5 u)^2) / 9) = 8 / (3 sqrt(3.25)) */
    const double layer1 = 8.0 / (3.0 * sqrt(3.25));
    assert_close(value_after(out, "95th percentile: "), layer1, 0, 2e-4);
    /* mean: 784 x 2/3 outside, 56 x layer1 + 8 x 5/3 inside; the 152 surface
     * voxels lie between 2/3 and the lattice value at 2.1 mm, sqrt(8.41/9) */
    double rest = 784 * 2.0 / 3 + 56 * layer1 + 8 * 5.0 / 3;
    assert_in_range_d(value_after(out, "mean gamma: "), (rest + 152 * 2.0 / 3) / 1000 - 1e-4,
                      (rest + 152 * sqrt(8.41 / 9)) / 1000 + 1e-4);
    /* the thread count does not change the result */
    gamma_run("u100.nii.gz", "block.nii.gz", "--threads 1", out1, sizeof out1);
    assert_string_equal(out, out1);
}

static void test_gamma_errors(void **state)
{
    (void)state;
    char args[2048];
    char a[300], b[300]; /* copies: tp() reuses its buffers */
    snprintf(a, sizeof a, "%s", tp("u100.nii.gz"));
    snprintf(b, sizeof b, "%s", tp("u105.nii.gz"));
    snprintf(args, sizeof args, "gamma '%s' '%s'", tp("missing.nii.gz"), b);
    expect_exit(args, 3, "missing.nii.gz");
    snprintf(args, sizeof args, "gamma '%s' '%s'", a, tp("notnifti.nii.gz"));
    expect_exit(args, 3, "notnifti.nii.gz");
    snprintf(args, sizeof args, "gamma '%s' '%s'", tp("zero.nii.gz"), b);
    expect_exit(args, 3, "zero.nii.gz");
    snprintf(args, sizeof args, "gamma '%s' '%s'", a, tp("far100.nii.gz"));
    expect_exit(args, 3, "no point evaluated");
    const char *bad[] = {"--dose 0",      "--dose 101",    "--dose abc",  "--dose",
                         "--dta 0",       "--dta -1",      "--dta 1e3",   "--dta nan",
                         "--threshold 100", "--threshold -1", "--threads 0", "--threads 2x",
                         "--frobnicate",  "-o -",          "--bin 1",     "--max-memory 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "gamma '%s' '%s' %s", a, b, bad[i]);
        expect_usage(args);
    }
    snprintf(args, sizeof args, "gamma '%s'", a);
    expect_usage(args);
    expect_exit("gamma --help", 0, "usage: imrt gamma A.nii.gz B.nii.gz");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_table),       cmocka_unit_test(test_compare_json),
        cmocka_unit_test(test_compare_errors),      cmocka_unit_test(test_dvh_summary_and_csv),
        cmocka_unit_test(test_dvh_names_and_stdout), cmocka_unit_test(test_dvh_errors),
        cmocka_unit_test(test_gamma_identical),     cmocka_unit_test(test_gamma_map),
        cmocka_unit_test(test_gamma_scaled),        cmocka_unit_test(test_gamma_block),
        cmocka_unit_test(test_gamma_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
