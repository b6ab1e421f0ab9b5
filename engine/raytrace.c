/*
 * engine/raytrace.c - exact voxel traversal (incremental Siddon / Jacobs /
 * Amanatides-Woo), the segment-writing tracer, the fused depth integral and
 * the per-beam radiological-depth cube.
 *
 * Parametrisation: x(t) = a + t*(b - a), t in [0, 1]. The box clip gives
 * [t0, t1]; every later crossing parameter is recomputed from the plane
 * position (lo + k*spacing - a)/D rather than accumulated, so that long rays
 * do not drift. The starting voxel is found from the midpoint of the first
 * interval, which is robust when the ray enters through an edge or corner.
 */
#include "imrt/raytrace.h"

#include "raytrace_impl.h"
#include "util_impl.h"

#include <math.h>
#include <omp.h>

/* Traversal state of one ray. */
typedef struct {
    double t0, t1;    /* clipped parameter range */
    double len;       /* |b - a|, mm */
    int idx[3];       /* current voxel */
    int step[3];      /* +1, -1 or 0 per axis */
    int next[3];      /* index of the next plane crossed per axis */
    double a[3];      /* ray start */
    double inv[3];    /* 1 / D per axis (0 when D == 0) */
    double lo[3];     /* lower outer face per axis */
    double sp[3];     /* spacing per axis */
    int n[3];         /* voxels per axis */
} ray_state;

/* Parameter of plane k along axis ax (INFINITY when the ray is parallel). */
static inline double plane_t(const ray_state *r, int ax, int k)
{
    if (r->step[ax] == 0)
        return INFINITY;
    return (r->lo[ax] + k * r->sp[ax] - r->a[ax]) * r->inv[ax];
}

/* Clip and initialise; returns 0 when the ray misses the grid. box (NULL =
 * the whole grid) clips the ray to voxels box[2ax] .. box[2ax+1] instead:
 * the planes are the grid's own, so a walk clipped to a box outside which
 * the density is 0 sums exactly the same non-zero terms. */
static inline int ray_setup(const imrt_grid *g, const double a[3], const double b[3],
                            const int *box, ray_state *r)
{
    const double sp[3] = {g->dx, g->dy, g->dz};
    const int n[3] = {g->nx, g->ny, g->nz};
    double D[3];
    double t0 = 0.0, t1 = 1.0;
    for (int ax = 0; ax < 3; ax++) {
        r->a[ax] = a[ax];
        r->sp[ax] = sp[ax];
        r->n[ax] = n[ax];
        r->lo[ax] = g->origin[ax] - 0.5 * sp[ax];
        const double lo = box ? r->lo[ax] + box[2 * ax] * sp[ax] : r->lo[ax];
        const double hi = r->lo[ax] + (box ? box[2 * ax + 1] + 1 : n[ax]) * sp[ax];
        D[ax] = b[ax] - a[ax];
        if (D[ax] == 0.0) {
            r->step[ax] = 0;
            r->inv[ax] = 0.0;
            if (a[ax] < lo || a[ax] > hi)
                return 0;
        } else {
            r->inv[ax] = 1.0 / D[ax];
            r->step[ax] = D[ax] > 0 ? 1 : -1;
            double ta = (lo - a[ax]) * r->inv[ax], tb = (hi - a[ax]) * r->inv[ax];
            if (ta > tb) {
                double tmp = ta;
                ta = tb;
                tb = tmp;
            }
            t0 = ta > t0 ? ta : t0;
            t1 = tb < t1 ? tb : t1;
        }
    }
    if (!(t0 < t1))
        return 0;
    r->t0 = t0;
    r->t1 = t1;
    r->len = sqrt(D[0] * D[0] + D[1] * D[1] + D[2] * D[2]);
    /* First plane strictly beyond t0 on each axis. */
    double tfirst = t1;
    for (int ax = 0; ax < 3; ax++) {
        if (r->step[ax] == 0)
            continue;
        const double c = (a[ax] + t0 * D[ax] - r->lo[ax]) / sp[ax];
        int k = r->step[ax] > 0 ? (int)floor(c) + 1 : (int)ceil(c) - 1;
        while (plane_t(r, ax, k) <= t0)
            k += r->step[ax];
        r->next[ax] = k;
        double tk = plane_t(r, ax, k);
        tfirst = tk < tfirst ? tk : tfirst;
    }
    /* Starting voxel from the midpoint of the first interval. */
    const double tm = 0.5 * (t0 + tfirst);
    for (int ax = 0; ax < 3; ax++) {
        int i = (int)floor((a[ax] + tm * D[ax] - r->lo[ax]) / sp[ax]);
        r->idx[ax] = i < 0 ? 0 : (i >= n[ax] ? n[ax] - 1 : i);
    }
    /* Keep next[] consistent with the clamped start: the next plane in the
     * direction of travel is idx+1 (forward) or idx (backward). */
    for (int ax = 0; ax < 3; ax++)
        if (r->step[ax] != 0)
            r->next[ax] = r->step[ax] > 0 ? r->idx[ax] + 1 : r->idx[ax];
    return 1;
}

