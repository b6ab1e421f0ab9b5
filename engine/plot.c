/*
 * engine/plot.c - cairo pictures: DVH plots, dose colour-wash slices with
 * isodose lines and structure outlines, and beamlet fluence maps
 * (imrt/plot.h). Shared drawing helpers (canvas, text, ticks, colour maps,
 * marching squares) live at the top.
 */
#include "imrt/plot.h"

#include "imrt/alloc.h"
#include "imrt/io.h"
#include "util_impl.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FONT_FACE "DejaVu Sans"

/* ---- colours -------------------------------------------------------------------- */

/* Okabe & Ito (2008) colour-blind-safe set, then Tol's muted wine, olive,
 * indigo and teal. */
static const unsigned char PALETTE[IMRT_PLOT_PALETTE_SIZE][3] = {
    {213, 94, 0},   /* 0 vermillion */
    {0, 114, 178},  /* 1 blue */
    {0, 158, 115},  /* 2 bluish green */
    {230, 159, 0},  /* 3 orange */
    {204, 121, 167},/* 4 reddish purple */
    {86, 180, 233}, /* 5 sky blue */
    {240, 228, 66}, /* 6 yellow */
    {140, 140, 140},/* 7 grey */
    {136, 34, 85},  /* 8 wine */
    {153, 153, 51}, /* 9 olive */
    {51, 34, 136},  /* 10 indigo */
    {68, 170, 153}, /* 11 teal */
};

void imrt_plot_palette_rgb8(int index, unsigned char rgb[3])
{
    if (index < 0) {
        rgb[0] = rgb[1] = rgb[2] = 128;
        return;
    }
    const unsigned char *c = PALETTE[index % IMRT_PLOT_PALETTE_SIZE];
    rgb[0] = c[0];
    rgb[1] = c[1];
    rgb[2] = c[2];
}

void imrt_plot_palette(int index, double rgb[3])
{
    unsigned char c[3];
    imrt_plot_palette_rgb8(index, c);
    for (int i = 0; i < 3; i++)
        rgb[i] = c[i] / 255.0;
}

void imrt_plot_assign_colours(const imrt_structure_kind *kinds, int n, int *colours)
{
    static const int warm[] = {0, 4, 3, 8};
    static const int cool[] = {1, 2, 5, 9, 10, 11, 6};
    const int nwarm = (int)(sizeof warm / sizeof warm[0]);
    const int ncool = (int)(sizeof cool / sizeof cool[0]);
    int t = 0, o = 0;
    for (int s = 0; s < n; s++) {
        if (kinds[s] == IMRT_KIND_TARGET)
            colours[s] = warm[t++ % nwarm];
        else if (kinds[s] == IMRT_KIND_BODY)
            colours[s] = 7;
        else
            colours[s] = cool[o++ % ncool];
    }
}

/* Piecewise-linear colour map through `n` evenly spaced anchors. */
static void ramp(const double (*anchor)[3], int n, double t, double rgb[3])
{
    if (!(t > 0.0))
        t = 0.0;
    if (t > 1.0)
        t = 1.0;
    double x = t * (n - 1);
    int i = (int)floor(x);
    if (i >= n - 1)
        i = n - 2;
    double f = x - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = anchor[i][c] + f * (anchor[i + 1][c] - anchor[i][c]);
}

void imrt_plot_dose_colour(double t, double rgb[3])
{
    /* turbo-like: perceptually smoother than jet, dark ends */
    static const double a[11][3] = {
        {0.19, 0.07, 0.23}, {0.27, 0.36, 0.85}, {0.21, 0.62, 0.99}, {0.10, 0.83, 0.86},
        {0.19, 0.95, 0.60}, {0.55, 0.99, 0.27}, {0.83, 0.91, 0.21}, {0.98, 0.73, 0.22},
        {0.97, 0.47, 0.11}, {0.83, 0.22, 0.02}, {0.48, 0.02, 0.01},
    };
    ramp(a, 11, t, rgb);
}

