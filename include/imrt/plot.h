/*
 * imrt/plot.h - the pictures of a plan, drawn with cairo and written as PNG:
 * dose-volume histograms, dose colour-wash slices over the density, and
 * beamlet fluence maps. Each function takes plain data (arrays, grids,
 * names) and writes one file atomically (imrt/io.h).
 *
 * Colours: structures are drawn with the project palette (imrt_plot_palette:
 * the Okabe-Ito colour-blind-safe set, then four colours of Paul Tol's
 * muted set); the same palette index gives the same colour in the DVH, the
 * slice outlines and the label-map legend. Doses use a turbo-like rainbow
 * (dark blue -> cyan -> green -> yellow -> red), fluence a viridis-like
 * sequential map (dark purple -> teal -> yellow), readable in grey scale.
 *
 * Orientation of slices (radiological convention, stated on each picture):
 *   axial    viewed from the feet:  patient's right on the image left,
 *            left (L) on the image right, anterior (A) at the top;
 *   coronal  viewed from the front: R on the left, L on the right,
 *            superior (S) at the top;
 *   sagittal viewed from the patient's left: anterior on the left,
 *            posterior on the right, superior at the top.
 * Pixels are square in millimetres (anisotropic voxels are stretched to
 * their true size); doses are interpolated bilinearly in the plane and
 * linearly between slices.
 *
 * Units: mm (DICOM LPS, see imrt/grid.h), Gy, volume %.
 * Ownership: all inputs are borrowed for the duration of the call.
 * Thread safety: functions keep no state; different files may be drawn
 * concurrently (cairo's toy font API is thread-safe).
 * Errors (every writer): IMRT_ERR_ARG naming the bad argument,
 * IMRT_ERR_IO naming the path and reason, IMRT_ERR_NOMEM.
 */
#ifndef IMRT_PLOT_H
#define IMRT_PLOT_H

#include "imrt/grid.h"
#include "imrt/phantom.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- colours ------------------------------------------------------------ */

/* Number of distinct palette colours; indices wrap around. */
#define IMRT_PLOT_PALETTE_SIZE 12

/* Palette colour `index` (>= 0; wraps) as r, g, b in 0..1; a negative index
 * gives neutral grey. 0 vermillion, 1 blue, 2 bluish green, 3 orange,
 * 4 reddish purple, 5 sky blue, 6 yellow, 7 grey, 8 wine, 9 olive,
 * 10 indigo, 11 teal. */
void imrt_plot_palette(int index, double rgb[3]);

/* The same colour as 0..255 integers (for legends and label tables). */
void imrt_plot_palette_rgb8(int index, unsigned char rgb[3]);

/* Give n structures palette indices by kind, in order: targets take the
 * warm colours (vermillion, reddish purple, orange, wine), organs at risk
 * the others (blue, bluish green, sky blue, olive, indigo, teal, yellow),
 * the body outline grey. Indices repeat only when a group runs out. */
void imrt_plot_assign_colours(const imrt_structure_kind *kinds, int n, int *colours);

/* Dose colour map (turbo-like) at t in [0, 1] (clamped). */
void imrt_plot_dose_colour(double t, double rgb[3]);

/* Fluence colour map (viridis-like) at t in [0, 1] (clamped). */
void imrt_plot_fluence_colour(double t, double rgb[3]);

/* ---- dose-volume histogram ---------------------------------------------------- */

typedef struct {
    const char *name;          /* structure name for the legend */
    int colour;                /* palette index */
    int dashed;                /* 0 = solid line (IMRT), 1 = dashed (3D-CRT) */
    int npoints;               /* >= 2 */
    const double *dose_gy;     /* npoints doses, non-decreasing, Gy */
    const double *volume_pct;  /* npoints cumulative volumes, 0..100 % */
} imrt_plot_dvh_curve;

typedef struct {
    const char *title;         /* NULL = "Dose-volume histogram" */
    const char *solid_label;   /* legend text of solid lines, NULL = "IMRT" */
    const char *dashed_label;  /* legend text of dashed lines, NULL = "3D-CRT" */
    double prescription_gy;    /* > 0: vertical marker "Rx" at this dose */
    double dose_max_gy;        /* x-axis end; 0 = automatic (highest dose with
                                  volume > 0.05 %, plus 5 %, rounded up to a tick) */
    int width, height;         /* picture size in px; default 900 x 600, at
                                  least 480 x 320 */
} imrt_plot_dvh_opts;

/* Defaults: 900 x 600 px, no prescription marker, automatic axis. */
void imrt_plot_dvh_defaults(imrt_plot_dvh_opts *o);

/* Where the plot area lies: dose 0..x_max_gy maps to pixel columns
 * x0..x1 and volume 0..y_max_pct to rows y0..y1 (y0 below y1 on screen,
 * i.e. y0 > y1). Filled by imrt_plot_dvh_layout. */
typedef struct {
    double x0, x1, y0, y1;     /* px */
    double x_max_gy, y_max_pct;
} imrt_plot_axes;

/* The axes imrt_plot_dvh would use for these curves and options. */
imrt_status imrt_plot_dvh_layout(const imrt_plot_dvh_curve *curves, int ncurves,
                                 const imrt_plot_dvh_opts *o, imrt_plot_axes *axes);