/* Walk the ray; BODY(voxel, length) is evaluated for each segment. */
#define RAY_WALK(r, g, BODY)                                                        \
    do {                                                                            \
        double tn_[3] = {plane_t(&(r), 0, (r).next[0]), plane_t(&(r), 1, (r).next[1]), \
                         plane_t(&(r), 2, (r).next[2])};                            \
        double tc_ = (r).t0;                                                        \
        const int64_t sy_ = (g)->nx, sz_ = (int64_t)(g)->nx * (g)->ny;              \
        for (;;) {                                                                  \
            int ax_ = tn_[0] <= tn_[1] ? (tn_[0] <= tn_[2] ? 0 : 2)                 \
                                       : (tn_[1] <= tn_[2] ? 1 : 2);                \
            double te_ = tn_[ax_];                                                  \
            const int last_ = !(te_ < (r).t1);                                      \
            if (last_)                                                              \
                te_ = (r).t1;                                                       \
            const double seglen_ = (te_ - tc_) * (r).len;                           \
            if (seglen_ > IMRT_RAY_MIN_SEGMENT_MM) {                                \
                const int64_t vox_ = (r).idx[0] + sy_ * (r).idx[1] + sz_ * (r).idx[2]; \
                BODY(vox_, seglen_);                                                \
            }                                                                       \
            if (last_)                                                              \
                break;                                                              \
            (r).idx[ax_] += (r).step[ax_];                                          \
            if ((r).idx[ax_] < 0 || (r).idx[ax_] >= (r).n[ax_])                     \
                break;                                                              \
            (r).next[ax_] += (r).step[ax_];                                         \
            tn_[ax_] = plane_t(&(r), ax_, (r).next[ax_]);                           \
            tc_ = te_;                                                              \
        }                                                                           \
    } while (0)

int64_t imrt_raytrace_capacity(const imrt_grid *g)
{
    return (int64_t)g->nx + g->ny + g->nz + 3;
}

imrt_status imrt_raytrace(const imrt_grid *g, const double a[3], const double b[3],
                          imrt_ray_segment *seg, int64_t cap, int64_t *nseg)
{
    if (!g || !a || !b || !seg || !nseg)
        return imrt_error(IMRT_ERR_ARG, "imrt_raytrace: NULL argument");
    *nseg = 0;
    if (cap < imrt_raytrace_capacity(g))
        return imrt_error(IMRT_ERR_ARG, "imrt_raytrace: buffer of %lld segments is below the "
                          "%lld a ray may need", (long long)cap,
                          (long long)imrt_raytrace_capacity(g));
    ray_state r;
    if (!ray_setup(g, a, b, NULL, &r))
        return IMRT_OK;
    int64_t n = 0;
#define EMIT_(v, l)          \
    do {                     \
        seg[n].voxel = (v);  \
        seg[n].length = (l); \
        n++;                 \
    } while (0)
    RAY_WALK(r, g, EMIT_);
#undef EMIT_
    *nseg = n;
    return IMRT_OK;
}