void imrt_plot_fluence_colour(double t, double rgb[3])
{
    /* viridis-like: monotonic lightness */
    static const double a[9][3] = {
        {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
        {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
        {0.135, 0.659, 0.518}, {0.478, 0.821, 0.318}, {0.993, 0.906, 0.144},
    };
    ramp(a, 9, t, rgb);
}

/* ---- canvas, text, ticks -------------------------------------------------------- */

typedef struct {
    cairo_surface_t *surface;
    cairo_t *cr;
    int w, h;
} canvas;

static imrt_status canvas_create(int w, int h, const char *path, canvas *c)
{
    c->w = w;
    c->h = h;
    c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(c->surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(c->surface);
        c->surface = NULL;
        return imrt_error(IMRT_ERR_NOMEM, "picture '%s': cannot create a %d x %d image", path, w, h);
    }
    c->cr = cairo_create(c->surface);
    if (cairo_status(c->cr) != CAIRO_STATUS_SUCCESS) {
        cairo_destroy(c->cr);
        cairo_surface_destroy(c->surface);
        c->cr = NULL;
        c->surface = NULL;
        return imrt_error(IMRT_ERR_NOMEM, "picture '%s': cannot create a cairo context", path);
    }
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return IMRT_OK;
}

static void canvas_destroy(canvas *c)
{
    if (c->cr)
        cairo_destroy(c->cr);
    if (c->surface)
        cairo_surface_destroy(c->surface);
    c->cr = NULL;
    c->surface = NULL;
}

typedef struct {
    FILE *fp;
    int err;
} png_sink;

static cairo_status_t png_write(void *closure, const unsigned char *data, unsigned int length)
{
    png_sink *s = closure;
    if (fwrite(data, 1, length, s->fp) != length) {
        s->err = errno ? errno : EIO;
        return CAIRO_STATUS_WRITE_ERROR;
    }
    return CAIRO_STATUS_SUCCESS;
}

static imrt_status canvas_write(canvas *c, const char *path)
{
    imrt_status status = IMRT_OK;
    imrt_atomic_file *af = NULL;
    if (cairo_status(c->cr) != CAIRO_STATUS_SUCCESS)
        IMRT_FAIL(cairo_status(c->cr) == CAIRO_STATUS_NO_MEMORY ? IMRT_ERR_NOMEM : IMRT_ERR_INTERNAL,
                  "picture '%s': drawing failed: %s", path,
                  cairo_status_to_string(cairo_status(c->cr)));
    cairo_surface_flush(c->surface);
    IMRT_TRY(imrt_atomic_open(path, &af));
    png_sink sink = {imrt_atomic_stream(af), 0};
    if (!sink.fp)
        IMRT_FAIL(IMRT_ERR_IO, "%s", imrt_last_error());
    cairo_status_t cs = cairo_surface_write_to_png_stream(c->surface, png_write, &sink);
    if (cs != CAIRO_STATUS_SUCCESS)
        IMRT_FAIL(sink.err ? IMRT_ERR_IO : IMRT_ERR_NOMEM, "cannot write '%s': %s", path,
                  sink.err ? strerror(sink.err) : cairo_status_to_string(cs));
    status = imrt_atomic_commit(&af);
cleanup:
    imrt_atomic_abort(&af);
    return status;
}

static void set_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static void rgb(cairo_t *cr, double r, double g, double b) { cairo_set_source_rgb(cr, r, g, b); }

/* Start point of text so that it is aligned at (x, y): ax = 0 left, 0.5
 * centre, 1 right; ay = 0 baseline at y, 0.5 centred on the digits' height. */
static void text_origin(cairo_t *cr, const char *s, double x, double y, double ax, double ay,
                        double *tx, double *ty)
{
    cairo_text_extents_t e, d;
    cairo_text_extents(cr, s, &e);
    cairo_text_extents(cr, "0", &d);
    *tx = x - ax * e.x_advance;
    *ty = y - ay * d.y_bearing; /* y_bearing < 0: the baseline moves down */
}

static void text(cairo_t *cr, const char *s, double x, double y, double ax, double ay)
{
    double tx, ty;
    text_origin(cr, s, x, y, ax, ay, &tx, &ty);
    cairo_move_to(cr, tx, ty);
    cairo_show_text(cr, s);
}

/* White text with a dark outline, readable on any image. */
static void text_outlined(cairo_t *cr, const char *s, double x, double y, double ax, double ay)
{
    double tx, ty;
    text_origin(cr, s, x, y, ax, ay, &tx, &ty);
    cairo_move_to(cr, tx, ty);
    cairo_text_path(cr, s);
    cairo_set_source_rgba(cr, 0, 0, 0, 0.85);
    cairo_set_line_width(cr, 3.0);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_stroke_preserve(cr);
    rgb(cr, 1, 1, 1);
    cairo_fill(cr);
}

static double text_width(cairo_t *cr, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

/* A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) giving about
 * `target` intervals over `range`. */
static double nice_step(double range, int target)
{
    if (!(range > 0.0))
        return 1.0;
    double raw = range / target;
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    double m = f < 1.5 ? 1.0 : f < 2.25 ? 2.0 : f < 3.5 ? 2.5 : f < 7.5 ? 5.0 : 10.0;
    return m * p;
}

static void tick_label(char *buf, size_t size, double v, double step)
{
    double r = round(v / step) * step;
    if (fabs(r) < 1e-9 * step)
        r = 0.0;
    snprintf(buf, size, "%.6g", r);
}

/* ---- dose-volume histogram ----------------------------------------------------------- */

#define DVH_LEFT 80.0
#define DVH_RIGHT 196.0
#define DVH_TOP 58.0
#define DVH_BOTTOM 66.0
#define DVH_Y_MAX 105.0

void imrt_plot_dvh_defaults(imrt_plot_dvh_opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 900;
    o->height = 600;
}

static imrt_status dvh_check(const imrt_plot_dvh_curve *c, int n, const imrt_plot_dvh_opts *o)
{
    if (n < 0 || (n > 0 && !c))
        return imrt_error(IMRT_ERR_ARG, "DVH plot: %d curves with a NULL array", n);
    if (o->width < 480 || o->height < 320 || o->width > 8000 || o->height > 8000)
        return imrt_error(IMRT_ERR_ARG,
                          "DVH plot: size %d x %d px is outside 480..8000 x 320..8000", o->width,
                          o->height);
    if (!isfinite(o->prescription_gy) || o->prescription_gy < 0 || !isfinite(o->dose_max_gy) ||
        o->dose_max_gy < 0)
        return imrt_error(IMRT_ERR_ARG,
                          "DVH plot: prescription %g Gy and dose_max %g Gy must be finite and >= 0",
                          o->prescription_gy, o->dose_max_gy);
    for (int i = 0; i < n; i++) {
        const char *name = c[i].name ? c[i].name : "";
        if (c[i].npoints < 2 || !c[i].dose_gy || !c[i].volume_pct)
            return imrt_error(IMRT_ERR_ARG, "DVH plot: curve %d ('%s') needs >= 2 points, has %d",
                              i, name, c[i].npoints);
        for (int p = 0; p < c[i].npoints; p++) {
            double d = c[i].dose_gy[p], v = c[i].volume_pct[p];
            if (!isfinite(d) || !isfinite(v) || d < 0 || v < -1.0 || v > 101.0)
                return imrt_error(IMRT_ERR_ARG,
                                  "DVH plot: curve '%s' point %d (%g Gy, %g %%) is outside "
                                  "dose >= 0, volume 0..100 %%",
                                  name, p, d, v);
            if (p > 0 && d < c[i].dose_gy[p - 1])
                return imrt_error(IMRT_ERR_ARG,
                                  "DVH plot: curve '%s' doses decrease at point %d (%g < %g Gy)",
                                  name, p, d, c[i].dose_gy[p - 1]);
        }
    }
    return IMRT_OK;
}

imrt_status imrt_plot_dvh_layout(const imrt_plot_dvh_curve *curves, int ncurves,
                                 const imrt_plot_dvh_opts *opts, imrt_plot_axes *axes)
{
    imrt_plot_dvh_opts def;
    if (!opts) {
        imrt_plot_dvh_defaults(&def);
        opts = &def;
    }
    if (!axes)
        return imrt_error(IMRT_ERR_ARG, "imrt_plot_dvh_layout: axes is NULL");
    imrt_status s = dvh_check(curves, ncurves, opts);
    if (s != IMRT_OK)
        return s;
    double xmax = opts->dose_max_gy;
    if (!(xmax > 0.0)) {
        double hi = 0.0;
        for (int i = 0; i < ncurves; i++)
            for (int p = 0; p < curves[i].npoints; p++)
                if (curves[i].volume_pct[p] > 0.05)
                    hi = fmax(hi, curves[i].dose_gy[p]);
        hi = fmax(hi, opts->prescription_gy);
        if (!(hi > 0.0))
            hi = 1.0;
        double step = nice_step(hi * 1.05, 8);
        xmax = ceil(hi * 1.05 / step) * step;
    }
    axes->x0 = DVH_LEFT;
    axes->x1 = opts->width - DVH_RIGHT;
    axes->y0 = opts->height - DVH_BOTTOM;
    axes->y1 = DVH_TOP;
    axes->x_max_gy = xmax;
    axes->y_max_pct = DVH_Y_MAX;
    return IMRT_OK;
}

static double ax_x(const imrt_plot_axes *a, double d) { return a->x0 + (a->x1 - a->x0) * d / a->x_max_gy; }

static double ax_y(const imrt_plot_axes *a, double v)
{
    return a->y0 + (a->y1 - a->y0) * v / a->y_max_pct;
}

static void legend_line(cairo_t *cr, double x, double y, double len, const double c[3], int dashed)
{
    static const double dash[2] = {7.0, 4.0};
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 2.4);
    cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + len, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

imrt_status imrt_plot_dvh(const char *path, const imrt_plot_dvh_curve *curves, int ncurves,
                          const imrt_plot_dvh_opts *opts)
{
    imrt_status status = IMRT_OK;
    canvas cv = {0};
    int *first = NULL;
    imrt_plot_dvh_opts def;
    if (!opts) {
        imrt_plot_dvh_defaults(&def);
        opts = &def;
    }
    if (!path)
        return imrt_error(IMRT_ERR_ARG, "imrt_plot_dvh: path is NULL");
    imrt_plot_axes ax;
    IMRT_TRY(imrt_plot_dvh_layout(curves, ncurves, opts, &ax));
    IMRT_TRY(canvas_create(opts->width, opts->height, path, &cv));
    cairo_t *cr = cv.cr;
    char buf[128];

    /* grid lines */
    double xstep = nice_step(ax.x_max_gy, 10);
    cairo_set_line_width(cr, 1.0);
    rgb(cr, 0.90, 0.90, 0.90);
    for (double d = xstep; d < ax.x_max_gy - 1e-9 * xstep; d += xstep) {
        double x = round(ax_x(&ax, d)) + 0.5;
        cairo_move_to(cr, x, ax.y1);
        cairo_line_to(cr, x, ax.y0);
    }
    for (int v = 10; v <= 100; v += 10) {
        double y = round(ax_y(&ax, v)) + 0.5;
        cairo_move_to(cr, ax.x0, y);
        cairo_line_to(cr, ax.x1, y);
    }
    cairo_stroke(cr);

    /* prescription marker */
    if (opts->prescription_gy > 0 && opts->prescription_gy <= ax.x_max_gy) {
        static const double dash[2] = {4.0, 3.0};
        double x = ax_x(&ax, opts->prescription_gy);
        rgb(cr, 0.35, 0.35, 0.35);
        cairo_set_line_width(cr, 1.2);
        cairo_set_dash(cr, dash, 2, 0);
        cairo_move_to(cr, x, ax.y1);
        cairo_line_to(cr, x, ax.y0);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        set_font(cr, 12, 0);
        snprintf(buf, sizeof buf, "Rx %.4g Gy", opts->prescription_gy);
        double w = text_width(cr, buf);
        int right = x + 6 + w < ax.x1 - 4;
        text(cr, buf, right ? x + 5 : x - 5, ax.y1 + 16, right ? 0.0 : 1.0, 0.0);
    }

    /* curves: dashed first, solid on top */
    cairo_save(cr);
    cairo_rectangle(cr, ax.x0, ax.y1 - 2, ax.x1 - ax.x0 + 2, ax.y0 - ax.y1 + 4);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < ncurves; i++) {
            const imrt_plot_dvh_curve *c = &curves[i];
            if ((pass == 0) != (c->dashed != 0))
                continue;
            static const double dash[2] = {9.0, 5.0};
            double col[3];
            imrt_plot_palette(c->colour, col);
            rgb(cr, col[0], col[1], col[2]);
            cairo_set_line_width(cr, 2.4);
            cairo_set_dash(cr, dash, c->dashed ? 2 : 0, 0);
            /* stop where the curve reaches 0 % for good: a line along the
             * dose axis would hide the axis and the other curves' tails */
            int last = c->npoints - 1;
            while (last > 1 && c->volume_pct[last - 1] <= 0.0)
                last--;
            for (int p = 0; p <= last; p++) {
                double v = fmin(fmax(c->volume_pct[p], 0.0), 100.0);
                double x = ax_x(&ax, fmin(c->dose_gy[p], ax.x_max_gy * 1.01));
                if (p == 0)
                    cairo_move_to(cr, x, ax_y(&ax, v));
                else
                    cairo_line_to(cr, x, ax_y(&ax, v));
                if (c->dose_gy[p] > ax.x_max_gy * 1.01)
                    break;
            }
            cairo_stroke(cr);
        }
    }
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_restore(cr);

    /* frame, ticks, labels */
    rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1.2);
    cairo_rectangle(cr, ax.x0, ax.y1, ax.x1 - ax.x0, ax.y0 - ax.y1);
    cairo_stroke(cr);
    set_font(cr, 13, 0);
    for (double d = 0; d <= ax.x_max_gy + 1e-9 * xstep; d += xstep) {
        double x = ax_x(&ax, d);
        cairo_move_to(cr, x, ax.y0);
        cairo_line_to(cr, x, ax.y0 + 5);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, d, xstep);
        text(cr, buf, x, ax.y0 + 20, 0.5, 0.0);
    }
    for (int v = 0; v <= 100; v += 10) {
        double y = ax_y(&ax, v);
        cairo_move_to(cr, ax.x0 - 5, y);
        cairo_line_to(cr, ax.x0, y);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%d", v);
        text(cr, buf, ax.x0 - 9, y, 1.0, 0.5);
    }
    set_font(cr, 15, 0);
    text(cr, "Dose (Gy)", 0.5 * (ax.x0 + ax.x1), ax.y0 + 46, 0.5, 0.0);
    cairo_save(cr);
    cairo_translate(cr, 24, 0.5 * (ax.y0 + ax.y1));
    cairo_rotate(cr, -IMRT_PI / 2);
    text(cr, "Volume (%)", 0, 0, 0.5, 0.5);
    cairo_restore(cr);
    set_font(cr, 18, 1);
    text(cr, opts->title ? opts->title : "Dose-volume histogram", 0.5 * (ax.x0 + ax.x1), 34, 0.5,
         0.0);

    /* legend: structures (first curve of each name+colour), then styles */
    double lx = ax.x1 + 22, ly = ax.y1 + 8;
    const double row = 21.0, bottom = opts->height - 12.0;
    set_font(cr, 13, 1);
    rgb(cr, 0.1, 0.1, 0.1);
    text(cr, "Structures", lx, ly + 4, 0.0, 0.0);
    ly += row;
    IMRT_ALLOC(first, ncurves > 0 ? ncurves : 1);
    int any_solid = 0, any_dashed = 0, hidden = 0;
    for (int i = 0; i < ncurves; i++) {
        any_solid |= !curves[i].dashed;
        any_dashed |= curves[i].dashed != 0;
        const char *ni = curves[i].name ? curves[i].name : "";
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) {
            const char *nj = curves[j].name ? curves[j].name : "";
            dup = curves[j].colour == curves[i].colour && strcmp(ni, nj) == 0;
        }
        first[i] = !dup;
    }
    int nstyle = any_solid + any_dashed;
    double reserve = nstyle > 0 ? (nstyle + 1) * row + 10 : 0;
    set_font(cr, 13, 0);
    for (int i = 0; i < ncurves; i++) {
        if (!first[i])
            continue;
        if (ly + row + reserve > bottom) {
            hidden++;
            continue;
        }
        double col[3];
        imrt_plot_palette(curves[i].colour, col);
        legend_line(cr, lx, ly, 26, col, 0);
        rgb(cr, 0.1, 0.1, 0.1);
        text(cr, curves[i].name ? curves[i].name : "", lx + 34, ly, 0.0, 0.5);
        ly += row;
    }
    if (hidden > 0) {
        snprintf(buf, sizeof buf, "(+%d more)", hidden);
        text(cr, buf, lx + 34, ly, 0.0, 0.5);
        ly += row;
    }
    if (nstyle > 0) {
        ly += 10;
        set_font(cr, 13, 1);
        text(cr, "Plans", lx, ly + 4, 0.0, 0.0);
        ly += row;
        set_font(cr, 13, 0);
        const double black[3] = {0.15, 0.15, 0.15};
        if (any_solid) {
            legend_line(cr, lx, ly, 26, black, 0);
            text(cr, opts->solid_label ? opts->solid_label : "IMRT", lx + 34, ly, 0.0, 0.5);
            ly += row;
        }
        if (any_dashed) {
            legend_line(cr, lx, ly, 26, black, 1);
            text(cr, opts->dashed_label ? opts->dashed_label : "3D-CRT", lx + 34, ly, 0.0, 0.5);
        }
    }
    IMRT_TRY(canvas_write(&cv, path));
