/*
 * engine/gamma.c - the gamma index (Low, Harms, Mutic, Purdy 1998) between a
 * reference and an evaluated dose distribution in 3D.
 *
 * For each reference voxel the evaluated dose is sampled, by trilinear
 * interpolation, on a lattice of offsets (pitch step_mm, default a tenth of
 * the distance criterion, as in Wendling et al. 2007) inside a sphere of
 * radius search_mm. The offsets are sorted by distance once, so the search
 * for one point stops as soon as the distance term alone reaches the best
 * gamma found so far (also after Wendling et al.). In a steep gradient the
 * dose term changes a lot between lattice samples (10 Gy/mm against a 3 Gy
 * criterion moves gamma by 1 per 0.3 mm), so the best sample is refined by a
 * few Gauss-Newton steps on the trilinear interpolant, which minimise the
 * gamma function exactly where the evaluated dose is linear. Points are
 * independent: an OpenMP loop writes each point's gamma into a map and the
 * statistics are summed serially afterwards, so the result does not depend on
 * the threads.
 */
#include "imrt/metrics.h"

#include "util_impl.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

/* Largest search radius in lattice steps (bounds the offset table). */
#define GAMMA_MAX_STEPS 64
/* Slack (in voxel units) when deciding whether a sample lies in the grid. */
#define GAMMA_EDGE_EPS 1e-9

typedef struct {
    double c[3];   /* offset in evaluated-grid voxel units */
    double mm[3];  /* offset in mm */
    double d2;     /* |offset|^2 / dist_mm^2 */
    int key[3];    /* lattice coordinates (deterministic tie order) */
} gamma_offset;

static int cmp_offset(const void *pa, const void *pb)
{
    const gamma_offset *a = pa, *b = pb;
    if (a->d2 != b->d2)
        return a->d2 < b->d2 ? -1 : 1;
    for (int i = 0; i < 3; i++)
        if (a->key[i] != b->key[i])
            return a->key[i] < b->key[i] ? -1 : 1;
    return 0;
}

void imrt_gamma_defaults(imrt_gamma_options *opt)
{
    if (!opt)
        return;
    opt->dose_pct = 3.0;
    opt->dist_mm = 3.0;
    opt->threshold_pct = 10.0;
    opt->local = 0;
    opt->norm_gy = 0.0;
    opt->search_mm = 0.0;
    opt->step_mm = 0.0;
}

/* One axis of the trilinear interpolation: lower index and weight of the
 * upper neighbour; 0 if c lies outside the axis. */
static inline int axis_weight(double c, int n, int *i0, double *t)
{
    if (n == 1) {
        if (fabs(c) > 0.5 + GAMMA_EDGE_EPS)
            return 0;
        *i0 = 0;
        *t = 0.0;
        return 1;
    }
    if (c < -GAMMA_EDGE_EPS || c > (double)(n - 1) + GAMMA_EDGE_EPS)
        return 0;
    int i = (int)floor(c);
    if (i < 0)
        i = 0;
    if (i > n - 2)
        i = n - 2;
    double w = c - (double)i;
    *i0 = i;
    *t = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
    return 1;
}

/* Trilinear interpolation of f on grid g at continuous voxel coordinates c;
 * 0 when c lies outside the grid. */
static inline int interp3(const float *restrict f, const imrt_grid *g, const double c[3],
                          double *out)
{
    int i, j, k;
    double tx, ty, tz;
    if (!axis_weight(c[0], g->nx, &i, &tx) || !axis_weight(c[1], g->ny, &j, &ty) ||
        !axis_weight(c[2], g->nz, &k, &tz))
        return 0;
    int64_t sx = g->nx > 1 ? 1 : 0;
    int64_t sy = g->ny > 1 ? (int64_t)g->nx : 0;
    int64_t sz = g->nz > 1 ? (int64_t)g->nx * g->ny : 0;
    int64_t b = imrt_grid_index(g, i, j, k);
    double c00 = (double)f[b] + tx * ((double)f[b + sx] - (double)f[b]);
    double c10 = (double)f[b + sy] + tx * ((double)f[b + sy + sx] - (double)f[b + sy]);
    double c01 = (double)f[b + sz] + tx * ((double)f[b + sz + sx] - (double)f[b + sz]);
    double c11 = (double)f[b + sz + sy] +
                 tx * ((double)f[b + sz + sy + sx] - (double)f[b + sz + sy]);
    double c0 = c00 + ty * (c10 - c00);
    double c1 = c01 + ty * (c11 - c01);
    *out = c0 + tz * (c1 - c0);
    return 1;
}

