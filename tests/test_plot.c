/*
 * tests/test_plot.c - the PNG pictures: documented sizes (read back with
 * cairo), not blank, curves where the axes say they must be, the
 * radiological orientation of the three planes (a marker on the patient's
 * left, anterior and superior must show up in the expected image corner),
 * colour maps and palette, and argument checks.
 *
 * The synthetic case: an elliptical body with a C-shaped target around a
 * core (TG-119-like), a bone disc with a cord, one lung on the patient's
 * left, and an analytic dose (Gaussians along the C plus a low bath).
 * Set IMRT_KEEP_PICTURES=DIR to keep the pictures in DIR for looking at.
 */
#include "imrt/plot.h"

#include "imrt/alloc.h"
#include "imrt/io.h"

#include "test_util.h"

#include <cairo.h>

#define RX 60.0
#define IMRT_TEST_PI 3.14159265358979323846

typedef struct {
    imrt_grid g;
    float *density;
    float *dose_imrt;
    float *dose_crt;
    uint8_t *mask[5];
    const char *names[5];
    imrt_structure_kind kinds[5];
    int colours[5];
    int ns;
} synth;

/* Where pictures go: $IMRT_KEEP_PICTURES or a fresh temporary folder. */
static char out_dir[512];
static int keep;

static int setup(void **state)
{
    (void)state;
    const char *k = getenv("IMRT_KEEP_PICTURES");
    if (k && *k) {
        snprintf(out_dir, sizeof out_dir, "%s", k);
        mkdir(out_dir, 0777);
        keep = 1;
    } else {
        snprintf(out_dir, sizeof out_dir, "%s", imrt_test_tmpdir());
        keep = 0;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!keep) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static void out_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", out_dir, name);
}

static double sq(double x) { return x * x; }

static void synth_build(synth *s)
{
    memset(s, 0, sizeof *s);
    const double o[3] = {-118.75, -98.75, -58.5};
    assert_ok(imrt_grid_init(&s->g, 96, 80, 40, 2.5, 2.5, 3.0, o));
    int64_t n = imrt_grid_nvox(&s->g);
    s->density = imrt_calloc((size_t)n, sizeof(float));
    s->dose_imrt = imrt_calloc((size_t)n, sizeof(float));
    s->dose_crt = imrt_calloc((size_t)n, sizeof(float));
    assert_non_null(s->density);
    assert_non_null(s->dose_imrt);
    assert_non_null(s->dose_crt);
    const char *names[5] = {"PTV", "Core", "Cord", "Lung_L", "Body"};
    const imrt_structure_kind kinds[5] = {IMRT_KIND_TARGET, IMRT_KIND_OAR, IMRT_KIND_OAR,
                                          IMRT_KIND_OAR, IMRT_KIND_BODY};
    s->ns = 5;
    for (int i = 0; i < 5; i++) {
        s->names[i] = names[i];
        s->kinds[i] = kinds[i];
        s->mask[i] = imrt_calloc((size_t)n, 1);
        assert_non_null(s->mask[i]);
    }
    imrt_plot_assign_colours(s->kinds, s->ns, s->colours);
    double maxd = 0, maxc = 0;
    for (int64_t v = 0; v < n; v++) {
        int i, j, k;
        imrt_grid_ijk(&s->g, v, &i, &j, &k);
        double p[3];
        imrt_grid_center(&s->g, i, j, k, p);
        double x = p[0], y = p[1], z = p[2];
        int body = sq(x / 105) + sq(y / 80) <= 1 && fabs(z) <= 50;
        if (!body)
            continue;
        s->mask[4][v] = 1;
        double rho = 1.0;
        double rc = sqrt(sq(x) + sq(y - 5)); /* around the core centre (0, 5) */
        double theta = atan2(x, y - 5);      /* 0 = posterior */
        if (sq(x) + sq(y - 40) <= sq(14)) {
            rho = 1.6; /* vertebra */
            if (sq(x) + sq(y - 40) <= sq(6))
                s->mask[2][v] = 1, rho = 1.05;
        }
        if (sq((x - 58) / 26) + sq((y + 12) / 34) <= 1 && fabs(z) <= 40)
            s->mask[3][v] = 1, rho = 0.3; /* lung on the patient's left (+x) */
        if (rc <= 12 && fabs(z) <= 36)
            s->mask[1][v] = 1;
        if (rc >= 18 && rc <= 38 && fabs(theta) >= IMRT_TEST_PI / 4 && fabs(z) <= 30)
            s->mask[0][v] = 1;
        s->density[v] = (float)rho;
        /* IMRT-like dose: Gaussians along the C (radius 28 mm) */
        double d = 0;
        for (int a = 0; a < 24; a++) {
            double th = IMRT_TEST_PI / 4 + a * (1.5 * IMRT_TEST_PI) / 23;
            double cx = 28 * sin(th), cy = 5 + 28 * cos(th);
            d += exp(-(sq(x - cx) + sq(y - cy)) / (2 * sq(8.0)));
        }
        double zp = 0.5 * (erf((33 - fabs(z)) / 6.0) + 1);
        double bath = exp(-(sq(x) + sq(y)) / (2 * sq(60.0)));
        s->dose_imrt[v] = (float)(d * zp + 0.22 * bath);
        /* conformal-like dose: a broad disc that covers the core too */
        double disc = 0.5 * (erf((42 - rc) / 6.0) + 1) * zp;
        s->dose_crt[v] = (float)(disc + 0.3 * bath * (1 - disc));
        maxd = fmax(maxd, s->dose_imrt[v]);
        maxc = fmax(maxc, s->dose_crt[v]);
    }
    for (int64_t v = 0; v < n; v++) {
        s->dose_imrt[v] = (float)((double)s->dose_imrt[v] / maxd * 1.07 * RX);
        s->dose_crt[v] = (float)((double)s->dose_crt[v] / maxc * 1.04 * RX);
    }
}