cleanup:
    imrt_free(first);
    canvas_destroy(&cv);
    return status;
}

/* ---- 2D fields and marching squares ------------------------------------------------- */

/* Values at voxel centres of one plane: (ih, iv) sits at world
 * (oh + ih dh, ov + iv dv) along the plane's horizontal and vertical
 * patient axes. */
typedef struct {
    int nh, nv;
    double oh, ov, dh, dv;
    float *val; /* nh * nv, ih fastest; NAN = no data */
} field2d;

/* Patient axes of a plane and how it is shown. */
typedef struct {
    int h, v, c;        /* patient axes (0 x, 1 y, 2 z) along image columns, rows, and cut */
    int vflip;          /* 1: world v grows upwards on the image */
    const char *left, *right, *top, *bottom;
    const char *name, *view;
} plane_def;

static const plane_def PLANES[3] = {
    {0, 1, 2, 0, "R", "L", "A", "P", "Axial", "viewed from the feet, patient's left on the image right"},
    {0, 2, 1, 1, "R", "L", "S", "I", "Coronal", "viewed from the front, patient's left on the image right"},
    {1, 2, 0, 1, "A", "P", "S", "I", "Sagittal", "viewed from the patient's left, anterior on the image left"},
};

static void grid_arrays(const imrt_grid *g, int n[3], double d[3])
{
    n[0] = g->nx;
    n[1] = g->ny;
    n[2] = g->nz;
    d[0] = g->dx;
    d[1] = g->dy;
    d[2] = g->dz;
}

static int64_t lin(const imrt_grid *g, const int idx[3])
{
    return (int64_t)idx[0] + (int64_t)g->nx * ((int64_t)idx[1] + (int64_t)g->ny * idx[2]);
}

/* Plane of float data at cut coordinate `cut` (mm), linear between slices. */
static imrt_status field_from_float(const imrt_grid *g, const float *data, const plane_def *p,
                                    double cut, field2d *f)
{
    imrt_status status = IMRT_OK;
    int n[3];
    double d[3];
    grid_arrays(g, n, d);
    f->nh = n[p->h];
    f->nv = n[p->v];
    f->oh = g->origin[p->h];
    f->ov = g->origin[p->v];
    f->dh = d[p->h];
    f->dv = d[p->v];
    IMRT_ALLOC(f->val, (size_t)f->nh * (size_t)f->nv);
    double cc = (cut - g->origin[p->c]) / d[p->c];
    int outside = cc < -0.5 || cc > n[p->c] - 0.5;
    cc = fmin(fmax(cc, 0.0), n[p->c] - 1.0);
    int k0 = (int)floor(cc);
    int k1 = k0 + 1 < n[p->c] ? k0 + 1 : k0;
    double t = cc - k0;
    for (int iv = 0; iv < f->nv; iv++)
        for (int ih = 0; ih < f->nh; ih++) {
            int idx[3];
            idx[p->h] = ih;
            idx[p->v] = iv;
            idx[p->c] = k0;
            double a = data[lin(g, idx)];
            idx[p->c] = k1;
            double b = data[lin(g, idx)];
            f->val[(size_t)ih + (size_t)f->nh * (size_t)iv] = outside ? NAN : (float)(a + t * (b - a));
        }
cleanup:
    return status;
}

/* Outline field of one structure on the nearest slice: 1 inside, 0 outside,
 * padded by one zero cell on every side (so outlines close at the grid's
 * edge) and smoothed (rounder outlines than the voxel staircase). */
