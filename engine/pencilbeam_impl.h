/*
 * engine/pencilbeam_impl.h - private pieces of the FSPB dose kernel shared by
 * the kernel variants (pencilbeam.c, pencilbeam_ref.c), the dij build
 * (dij.c) and the direct dose: per-beam tables, the per-voxel point
 * description, the coupling window, and the kernel table.
 *
 * A "row kernel" computes, for one voxel and one beam, the doses per unit
 * weight of every beamlet of that beam inside the voxel's coupling window,
 * in increasing column order (cells row by row, iv outer, iu inner).
 */
#ifndef IMRT_PENCILBEAM_IMPL_H
#define IMRT_PENCILBEAM_IMPL_H

#include "imrt/beam.h"
#include "imrt/context.h"
#include "imrt/dose.h"
#include "imrt/machine.h"

#include <math.h>
#include <stdint.h>

/* Tabulated erf on [0, IMRT_ERF_XMAX] (cubic Hermite on values and
 * derivatives at spacing 1/IMRT_ERF_STEPS): absolute error below 1e-10,
 * checked by tests/test_pencilbeam.c; erf = +-1 beyond (erf(6) = 1 - 2e-17). */
#define IMRT_ERF_XMAX 6.0
#define IMRT_ERF_STEPS 128
typedef struct {
    int n;     /* intervals */
    double *f; /* n + 2 values erf(i h) */
    double *d; /* n + 2 values h * erf'(i h) */
} imrt_erf_table;

imrt_status imrt_erf_table_create(imrt_erf_table **out);
void imrt_erf_table_free(imrt_erf_table **t);

static inline double imrt_erf_fast(const imrt_erf_table *t, double x)
{
    const double ax = fabs(x);
    if (!(ax < IMRT_ERF_XMAX))
        return x < 0 ? -1.0 : 1.0;
    const double q = ax * IMRT_ERF_STEPS;
    const int i = (int)q;
    const double s = q - i, r = 1.0 - s;
    const double v = (1.0 + 2.0 * s) * r * r * t->f[i] + s * r * r * t->d[i] +
                     s * s * (3.0 - 2.0 * s) * t->f[i + 1] - s * s * r * t->d[i + 1];
    return x < 0 ? -v : v;
}

/* Per-beam data of the kernels. */
typedef struct {
    const imrt_beam *beam; /* geometry and cell map (borrowed) */
    const imrt_erf_table *erf; /* shared by all beams; owned by the array's entry 0 */
    double w;              /* beamlet pitch, mm */
    int32_t *cum;          /* (nu+1)*(nv+1) summed-area table of present cells:
                              cum[iu + (nu+1)*iv] = cells with index < iu in rows < iv; owned */
    int32_t *nearest;      /* nu*nv: the present cell nearest to each cell (squared index
                              distance, ties to the first in row-major order), as
                              iu + nu*iv; -1 when the beam has no cell; owned */
    int32_t *span;         /* 2*nv + 2*nu: first and last present cell of each row
                              (rows: span[2 iv], span[2 iv + 1]) then of each column
                              (span[2 nv + 2 iu], ...); first > last when empty; owned */
    int contiguous;        /* 1 when every row and column holds one run of present
                              cells (the fast fold applies) */
} imrt_fspb_beam;

/* One voxel (or point) seen from one beam. */
typedef struct {
    double u, v;  /* BEV projection at the isocentre plane, mm */
    double pre;   /* N * T(z) * (SAD/t)^2 */
    double a;     /* scatter fraction a(z) */
    double sp;    /* primary sigma at the isocentre plane, mm */
    double ss;    /* scatter sigma at the isocentre plane, mm */
    double rp;    /* primary radius per axis (mm, isocentre plane), INFINITY = none */
    double R;     /* coupling half-width (mm, isocentre plane), INFINITY = none */
    double rc;    /* lateral cut-off (mm, isocentre plane): beamlets whose centre lies
                     farther from (u, v) give nothing and nothing is folded; INFINITY =
                     none */
} imrt_fspb_point;

