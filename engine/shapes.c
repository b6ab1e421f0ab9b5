/*
 * engine/shapes.c - analytic solids of the phantom spec: point membership,
 * bounding boxes, analytic volumes and voxel-centre rasterisation.
 */
#include "shapes_impl.h"

#include "util_impl.h"

#include <math.h>

const char *imrt_shape_type_name(imrt_shape_type t)
{
    switch (t) {
    case IMRT_SHAPE_BOX:
        return "box";
    case IMRT_SHAPE_SPHERE:
        return "sphere";
    case IMRT_SHAPE_ELLIPSOID:
        return "ellipsoid";
    case IMRT_SHAPE_CYLINDER:
        return "cylinder";
    case IMRT_SHAPE_SECTOR:
        return "annular_sector";
    case IMRT_SHAPE_HALFSPACE:
        return "half_space";
    }
    return "unknown";
}

static double dot3(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static void cross3(const double a[3], const double b[3], double out[3])
{
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

int imrt_shape_frame(const double axis[3], const double *ref, double u[3], double v[3])
{
    double e[3] = {0, 0, 0};
    if (ref) {
        e[0] = ref[0];
        e[1] = ref[1];
        e[2] = ref[2];
    } else if (axis[0] == 0.0 && axis[1] == 0.0) { /* z: (x, y) */
        e[0] = 1.0;
    } else if (axis[1] == 0.0 && axis[2] == 0.0) { /* x: (y, z) */
        e[1] = 1.0;
    } else if (axis[0] == 0.0 && axis[2] == 0.0) { /* y: (x, z) */
        e[0] = 1.0;
    } else {
        int best = 0;
        for (int i = 1; i < 3; i++)
            if (fabs(axis[i]) < fabs(axis[best]))
                best = i;
        e[best] = 1.0;
    }
    double along = dot3(e, axis);
    for (int i = 0; i < 3; i++)
        u[i] = e[i] - along * axis[i];
    double n = sqrt(dot3(u, u));
    double en = sqrt(dot3(e, e));
    if (!(n > 1e-9 * (en > 0 ? en : 1.0)))
        return 0;
    for (int i = 0; i < 3; i++)
        u[i] /= n;
    if (!ref && axis[1] != 0.0 && axis[0] == 0.0 && axis[2] == 0.0) {
        /* y axis: v = z so that radii read (x, z) */
        v[0] = 0.0;
        v[1] = 0.0;
        v[2] = 1.0;
        return 1;
    }
    cross3(axis, u, v);
    return 1;
}

int imrt_shape_contains(const imrt_shape *s, const double p[3])
{
    const double eps = IMRT_SHAPE_EPS_MM;
    double d[3] = {p[0] - s->c[0], p[1] - s->c[1], p[2] - s->c[2]};
    switch (s->type) {
    case IMRT_SHAPE_BOX:
        return fabs(d[0]) <= s->half[0] + eps && fabs(d[1]) <= s->half[1] + eps &&
               fabs(d[2]) <= s->half[2] + eps;
    case IMRT_SHAPE_SPHERE:
        return dot3(d, d) <= (s->r1 + eps) * (s->r1 + eps);
    case IMRT_SHAPE_ELLIPSOID: {
        double q = 0.0, mn = s->half[0];
        for (int i = 0; i < 3; i++) {
            double t = d[i] / s->half[i];
            q += t * t;
            mn = s->half[i] < mn ? s->half[i] : mn;
        }
        return q <= 1.0 + 2.0 * eps / mn;
    }
    case IMRT_SHAPE_CYLINDER: {
        double a = dot3(d, s->axis);
        if (fabs(a) > s->half_len + eps)
            return 0;
        double pu = dot3(d, s->u) / s->r1, pv = dot3(d, s->v) / s->r2;
        double mn = s->r1 < s->r2 ? s->r1 : s->r2;
        return pu * pu + pv * pv <= 1.0 + 2.0 * eps / mn;
    }
    case IMRT_SHAPE_SECTOR: {
        double a = dot3(d, s->axis);
        if (fabs(a) > s->half_len + eps)
            return 0;
        double pu = dot3(d, s->u), pv = dot3(d, s->v);
        double r = sqrt(pu * pu + pv * pv);
        if (r > s->r2 + eps || r < s->r1 - eps)
            return 0;
        if (s->arc_deg >= 360.0 || r <= eps)
            return 1;
        double c = (pu * s->arc_dir[0] + pv * s->arc_dir[1]) / r;
        return c >= s->arc_cos - 1e-12;
    }
    case IMRT_SHAPE_HALFSPACE:
        return dot3(d, s->axis) >= -eps;
    }
    return 0;
}

static void cyl_extent(const imrt_shape *s, double ru, double rv, double lo[3], double hi[3])
{
    for (int i = 0; i < 3; i++) {
        double radial = sqrt(ru * s->u[i] * ru * s->u[i] + rv * s->v[i] * rv * s->v[i]);
        double along = s->axis[i] == 0.0 ? 0.0 : fabs(s->axis[i]) * s->half_len;
        lo[i] = s->c[i] - along - radial;
        hi[i] = s->c[i] + along + radial;
    }
}

void imrt_shape_bbox(const imrt_shape *s, double lo[3], double hi[3])
{
    switch (s->type) {
    case IMRT_SHAPE_BOX:
    case IMRT_SHAPE_ELLIPSOID:
        for (int i = 0; i < 3; i++) {
            lo[i] = s->c[i] - s->half[i];
            hi[i] = s->c[i] + s->half[i];
        }
        return;
    case IMRT_SHAPE_SPHERE:
        for (int i = 0; i < 3; i++) {
            lo[i] = s->c[i] - s->r1;
            hi[i] = s->c[i] + s->r1;
        }
        return;
    case IMRT_SHAPE_CYLINDER:
        cyl_extent(s, s->r1, s->r2, lo, hi);
        return;
    case IMRT_SHAPE_SECTOR:
        cyl_extent(s, s->r2, s->r2, lo, hi);
        return;
    case IMRT_SHAPE_HALFSPACE:
        for (int i = 0; i < 3; i++) {
            lo[i] = -(double)INFINITY;
            hi[i] = (double)INFINITY;
        }
        /* an axis-aligned half-space is bounded on one side */
        for (int i = 0; i < 3; i++) {
            int j = (i + 1) % 3, k = (i + 2) % 3;
            if (s->axis[j] == 0.0 && s->axis[k] == 0.0) {
                if (s->axis[i] > 0)
                    lo[i] = s->c[i];
                else
                    hi[i] = s->c[i];
            }
        }
        return;
    }
}

double imrt_shape_volume_mm3(const imrt_shape *s)
{
    switch (s->type) {
    case IMRT_SHAPE_BOX:
        return 8.0 * s->half[0] * s->half[1] * s->half[2];
    case IMRT_SHAPE_SPHERE:
        return 4.0 / 3.0 * IMRT_PI * s->r1 * s->r1 * s->r1;
    case IMRT_SHAPE_ELLIPSOID:
        return 4.0 / 3.0 * IMRT_PI * s->half[0] * s->half[1] * s->half[2];
    case IMRT_SHAPE_CYLINDER:
        return IMRT_PI * s->r1 * s->r2 * 2.0 * s->half_len;
    case IMRT_SHAPE_SECTOR:
        return s->arc_deg / 360.0 * IMRT_PI * (s->r2 * s->r2 - s->r1 * s->r1) * 2.0 *
               s->half_len;
    case IMRT_SHAPE_HALFSPACE:
        return (double)INFINITY;
    }
    return (double)INFINITY;
}

/* Clamp a continuous index to [lo, hi] before converting to int (the
 * argument may be infinite or huge). */
static int clamp_index(double x, int lo, int hi)
{
    if (!(x >= (double)lo))
        return lo;
    if (x > (double)hi)
        return hi;
    return (int)x;
}

int imrt_shape_voxel_range(const imrt_shape *s, const imrt_grid *g, int range[6])
{
    double lo[3], hi[3];
    imrt_shape_bbox(s, lo, hi);
    const int n[3] = {g->nx, g->ny, g->nz};
    const double d[3] = {g->dx, g->dy, g->dz};
    for (int a = 0; a < 3; a++) {
        double flo = ceil((lo[a] - IMRT_SHAPE_EPS_MM - g->origin[a]) / d[a] - 1e-9);
        double fhi = floor((hi[a] + IMRT_SHAPE_EPS_MM - g->origin[a]) / d[a] + 1e-9);
        if (isnan(flo) || isnan(fhi) || fhi < 0.0 || flo > (double)(n[a] - 1) || fhi < flo)
            return 0;
        range[2 * a] = clamp_index(flo, 0, n[a] - 1);
        range[2 * a + 1] = clamp_index(fhi, 0, n[a] - 1);
    }
    return 1;
}

int64_t imrt_shape_rasterise(const imrt_shape *s, const imrt_grid *g, uint8_t *mask,
                             uint8_t value)
{
    int r[6];
    if (!imrt_shape_voxel_range(s, g, r))
        return 0;
    int64_t count = 0;
    for (int k = r[4]; k <= r[5]; k++)
        for (int j = r[2]; j <= r[3]; j++) {
            int64_t row = imrt_grid_index(g, 0, j, k);
            double p[3] = {0.0, g->origin[1] + j * g->dy, g->origin[2] + k * g->dz};
            for (int i = r[0]; i <= r[1]; i++) {
                p[0] = g->origin[0] + i * g->dx;
                if (imrt_shape_contains(s, p)) {
                    mask[row + i] = value;
                    count++;
                }
            }
        }
    return count;
}

int imrt_shape_inside_grid(const imrt_shape *s, const imrt_grid *g)
{
    double lo[3], hi[3], glo[3], ghi[3];
    imrt_shape_bbox(s, lo, hi);
    imrt_grid_bounds(g, glo, ghi);
    for (int a = 0; a < 3; a++)
        if (!(lo[a] >= glo[a] - 1e-9 && hi[a] <= ghi[a] + 1e-9))
            return 0;
    return 1;
}
