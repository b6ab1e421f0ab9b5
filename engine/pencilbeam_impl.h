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

/* Per-beam data of the kernels. */
typedef struct {
    const imrt_beam *beam; /* geometry and cell map (borrowed) */
    double w;              /* beamlet pitch, mm */
    int32_t *rowcnt;       /* nv*(nu+1): present cells of row iv with index < iu; owned */
} imrt_fspb_beam;

/* One voxel (or point) seen from one beam. */
typedef struct {
    double u, v;  /* BEV projection at the isocentre plane, mm */
    double pre;   /* N * T(z) * (SAD/t)^2 */
    double a;     /* scatter fraction a(z) */
    double sp;    /* primary sigma at the isocentre plane, mm */
    double ss;    /* scatter sigma at the isocentre plane, mm */
    double rp;    /* primary radius per axis (mm, isocentre plane), INFINITY = none */
    double R;     /* coupling radius (mm, isocentre plane), INFINITY = none */
} imrt_fspb_point;

/* Resolved options: the cut-off values the kernels use. */
typedef struct {
    double kp;      /* primary radius in units of sigma_p beyond w/2; INFINITY = none */
    double radius;  /* coupling radius, mm; INFINITY = none */
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
    return 2 * (int64_t)b->nu + 2 * (int64_t)b->nv + m + 8;
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

/* Cells of row iv inside the coupling circle of radius R around (u, v). */
static inline int imrt_fspb_row_range(const imrt_beam *b, double w, double u, double v,
                                      double R, int iv, int *i0, int *i1)
{
    if (isinf(R)) {
        *i0 = 0;
        *i1 = b->nu - 1;
        return 1;
    }
    const double dv = b->v0 + iv * w - v;
    const double re = R + IMRT_FSPB_WINDOW_EPS;
    const double h2 = re * re - dv * dv;
    if (h2 < 0)
        return 0;
    return imrt_fspb_axis_range(u, b->u0, w, b->nu, sqrt(h2), i0, i1);
}

/* Number of entries the row kernels write for (u, v) with radius R. */
static inline int64_t imrt_fspb_count(const imrt_fspb_beam *B, double u, double v, double R)
{
    const imrt_beam *b = B->beam;
    int jv0, jv1;
    if (!imrt_fspb_axis_range(v, b->v0, B->w, b->nv, R, &jv0, &jv1))
        return 0;
    int64_t n = 0;
    for (int iv = jv0; iv <= jv1; iv++) {
        int i0, i1;
        if (!imrt_fspb_row_range(b, B->w, u, v, R, iv, &i0, &i1))
            continue;
        const int32_t *rc = B->rowcnt + (int64_t)iv * (b->nu + 1);
        n += rc[i1 + 1] - rc[i0];
    }
    return n;
}

/* P(x; sigma) of a beamlet of width w: the 1-D square convolved with a Gaussian. */
static inline double imrt_fspb_p(double x, double w, double sigma)
{
    const double k = 1.0 / (sqrt(2.0) * sigma);
    return 0.5 * (erf((x + 0.5 * w) * k) - erf((x - 0.5 * w) * k));
}

#endif /* IMRT_PENCILBEAM_IMPL_H */