/* Resolved options: the cut-off values the kernels use. */
typedef struct {
    double kp;      /* primary radius in units of sigma_p beyond w/2; INFINITY = none */
    double radius;  /* coupling half-width of the dij build, mm; INFINITY = none */
    int maps;       /* dij build: scatter on maps, primary only on the beamlet columns */
    double fold_radius; /* coupling half-width of direct dose (folded scatter), mm */
    double map_pitch;   /* scatter-map pitch, mm (0 = default) */
    double map_ratio;   /* scatter-map sigma ratio */
    double lateral;     /* geometric lateral cut-off, mm (isocentre plane); INFINITY = none */
} imrt_fspb_cut;

/* Row kernel: writes the entries and returns their number. `work` holds at
 * least imrt_fspb_work_size(beam) doubles. */
typedef int64_t (*imrt_fspb_row_fn)(const imrt_fspb_beam *B, const imrt_fspb_point *P,
                                    double *work, int32_t *col, double *val);

int64_t imrt_fspb_row_ref(const imrt_fspb_beam *B, const imrt_fspb_point *P, double *work,
                          int32_t *col, double *val);
int64_t imrt_fspb_row_tab(const imrt_fspb_beam *B, const imrt_fspb_point *P, double *work,
                          int32_t *col, double *val);

/* The kernel the context asks for (reference or tabulated). */
imrt_fspb_row_fn imrt_fspb_kernel(const imrt_context *ctx);

/* Doubles of work space a row kernel needs for beam b. */
static inline int64_t imrt_fspb_work_size(const imrt_beam *b)
{
    int64_t m = b->nu > b->nv ? b->nu : b->nv;
    return 4 * (int64_t)b->nu + 4 * (int64_t)b->nv + m + 16 + (int64_t)b->nu * b->nv;
}

/* Validate and resolve options against a machine and pitch. */
imrt_status imrt_fspb_resolve(const imrt_machine *m, const imrt_dose_options *opt,
                              imrt_fspb_cut *cut);

/* Per-beam tables for all beams of bs (array of bs->nbeams); free with
 * imrt_fspb_beams_free. */
imrt_status imrt_fspb_beams_create(const imrt_beamset *bs, imrt_fspb_beam **out);
void imrt_fspb_beams_free(imrt_fspb_beam **B, int nbeams);

/* Projection of point c: returns 0 when c is not in front of the source. */
static inline int imrt_fspb_geometry(const imrt_beam *b, const double c[3], double *u,
                                     double *v, double *scale)
{
    const double r0 = c[0] - b->src[0], r1 = c[1] - b->src[1], r2 = c[2] - b->src[2];
    const double t = r0 * b->dir[0] + r1 * b->dir[1] + r2 * b->dir[2];
    if (!(t > 1.0))
        return 0;
    const double s = b->sad / t;
    *scale = s;
    *u = (r0 * b->eu[0] + r1 * b->eu[1] + r2 * b->eu[2]) * s;
    *v = (r0 * b->ev[0] + r1 * b->ev[1] + r2 * b->ev[2]) * s;
    return 1;
}

/* Depth-dependent part of a point (u, v, scale from imrt_fspb_geometry). */
static inline void imrt_fspb_physics(const imrt_machine *m, const imrt_fspb_cut *cut, double w,
                                     double u, double v, double scale, double z,
                                     imrt_fspb_point *P)
{
    P->u = u;
    P->v = v;
    P->pre = m->norm * imrt_machine_depth_term(m, z) * scale * scale;
    P->a = imrt_machine_scatter_fraction(m, z);
    P->sp = imrt_machine_sigma_p(m, z) * scale;
    P->ss = imrt_machine_sigma_s(m, z) * scale;
    P->rp = isinf(cut->kp) ? HUGE_VAL : 0.5 * w + cut->kp * P->sp;
    P->R = cut->radius;
    /* with maps the cut-off acts on the maps (engine/scatter.c) and on which
     * voxels get entries (engine/dij.c); the primary keeps its window */
    P->rc = cut->maps ? HUGE_VAL : cut->lateral;
}

