/*
 * tests/test_report.c - report.html: well-formed (balanced tags, every '&'
 * an entity, no raw '<' in text), the goal rows of both plans with their
 * pass/fail marks, the per-structure metrics side by side, pictures embedded
 * as data URIs that decode back to the files' bytes, nothing loaded from
 * the network, every input string escaped, tolerance of missing keys, and
 * errors that name the picture or the path.
 *
 * Helpers for tests/check_report.sh (headless Chromium):
 *   test_report --write-example FILE   writes an example report.html
 *   test_report --png-stats FILE       prints "width height stddev coloured%"
 */
#include "imrt/report.h"

#include "imrt/alloc.h"
#include "imrt/io.h"
#include "imrt/plot.h"

#include "test_util.h"

#include <cairo.h>
#include <ctype.h>
#include <jansson.h>

static const char *METRICS =
    "{\"phantom\": {\"name\": \"spine_vertebra\", \"dims\": [96, 80, 40], "
    "  \"spacing_mm\": [2.5, 2.5, 3.0]},"
    " \"dij\": {\"voxels\": 183000, \"beamlets\": 1620, \"nnz\": 48000000, \"bytes\": 480000000},"
    " \"plans\": {"
    "  \"imrt\": {\"structures\": {"
    "     \"PTV\": {\"Dmean\": 60.4, \"Dmax\": 64.9, \"D2\": 63.8, \"D50\": 60.5, \"D95\": 57.2,"
    "              \"D98\": 55.9, \"volume_cm3\": 131.2},"
    "     \"Cord\": {\"Dmean\": 12.1, \"Dmax\": 38.7, \"D2\": 35.0, \"D50\": 11.0, \"D95\": 2.5,"
    "               \"D98\": 1.9, \"volume_cm3\": 4.4},"
    "     \"<script>alert(1)</script> & Co\": {\"Dmean\": 1.0}},"
    "   \"goals\": ["
    "     {\"structure\": \"PTV\", \"metric\": \"D95\", \"op\": \">=\", \"value\": 57.0,"
    "      \"achieved\": 57.2, \"pass\": true},"
    "     {\"structure\": \"Cord\", \"metric\": \"Dmax\", \"op\": \"<=\", \"value\": 45.0,"
    "      \"achieved\": 38.7, \"pass\": true},"
    "     {\"structure\": \"Cord\", \"metric\": \"V30\", \"op\": \"<=\", \"value\": 5.0,"
    "      \"achieved\": 6.1, \"pass\": false}],"
    "   \"hi\": 0.11, \"ci_paddick\": 0.83, \"integral_dose_j\": 112.5,"
    "   \"solver\": {\"name\": \"L-BFGS-B\", \"iterations\": 187, \"status\": \"converged\","
    "                \"objective\": 0.00123, \"time_s\": 4.2}},"
    "  \"3dcrt\": {\"structures\": {"
    "     \"PTV\": {\"Dmean\": 61.0, \"Dmax\": 63.0, \"D2\": 62.5, \"D50\": 61.0, \"D95\": 58.0,"
    "              \"D98\": 57.1, \"volume_cm3\": 131.2},"
    "     \"Cord\": {\"Dmean\": 40.2, \"Dmax\": 61.3, \"D2\": 60.2, \"D50\": 41.0, \"D95\": 20.1,"
    "               \"D98\": 18.0, \"volume_cm3\": 4.4}},"
    "   \"goals\": ["
    "     {\"structure\": \"PTV\", \"metric\": \"D95\", \"op\": \">=\", \"value\": 57.0,"
    "      \"achieved\": 58.0, \"pass\": true},"
    "     {\"structure\": \"Cord\", \"metric\": \"Dmax\", \"op\": \"<=\", \"value\": 45.0,"
    "      \"achieved\": 61.3, \"pass\": false},"
    "     {\"structure\": \"Cord\", \"metric\": \"V30\", \"op\": \"<=\", \"value\": 5.0,"
    "      \"achieved\": 71.0, \"pass\": false}],"
    "   \"hi\": 0.08, \"ci_paddick\": 0.52, \"integral_dose_j\": 140.0,"
    "   \"solver\": {\"name\": \"weights\", \"iterations\": 1}}},"
    " \"timings_s\": {\"phantom\": 0.12, \"dij\": 3.4, \"optimize\": 4.2, \"total\": 8.1},"
    " \"threads\": 2, \"version\": \"0.1.0\"}";