static imrt_status field_from_mask(const imrt_grid *g, const uint8_t *mask, const uint8_t *labels,
                                   int label, const plane_def *p, double cut, field2d *f,
                                   float *work)
{
    imrt_status status = IMRT_OK;
    int n[3];
    double d[3];
    grid_arrays(g, n, d);
    f->nh = n[p->h] + 2;
    f->nv = n[p->v] + 2;
    f->oh = g->origin[p->h] - d[p->h];
    f->ov = g->origin[p->v] - d[p->v];
    f->dh = d[p->h];
    f->dv = d[p->v];
    size_t cells = (size_t)f->nh * (size_t)f->nv;
    if (!f->val)
        IMRT_ALLOC(f->val, cells);
    int k = (int)floor((cut - g->origin[p->c]) / d[p->c] + 0.5);
    k = k < 0 ? 0 : k >= n[p->c] ? n[p->c] - 1 : k;
    memset(work, 0, cells * sizeof *work);
    for (int iv = 0; iv < n[p->v]; iv++)
        for (int ih = 0; ih < n[p->h]; ih++) {
            int idx[3];
            idx[p->h] = ih;
            idx[p->v] = iv;
            idx[p->c] = k;
            int64_t v = lin(g, idx);
            int in = mask ? mask[v] != 0 : labels[v] == label;
            work[(size_t)(ih + 1) + (size_t)f->nh * (size_t)(iv + 1)] = in ? 1.0f : 0.0f;
        }
    /* two passes of the separable [1 2 1]/4 filter (a 5 x 5 binomial, about
     * one voxel wide): work -> val (along h) -> work (along v) */
    for (int pass = 0; pass < 2; pass++) {
        for (int iv = 0; iv < f->nv; iv++)
            for (int ih = 0; ih < f->nh; ih++) {
                size_t c = (size_t)ih + (size_t)f->nh * (size_t)iv;
                float l = ih > 0 ? work[c - 1] : 0.0f, r = ih + 1 < f->nh ? work[c + 1] : 0.0f;
                f->val[c] = 0.25f * l + 0.5f * work[c] + 0.25f * r;
            }
        for (int iv = 0; iv < f->nv; iv++)
            for (int ih = 0; ih < f->nh; ih++) {
                size_t c = (size_t)ih + (size_t)f->nh * (size_t)iv;
                float u = iv > 0 ? f->val[c - (size_t)f->nh] : 0.0f;
                float w = iv + 1 < f->nv ? f->val[c + (size_t)f->nh] : 0.0f;
                work[c] = 0.25f * u + 0.5f * f->val[c] + 0.25f * w;
            }
    }
    memcpy(f->val, work, cells * sizeof *work);
cleanup:
    return status;
}

/* Bilinear value at world (h, v); NAN outside the field's extent. */
static double field_sample(const field2d *f, double h, double v)
{
    double ch = (h - f->oh) / f->dh, cv = (v - f->ov) / f->dv;
    if (ch < -0.5 || cv < -0.5 || ch > f->nh - 0.5 || cv > f->nv - 0.5)
        return NAN;
    ch = fmin(fmax(ch, 0.0), f->nh - 1.0);
    cv = fmin(fmax(cv, 0.0), f->nv - 1.0);
    int i0 = (int)ch, j0 = (int)cv;
    if (i0 > f->nh - 2)
        i0 = f->nh > 1 ? f->nh - 2 : 0;
    if (j0 > f->nv - 2)
        j0 = f->nv > 1 ? f->nv - 2 : 0;
    int i1 = f->nh > 1 ? i0 + 1 : i0, j1 = f->nv > 1 ? j0 + 1 : j0;
    double th = ch - i0, tv = cv - j0;
    const float *a = f->val;
    size_t nh = (size_t)f->nh;
    size_t r0 = nh * (size_t)j0, r1 = nh * (size_t)j1;
    double v00 = a[(size_t)i0 + r0], v10 = a[(size_t)i1 + r0], v01 = a[(size_t)i0 + r1],
           v11 = a[(size_t)i1 + r1];
    return (1 - tv) * ((1 - th) * v00 + th * v10) + tv * ((1 - th) * v01 + th * v11);
}

/* Mapping from world (h, v) mm to canvas pixels. */
typedef struct {
    double x0, y0;     /* canvas position of the panel's top-left corner */
    double lo_h, hi_v, lo_v;
    double s;          /* px per mm */
    int vflip;
} xform;

static void to_px(const xform *t, double h, double v, double *x, double *y)
{
    *x = t->x0 + (h - t->lo_h) * t->s;
    *y = t->y0 + (t->vflip ? (t->hi_v - v) : (v - t->lo_v)) * t->s;
}

/* Segments of one cell (marching squares; saddles decided by the cell's
 * mean). Edges: 0 a-b (bottom), 1 b-c (right), 2 d-c (top), 3 a-d (left)
 * with a = (i,j), b = (i+1,j), c = (i+1,j+1), d = (i,j+1). Returns the
 * number of edge indices written to seg (0, 2 or 4; pairs form segments). */
static int cell_segments(double a, double b, double c, double d, double level, int seg[4])
{
    int code = (a >= level) | (b >= level) << 1 | (c >= level) << 2 | (d >= level) << 3;
    int centre_in = 0.25 * (a + b + c + d) >= level;
    static const int single[16][2] = {{0, 0}, {3, 0}, {0, 1}, {3, 1}, {1, 2}, {0, 0}, {0, 2}, {3, 2},
                                      {3, 2}, {0, 2}, {0, 0}, {1, 2}, {3, 1}, {0, 1}, {3, 0}, {0, 0}};
    if (code == 0 || code == 15)
        return 0;
    if (code == 5 || code == 10) {
        /* saddle: join the corners that are above when the centre is */
        int cut_ac = (code == 5) != centre_in; /* 1: a and c cut off */
        if (cut_ac) {
            seg[0] = 3; seg[1] = 0; seg[2] = 1; seg[3] = 2;
        } else {
            seg[0] = 0; seg[1] = 1; seg[2] = 2; seg[3] = 3;
        }
        return 4;
    }
    seg[0] = single[code][0];
    seg[1] = single[code][1];
    return 2;
}

typedef struct {
    int64_t edge; /* global edge id: 2 (i + nh j) + (0 horizontal, 1 vertical) */
    int32_t end;  /* 2 * segment + (0 or 1) */
} contour_end;

static int contour_end_cmp(const void *x, const void *y)
{
    const contour_end *p = x, *q = y;
    return p->edge < q->edge ? -1 : p->edge > q->edge ? 1 : p->end - q->end;
}

/* Append the iso-line of `level` through field f to cairo's path as joined
 * polylines (closed where they close), so that dashes and joins run
 * smoothly along the line. */