/* Trilinear value and gradient (per voxel unit along each axis; 0 along an
 * axis with one voxel) at continuous coordinates c; 0 outside the grid. */
static inline int interp3_grad(const float *restrict f, const imrt_grid *g, const double c[3],
                               double *val, double grad[3])
{
    int i, j, k;
    double t[3];
    if (!axis_weight(c[0], g->nx, &i, &t[0]) || !axis_weight(c[1], g->ny, &j, &t[1]) ||
        !axis_weight(c[2], g->nz, &k, &t[2]))
        return 0;
    int64_t st[3] = {g->nx > 1 ? 1 : 0, g->ny > 1 ? (int64_t)g->nx : 0,
                     g->nz > 1 ? (int64_t)g->nx * g->ny : 0};
    int64_t b = imrt_grid_index(g, i, j, k);
    double corner[2][2][2]; /* [z][y][x] */
    for (int cz = 0; cz < 2; cz++)
        for (int cy = 0; cy < 2; cy++)
            for (int cx = 0; cx < 2; cx++)
                corner[cz][cy][cx] = (double)f[b + cz * st[2] + cy * st[1] + cx * st[0]];
    double v = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
    for (int cz = 0; cz < 2; cz++)
        for (int cy = 0; cy < 2; cy++)
            for (int cx = 0; cx < 2; cx++) {
                double wx = cx ? t[0] : 1.0 - t[0], wy = cy ? t[1] : 1.0 - t[1],
                       wz = cz ? t[2] : 1.0 - t[2];
                double fv = corner[cz][cy][cx];
                v += wx * wy * wz * fv;
                gx += (cx ? 1.0 : -1.0) * wy * wz * fv;
                gy += (cy ? 1.0 : -1.0) * wx * wz * fv;
                gz += (cz ? 1.0 : -1.0) * wx * wy * fv;
            }
    *val = v;
    grad[0] = st[0] ? gx : 0.0;
    grad[1] = st[1] ? gy : 0.0;
    grad[2] = st[2] ? gz : 0.0;
    return 1;
}

/* Refine a lattice minimum of
 *   G(u) = |u|^2 / dd^2 + (D_eval(base + u) - dr)^2 / dD^2   (u in mm)
 * by Gauss-Newton on the residuals (u/dd, (D - dr)/dD): with the local dose
 * gradient g (Gy/mm) the step solves (I/dd^2 + g g^T/dD^2) s = -(u/dd^2 +
 * g (D - dr)/dD^2), inverted by Sherman-Morrison. Exact in one step where D
 * is linear. u (mm) and *best (G at u) are updated when G decreases. */
#define GAMMA_REFINE_STEPS 4
static void refine(const float *restrict f, const imrt_grid *g, const double base[3],
                   const double sp[3], double dr, double dd2, double inv_dD2, double u[3],
                   double *best)
{
    const double a = dd2 * inv_dD2; /* dd^2 / dD^2 */
    for (int it = 0; it < GAMMA_REFINE_STEPS; it++) {
        double c[3], val, gr[3], gmm[3];
        for (int i = 0; i < 3; i++)
            c[i] = base[i] + u[i] / sp[i];
        if (!interp3_grad(f, g, c, &val, gr))
            return;
        for (int i = 0; i < 3; i++)
            gmm[i] = gr[i] / sp[i];
        double e = val - dr;
        double rhs[3], gg = 0.0, gb = 0.0;
        for (int i = 0; i < 3; i++) {
            rhs[i] = u[i] / dd2 + gmm[i] * e * inv_dD2;
            gg += gmm[i] * gmm[i];
            gb += gmm[i] * rhs[i];
        }
        double un[3], cn[3], vn;
        for (int i = 0; i < 3; i++) {
            double s = -dd2 * (rhs[i] - gmm[i] * gb * a / (1.0 + a * gg));
            un[i] = u[i] + s;
            cn[i] = base[i] + un[i] / sp[i];
        }
        if (!interp3(f, g, cn, &vn))
            return;
        double gn = (un[0] * un[0] + un[1] * un[1] + un[2] * un[2]) / dd2 +
                    (vn - dr) * (vn - dr) * inv_dD2;
        if (!(gn < *best * (1.0 - 1e-12)))
            return;
        *best = gn;
        for (int i = 0; i < 3; i++)
            u[i] = un[i];
    }
}