static const char *SOLVER_LOG = "iter 1 f=1.2e+03 |g|=4.1 <start>\n"
                                "iter 187 f=1.23e-03 converged (ftol) & done\n";

static json_t *load_metrics(void)
{
    json_error_t err;
    json_t *m = json_loads(METRICS, 0, &err);
    if (!m)
        fail_msg("test JSON: line %d: %s", err.line, err.text);
    return m;
}

/* ---- example pictures ------------------------------------------------------------ */

static void write_example_pictures(const char *dir, char paths[3][600])
{
    /* DVH: analytic curves (a target step and an organ's falling line) */
    enum { N = 141 };
    static double d[N], v_ptv[N], v_oar[N], v_ptv2[N], v_oar2[N];
    for (int i = 0; i < N; i++) {
        d[i] = 0.5 * i;
        v_ptv[i] = 100.0 / (1.0 + exp((d[i] - 61.0) / 1.0));
        v_ptv2[i] = 100.0 / (1.0 + exp((d[i] - 61.5) / 0.7));
        v_oar[i] = 100.0 * exp(-d[i] / 12.0);
        v_oar2[i] = 100.0 / (1.0 + exp((d[i] - 42.0) / 6.0));
    }
    imrt_plot_dvh_curve c[4] = {{"PTV", 0, 0, N, d, v_ptv},
                                {"Cord", 1, 0, N, d, v_oar},
                                {"PTV", 0, 1, N, d, v_ptv2},
                                {"Cord", 1, 1, N, d, v_oar2}};
    imrt_plot_dvh_opts o;
    imrt_plot_dvh_defaults(&o);
    o.prescription_gy = 60;
    snprintf(paths[0], 600, "%s/dvh.png", dir);
    assert_ok(imrt_plot_dvh(paths[0], c, 4, &o));
    /* fluence */
    float uv[2 * 99];
    double w[99];
    int nb = 0;
    for (int j = 0; j < 9; j++)
        for (int i = 0; i < 11; i++) {
            uv[2 * nb] = (float)(-25 + 5 * i);
            uv[2 * nb + 1] = (float)(-20 + 5 * j);
            w[nb] = 0.5 + 0.5 * sin(0.4 * i) * cos(0.3 * j);
            nb++;
        }
    imrt_plot_fluence_opts fo;
    imrt_plot_fluence_defaults(&fo);
    fo.beam_name = "G000";
    snprintf(paths[1], 600, "%s/fluence_beam01.png", dir);
    assert_ok(imrt_plot_fluence(paths[1], nb, uv, w, 5.0, &fo));
    /* a small axial slice: water cylinder, Gaussian dose */
    imrt_grid g;
    const double org[3] = {-60, -60, -6};
    assert_ok(imrt_grid_init(&g, 49, 49, 5, 2.5, 2.5, 3.0, org));
    int64_t n = imrt_grid_nvox(&g);
    float *rho = imrt_calloc((size_t)n, sizeof(float)), *dose = imrt_calloc((size_t)n, sizeof(float));
    uint8_t *ptv = imrt_calloc((size_t)n, 1);
    assert_non_null(rho);
    assert_non_null(dose);
    assert_non_null(ptv);
    for (int64_t i = 0; i < n; i++) {
        int a, bb, k;
        imrt_grid_ijk(&g, i, &a, &bb, &k);
        double p[3];
        imrt_grid_center(&g, a, bb, k, p);
        double r2 = p[0] * p[0] + p[1] * p[1];
        rho[i] = r2 < 50.0 * 50.0 ? 1.0f : 0.0f;
        dose[i] = rho[i] > 0 ? (float)(64.0 * exp(-r2 / (2 * 15.0 * 15.0))) : 0.0f;
        ptv[i] = r2 < 18.0 * 18.0;
    }
    imrt_plot_structure st = {"PTV", 0, ptv, 0};
    imrt_plot_slice_data sd = {&g, rho, NULL, dose, NULL, &st, 1};
    imrt_plot_slice_opts so;
    imrt_plot_slice_defaults(&so);
    so.prescription_gy = 60;
    so.title = "IMRT";
    snprintf(paths[2], 600, "%s/dose_axial.png", dir);
    assert_ok(imrt_plot_slice(paths[2], IMRT_PLANE_AXIAL, &sd, &so));
    imrt_free(rho);
    imrt_free(dose);
    imrt_free(ptv);
}