static imrt_status contour_path(cairo_t *cr, const field2d *f, double level, const xform *t)
{
    imrt_status status = IMRT_OK;
    double *pt = NULL;       /* 4 per segment: x0 y0 x1 y1 in px */
    contour_end *ends = NULL;
    int32_t *nbr = NULL;     /* matching end of the neighbour, -1 if free */
    unsigned char *seen = NULL;
    const size_t nh = (size_t)f->nh;
    int64_t nseg = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t k = 0;
        for (int j = 0; j + 1 < f->nv; j++)
            for (int i = 0; i + 1 < f->nh; i++) {
                size_t r0 = nh * (size_t)j + (size_t)i, r1 = r0 + nh;
                double a = f->val[r0], b = f->val[r0 + 1], c = f->val[r1 + 1], d = f->val[r1];
                if (isnan(a) || isnan(b) || isnan(c) || isnan(d))
                    continue;
                int seg[4];
                int ns = cell_segments(a, b, c, d, level, seg);
                if (pass == 0) {
                    k += ns / 2;
                    continue;
                }
                /* crossing point on each edge, in cell units, and its id */
                double eh[4] = {(b != a) ? (level - a) / (b - a) : 0.5, 1.0,
                                (c != d) ? (level - d) / (c - d) : 0.5, 0.0};
                double ev[4] = {0.0, (c != b) ? (level - b) / (c - b) : 0.5, 1.0,
                                (d != a) ? (level - a) / (d - a) : 0.5};
                int64_t id[4] = {2 * (int64_t)r0, 2 * (int64_t)(r0 + 1) + 1, 2 * (int64_t)r1,
                                 2 * (int64_t)r0 + 1};
                for (int q = 0; q < ns; q += 2, k++) {
                    for (int e = 0; e < 2; e++) {
                        int edge = seg[q + e];
                        to_px(t, f->oh + (i + eh[edge]) * f->dh, f->ov + (j + ev[edge]) * f->dv,
                              &pt[4 * k + 2 * e], &pt[4 * k + 2 * e + 1]);
                        ends[2 * k + e].edge = id[edge];
                        ends[2 * k + e].end = (int32_t)(2 * k + e);
                    }
                }
            }
        if (pass == 0) {
            nseg = k;
            if (nseg == 0)
                goto cleanup;
            if (nseg > INT32_MAX / 2)
                IMRT_FAIL(IMRT_ERR_RANGE, "contour: %lld segments is too many", (long long)nseg);
            IMRT_ALLOC(pt, 4 * nseg);
            IMRT_ALLOC(ends, 2 * nseg);
            IMRT_ALLOC(nbr, 2 * nseg);
            IMRT_ALLOC(seen, nseg);
        }
    }
    /* ends on the same edge are the same point: link them */
    qsort(ends, (size_t)(2 * nseg), sizeof *ends, contour_end_cmp);
    for (int64_t e = 0; e < 2 * nseg; e++)
        nbr[e] = -1;
    for (int64_t e = 0; e + 1 < 2 * nseg; e++)
        if (ends[e].edge == ends[e + 1].edge) {
            nbr[ends[e].end] = ends[e + 1].end;
            nbr[ends[e + 1].end] = ends[e].end;
        }
    for (int32_t s0 = 0; s0 < nseg; s0++) {
        if (seen[s0])
            continue;
        /* walk back to a free end (or around a loop) */
        int32_t cur = s0, out = 0;
        int closed = 0;
        for (int64_t steps = 0; steps <= nseg; steps++) {
            int32_t q = nbr[2 * cur + out];
            if (q < 0)
                break;
            if (q / 2 == s0) {
                closed = 1;
                break;
            }
            cur = q / 2;
            out = 1 - q % 2;
        }
        if (closed) {
            cur = s0;
            out = 0;
        }
        /* forward from that end, emitting one point per segment */
        cairo_move_to(cr, pt[4 * cur + 2 * out], pt[4 * cur + 2 * out + 1]);
        for (;;) {
            seen[cur] = 1;
            int32_t other = 1 - out;
            cairo_line_to(cr, pt[4 * cur + 2 * other], pt[4 * cur + 2 * other + 1]);
            int32_t q = nbr[2 * cur + other];
            if (q < 0)
                break;
            if (seen[q / 2]) {
                if (closed)
                    cairo_close_path(cr);
                break;
            }
            cur = q / 2;
            out = q % 2;
        }
    }
cleanup:
    imrt_free(pt);
    imrt_free(ends);
    imrt_free(nbr);
    imrt_free(seen);
    return status;
}

/* Stroke the current path twice: a dark halo, then the colour. */
static void stroke_with_halo(cairo_t *cr, const double c[3], double width)
{
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_source_rgba(cr, 0, 0, 0, 0.55);
    cairo_set_line_width(cr, width + 1.6);
    cairo_stroke_preserve(cr);
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, width);
    cairo_stroke(cr);
}

/* Isodose lines are dashed (structure outlines are solid), each dash with
 * its own dark outline. */
static void stroke_isodose(cairo_t *cr, const double c[3])
{
    static const double dash[2] = {6.0, 4.0};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_source_rgba(cr, 0, 0, 0, 0.6);
    cairo_set_line_width(cr, 3.4);
    cairo_stroke_preserve(cr);
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 1.8);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

/* ---- slices ----------------------------------------------------------------------------- */

#define SL_LEFT 20
#define SL_TOP 56
#define SL_BOTTOM 20
#define SL_GAP 28
#define SL_EXTRA 308 /* SL_LEFT + SL_GAP + column 250 + right margin 10 */
#define SL_BAR_MIN 160
#define SL_BAR_MAX 300
#define SL_BAR_W 22
#define SL_LEGEND_DX 80 /* legends start this far right of the colour bar */
#define SL_ROW 22

/* Colour of isodose level i: the dose colour map sampled by the level's rank
 * among the levels (lowest 0.12, highest 1.0), so that neighbouring levels
 * such as 95/100/107 % stay distinguishable while the order follows the
 * colour bar. */
static void isodose_colour(const imrt_plot_slice_opts *o, int i, double rgb3[3])
{
    int rank = 0;
    for (int j = 0; j < o->nisodose; j++)
        if (o->isodose_pct[j] < o->isodose_pct[i] || (o->isodose_pct[j] == o->isodose_pct[i] && j < i))
            rank++;
    double t = o->nisodose > 1 ? 0.12 + 0.88 * rank / (o->nisodose - 1) : 1.0;
    imrt_plot_dose_colour(t, rgb3);
}

void imrt_plot_slice_defaults(imrt_plot_slice_opts *o)
{
    memset(o, 0, sizeof *o);
    static const double iso[6] = {30, 50, 80, 95, 100, 107};
    o->nisodose = 6;
    for (int i = 0; i < 6; i++)
        o->isodose_pct[i] = iso[i];
    o->show_point = 1;
    o->wash_min_pct = 10.0;
    o->wash_alpha = 0.45;
    o->density_window[0] = 0.0;
    o->density_window[1] = 1.6;
    o->box_px = 600;
}

static imrt_status slice_check(imrt_plane plane, const imrt_plot_slice_data *d,
                               const imrt_plot_slice_opts *o)
{
    if ((int)plane < 0 || (int)plane > 2)
        return imrt_error(IMRT_ERR_ARG, "slice picture: plane %d is not axial (0), coronal (1) or sagittal (2)",
                          (int)plane);
    if (!d || !d->grid || !d->density)
        return imrt_error(IMRT_ERR_ARG, "slice picture: grid and density are required");
    if (d->nstructures < 0 || d->nstructures > IMRT_MAX_STRUCTURES ||
        (d->nstructures > 0 && !d->structures))
        return imrt_error(IMRT_ERR_ARG, "slice picture: nstructures = %d is outside 0..%d",
                          d->nstructures, IMRT_MAX_STRUCTURES);
    for (int s = 0; s < d->nstructures; s++)
        if (!d->structures[s].mask && !d->labels)
            return imrt_error(IMRT_ERR_ARG,
                              "slice picture: structure '%s' has no mask and there is no label map",
                              d->structures[s].name ? d->structures[s].name : "");
    if (o->box_px < 64 || o->box_px > 4096)
        return imrt_error(IMRT_ERR_ARG, "slice picture: box_px = %d is outside 64..4096", o->box_px);
    if (o->nisodose < 0 || o->nisodose > IMRT_PLOT_MAX_ISODOSE)
        return imrt_error(IMRT_ERR_ARG, "slice picture: nisodose = %d is outside 0..%d", o->nisodose,
                          IMRT_PLOT_MAX_ISODOSE);
    for (int i = 0; i < o->nisodose; i++)
        if (!isfinite(o->isodose_pct[i]) || o->isodose_pct[i] <= 0 || o->isodose_pct[i] > 1000)
            return imrt_error(IMRT_ERR_ARG, "slice picture: isodose level %g %% is outside (0, 1000]",
                              o->isodose_pct[i]);
    if (!(o->wash_alpha >= 0 && o->wash_alpha <= 1) || !(o->wash_min_pct >= 0) ||
        !isfinite(o->wash_min_pct))
        return imrt_error(IMRT_ERR_ARG,
                          "slice picture: wash_alpha %g must be in 0..1 and wash_min_pct %g >= 0",
                          o->wash_alpha, o->wash_min_pct);
    if (!(o->density_window[1] > o->density_window[0]) || !isfinite(o->density_window[0]) ||
        !isfinite(o->density_window[1]))
        return imrt_error(IMRT_ERR_ARG, "slice picture: density window %g..%g is empty",
                          o->density_window[0], o->density_window[1]);
    if (!(o->prescription_gy >= 0) || !isfinite(o->prescription_gy) || !(o->dose_max_gy >= 0) ||
        !isfinite(o->dose_max_gy))
        return imrt_error(IMRT_ERR_ARG,
                          "slice picture: prescription %g Gy and dose_max %g Gy must be finite and >= 0",
                          o->prescription_gy, o->dose_max_gy);
    double lo[3], hi[3];
    imrt_grid_bounds(d->grid, lo, hi);
    for (int a = 0; a < 3; a++)
        if (!(o->point[a] >= lo[a] && o->point[a] <= hi[a]))
            return imrt_error(IMRT_ERR_ARG,
                              "slice picture: point %c = %g mm is outside the grid (%g .. %g mm)",
                              "xyz"[a], o->point[a], lo[a], hi[a]);
    return IMRT_OK;
}