static void synth_free(synth *s)
{
    imrt_free(s->density);
    imrt_free(s->dose_imrt);
    imrt_free(s->dose_crt);
    for (int i = 0; i < 5; i++)
        imrt_free(s->mask[i]);
}

/* Cumulative DVH of a structure: nb bins of 0.5 Gy. */
static void dvh_of(const synth *s, const float *dose, int st, int nb, double *d, double *vol)
{
    int64_t n = imrt_grid_nvox(&s->g), count = 0;
    for (int b = 0; b < nb; b++)
        vol[b] = 0;
    for (int64_t v = 0; v < n; v++) {
        if (!s->mask[st][v])
            continue;
        count++;
        for (int b = 0; b < nb; b++)
            if ((double)dose[v] >= 0.5 * b)
                vol[b] += 1;
    }
    for (int b = 0; b < nb; b++) {
        d[b] = 0.5 * b;
        vol[b] = count ? 100.0 * vol[b] / (double)count : 0;
    }
}

/* Load a PNG back with cairo; returns the surface (caller destroys). */
static cairo_surface_t *load_png(const char *path, int *w, int *h)
{
    cairo_surface_t *img = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS)
        fail_msg("cannot read %s back: %s", path, cairo_status_to_string(cairo_surface_status(img)));
    *w = cairo_image_surface_get_width(img);
    *h = cairo_image_surface_get_height(img);
    return img;
}

static void pixel(cairo_surface_t *img, int x, int y, int rgb[3])
{
    cairo_surface_flush(img);
    const unsigned char *d = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    uint32_t p = *(const uint32_t *)(const void *)(d + (size_t)y * (size_t)stride + 4 * (size_t)x);
    rgb[0] = (int)((p >> 16) & 255);
    rgb[1] = (int)((p >> 8) & 255);
    rgb[2] = (int)(p & 255);
}

/* Standard deviation of the grey level over the whole picture. */
static double grey_stddev(cairo_surface_t *img, int w, int h)
{
    double s = 0, s2 = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int c[3];
            pixel(img, x, y, c);
            double g = (c[0] + c[1] + c[2]) / 3.0;
            s += g;
            s2 += g * g;
        }
    double m = s / ((double)w * h);
    return sqrt(fmax(s2 / ((double)w * h) - m * m, 0));
}

/* 1 if some pixel within `r` px of (x, y) is within `tol` of colour c. */
static int colour_near(cairo_surface_t *img, double x, double y, int r, const double c[3], int tol)
{
    int w = cairo_image_surface_get_width(img), h = cairo_image_surface_get_height(img);
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            int px = (int)lround(x) + dx, py = (int)lround(y) + dy;
            if (px < 0 || py < 0 || px >= w || py >= h)
                continue;
            int p[3];
            pixel(img, px, py, p);
            if (abs(p[0] - (int)lround(c[0] * 255)) <= tol &&
                abs(p[1] - (int)lround(c[1] * 255)) <= tol &&
                abs(p[2] - (int)lround(c[2] * 255)) <= tol)
                return 1;
        }
    return 0;
}