/* ---- checks ------------------------------------------------------------------------ */

static int is_void_element(const char *name, size_t n)
{
    static const char *v[] = {"area", "base", "br", "col", "embed", "hr", "img", "input",
                              "link", "meta", "source", "track", "wbr"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (strlen(v[i]) == n && strncmp(v[i], name, n) == 0)
            return 1;
    return 0;
}

/* Balanced start/end tags, no stray '<' in text, every '&' an entity. */
static void assert_well_formed(const char *html)
{
    char stack[128][16];
    int depth = 0;
    assert_int_equal(strncmp(html, "<!DOCTYPE html>", 15), 0);
    for (const char *p = html; *p; p++) {
        if (*p == '&') {
            const char *q = p + 1;
            if (*q == '#')
                q++;
            while (isalnum((unsigned char)*q))
                q++;
            if (*q != ';' || q == p + 1)
                fail_msg("bare '&' at offset %ld: %.20s", (long)(p - html), p);
            continue;
        }
        if (*p != '<')
            continue;
        if (strncmp(p, "<!--", 4) == 0) {
            p = strstr(p, "-->");
            assert_non_null(p);
            continue;
        }
        if (p[1] == '!') {
            p = strchr(p, '>');
            assert_non_null(p);
            continue;
        }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t n = 0;
        while (isalnum((unsigned char)name[n]))
            n++;
        if (n == 0 || n >= 16)
            fail_msg("stray '<' at offset %ld: %.30s", (long)(p - html), p);
        const char *end = strchr(name, '>');
        assert_non_null(end);
        const char *lt = strchr(name, '<');
        if (lt && lt < end)
            fail_msg("'<' inside a tag at offset %ld", (long)(lt - html));
        if (!closing && !is_void_element(name, n) && end[-1] != '/') {
            if (depth >= 128)
                fail_msg("nesting too deep");
            memcpy(stack[depth], name, n);
            stack[depth++][n] = '\0';
        } else if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], name, n) != 0)
                fail_msg("</%.*s> at offset %ld closes <%s>", (int)n, name, (long)(p - html),
                         depth ? stack[depth - 1] : "(nothing)");
            depth--;
        }
        /* skip the tag itself (entities inside attributes are checked too) */
        for (const char *q = name; q < end; q++)
            if (*q == '&' && strncmp(q, "&amp;", 5) != 0 && strncmp(q, "&quot;", 6) != 0 &&
                strncmp(q, "&#39;", 5) != 0 && strncmp(q, "&lt;", 4) != 0 &&
                strncmp(q, "&gt;", 4) != 0)
                fail_msg("bare '&' in a tag at offset %ld", (long)(q - html));
        p = end;
    }
    if (depth != 0)
        fail_msg("%d unclosed tags, innermost <%s>", depth, stack[depth - 1]);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode the base64 text at p (up to the closing quote); returns bytes. */
static size_t b64decode(const char *p, unsigned char *out, size_t cap)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *p && *p != '"' && *p != '='; p++) {
        int v = b64val(*p);
        if (v < 0)
            fail_msg("invalid base64 character '%c'", *p);
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n < cap)
                out[n] = (unsigned char)((acc >> bits) & 255);
            n++;
        }
    }
    return n;
}