/* Panel size in px and the px/mm scale. */
static void slice_panel(const imrt_grid *g, const plane_def *p, int box, int *pw, int *ph, double *s)
{
    double lo[3], hi[3];
    imrt_grid_bounds(g, lo, hi);
    double wmm = hi[p->h] - lo[p->h], hmm = hi[p->v] - lo[p->v];
    *s = box / fmax(wmm, hmm);
    *pw = (int)lround(wmm * *s);
    *ph = (int)lround(hmm * *s);
    if (*pw < 1)
        *pw = 1;
    if (*ph < 1)
        *ph = 1;
}

/* Height of the colour bar for a panel of height ph. */
static int slice_bar_height(int ph)
{
    int h = ph - 24;
    return h < SL_BAR_MIN ? SL_BAR_MIN : h > SL_BAR_MAX ? SL_BAR_MAX : h;
}

/* Height of the legend column: the colour bar beside the isodose and
 * structure legends. */
static int slice_column_height(const imrt_plot_slice_data *d, const imrt_plot_slice_opts *o, int ph)
{
    int legend = 12;
    if (d->dose)
        legend += SL_ROW * (o->nisodose + 1) + 12;
    if (d->nstructures > 0)
        legend += SL_ROW * (d->nstructures + 1);
    int bar = d->dose ? 24 + slice_bar_height(ph) : 0;
    return legend > bar ? legend : bar;
}

imrt_status imrt_plot_slice_size(imrt_plane plane, const imrt_plot_slice_data *d,
                                 const imrt_plot_slice_opts *o, int *width, int *height)
{
    imrt_plot_slice_opts def;
    if (!o) {
        imrt_plot_slice_defaults(&def);
        o = &def;
    }
    if (!width || !height)
        return imrt_error(IMRT_ERR_ARG, "imrt_plot_slice_size: NULL output");
    if ((int)plane < 0 || (int)plane > 2 || !d || !d->grid)
        return imrt_error(IMRT_ERR_ARG, "imrt_plot_slice_size: bad plane or data");
    if (o->box_px < 64 || o->box_px > 4096)
        return imrt_error(IMRT_ERR_ARG, "slice picture: box_px = %d is outside 64..4096", o->box_px);
    int pw, ph;
    double s;
    slice_panel(d->grid, &PLANES[plane], o->box_px, &pw, &ph, &s);
    int col = slice_column_height(d, o, ph);
    *width = pw + SL_EXTRA;
    *height = SL_TOP + SL_BOTTOM + (ph > col ? ph : col);
    return IMRT_OK;
}

/* Largest "round" length not above `limit` mm for the scale bar. */
static double scale_bar_mm(double limit)
{
    static const double c[] = {500, 200, 100, 50, 20, 10, 5, 2, 1};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        if (c[i] <= limit)
            return c[i];
    return 1;
}