/* The optimised integrator: incremental crossing parameters, a running
 * linear index and a branch-free choice of the next axis. Zero-length pieces
 * (edge and corner crossings) add nothing, so they need no test. */
/* imrt_raytrace_depth, clipped to box (see ray_setup). */
static double depth_box(const imrt_grid *g, const float *density, const double a[3],
                        const double b[3], const int *box)
{
    ray_state r;
    if (!ray_setup(g, a, b, box, &r))
        return 0.0;
    const int64_t st[3] = {1, g->nx, (int64_t)g->nx * g->ny};
    double tn[3], dt[3];
    int64_t stride[3];
    int left[3];
    for (int ax = 0; ax < 3; ax++) {
        tn[ax] = plane_t(&r, ax, r.next[ax]);
        dt[ax] = r.step[ax] ? r.sp[ax] * fabs(r.inv[ax]) : 0.0;
        stride[ax] = r.step[ax] * st[ax];
        left[ax] = r.step[ax] > 0 ? r.n[ax] - r.idx[ax] : (r.step[ax] < 0 ? r.idx[ax] + 1 : 1 << 30);
    }
    int64_t vox = r.idx[0] + st[1] * r.idx[1] + st[2] * r.idx[2];
    /* Scalars rather than arrays: the loop keeps everything in registers. */
    double tx = tn[0], ty = tn[1], tz = tn[2];
    const double dx = dt[0], dy = dt[1], dz = dt[2], t1 = r.t1;
    const int64_t sx = stride[0], sy = stride[1], sz = stride[2];
    int lx = left[0], ly = left[1], lz = left[2];
    double tc = r.t0, sum = 0.0;
    for (;;) {
        double te;
        if (tx <= ty && tx <= tz) {
            te = tx;
            if (!(te < t1))
                break;
            sum += (double)density[vox] * (te - tc);
            if (--lx == 0)
                return sum * r.len;
            vox += sx;
            tx += dx;
        } else if (ty <= tz) {
            te = ty;
            if (!(te < t1))
                break;
            sum += (double)density[vox] * (te - tc);
            if (--ly == 0)
                return sum * r.len;
            vox += sy;
            ty += dy;
        } else {
            te = tz;
            if (!(te < t1))
                break;
            sum += (double)density[vox] * (te - tc);
            if (--lz == 0)
                return sum * r.len;
            vox += sz;
            tz += dz;
        }
        tc = te;
    }
    sum += (double)density[vox] * (t1 - tc);
    return sum * r.len;
}

double imrt_raytrace_depth(const imrt_grid *g, const float *density, const double a[3],
                           const double b[3])
{
    return depth_box(g, density, a, b, NULL);
}

/* Voxel index box of the densities that differ from the background
 * density bg = the grid's first voxel (box[2ax], box[2ax+1]); 0 when every
 * voxel has the background density. Outside the box the density is bg. */
static int density_box(const imrt_grid *g, const float *density, int box[6], float *bg)
{
    const int n[3] = {g->nx, g->ny, g->nz};
    const float b0 = density[0];
    *bg = b0;
    for (int ax = 0; ax < 3; ax++) {
        box[2 * ax] = n[ax];
        box[2 * ax + 1] = -1;
    }
    int64_t v = 0;
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++) {
            int i0 = -1, i1 = -1;
            for (int i = 0; i < g->nx; i++, v++)
                if (density[v] != b0) {
                    if (i0 < 0)
                        i0 = i;
                    i1 = i;
                }
            if (i0 < 0)
                continue;
            const int ijk[3][2] = {{i0, i1}, {j, j}, {k, k}};
            for (int ax = 0; ax < 3; ax++) {
                box[2 * ax] = ijk[ax][0] < box[2 * ax] ? ijk[ax][0] : box[2 * ax];
                box[2 * ax + 1] = ijk[ax][1] > box[2 * ax + 1] ? ijk[ax][1] : box[2 * ax + 1];
            }
        }
    return box[1] >= 0;
}