static void test_report_content(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    char pics[3][600];
    write_example_pictures(dir, pics);
    imrt_report_image im[3] = {{pics[0], "Dose-volume histograms"}, {pics[1], NULL},
                               {pics[2], "Axial dose through the isocentre"}};
    json_t *m = load_metrics();
    char *html = NULL;
    size_t len = 0;
    assert_ok(imrt_report_build(m, im, 3, SOLVER_LOG, NULL, &html, &len));
    assert_int_equal(len, strlen(html));
    assert_well_formed(html);
    /* title and run summary */
    assert_non_null(strstr(html, "<title>imrt plan report &ndash; spine_vertebra</title>"));
    assert_non_null(strstr(html, "96 &times; 80 &times; 40 voxels of 2.50 &times; 2.50 &times; 3.00 mm"));
    assert_non_null(strstr(html, "457.8 MiB")); /* 480e6 / 2^20 */
    /* goals: three rows, both plans, pass/fail marks with the achieved values */
    assert_non_null(strstr(html, "<th>PTV</th><td>D95 &ge; 57.00 Gy</td>"));
    assert_non_null(strstr(html, "<th>Cord</th><td>Dmax &le; 45.00 Gy</td>"));
    assert_non_null(strstr(html, "<th>Cord</th><td>V30 &le; 5.00 %</td>"));
    assert_non_null(strstr(html, "<td class=\"num pass\"><span class=\"mark\">&#10003;</span>57.20 Gy</td>"
                                 "<td class=\"num pass\"><span class=\"mark\">&#10003;</span>58.00 Gy</td>"));
    assert_non_null(strstr(html, "<td class=\"num pass\"><span class=\"mark\">&#10003;</span>38.70 Gy</td>"
                                 "<td class=\"num fail\"><span class=\"mark\">&#10007;</span>61.30 Gy</td>"));
    assert_non_null(strstr(html, "<td class=\"num fail\"><span class=\"mark\">&#10007;</span>6.10 %</td>"));
    assert_int_equal(count(html, "class=\"num pass\""), 3);
    assert_int_equal(count(html, "class=\"num fail\""), 3);
    assert_non_null(strstr(html, "IMRT meets <b class=\"bad\">2 of 3</b> required goals; 3D-CRT meets "
                                 "<b class=\"bad\">1 of 3</b>"));
    /* plan indices and solver keys, both plans */
    assert_non_null(strstr(html, "<th>Conformity index (Paddick)</th><td class=\"num\">0.83</td>"
                                 "<td class=\"num\">0.52</td>"));
    assert_non_null(strstr(html, "183&#8239;000 voxels &times; 1620 beamlets, 48&#8239;000&#8239;000 non-zeros"));
    assert_non_null(strstr(html, "<th>Solver: objective</th><td class=\"num\">0.00123</td>"));
    assert_non_null(strstr(html, "<th>Solver: iterations</th><td class=\"num\">187</td>"
                                 "<td class=\"num\">1</td>"));
    assert_non_null(strstr(html, "<th>Solver: status</th><td class=\"num\">converged</td>"
                                 "<td class=\"num\">&ndash;</td>"));
    /* structure metrics side by side: Cord Dmean 12.10 (IMRT) next to 40.20 (3D-CRT) */
    assert_non_null(strstr(html, "<th colspan=\"2\">Dmean (Gy)</th>"));
    assert_non_null(strstr(html, "<th colspan=\"2\">Volume (cm&sup3;)</th>"));
    assert_non_null(strstr(html, "<tr><th>Cord</th><td class=\"num\">12.10</td><td class=\"num\">40.20</td>"));
    /* escaping of every input string */
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co"));
    assert_non_null(strstr(html, "|g|=4.1 &lt;start&gt;"));
    assert_non_null(strstr(html, "converged (ftol) &amp; done"));
    /* self-contained: no network resources, no scripts, no external styles */
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_null(strstr(html, "<link"));
    assert_null(strstr(html, "@import"));
    assert_null(strstr(html, "url("));
    /* pictures: embedded, and the data decode to the files' bytes */
    assert_int_equal(count(html, "src=\"data:image/png;base64,"), 3);
    assert_int_equal(count(html, " src=\""), 3);
    assert_non_null(strstr(html, "<figcaption>fluence_beam01.png</figcaption>"));
    const char *p = html;
    for (int i = 0; i < 3; i++) {
        p = strstr(p, "data:image/png;base64,") + strlen("data:image/png;base64,");
        char *file = NULL;
        size_t fsize = 0;
        assert_ok(imrt_io_read_file(pics[i], &file, &fsize));
        unsigned char *dec = imrt_malloc(fsize + 16);
        assert_non_null(dec);
        size_t dn = b64decode(p, dec, fsize + 16);
        assert_int_equal(dn, fsize);
        assert_memory_equal(dec, file, fsize);
        imrt_free(dec);
        imrt_free(file);
    }
    imrt_free(html);
    /* the file version, written atomically */
    char path[600];
    snprintf(path, sizeof path, "%s/report.html", dir);
    assert_ok(imrt_report_write(path, m, im, 3, SOLVER_LOG, "Custom <title>"));
    char *file = NULL;
    assert_ok(imrt_io_read_file(path, &file, &len));
    assert_well_formed(file);
    assert_non_null(strstr(file, "<h1>Custom &lt;title&gt;</h1>"));
    imrt_free(file);
    json_decref(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_partial_metrics_and_errors(void **state)
{
    (void)state;
    /* a run that stopped early still gets a readable page */
    json_t *m = json_pack("{s:{s:s}}", "phantom", "name", "water_box");
    char *html = NULL;
    assert_ok(imrt_report_build(m, NULL, 0, NULL, NULL, &html, NULL));
    assert_well_formed(html);
    assert_non_null(strstr(html, "No clinical goals were given."));
    assert_non_null(strstr(html, "(no solver log)"));
    imrt_free(html);
    /* errors */
    json_t *arr = json_array();
    assert_int_equal(imrt_report_build(arr, NULL, 0, NULL, NULL, &html, NULL), IMRT_ERR_ARG);
    assert_null(html);
    imrt_report_image missing = {"/nonexistent/dvh.png", NULL};
    assert_int_equal(imrt_report_build(m, &missing, 1, NULL, NULL, &html, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "/nonexistent/dvh.png"));
    char dir[256], txt[300];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    snprintf(txt, sizeof txt, "%s/not.png", dir);
    assert_ok(imrt_io_write_file(txt, "hello", 5));
    imrt_report_image notpng = {txt, NULL};
    assert_int_equal(imrt_report_build(m, &notpng, 1, NULL, NULL, &html, NULL), IMRT_ERR_FORMAT);
    char out[300];
    snprintf(out, sizeof out, "%s/missing/report.html", dir);
    assert_int_equal(imrt_report_write(out, m, NULL, 0, NULL, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "missing"));
    /* allocation failures anywhere leave nothing allocated (ASan checks) */
    json_t *full = load_metrics();
    int failures = 0;
    for (long n = 1; n < 40; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_report_build(full, NULL, 0, SOLVER_LOG, NULL, &html, NULL);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            imrt_free(html);
            break;
        }
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(html);
        failures++;
    }
    assert_true(failures >= 1);
    json_decref(full);
    json_decref(arr);
    json_decref(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- helper modes for tests/check_report.sh ------------------------------------------ */

static int write_example(const char *path)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char pics[3][600];
    write_example_pictures(dir, pics);
    imrt_report_image im[3] = {{pics[0], "Dose-volume histograms (IMRT solid, 3D-CRT dashed)"},
                               {pics[1], "Fluence of beam G000"},
                               {pics[2], "Axial dose through the isocentre"}};
    json_t *m = load_metrics();
    imrt_status st = imrt_report_write(path, m, im, 3, SOLVER_LOG, NULL);
    json_decref(m);
    if (st != IMRT_OK) {
        fprintf(stderr, "test_report: %s\n", imrt_last_error());
        return 1;
    }
    return 0;
}

static int png_stats(const char *path)
{
    cairo_surface_t *img = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        fprintf(stderr, "test_report: cannot read %s\n", path);
        return 1;
    }
    cairo_surface_flush(img);
    int w = cairo_image_surface_get_width(img), h = cairo_image_surface_get_height(img);
    int stride = cairo_image_surface_get_stride(img);
    const unsigned char *d = cairo_image_surface_get_data(img);
    double s = 0, s2 = 0;
    long coloured = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t p = *(const uint32_t *)(const void *)(d + (size_t)y * (size_t)stride + 4 * (size_t)x);
            int r = (int)((p >> 16) & 255), g = (int)((p >> 8) & 255), b = (int)(p & 255);
            double grey = (r + g + b) / 3.0;
            s += grey;
            s2 += grey * grey;
            int mx = r > g ? (r > b ? r : b) : (g > b ? g : b);
            int mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
            if (mx - mn > 60)
                coloured++;
        }
    double npx = (double)w * h, mean = s / npx;
    printf("%d %d %.1f %.2f\n", w, h, sqrt(fmax(s2 / npx - mean * mean, 0)), 100.0 * (double)coloured / npx);
    cairo_surface_destroy(img);
    return 0;
}

/* LeakSanitizer hook: fontconfig (behind cairo's text) keeps its
 * configuration for the life of the process and frees it only in FcFini,
 * which is not ours to call; ignore those blocks, and only those. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-example") == 0)
        return write_example(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--png-stats") == 0)
        return png_stats(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_content),
        cmocka_unit_test(test_partial_metrics_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