imrt_status imrt_plot_slice(const char *path, imrt_plane plane, const imrt_plot_slice_data *d,
                            const imrt_plot_slice_opts *o)
{
    imrt_status status = IMRT_OK;
    canvas cv = {0};
    field2d dens = {0}, dose = {0}, outline = {0};
    float *work = NULL;
    cairo_surface_t *img = NULL;
    imrt_plot_slice_opts def;
    if (!o) {
        imrt_plot_slice_defaults(&def);
        o = &def;
    }
    if (!path)
        return imrt_error(IMRT_ERR_ARG, "imrt_plot_slice: path is NULL");
    IMRT_TRY(slice_check(plane, d, o));
    const plane_def *p = &PLANES[plane];
    const imrt_grid *g = d->grid;
    const imrt_grid *dg = d->dose_grid ? d->dose_grid : g;
    char buf[256];

    /* dose scale: reference (isodose %), colour-bar top, wash threshold */
    double dmax_data = 0.0;
    if (d->dose) {
        int64_t nd = imrt_grid_nvox(dg);
        for (int64_t v = 0; v < nd; v++) {
            if (!isfinite(d->dose[v]))
                IMRT_FAIL(IMRT_ERR_ARG, "slice picture: dose %g at voxel %lld is not finite",
                          (double)d->dose[v], (long long)v);
            dmax_data = fmax(dmax_data, d->dose[v]);
        }
    }
    double ref = o->prescription_gy > 0 ? o->prescription_gy : dmax_data;
    double bar_max = o->dose_max_gy > 0 ? o->dose_max_gy : dmax_data;
    if (!(bar_max > 0))
        bar_max = 1.0;
    if (!(ref > 0))
        ref = bar_max;
    double wash_min = o->wash_min_pct / 100.0 * ref;

    int pw, ph, W, H;
    double s;
    slice_panel(g, p, o->box_px, &pw, &ph, &s);
    IMRT_TRY(imrt_plot_slice_size(plane, d, o, &W, &H));
    double lo[3], hi[3];
    imrt_grid_bounds(g, lo, hi);
    const double cut = o->point[p->c];
    xform t = {SL_LEFT, SL_TOP, lo[p->h], hi[p->v], lo[p->v], s, p->vflip};

    IMRT_TRY(field_from_float(g, d->density, p, cut, &dens));
    if (d->dose)
        IMRT_TRY(field_from_float(dg, d->dose, p, cut, &dose));

    /* raster: grey density with the colour wash, one sample per pixel */
    img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, pw, ph);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS)
        IMRT_FAIL(IMRT_ERR_NOMEM, "picture '%s': cannot create a %d x %d image", path, pw, ph);
    cairo_surface_flush(img);
    unsigned char *pix = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    const double wlo = o->density_window[0], whi = o->density_window[1];
    for (int py = 0; py < ph; py++) {
        double wv = p->vflip ? hi[p->v] - (py + 0.5) / s : lo[p->v] + (py + 0.5) / s;
        uint32_t *rowp = (uint32_t *)(void *)(pix + (size_t)py * (size_t)stride);
        for (int px = 0; px < pw; px++) {
            double wh = lo[p->h] + (px + 0.5) / s;
            double rho = field_sample(&dens, wh, wv);
            double gl = isnan(rho) ? 0.0 : fmin(fmax((rho - wlo) / (whi - wlo), 0.0), 1.0);
            double c[3] = {gl, gl, gl};
            if (d->dose) {
                double dv = field_sample(&dose, wh, wv);
                if (!isnan(dv) && dv >= wash_min && dv > 0) {
                    double col[3];
                    imrt_plot_dose_colour(dv / bar_max, col);
                    for (int k = 0; k < 3; k++)
                        c[k] = (1 - o->wash_alpha) * c[k] + o->wash_alpha * col[k];
                }
            }
            uint32_t r = (uint32_t)lround(c[0] * 255), gg = (uint32_t)lround(c[1] * 255),
                     b = (uint32_t)lround(c[2] * 255);
            rowp[px] = (r << 16) | (gg << 8) | b;
        }
    }
    cairo_surface_mark_dirty(img);

    IMRT_TRY(canvas_create(W, H, path, &cv));
    cairo_t *cr = cv.cr;
    cairo_set_source_surface(cr, img, SL_LEFT, SL_TOP);
    cairo_paint(cr);

    cairo_save(cr);
    cairo_rectangle(cr, SL_LEFT, SL_TOP, pw, ph);
    cairo_clip(cr);
    /* isodose lines */
    if (d->dose) {
        for (int i = 0; i < o->nisodose; i++) {
            double lvl = o->isodose_pct[i] / 100.0 * ref;
            double col[3];
            isodose_colour(o, i, col);
            IMRT_TRY(contour_path(cr, &dose, lvl, &t));
            stroke_isodose(cr, col);
        }
    }
    /* structure outlines, on top */
    if (d->nstructures > 0) {
        size_t cells = (size_t)(g->nx + 2) * (size_t)(g->ny + 2);
        size_t c2 = (size_t)(g->nx + 2) * (size_t)(g->nz + 2);
        size_t c3 = (size_t)(g->ny + 2) * (size_t)(g->nz + 2);
        cells = IMRT_MAX(cells, IMRT_MAX(c2, c3));
        IMRT_ALLOC(work, cells);
        IMRT_ALLOC(outline.val, cells);
        for (int si = 0; si < d->nstructures; si++) {
            const imrt_plot_structure *st = &d->structures[si];
            IMRT_TRY(field_from_mask(g, st->mask, d->labels, st->label, p, cut, &outline, work));
            double col[3];
            imrt_plot_palette(st->colour, col);
            IMRT_TRY(contour_path(cr, &outline, 0.5, &t));
            stroke_with_halo(cr, col, 2.6);
        }
    }
    /* point marker */
    if (o->show_point) {
        double x, y;
        to_px(&t, o->point[p->h], o->point[p->v], &x, &y);
        cairo_move_to(cr, x - 8, y);
        cairo_line_to(cr, x + 8, y);
        cairo_move_to(cr, x, y - 8);
        cairo_line_to(cr, x, y + 8);
        const double white[3] = {1, 1, 1};
        stroke_with_halo(cr, white, 1.5);
    }
    /* orientation letters */
    set_font(cr, 20, 1);
    text_outlined(cr, p->left, SL_LEFT + 10, SL_TOP + ph / 2.0, 0.0, 0.5);
    text_outlined(cr, p->right, SL_LEFT + pw - 10, SL_TOP + ph / 2.0, 1.0, 0.5);
    text_outlined(cr, p->top, SL_LEFT + pw / 2.0, SL_TOP + 28, 0.5, 0.0);
    text_outlined(cr, p->bottom, SL_LEFT + pw / 2.0, SL_TOP + ph - 10, 0.5, 0.0);
    /* scale bar */
    double bar_mm = scale_bar_mm(0.25 * pw / s);
    double bx = SL_LEFT + 14, by = SL_TOP + ph - 16, blen = bar_mm * s;
    cairo_rectangle(cr, bx, by - 3, blen, 6);
    rgb(cr, 1, 1, 1);
    cairo_fill_preserve(cr);
    cairo_set_source_rgba(cr, 0, 0, 0, 0.85);
    cairo_set_line_width(cr, 1.2);
    cairo_stroke(cr);
    set_font(cr, 13, 1);
    snprintf(buf, sizeof buf, "%g mm", bar_mm);
    text_outlined(cr, buf, bx + blen / 2, by - 9, 0.5, 0.0);
    cairo_restore(cr);
    rgb(cr, 0.25, 0.25, 0.25);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, SL_LEFT - 0.5, SL_TOP - 0.5, pw + 1, ph + 1);
    cairo_stroke(cr);

    /* titles */
    set_font(cr, 18, 1);
    rgb(cr, 0.1, 0.1, 0.1);
    text(cr, o->title ? o->title : (d->dose ? "Dose" : "Phantom"), SL_LEFT, 26, 0.0, 0.0);
    set_font(cr, 13, 0);
    rgb(cr, 0.35, 0.35, 0.35);
    snprintf(buf, sizeof buf, "%s plane %c = %.1f mm  \xc2\xb7  %s", p->name, "xyz"[p->c], cut,
             p->view);
    text(cr, buf, SL_LEFT, 46, 0.0, 0.0);

    /* legend column: colour bar, then the isodose and structure legends */
    double cx = SL_LEFT + pw + SL_GAP, lx = cx, cy = SL_TOP + 12;
    if (d->dose) {
        int bh = slice_bar_height(ph);
        set_font(cr, 13, 1);
        rgb(cr, 0.1, 0.1, 0.1);
        text(cr, "Gy", cx + SL_BAR_W / 2.0, cy, 0.5, 0.0);
        double bt = SL_TOP + 24, bw = SL_BAR_W;
        for (int r = 0; r < bh; r++) {
            double dv = bar_max * (1.0 - (r + 0.5) / bh);
            double col[3];
            imrt_plot_dose_colour(dv / bar_max, col);
            if (dv < wash_min)
                for (int k = 0; k < 3; k++)
                    col[k] = 0.75 + 0.25 * col[k]; /* not washed: pale */
            rgb(cr, col[0], col[1], col[2]);
            cairo_rectangle(cr, cx, bt + r, bw, 1.0);
            cairo_fill(cr);
        }
        rgb(cr, 0.25, 0.25, 0.25);
        cairo_set_line_width(cr, 1.0);
        cairo_rectangle(cr, cx - 0.5, bt - 0.5, bw + 1, bh + 1);
        cairo_stroke(cr);
        double step = nice_step(bar_max, bh >= 240 ? 6 : 4);
        set_font(cr, 12, 0);
        for (double v = 0; v <= bar_max * (1 + 1e-9); v += step) {
            double y = bt + bh * (1.0 - v / bar_max);
            rgb(cr, 0.25, 0.25, 0.25);
            cairo_move_to(cr, cx + bw, y);
            cairo_line_to(cr, cx + bw + 4, y);
            cairo_stroke(cr);
            tick_label(buf, sizeof buf, v, step);
            rgb(cr, 0.1, 0.1, 0.1);
            text(cr, buf, cx + bw + 7, y, 0.0, 0.5);
        }
        /* isodose levels: small marks on the bar in the lines' colours */
        for (int i = 0; i < o->nisodose; i++) {
            double lvl = o->isodose_pct[i] / 100.0 * ref;
            if (lvl > bar_max)
                continue;
            double y = bt + bh * (1.0 - lvl / bar_max), col[3];
            isodose_colour(o, i, col);
            cairo_move_to(cr, cx - 1, y);
            cairo_line_to(cr, cx - 9, y - 5);
            cairo_line_to(cr, cx - 9, y + 5);
            cairo_close_path(cr);
            rgb(cr, col[0], col[1], col[2]);
            cairo_fill_preserve(cr);
            cairo_set_source_rgba(cr, 0, 0, 0, 0.7);
            cairo_set_line_width(cr, 0.8);
            cairo_stroke(cr);
        }
        lx = cx + SL_LEGEND_DX;
        set_font(cr, 13, 1);
        rgb(cr, 0.1, 0.1, 0.1);
        text(cr, o->prescription_gy > 0 ? "Isodose (% Rx)" : "Isodose (% max)", lx, cy, 0.0, 0.0);
        cy += SL_ROW;
        set_font(cr, 12, 0);
        for (int i = o->nisodose - 1; i >= 0; i--) {
            double lvl = o->isodose_pct[i] / 100.0 * ref;
            double col[3];
            isodose_colour(o, i, col);
            cairo_move_to(cr, lx, cy - 4);
            cairo_line_to(cr, lx + 22, cy - 4);
            stroke_isodose(cr, col);
            snprintf(buf, sizeof buf, "%g %%", o->isodose_pct[i]);
            rgb(cr, 0.1, 0.1, 0.1);
            text(cr, buf, lx + 28, cy - 4, 0.0, 0.5);
            snprintf(buf, sizeof buf, "%.1f Gy", lvl);
            text(cr, buf, lx + 146, cy - 4, 1.0, 0.5);
            cy += SL_ROW;
        }
        cy += 12;
    }
    if (d->nstructures > 0) {
        set_font(cr, 13, 1);
        rgb(cr, 0.1, 0.1, 0.1);
        text(cr, "Structures", lx, cy, 0.0, 0.0);
        cy += SL_ROW;
        set_font(cr, 12, 0);
        for (int si = 0; si < d->nstructures; si++) {
            double col[3];
            imrt_plot_palette(d->structures[si].colour, col);
            cairo_move_to(cr, lx, cy - 4);
            cairo_line_to(cr, lx + 22, cy - 4);
            stroke_with_halo(cr, col, 2.6);
            rgb(cr, 0.1, 0.1, 0.1);
            text(cr, d->structures[si].name ? d->structures[si].name : "", lx + 28, cy - 4, 0.0, 0.5);
            cy += SL_ROW;
        }
    }
    IMRT_TRY(canvas_write(&cv, path));
cleanup:
    if (img)
        cairo_surface_destroy(img);
    canvas_destroy(&cv);
    imrt_free(dens.val);
    imrt_free(dose.val);
    imrt_free(outline.val);
    imrt_free(work);
    return status;
}

/* ---- fluence maps ----------------------------------------------------------------------- */

void imrt_plot_fluence_defaults(imrt_plot_fluence_opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 720;
    o->height = 600;
}