/* Whether beamlet cell (iu, iv) of a beam lies within the lateral cut-off of
 * point P (always when there is none). The one predicate of both kernels. */
static inline int imrt_fspb_within(const imrt_beam *b, double w, const imrt_fspb_point *P, int iu,
                                   int iv)
{
    if (isinf(P->rc))
        return 1;
    const double dx = P->u - (b->u0 + iu * w), dy = P->v - (b->v0 + iv * w);
    return dx * dx + dy * dy <= P->rc * P->rc;
}

/* Cells at exactly the window radius are inside: the radius is widened by
 * this much (mm) so that mirror-image geometries, whose coordinates differ
 * in the last bits, select mirror-image cells. */
#define IMRT_FSPB_WINDOW_EPS 1e-6

/* Clamp a real index range [lo, hi] to [0, n-1]; 0 when empty. */
static inline int imrt_fspb_clamp(double lo, double hi, int n, int *i0, int *i1)
{
    if (lo < 0)
        lo = 0;
    if (hi > n - 1)
        hi = n - 1;
    if (!(lo <= hi))
        return 0;
    *i0 = (int)lo;
    *i1 = (int)hi;
    return 1;
}

/* Cells along one axis (origin o, pitch w, n cells) within r of x. */
static inline int imrt_fspb_axis_range(double x, double o, double w, int n, double r, int *i0,
                                       int *i1)
{
    if (isinf(r)) {
        *i0 = 0;
        *i1 = n - 1;
        return 1;
    }
    const double re = r + IMRT_FSPB_WINDOW_EPS;
    return imrt_fspb_clamp(ceil((x - re - o) / w), floor((x + re - o) / w), n, i0, i1);
}

/* The coupling window of a point along one axis: the cells within R of x,
 * clamped to the beam's cells 0..n-1. Never empty: a point beyond the
 * beam's cells keeps the nearest edge cell (which receives the folded far
 * contributions, see imrt/dose.h), and a window narrower than a cell keeps
 * the nearest cell. */
static inline void imrt_fspb_window_axis(double x, double o, double w, int n, double R, int *i0,
                                         int *i1)
{
    if (isinf(R)) {
        *i0 = 0;
        *i1 = n - 1;
        return;
    }
    const double re = R + IMRT_FSPB_WINDOW_EPS;
    double lo = ceil((x - re - o) / w), hi = floor((x + re - o) / w);
    if (lo > hi)
        lo = hi = floor((x - o) / w + 0.5);
    lo = lo < 0 ? 0 : (lo > n - 1 ? n - 1 : lo);
    hi = hi < 0 ? 0 : (hi > n - 1 ? n - 1 : hi);
    *i0 = (int)lo;
    *i1 = (int)hi;
}

/* Present cells in cells [ju0..ju1] x [jv0..jv1] (summed-area table). */
static inline int64_t imrt_fspb_present(const imrt_fspb_beam *B, int ju0, int ju1, int jv0,
                                        int jv1)
{
    const int64_t s = B->beam->nu + 1;
    const int32_t *c = B->cum;
    return (int64_t)c[(ju1 + 1) + s * (jv1 + 1)] - c[ju0 + s * (jv1 + 1)] -
           c[(ju1 + 1) + s * jv0] + c[ju0 + s * jv0];
}

/* The coupling window of point (u, v) with half-width R: the cells within R
 * along both axes, clamped to the beam's cells; when that holds no present
 * cell (a point beyond a corner of an irregular field), the single present
 * cell nearest to the point's cell. Returns the number of present cells
 * (0 only for a beam without cells). Every row kernel writes exactly one
 * entry per present cell of the window. */