static void test_palette_and_colour_maps(void **state)
{
    (void)state;
    /* Okabe-Ito vermillion and blue, from the published table */
    unsigned char c[3];
    imrt_plot_palette_rgb8(0, c);
    assert_int_equal(c[0], 213);
    assert_int_equal(c[1], 94);
    assert_int_equal(c[2], 0);
    imrt_plot_palette_rgb8(1 + IMRT_PLOT_PALETTE_SIZE, c); /* wraps */
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 114);
    assert_int_equal(c[2], 178);
    /* kinds: targets warm, body grey, OARs distinct from each other */
    const imrt_structure_kind k[5] = {IMRT_KIND_OAR, IMRT_KIND_TARGET, IMRT_KIND_BODY,
                                      IMRT_KIND_OAR, IMRT_KIND_TARGET};
    int col[5];
    imrt_plot_assign_colours(k, 5, col);
    assert_int_equal(col[1], 0);
    assert_int_equal(col[4], 4);
    assert_int_equal(col[2], 7);
    assert_int_not_equal(col[0], col[3]);
    /* viridis-like map: lightness rises monotonically (readable in grey) */
    double prev = -1;
    for (int i = 0; i <= 20; i++) {
        double rgb[3];
        imrt_plot_fluence_colour(i / 20.0, rgb);
        double luma = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
        assert_true(luma > prev);
        prev = luma;
    }
    /* dose map: blue at the bottom, red at the top, clamped outside */
    double lo[3], hi[3], out[3];
    imrt_plot_dose_colour(0.1, lo);
    imrt_plot_dose_colour(0.95, hi);
    assert_true(lo[2] > lo[0]);
    assert_true(hi[0] > hi[2]);
    imrt_plot_dose_colour(7.0, out);
    imrt_plot_dose_colour(1.0, hi);
    assert_close(out[0], hi[0], 0, 1e-12);
}

static void test_dvh_picture(void **state)
{
    (void)state;
    synth s;
    synth_build(&s);
    enum { NB = 150 };
    double d[2][5][NB], v[2][5][NB];
    imrt_plot_dvh_curve curves[10];
    int nc = 0;
    const float *doses[2] = {s.dose_imrt, s.dose_crt};
    for (int plan = 0; plan < 2; plan++)
        for (int st = 0; st < s.ns; st++) {
            dvh_of(&s, doses[plan], st, NB, d[plan][st], v[plan][st]);
            curves[nc++] = (imrt_plot_dvh_curve){s.names[st], s.colours[st], plan, NB, d[plan][st],
                                                 v[plan][st]};
        }
    imrt_plot_dvh_opts o;
    imrt_plot_dvh_defaults(&o);
    o.title = "Synthetic C-shape: IMRT vs 3D-CRT";
    o.prescription_gy = RX;
    char path[600];
    out_path(path, sizeof path, "dvh.png");
    assert_ok(imrt_plot_dvh(path, curves, nc, &o));
    int w, h;
    cairo_surface_t *img = load_png(path, &w, &h);
    assert_int_equal(w, 900);
    assert_int_equal(h, 600);
    assert_true(grey_stddev(img, w, h) > 10);
    imrt_plot_axes ax;
    assert_ok(imrt_plot_dvh_layout(curves, nc, &o, &ax));
    /* the axis covers the hottest dose (64.2 Gy) with a round end */
    assert_true(ax.x_max_gy >= 64.2 && ax.x_max_gy <= 80);
    /* every structure receives 0 Gy or more: each solid curve starts at
     * (0 Gy, 100 %), the top-left corner of the plot area */
    double px = ax.x0 + 1 + (ax.x1 - ax.x0) * 0.5 / ax.x_max_gy; /* 0.5 Gy */
    double py = ax.y0 + (ax.y1 - ax.y0) * 100.0 / ax.y_max_pct;
    int found = 0;
    for (int st = 0; st < s.ns; st++) {
        double c[3];
        imrt_plot_palette(s.colours[st], c);
        found += colour_near(img, px, py, 2, c, 40);
    }
    assert_true(found >= 1);
    /* the PTV's solid curve passes through its own (dose, volume) points:
     * pick the point where it crosses 50 % */
    int b50 = 0;
    while (b50 < NB && v[0][0][b50] > 50)
        b50++;
    double c0[3];
    imrt_plot_palette(s.colours[0], c0);
    assert_true(colour_near(img, ax.x0 + (ax.x1 - ax.x0) * d[0][0][b50] / ax.x_max_gy,
                            ax.y0 + (ax.y1 - ax.y0) * v[0][0][b50] / ax.y_max_pct, 3, c0, 40));
    /* an empty region of the plot (high dose, small volume far right) is white */
    int p[3];
    pixel(img, (int)(ax.x1 - 6), (int)(ax.y0 - (ax.y0 - ax.y1) * 0.75), p);
    assert_true(p[0] > 235 && p[1] > 235 && p[2] > 235);
    cairo_surface_destroy(img);
    /* options: other size, explicit axis */
    o.width = 640;
    o.height = 400;
    o.dose_max_gy = 70;
    out_path(path, sizeof path, "dvh_small.png");
    assert_ok(imrt_plot_dvh(path, curves, nc, &o));
    img = load_png(path, &w, &h);
    assert_int_equal(w, 640);
    assert_int_equal(h, 400);
    cairo_surface_destroy(img);
    assert_ok(imrt_plot_dvh_layout(curves, nc, &o, &ax));
    assert_close(ax.x_max_gy, 70, 0, 1e-12);
    /* argument checks */
    double bad_d[2] = {5, 1}, bad_v[2] = {100, 0};
    imrt_plot_dvh_curve bad = {"X", 0, 0, 2, bad_d, bad_v};
    assert_int_equal(imrt_plot_dvh(path, &bad, 1, NULL), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "decrease"));
    o.width = 100;
    assert_int_equal(imrt_plot_dvh(path, curves, nc, &o), IMRT_ERR_ARG);
    synth_free(&s);
}