imrt_status imrt_plot_fluence(const char *path, int n, const float *uv, const double *w,
                              double pitch, const imrt_plot_fluence_opts *o)
{
    imrt_status status = IMRT_OK;
    canvas cv = {0};
    imrt_plot_fluence_opts def;
    if (!o) {
        imrt_plot_fluence_defaults(&def);
        o = &def;
    }
    if (!path || (n > 0 && (!uv || !w)) || n < 1)
        return imrt_error(IMRT_ERR_ARG, "fluence map: needs a path and >= 1 beamlet (got %d)", n);
    if (!(pitch > 0) || !isfinite(pitch))
        return imrt_error(IMRT_ERR_ARG, "fluence map: beamlet pitch %g mm must be > 0", pitch);
    if (o->width < 400 || o->height < 320 || o->width > 8000 || o->height > 8000)
        return imrt_error(IMRT_ERR_ARG, "fluence map: size %d x %d px is outside 400..8000 x 320..8000",
                          o->width, o->height);
    if (!(o->weight_max >= 0) || !isfinite(o->weight_max))
        return imrt_error(IMRT_ERR_ARG, "fluence map: weight_max %g must be finite and >= 0",
                          o->weight_max);
    double umin = INFINITY, umax = -INFINITY, vmin = INFINITY, vmax = -INFINITY, wmax = 0;
    for (int b = 0; b < n; b++) {
        double u = uv[2 * b], v = uv[2 * b + 1];
        if (!isfinite(u) || !isfinite(v) || !isfinite(w[b]))
            return imrt_error(IMRT_ERR_ARG, "fluence map: beamlet %d has a non-finite position or weight",
                              b);
        umin = fmin(umin, u);
        umax = fmax(umax, u);
        vmin = fmin(vmin, v);
        vmax = fmax(vmax, v);
        wmax = fmax(wmax, w[b]);
    }
    for (int b = 0; b < n; b++) {
        double fu = ((double)uv[2 * b] - umin) / pitch, fv = ((double)uv[2 * b + 1] - vmin) / pitch;
        if (fabs(fu - round(fu)) > 0.25 || fabs(fv - round(fv)) > 0.25)
            return imrt_error(IMRT_ERR_ARG,
                              "fluence map: beamlet %d at (%g, %g) mm is not on the %g mm grid", b,
                              (double)uv[2 * b], (double)uv[2 * b + 1], pitch);
    }
    double top = o->weight_max > 0 ? o->weight_max : (wmax > 0 ? wmax : 1.0);
    const int W = o->width, H = o->height;
    IMRT_TRY(canvas_create(W, H, path, &cv));
    cairo_t *cr = cv.cr;
    char buf[256];

    /* map area: extents padded by one beamlet, square mm */
    double eu0 = umin - 1.5 * pitch, eu1 = umax + 1.5 * pitch;
    double ev0 = vmin - 1.5 * pitch, ev1 = vmax + 1.5 * pitch;
    double ax0 = 78, ax1 = W - 150, ay0 = 72, ay1 = H - 62;
    double s = fmin((ax1 - ax0) / (eu1 - eu0), (ay1 - ay0) / (ev1 - ev0));
    double mw = (eu1 - eu0) * s, mh = (ev1 - ev0) * s;
    double mx = ax0 + 0.5 * (ax1 - ax0 - mw), my = ay0 + 0.5 * (ay1 - ay0 - mh);
#define FU(u) (mx + ((u) - eu0) * s)
#define FV(v) (my + (ev1 - (v)) * s)
    rgb(cr, 0.93, 0.93, 0.93);
    cairo_rectangle(cr, mx, my, mw, mh);
    cairo_fill(cr);
    for (int b = 0; b < n; b++) {
        double col[3];
        imrt_plot_fluence_colour(fmax(w[b], 0.0) / top, col);
        rgb(cr, col[0], col[1], col[2]);
        double u = uv[2 * b], v = uv[2 * b + 1];
        cairo_rectangle(cr, FU(u - 0.5 * pitch), FV(v + 0.5 * pitch), pitch * s, pitch * s);
        cairo_fill(cr);
    }
    if (pitch * s >= 10) { /* beamlet borders */
        cairo_set_source_rgba(cr, 1, 1, 1, 0.35);
        cairo_set_line_width(cr, 0.7);
        for (int b = 0; b < n; b++) {
            double u = uv[2 * b], v = uv[2 * b + 1];
            cairo_rectangle(cr, FU(u - 0.5 * pitch), FV(v + 0.5 * pitch), pitch * s, pitch * s);
        }
        cairo_stroke(cr);
    }
    /* central axis */
    {
        static const double dash[2] = {5.0, 4.0};
        cairo_set_dash(cr, dash, 2, 0);
        cairo_set_source_rgba(cr, 1, 1, 1, 0.8);
        cairo_set_line_width(cr, 1.0);
        if (eu0 < 0 && eu1 > 0) {
            cairo_move_to(cr, FU(0), my);
            cairo_line_to(cr, FU(0), my + mh);
        }
        if (ev0 < 0 && ev1 > 0) {
            cairo_move_to(cr, mx, FV(0));
            cairo_line_to(cr, mx + mw, FV(0));
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, mx - 0.5, my - 0.5, mw + 1, mh + 1);
    cairo_stroke(cr);
    /* ticks in mm */
    double step = nice_step(fmax(eu1 - eu0, ev1 - ev0), 8);
    set_font(cr, 12, 0);
    for (double u = ceil(eu0 / step) * step; u <= eu1; u += step) {
        cairo_move_to(cr, FU(u), my + mh);
        cairo_line_to(cr, FU(u), my + mh + 5);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, u, step);
        text(cr, buf, FU(u), my + mh + 19, 0.5, 0.0);
    }
    for (double v = ceil(ev0 / step) * step; v <= ev1; v += step) {
        cairo_move_to(cr, mx - 5, FV(v));
        cairo_line_to(cr, mx, FV(v));
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, v, step);
        text(cr, buf, mx - 8, FV(v), 1.0, 0.5);
    }
#undef FU
#undef FV
    set_font(cr, 14, 0);
    text(cr, "u (mm, isocentre plane)", mx + mw / 2, my + mh + 42, 0.5, 0.0);
    cairo_save(cr);
    cairo_translate(cr, 22, my + mh / 2);
    cairo_rotate(cr, -IMRT_PI / 2);
    text(cr, "v (mm)", 0, 0, 0.5, 0.5);
    cairo_restore(cr);
    /* title */
    set_font(cr, 18, 1);
    rgb(cr, 0.1, 0.1, 0.1);
    if (o->couch_deg != 0)
        snprintf(buf, sizeof buf, "Beam %s \xc2\xb7 gantry %.4g\xc2\xb0, couch %.4g\xc2\xb0",
                 o->beam_name ? o->beam_name : "beam", o->gantry_deg, o->couch_deg);
    else
        snprintf(buf, sizeof buf, "Beam %s \xc2\xb7 gantry %.4g\xc2\xb0",
                 o->beam_name ? o->beam_name : "beam", o->gantry_deg);
    text(cr, buf, W / 2.0, 30, 0.5, 0.0);
    set_font(cr, 13, 0);
    rgb(cr, 0.35, 0.35, 0.35);
    snprintf(buf, sizeof buf, "%d beamlets of %g mm, beam's-eye view  \xc2\xb7  max weight %.3g", n,
             pitch, wmax);
    text(cr, buf, W / 2.0, 52, 0.5, 0.0);
    /* colour bar */
    double bx = W - 112, bw = 22, bt = my, bh = fmax(mh, 160.0);
    if (bt + bh > H - 20)
        bh = H - 20 - bt;
    for (int r = 0; r < (int)bh; r++) {
        double col[3];
        imrt_plot_fluence_colour(1.0 - (r + 0.5) / bh, col);
        rgb(cr, col[0], col[1], col[2]);
        cairo_rectangle(cr, bx, bt + r, bw, 1.0);
        cairo_fill(cr);
    }
    rgb(cr, 0.25, 0.25, 0.25);
    cairo_rectangle(cr, bx - 0.5, bt - 0.5, bw + 1, (int)bh + 1);
    cairo_stroke(cr);
    double wstep = nice_step(top, 5);
    set_font(cr, 12, 0);
    for (double v = 0; v <= top * (1 + 1e-9); v += wstep) {
        double y = bt + bh * (1.0 - v / top);
        rgb(cr, 0.25, 0.25, 0.25);
        cairo_move_to(cr, bx + bw, y);
        cairo_line_to(cr, bx + bw + 4, y);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, v, wstep);
        rgb(cr, 0.1, 0.1, 0.1);
        text(cr, buf, bx + bw + 7, y, 0.0, 0.5);
    }
    set_font(cr, 12, 1);
    text(cr, o->units ? o->units : "beamlet weight", bx + bw / 2, bt - 10, 0.5, 0.0);
    IMRT_TRY(canvas_write(&cv, path));
cleanup:
    canvas_destroy(&cv);
    return status;
}