/* Draw the curves (legend: one entry per structure name and colour, then the
 * two line styles that occur) to a PNG of o->width x o->height px (o may be
 * NULL for the defaults). */
imrt_status imrt_plot_dvh(const char *path, const imrt_plot_dvh_curve *curves, int ncurves,
                          const imrt_plot_dvh_opts *o);

/* ---- dose colour-wash slices ---------------------------------------------------- */

typedef enum {
    IMRT_PLANE_AXIAL = 0,    /* constant z */
    IMRT_PLANE_CORONAL = 1,  /* constant y */
    IMRT_PLANE_SAGITTAL = 2  /* constant x */
} imrt_plane;

/* A structure to outline: its own mask, or the voxels of a label map that
 * carry `label`. */
typedef struct {
    const char *name;          /* for the legend */
    int colour;                /* palette index */
    const uint8_t *mask;       /* nvox(grid) bytes, 1 inside; NULL = use label */
    int label;                 /* label value in imrt_plot_slice_data.labels */
} imrt_plot_structure;

typedef struct {
    const imrt_grid *grid;     /* grid of density, labels and masks */
    const float *density;      /* nvox(grid) RED values; required */
    const imrt_grid *dose_grid;/* grid of dose; NULL = grid */
    const float *dose;         /* nvox(dose_grid) Gy, or NULL (no wash) */
    const uint8_t *labels;     /* label map on grid, or NULL */
    const imrt_plot_structure *structures;
    int nstructures;           /* 0..IMRT_MAX_STRUCTURES */
} imrt_plot_slice_data;

#define IMRT_PLOT_MAX_ISODOSE 12

typedef struct {
    const char *title;         /* first title line, e.g. "IMRT"; NULL = "Dose" */
    double point[3];           /* mm, LPS: the slice goes through it (inside
                                  the grid); marked with a cross if show_point */
    int show_point;            /* 1 = draw a small cross at the point */
    double prescription_gy;    /* reference of the isodose %; 0 = max dose */
    int nisodose;              /* 0..IMRT_PLOT_MAX_ISODOSE levels */
    double isodose_pct[IMRT_PLOT_MAX_ISODOSE]; /* % of the reference */
    double dose_max_gy;        /* top of the colour bar; 0 = max of dose.
                                  Give both plans the same value to compare. */
    double wash_min_pct;       /* no wash below this % of the reference */
    double wash_alpha;         /* opacity of the wash, 0..1 */
    double density_window[2];  /* RED shown black .. white */
    int box_px;                /* the slice is scaled to fit box_px x box_px */
} imrt_plot_slice_opts;

/* Defaults: isodose 30/50/80/95/100/107 %, wash from 10 % at opacity 0.45,
 * density window 0.0..1.6 RED, box 600 px, point at the origin, cross on. */
void imrt_plot_slice_defaults(imrt_plot_slice_opts *o);

/* Size of the picture imrt_plot_slice writes. The slice's extent in mm is
 * scaled by s = box_px / max(width_mm, height_mm) to a panel of
 * pw x ph px (rounded). Width = pw + 308. Height = 76 + max(ph, column),
 * column = max(24 + bar, legends) with bar = min(max(ph - 24, 160), 300)
 * when there is a dose (0 otherwise) and legends = 12 + [with a dose]
 * 22 (nisodose + 1) + 12 + [with structures] 22 (nstructures + 1).
 * Errors: IMRT_ERR_ARG. */
imrt_status imrt_plot_slice_size(imrt_plane plane, const imrt_plot_slice_data *d,
                                 const imrt_plot_slice_opts *o, int *width, int *height);

/* Draw the slice of `plane` through o->point: density in grey, the dose as
 * a colour wash above the threshold, dashed isodose lines (in dose order
 * along the colour scale, spread by rank so that neighbouring levels differ;
 * legend in % and Gy, marks on the colour bar), solid structure outlines on
 * top, orientation letters, a millimetre scale bar and a colour bar in Gy.
 * o may be NULL for the defaults. */
imrt_status imrt_plot_slice(const char *path, imrt_plane plane, const imrt_plot_slice_data *d,
                            const imrt_plot_slice_opts *o);

/* ---- fluence maps ------------------------------------------------------------- */

typedef struct {
    const char *beam_name;     /* e.g. "G040"; NULL = "beam" */
    double gantry_deg;         /* shown in the title */
    double couch_deg;          /* shown when not 0 */
    const char *units;         /* colour-bar label; NULL = "beamlet weight" */
    double weight_max;         /* top of the colour scale; 0 = max weight */
    int width, height;         /* px; default 720 x 600, at least 400 x 320 */
} imrt_plot_fluence_opts;

void imrt_plot_fluence_defaults(imrt_plot_fluence_opts *o);

/* Draw one beam's beamlet weights on its beam's-eye-view grid: beamlet b has
 * its centre at (uv_mm[2b], uv_mm[2b+1]) in the isocentre plane (u to the
 * right, v up, as the dose engine defines the BEV axes) and covers a square
 * of side pitch_mm. Centres must lie on one pitch grid (within pitch/4).
 * Positions without a beamlet are left light grey. */
imrt_status imrt_plot_fluence(const char *path, int nbeamlets, const float *uv_mm,
                              const double *weights, double pitch_mm,
                              const imrt_plot_fluence_opts *o);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_PLOT_H */