static void test_slice_pictures(void **state)
{
    (void)state;
    synth s;
    synth_build(&s);
    imrt_plot_structure st[5];
    for (int i = 0; i < s.ns; i++)
        st[i] = (imrt_plot_structure){s.names[i], s.colours[i], s.mask[i], 0};
    imrt_plot_slice_data d = {&s.g, s.density, NULL, s.dose_imrt, NULL, st, s.ns};
    imrt_plot_slice_opts o;
    imrt_plot_slice_defaults(&o);
    o.title = "IMRT";
    o.prescription_gy = RX;
    o.dose_max_gy = 1.07 * RX;
    o.point[0] = 0;
    o.point[1] = 5;
    o.point[2] = 0;
    const char *names[3] = {"axial.png", "coronal.png", "sagittal.png"};
    /* documented sizes: the grid spans 240 x 200 x 120 mm (x, y, z), scaled
     * into the 600 px box: panels 600 x 500 (axial), 600 x 300 (coronal),
     * 600 x 360 (sagittal). Bar min(max(ph - 24, 160), 300) + 24; legends
     * 12 + 22*7 + 12 + 22*6 = 310 px. Height 76 + max(ph, bar, legends). */
    const int want_w[3] = {600 + 308, 600 + 308, 600 + 308};
    const int want_h[3] = {76 + 500, 76 + 310, 76 + 360};
    for (int pl = 0; pl < 3; pl++) {
        char path[600];
        out_path(path, sizeof path, names[pl]);
        assert_ok(imrt_plot_slice(path, (imrt_plane)pl, &d, &o));
        int w, h, sw, sh;
        cairo_surface_t *img = load_png(path, &w, &h);
        assert_ok(imrt_plot_slice_size((imrt_plane)pl, &d, &o, &sw, &sh));
        assert_int_equal(w, want_w[pl]);
        assert_int_equal(h, want_h[pl]);
        assert_int_equal(w, sw);
        assert_int_equal(h, sh);
        assert_true(grey_stddev(img, w, h) > 20);
        /* panel corner is air with no dose: black */
        int p[3];
        pixel(img, 20 + 3, 56 + 3, p);
        assert_true(p[0] < 20 && p[1] < 20 && p[2] < 20);
        cairo_surface_destroy(img);
    }
    /* a dose grid of its own: 5 mm voxels covering only the patient's left
     * half (x >= 2.5 mm), 30 Gy everywhere: the wash must appear on the
     * image's right half only (sampled in patient coordinates) */
    {
        imrt_grid dg;
        const double dorg[3] = {5.0, -95.0, -55.0};
        assert_ok(imrt_grid_init(&dg, 23, 39, 23, 5.0, 5.0, 5.0, dorg));
        float *flat = imrt_malloc((size_t)imrt_grid_nvox(&dg) * sizeof(float));
        assert_non_null(flat);
        for (int64_t v = 0; v < imrt_grid_nvox(&dg); v++)
            flat[v] = 30.0f;
        imrt_plot_slice_data d2 = {&s.g, s.density, &dg, flat, NULL, NULL, 0};
        char p2[600];
        out_path(p2, sizeof p2, "axial_partial_dose_grid.png");
        assert_ok(imrt_plot_slice(p2, IMRT_PLANE_AXIAL, &d2, &o));
        int w2, h2;
        cairo_surface_t *img = load_png(p2, &w2, &h2);
        /* panel 600 x 500 px for x -120..120 mm: x = +60 mm at column 20 + 450,
         * x = -60 mm at column 20 + 150; y = +40 mm (posterior body) at row 56 + 350 */
        int in[3], out[3];
        pixel(img, 20 + 450, 56 + 350, in);
        pixel(img, 20 + 150, 56 + 350, out);
        assert_true(out[0] == out[1] && out[1] == out[2]); /* grey: no wash */
        assert_true(abs(in[0] - in[1]) > 20 || abs(in[1] - in[2]) > 20); /* coloured */
        cairo_surface_destroy(img);
        imrt_free(flat);
    }
    /* 3D-CRT for comparison, same colour scale */
    d.dose = s.dose_crt;
    o.title = "3D-CRT";
    char path[600];
    out_path(path, sizeof path, "axial_3dcrt.png");
    assert_ok(imrt_plot_slice(path, IMRT_PLANE_AXIAL, &d, &o));
    /* density and outlines only (no dose) */
    d.dose = NULL;
    o.title = "Phantom";
    out_path(path, sizeof path, "axial_phantom.png");
    assert_ok(imrt_plot_slice(path, IMRT_PLANE_AXIAL, &d, &o));
    int w, h, sw, sh;
    cairo_surface_t *img = load_png(path, &w, &h);
    assert_ok(imrt_plot_slice_size(IMRT_PLANE_AXIAL, &d, &o, &sw, &sh));
    assert_int_equal(w, 908);
    assert_int_equal(h, 76 + 500); /* the panel is taller than the 144 px legend */
    assert_int_equal(sh, h);
    cairo_surface_destroy(img);
    /* argument checks */
    o.point[2] = 500;
    assert_int_equal(imrt_plot_slice(path, IMRT_PLANE_AXIAL, &d, &o), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "z = 500"));
    o.point[2] = 0;
    assert_int_equal(imrt_plot_slice(path, (imrt_plane)3, &d, &o), IMRT_ERR_ARG);
    st[1].mask = NULL; /* no mask and no label map */
    assert_int_equal(imrt_plot_slice(path, IMRT_PLANE_AXIAL, &d, &o), IMRT_ERR_ARG);
    synth_free(&s);
}