static inline int64_t imrt_fspb_window(const imrt_fspb_beam *B, double u, double v, double R,
                                       int *ju0, int *ju1, int *jv0, int *jv1)
{
    const imrt_beam *b = B->beam;
    imrt_fspb_window_axis(v, b->v0, B->w, b->nv, R, jv0, jv1);
    imrt_fspb_window_axis(u, b->u0, B->w, b->nu, R, ju0, ju1);
    int64_t n = imrt_fspb_present(B, *ju0, *ju1, *jv0, *jv1);
    if (n > 0)
        return n;
    int cu, cv;
    imrt_fspb_window_axis(u, b->u0, B->w, b->nu, 0.0, &cu, &cu);
    imrt_fspb_window_axis(v, b->v0, B->w, b->nv, 0.0, &cv, &cv);
    const int32_t t = B->nearest[cu + (int64_t)b->nu * cv];
    if (t < 0)
        return 0;
    *ju0 = *ju1 = t % b->nu;
    *jv0 = *jv1 = t / b->nu;
    return 1;
}

/* Number of entries the row kernels write for (u, v) with half-width R. */
static inline int64_t imrt_fspb_count(const imrt_fspb_beam *B, double u, double v, double R)
{
    int ju0, ju1, jv0, jv1;
    return imrt_fspb_window(B, u, v, R, &ju0, &ju1, &jv0, &jv1);
}

/* Move the dose folded onto absent window cells to the nearest present
 * window cell (squared index distance, ties to the first in row-major
 * order), so that the window keeps all of it. acc holds the window's cells
 * (wn x wv, row-major, window origin ju0, jv0). `nearest` is the beam's map
 * (NULL: search the window). Mass is lost only when the window holds no
 * present cell. */
static inline void imrt_fspb_fold_absent(const imrt_beam *b, const int32_t *nearest, int ju0,
                                         int ju1, int jv0, int jv1, double *acc)
{
    const int wn = ju1 - ju0 + 1;
    for (int iv = jv0; iv <= jv1; iv++)
        for (int iu = ju0; iu <= ju1; iu++) {
            double *m = &acc[(iu - ju0) + (int64_t)wn * (iv - jv0)];
            if (*m == 0.0 || b->cell[iu + (int64_t)b->nu * iv] >= 0)
                continue;
            int tu = -1, tv = -1;
            if (nearest) {
                const int32_t t = nearest[iu + (int64_t)b->nu * iv];
                if (t >= 0 && t % b->nu >= ju0 && t % b->nu <= ju1 && t / b->nu >= jv0 &&
                    t / b->nu <= jv1) {
                    tu = t % b->nu;
                    tv = t / b->nu;
                }
            }
            if (tu < 0) {
                int64_t best = INT64_MAX;
                for (int qv = jv0; qv <= jv1; qv++)
                    for (int qu = ju0; qu <= ju1; qu++) {
                        if (b->cell[qu + (int64_t)b->nu * qv] < 0)
                            continue;
                        const int64_t d = (int64_t)(qu - iu) * (qu - iu) + (int64_t)(qv - iv) * (qv - iv);
                        if (d < best) {
                            best = d;
                            tu = qu;
                            tv = qv;
                        }
                    }
                if (tu < 0)
                    return; /* no present cell in the window */
            }
            acc[(tu - ju0) + (int64_t)wn * (tv - jv0)] += *m;
            *m = 0.0;
        }
}

/* P(x; sigma) of a beamlet of width w: the 1-D square convolved with a Gaussian. */
static inline double imrt_fspb_p(double x, double w, double sigma)
{
    const double k = 1.0 / (sqrt(2.0) * sigma);
    return 0.5 * (erf((x + 0.5 * w) * k) - erf((x - 0.5 * w) * k));
}

#endif /* IMRT_PENCILBEAM_IMPL_H */