static imrt_status check_finite(const float *d, int64_t n, const char *which)
{
    for (int64_t v = 0; v < n; v++)
        if (!isfinite(d[v]))
            return imrt_error(IMRT_ERR_RANGE, "gamma: %s dose at voxel %lld is %g (must be finite)",
                              which, (long long)v, (double)d[v]);
    return IMRT_OK;
}

imrt_status imrt_gamma(const imrt_context *ctx, const imrt_grid *ref_grid, const float *ref,
                       const imrt_grid *eval_grid, const float *eval,
                       const imrt_gamma_options *opt_in, imrt_gamma_result *res, float *map)
{
    imrt_status status = IMRT_OK;
    gamma_offset *off = NULL;
    float *own_map = NULL;
    if (!ref_grid || !ref || !eval_grid || !eval || !res)
        return imrt_error(IMRT_ERR_ARG, "imrt_gamma: NULL grid, dose or result");
    imrt_gamma_options opt;
    if (opt_in)
        opt = *opt_in;
    else
        imrt_gamma_defaults(&opt);
    if (!(opt.dose_pct > 0.0 && opt.dose_pct <= 100.0))
        return imrt_error(IMRT_ERR_RANGE, "gamma dose criterion %g %% is outside (0, 100]",
                          opt.dose_pct);
    if (!(opt.dist_mm > 0.0 && opt.dist_mm <= 1000.0))
        return imrt_error(IMRT_ERR_RANGE, "gamma distance criterion %g mm is outside (0, 1000]",
                          opt.dist_mm);
    if (!(opt.threshold_pct >= 0.0 && opt.threshold_pct < 100.0))
        return imrt_error(IMRT_ERR_RANGE, "gamma low-dose threshold %g %% is outside [0, 100)",
                          opt.threshold_pct);
    if (!(isfinite(opt.norm_gy) && opt.norm_gy >= 0.0))
        return imrt_error(IMRT_ERR_RANGE, "gamma normalisation dose %g Gy must be >= 0 (0 = "
                                          "reference maximum)",
                          opt.norm_gy);
    if (opt.search_mm == 0.0)
        opt.search_mm = 2.0 * opt.dist_mm;
    if (opt.step_mm == 0.0)
        opt.step_mm = opt.dist_mm / 10.0;
    if (!(opt.search_mm >= opt.dist_mm && opt.search_mm <= 10.0 * opt.dist_mm))
        return imrt_error(IMRT_ERR_RANGE,
                          "gamma search radius %g mm is outside [dist, 10 x dist] = [%g, %g] mm",
                          opt.search_mm, opt.dist_mm, 10.0 * opt.dist_mm);
    if (!(opt.step_mm > 0.0 && opt.search_mm / opt.step_mm <= GAMMA_MAX_STEPS))
        return imrt_error(IMRT_ERR_RANGE,
                          "gamma sampling step %g mm must be > 0 and >= search radius / %d = %g mm",
                          opt.step_mm, GAMMA_MAX_STEPS, opt.search_mm / GAMMA_MAX_STEPS);

    const int64_t nref = imrt_grid_nvox(ref_grid), neval = imrt_grid_nvox(eval_grid);
    IMRT_TRY(check_finite(ref, nref, "reference"));
    IMRT_TRY(check_finite(eval, neval, "evaluated"));
    double norm = opt.norm_gy;
    if (norm == 0.0) {
        for (int64_t v = 0; v < nref; v++)
            norm = IMRT_MAX(norm, (double)ref[v]);
        if (!opt.local && !(norm > 0.0))
            IMRT_FAIL(IMRT_ERR_RANGE,
                      "gamma: the reference maximum dose is %g Gy; a global gamma needs a "
                      "positive normalisation dose",
                      norm);
    }
    const double threshold = opt.threshold_pct / 100.0 * norm;
    const double dD_global = opt.dose_pct / 100.0 * norm;
    const double cap = opt.search_mm / opt.dist_mm;

    /* Offset table: lattice points within the search sphere, by distance. */
    const int K = (int)ceil(opt.search_mm / opt.step_mm - 1e-9);
    const int kx = eval_grid->nx > 1 ? K : 0, ky = eval_grid->ny > 1 ? K : 0,
              kz = eval_grid->nz > 1 ? K : 0;
    const int64_t ncube = (int64_t)(2 * kx + 1) * (2 * ky + 1) * (2 * kz + 1);
    IMRT_ALLOC(off, ncube);
    int64_t noff = 0;
    const double r2max = (opt.search_mm * opt.search_mm) * (1.0 + 1e-12);
    const double sp[3] = {eval_grid->dx, eval_grid->dy, eval_grid->dz};
    for (int c = -kz; c <= kz; c++)
        for (int b = -ky; b <= ky; b++)
            for (int a = -kx; a <= kx; a++) {
                double mm[3] = {a * opt.step_mm, b * opt.step_mm, c * opt.step_mm};
                double r2 = mm[0] * mm[0] + mm[1] * mm[1] + mm[2] * mm[2];
                if (r2 > r2max)
                    continue;
                gamma_offset *o = &off[noff++];
                for (int i = 0; i < 3; i++) {
                    o->c[i] = mm[i] / sp[i];
                    o->mm[i] = mm[i];
                }
                o->d2 = r2 / (opt.dist_mm * opt.dist_mm);
                o->key[0] = a;
                o->key[1] = b;
                o->key[2] = c;
            }
    qsort(off, (size_t)noff, sizeof *off, cmp_offset);

    float *gm = map;
    if (!gm) {
        IMRT_ALLOC(own_map, nref);
        gm = own_map;
    }
    const int nth = ctx ? imrt_context_threads(ctx) : omp_get_max_threads();
    const imrt_grid rg = *ref_grid, eg = *eval_grid;
    const int local = opt.local;
    const double local_frac = opt.dose_pct / 100.0;
    const double dist2 = opt.dist_mm * opt.dist_mm;

#pragma omp parallel for schedule(dynamic, 64) num_threads(nth)
    for (int64_t v = 0; v < nref; v++) {
        double dr = (double)ref[v];
        gm[v] = -1.0f;
        if (dr < threshold || (local && !(dr > 0.0)))
            continue;
        double dD = local ? local_frac * dr : dD_global;
        double inv_dD2 = 1.0 / (dD * dD);
        int i, j, k;
        imrt_grid_ijk(&rg, v, &i, &j, &k);
        double xyz[3], base[3];
        imrt_grid_center(&rg, i, j, k, xyz);
        imrt_grid_continuous(&eg, xyz, base);
        double best = HUGE_VAL;
        int64_t qbest = -1;
        for (int64_t q = 0; q < noff; q++) {
            const gamma_offset *o = &off[q];
            if (o->d2 >= best)
                break;
            double c[3] = {base[0] + o->c[0], base[1] + o->c[1], base[2] + o->c[2]};
            double de;
            if (!interp3(eval, &eg, c, &de))
                continue;
            double g2 = o->d2 + (de - dr) * (de - dr) * inv_dD2;
            if (g2 < best) {
                best = g2;
                qbest = q;
            }
        }
        if (qbest < 0)
            continue;
        if (best > 0.0) {
            double u[3] = {off[qbest].mm[0], off[qbest].mm[1], off[qbest].mm[2]};
            refine(eval, &eg, base, sp, dr, dist2, inv_dD2, u, &best);
        }
        gm[v] = (float)IMRT_MIN(sqrt(best), cap);
    }

    int64_t evaluated = 0, passed = 0;
    double sum = 0.0, gmax = 0.0;
    for (int64_t v = 0; v < nref; v++) {
        if (gm[v] < 0.0f)
            continue;
        evaluated++;
        passed += gm[v] <= 1.0f;
        sum += (double)gm[v];
        gmax = IMRT_MAX(gmax, (double)gm[v]);
    }
    res->evaluated = evaluated;
    res->passed = passed;
    res->pass_rate_pct = evaluated > 0 ? 100.0 * (double)passed / (double)evaluated : (double)NAN;
    res->mean = evaluated > 0 ? sum / (double)evaluated : (double)NAN;
    res->max = evaluated > 0 ? gmax : (double)NAN;
    res->gamma_cap = cap;
cleanup:
    imrt_free(off);
    imrt_free(own_map);
    return status;
}