/* A bright block in the patient's left-anterior-superior corner must appear
 * top-right on the axial (L right, A top) and coronal (L right, S top)
 * pictures and top-left on the sagittal one (A left, S top). */
static void test_orientation_convention(void **state)
{
    (void)state;
    imrt_grid g;
    const double o3[3] = {-50, -40, -30};
    /* anisotropic voxels: 2 x 4 x 5 mm, 51 x 21 x 13 voxels (100 x 80 x 60 mm) */
    assert_ok(imrt_grid_init(&g, 51, 21, 13, 2.0, 4.0, 5.0, o3));
    int64_t n = imrt_grid_nvox(&g);
    float *rho = imrt_calloc((size_t)n, sizeof(float));
    assert_non_null(rho);
    for (int64_t v = 0; v < n; v++) {
        int i, j, k;
        imrt_grid_ijk(&g, v, &i, &j, &k);
        double p[3];
        imrt_grid_center(&g, i, j, k, p);
        /* +x = left, -y = anterior, +z = superior */
        rho[v] = (p[0] > 10 && p[1] < -10 && p[2] > 10) ? 1.6f : 0.2f;
    }
    imrt_plot_slice_data d = {&g, rho, NULL, NULL, NULL, NULL, 0};
    imrt_plot_slice_opts o;
    imrt_plot_slice_defaults(&o);
    o.show_point = 0;
    o.point[0] = 25;
    o.point[1] = -25;
    o.point[2] = 20;
    const int right_side[3] = {1, 1, 0};
    for (int pl = 0; pl < 3; pl++) {
        char path[600];
        char name[64];
        snprintf(name, sizeof name, "orientation_%d.png", pl);
        out_path(path, sizeof path, name);
        assert_ok(imrt_plot_slice(path, (imrt_plane)pl, &d, &o));
        int w, h;
        cairo_surface_t *img = load_png(path, &w, &h);
        /* panel: extents 100 x 80 (axial), 100 x 60 (coronal), 80 x 60 (sagittal) mm */
        const double ext_w[3] = {100, 100, 80}, ext_h[3] = {80, 60, 60};
        double sc = 600.0 / fmax(ext_w[pl], ext_h[pl]);
        int pw = (int)lround(ext_w[pl] * sc), ph = (int)lround(ext_h[pl] * sc);
        assert_int_equal(w, pw + 308);
        /* sample the four quadrant centres of the panel (away from labels) */
        int bright[2][2];
        for (int qy = 0; qy < 2; qy++)
            for (int qx = 0; qx < 2; qx++) {
                int p[3];
                pixel(img, 20 + (int)(pw * (0.2 + 0.6 * qx)), 56 + (int)(ph * (0.2 + 0.6 * qy)), p);
                bright[qy][qx] = p[0] > 200;
            }
        /* exactly one bright quadrant: top row, on the expected side */
        assert_int_equal(bright[0][right_side[pl]], 1);
        assert_int_equal(bright[0][1 - right_side[pl]], 0);
        assert_int_equal(bright[1][0], 0);
        assert_int_equal(bright[1][1], 0);
        cairo_surface_destroy(img);
    }
    imrt_free(rho);
}