/* Length (mm) of the part of segment a-b inside the grid (box NULL) or
 * inside voxels box[2ax]..box[2ax+1]. */
static double clip_length(const imrt_grid *g, const double a[3], const double b[3],
                          const int *box)
{
    ray_state r;
    if (!ray_setup(g, a, b, box, &r))
        return 0.0;
    return (r.t1 - r.t0) * r.len;
}

/* Radiological depth of point c from src, the ray walked only through the
 * box of non-background densities: outside it the density is bg, which
 * contributes bg times the length of the ray outside the box (the air
 * around a patient or phantom, often half of every ray). */
static double depth_split(const imrt_grid *g, const float *density, const double src[3],
                          const double c[3], int any, const int *box, float bg)
{
    double d = any ? depth_box(g, density, src, c, box) : 0.0;
    if (bg != 0.0f) {
        const double outside = clip_length(g, src, c, NULL) - (any ? clip_length(g, src, c, box) : 0.0);
        d += (double)bg * (outside > 0.0 ? outside : 0.0);
    }
    return d;
}

void imrt_density_bounds_find(const imrt_grid *g, const float *density, imrt_density_bounds *b)
{
    b->any = density_box(g, density, b->box, &b->bg);
}

imrt_status imrt_depth_cube(const imrt_context *ctx, const imrt_grid *g, const float *density,
                            const double src[3], const int64_t *voxels, int64_t nvoxels,
                            float *depth)
{
    if (!g || !density)
        return imrt_error(IMRT_ERR_ARG, "imrt_depth_cube: NULL argument or negative count");
    imrt_density_bounds b;
    imrt_density_bounds_find(g, density, &b);
    return imrt_depth_cube_bounded(ctx, g, density, &b, src, voxels, nvoxels, depth);
}

imrt_status imrt_depth_cube_bounded(const imrt_context *ctx, const imrt_grid *g,
                                    const float *density, const imrt_density_bounds *b,
                                    const double src[3], const int64_t *voxels,
                                    int64_t nvoxels, float *depth)
{
    imrt_status status = IMRT_OK;
    imrt_ray_segment *segs = NULL;
    if (!g || !density || !b || !src || !depth || nvoxels < 0)
        return imrt_error(IMRT_ERR_ARG, "imrt_depth_cube: NULL argument or negative count");
    const int64_t n = voxels ? nvoxels : imrt_grid_nvox(g);
    const int threads = ctx ? imrt_context_threads(ctx) : omp_get_max_threads();
    const int reference = ctx && imrt_context_kernels(ctx) == IMRT_KERNELS_REFERENCE;
    const int64_t cap = imrt_raytrace_capacity(g);
    if (reference)
        IMRT_ALLOC(segs, cap * threads);
    /* the optimised kernel walks only the box of non-background densities */
#pragma omp parallel num_threads(threads)
    {
        imrt_ray_segment *my = segs ? segs + cap * omp_get_thread_num() : NULL;
#pragma omp for schedule(dynamic, 1024)
        for (int64_t q = 0; q < n; q++) {
            const int64_t v = voxels ? voxels[q] : q;
            int i, j, k;
            imrt_grid_ijk(g, v, &i, &j, &k);
            double c[3];
            imrt_grid_center(g, i, j, k, c);
            double d = 0.0;
            if (my) {
                int64_t ns = 0;
                imrt_raytrace(g, src, c, my, cap, &ns);
                for (int64_t s = 0; s < ns; s++)
                    d += (double)density[my[s].voxel] * my[s].length;
            } else {
                d = depth_split(g, density, src, c, b->any, b->box, b->bg);
            }
            depth[q] = (float)d;
        }
    }
cleanup:
    imrt_free(segs);
    return status;
}