/* Every allocation of the slice picture may fail: NOMEM, no file, no leak. */
static void test_slice_allocation_failures(void **state)
{
    (void)state;
    imrt_grid g;
    const double o3[3] = {-30, -30, -15};
    assert_ok(imrt_grid_init(&g, 25, 25, 7, 2.5, 2.5, 5.0, o3));
    int64_t n = imrt_grid_nvox(&g);
    float *rho = imrt_calloc((size_t)n, sizeof(float)), *dose = imrt_calloc((size_t)n, sizeof(float));
    uint8_t *m1 = imrt_calloc((size_t)n, 1), *lab = imrt_calloc((size_t)n, 1);
    assert_non_null(rho);
    assert_non_null(dose);
    assert_non_null(m1);
    assert_non_null(lab);
    for (int64_t v = 0; v < n; v++) {
        int i, j, k;
        imrt_grid_ijk(&g, v, &i, &j, &k);
        double p[3];
        imrt_grid_center(&g, i, j, k, p);
        double r2 = sq(p[0]) + sq(p[1]);
        rho[v] = r2 < sq(25) ? 1.0f : 0.0f;
        dose[v] = (float)(60 * exp(-r2 / (2 * sq(8.0))));
        m1[v] = r2 < sq(10);
        lab[v] = r2 < sq(25) ? 2 : 0;
    }
    imrt_plot_structure st[2] = {{"PTV", 0, m1, 0}, {"Body", 7, NULL, 2}};
    imrt_plot_slice_data d = {&g, rho, NULL, dose, lab, st, 2};
    imrt_plot_slice_opts o;
    imrt_plot_slice_defaults(&o);
    o.prescription_gy = 60;
    char path[600];
    out_path(path, sizeof path, "alloc.png");
    int failures = 0;
    for (long k = 1; k < 200; k++) {
        imrt_alloc_fail_after(k);
        imrt_status st2 = imrt_plot_slice(path, IMRT_PLANE_CORONAL, &d, &o);
        imrt_alloc_fail_after(0);
        if (st2 == IMRT_OK)
            break;
        assert_int_equal(st2, IMRT_ERR_NOMEM);
        assert_int_equal(access(path, F_OK), -1);
        failures++;
    }
    assert_true(failures >= 10);
    assert_int_equal(access(path, F_OK), 0);
    imrt_free(rho);
    imrt_free(dose);
    imrt_free(m1);
    imrt_free(lab);
}

static void test_fluence_picture(void **state)
{
    (void)state;
    /* 15 x 11 beamlets of 5 mm with the corners cut off (no beamlets) */
    float uv[2 * 165];
    double w[165];
    int nb = 0, imax = -1, izero = -1;
    for (int j = 0; j < 11; j++)
        for (int i = 0; i < 15; i++) {
            double u = -35 + 5.0 * i, v = -25 + 5.0 * j;
            if (fabs(u) + fabs(v) > 50)
                continue;
            uv[2 * nb] = (float)u;
            uv[2 * nb + 1] = (float)v;
            double r = sqrt(u * u + (v - 3) * (v - 3));
            w[nb] = r < 9 ? 0.0 : exp(-sq(r - 22) / (2 * sq(9.0))) * (1 + 0.4 * sin(u / 9));
            if (i == 7 && j == 5)
                izero = nb; /* (0, 0): in the spared core */
            if (imax < 0 || w[nb] > w[imax])
                imax = nb;
            nb++;
        }
    imrt_plot_fluence_opts o;
    imrt_plot_fluence_defaults(&o);
    o.beam_name = "G040";
    o.gantry_deg = 40;
    char path[600];
    out_path(path, sizeof path, "fluence_beam01.png");
    assert_ok(imrt_plot_fluence(path, nb, uv, w, 5.0, &o));
    int W, H;
    cairo_surface_t *img = load_png(path, &W, &H);
    assert_int_equal(W, 720);
    assert_int_equal(H, 600);
    assert_true(grey_stddev(img, W, H) > 15);
    /* map geometry from the documented layout: area 78..570 x 72..538 px,
     * extents padded by 1.5 beamlets: u -42.5..42.5, v -32.5..32.5 mm */
    double s = fmin((720 - 150 - 78) / 85.0, (600 - 62 - 72) / 65.0);
    double mx = 78 + 0.5 * ((720 - 150 - 78) - 85 * s), my = 72 + 0.5 * ((600 - 62 - 72) - 65 * s);
    double top[3], bottom[3];
    imrt_plot_fluence_colour(1.0, top);
    imrt_plot_fluence_colour(0.0, bottom);
    double x = mx + ((double)uv[2 * imax] + 42.5) * s,
           y = my + (32.5 - (double)uv[2 * imax + 1]) * s;
    assert_true(colour_near(img, x + 3, y + 3, 0, top, 8));
    x = mx + ((double)uv[2 * izero] + 42.5) * s + 5; /* off the dashed central-axis line */
    y = my + (32.5 - (double)uv[2 * izero + 1]) * s + 5;
    assert_true(colour_near(img, x, y, 0, bottom, 8));
    cairo_surface_destroy(img);
    /* off-grid beamlet */
    uv[0] += 2.0f;
    assert_int_equal(imrt_plot_fluence(path, nb, uv, w, 5.0, &o), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "not on the 5 mm grid"));
    assert_int_equal(imrt_plot_fluence(path, nb, uv, w, -1.0, &o), IMRT_ERR_ARG);
}

static void test_png_write_error_names_path(void **state)
{
    (void)state;
    double d[2] = {0, 10}, v[2] = {100, 0};
    imrt_plot_dvh_curve c = {"PTV", 0, 0, 2, d, v};
    char path[700];
    out_path(path, sizeof path, "missing-folder/dvh.png");
    assert_int_equal(imrt_plot_dvh(path, &c, 1, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "missing-folder"));
}

/* LeakSanitizer hook: fontconfig (behind cairo's text) keeps its
 * configuration for the life of the process and frees it only in FcFini,
 * which is not ours to call; ignore those blocks, and only those. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_palette_and_colour_maps),
        cmocka_unit_test(test_dvh_picture),
        cmocka_unit_test(test_slice_pictures),
        cmocka_unit_test(test_orientation_convention),
        cmocka_unit_test(test_slice_allocation_failures),
        cmocka_unit_test(test_fluence_picture),
        cmocka_unit_test(test_png_write_error_names_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
