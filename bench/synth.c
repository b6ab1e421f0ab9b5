/*
 * bench/synth.c - the generated TG-119-shaped dij and dose phantom of
 * bench/synth.h.
 */
#include "synth.h"

#include "common.h"

#include "imrt/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYN_NBEAMS 9
#define SYN_W 5.0      /* beamlet pitch, mm */
#define SYN_R 20.0     /* coupling half-width, mm */
#define SYN_NU 17      /* cells along u: centres -40 .. 40 mm */
#define SYN_NV 19      /* cells along v: centres -45 .. 45 mm */
#define SYN_U0 (-40.0)
#define SYN_V0 (-45.0)
#define SYN_PI 3.14159265358979323846

typedef struct {
    double eu[2], dir[2];
} syn_beam;

static void window_axis(double x, double o, int n, int *i0, int *i1)
{
    double lo = ceil((x - SYN_R - o) / SYN_W), hi = floor((x + SYN_R - o) / SYN_W);
    if (lo > hi)
        lo = hi = floor((x - o) / SYN_W + 0.5);
    lo = lo < 0 ? 0 : (lo > n - 1 ? n - 1 : lo);
    hi = hi < 0 ? 0 : (hi > n - 1 ? n - 1 : hi);
    *i0 = (int)lo;
    *i1 = (int)hi;
}

/* Depth of (px, py) below the body ellipse surface along dir. */
static double depth_in_body(double px, double py, const double d[2])
{
    const double a2 = 150.0 * 150.0, b2 = 100.0 * 100.0;
    const double A = d[0] * d[0] / a2 + d[1] * d[1] / b2;
    const double B = 2.0 * (px * d[0] / a2 + py * d[1] / b2);
    const double C = px * px / a2 + py * py / b2 - 1.0;
    const double disc = B * B - 4.0 * A * C;
    const double s = (-B - sqrt(disc > 0 ? disc : 0)) / (2.0 * A);
    return s < 0 ? -s : 0.0;
}

static int in_body(double x, double y) { return (x / 150.0) * (x / 150.0) + (y / 100.0) * (y / 100.0) <= 1.0; }

static int in_ptv(double x, double y, double z)
{
    const double r = hypot(x, y);
    if (r < 15.0 || r > 37.0 || fabs(z) > 40.0)
        return 0;
    /* 90 degree gap centred on anterior (-y) */
    const double ang = acos(-y / r);
    return ang > 0.25 * SYN_PI;
}

static int in_core(double x, double y, double z) { return hypot(x, y) <= 10.0 && fabs(z) <= 50.0; }

/* Entries of row (x, y, z) for beam b; writes them when col != NULL. */
static int64_t beam_row(const syn_beam *B, int first, double x, double y, double z,
                        int32_t *col, float *val)
{
    const double u = x * B->eu[0] + y * B->eu[1];
    const double v = z;
    int ju0, ju1, jv0, jv1;
    window_axis(u, SYN_U0, SYN_NU, &ju0, &ju1);
    window_axis(v, SYN_V0, SYN_NV, &jv0, &jv1);
    const int64_t n = (int64_t)(ju1 - ju0 + 1) * (jv1 - jv0 + 1);
    if (!col)
        return n;
    const double dep = depth_in_body(x, y, B->dir);
    const double pre = 0.02 * exp(-0.0045 * dep) * (1.0 - exp(-0.3 * dep - 0.05));
    const double sp = 3.0 + 0.01 * dep;
    double gu[SYN_NU], gv[SYN_NV];
    for (int iu = ju0; iu <= ju1; iu++) {
        const double du = u - (SYN_U0 + iu * SYN_W);
        gu[iu] = 0.9 * exp(-0.5 * du * du / (sp * sp)) + 0.1 * exp(-0.5 * du * du / 1600.0);
    }
    for (int iv = jv0; iv <= jv1; iv++) {
        const double dv = v - (SYN_V0 + iv * SYN_W);
        gv[iv] = 0.9 * exp(-0.5 * dv * dv / (sp * sp)) + 0.1 * exp(-0.5 * dv * dv / 1600.0);
    }
    int64_t k = 0;
    for (int iv = jv0; iv <= jv1; iv++)
        for (int iu = ju0; iu <= ju1; iu++) {
            col[k] = first + iu + SYN_NU * iv;
            val[k] = (float)(pre * gu[iu] * gv[iv]);
            k++;
        }
    return k;
}

void synth_tg119(double spacing_mm, imrt_dij **dij, imrt_phantom **dose_phantom)
{
    const double s = spacing_mm;
    const int nx = (int)ceil(310.0 / s), ny = (int)ceil(210.0 / s), nz = (int)ceil(140.0 / s);
    const double o[3] = {-0.5 * (nx - 1) * s, -0.5 * (ny - 1) * s, -0.5 * (nz - 1) * s};
    imrt_grid g;
    if (imrt_grid_init(&g, nx, ny, nz, s, s, s, o) != IMRT_OK)
        bench_fail("synth: bad grid");
    imrt_phantom *P = NULL;
    int ip, ic, ib;
    if (imrt_phantom_create(&g, "tg119_synthetic", 1.0f, &P) != IMRT_OK ||
        imrt_phantom_add_structure(P, "PTV", IMRT_KIND_TARGET, 1, &ip) != IMRT_OK ||
        imrt_phantom_add_structure(P, "Core", IMRT_KIND_OAR, 2, &ic) != IMRT_OK ||
        imrt_phantom_add_structure(P, "BODY", IMRT_KIND_BODY, 100, &ib) != IMRT_OK)
        bench_fail("synth: cannot create the phantom");
    const int64_t nvox = imrt_grid_nvox(&g);
    int64_t nrows = 0;
    for (int64_t q = 0; q < nvox; q++) {
        int i, j, k;
        double c[3];
        imrt_grid_ijk(&g, q, &i, &j, &k);
        imrt_grid_center(&g, i, j, k, c);
        P->structures[ip].mask[q] = (uint8_t)in_ptv(c[0], c[1], c[2]);
        P->structures[ic].mask[q] = (uint8_t)in_core(c[0], c[1], c[2]);
        P->structures[ib].mask[q] = (uint8_t)in_body(c[0], c[1]);
        P->density[q] = P->structures[ib].mask[q] ? 1.0f : 0.001f;
        nrows += P->structures[ib].mask[q];
    }
    for (int t = 0; t < 3; t++)
        imrt_structure_recount(P, &P->structures[t]);

    syn_beam beams[SYN_NBEAMS];
    for (int b = 0; b < SYN_NBEAMS; b++) {
        const double a = (40.0 * b) * SYN_PI / 180.0;
        beams[b].eu[0] = cos(a);
        beams[b].eu[1] = sin(a);
        beams[b].dir[0] = -sin(a);
        beams[b].dir[1] = cos(a);
    }
    const int32_t per = SYN_NU * SYN_NV, ncols = SYN_NBEAMS * per;

    int64_t *voxel = imrt_calloc((size_t)nrows, sizeof *voxel);
    int64_t *len = imrt_calloc((size_t)nrows + 1, sizeof *len);
    if (!voxel || !len)
        bench_fail("synth: out of memory");
    int64_t r = 0;
    for (int64_t q = 0; q < nvox; q++)
        if (P->structures[ib].mask[q])
            voxel[r++] = q;
    /* count, allocate, fill */
#pragma omp parallel for schedule(dynamic, 1024)
    for (int64_t row = 0; row < nrows; row++) {
        int i, j, k;
        double c[3];
        imrt_grid_ijk(&g, voxel[row], &i, &j, &k);
        imrt_grid_center(&g, i, j, k, c);
        int64_t n = 0;
        for (int b = 0; b < SYN_NBEAMS; b++)
            n += beam_row(&beams[b], 0, c[0], c[1], c[2], NULL, NULL);
        len[row] = n;
    }
    int64_t nnz = 0;
    for (int64_t row = 0; row < nrows; row++)
        nnz += len[row];
    imrt_dij *D = NULL;
    if (imrt_dij_alloc(&g, nrows, ncols, nnz, SYN_NBEAMS, &D) != IMRT_OK)
        bench_fail("synth: %s", imrt_last_error());
    D->beamlet_mm = SYN_W;
    memcpy(D->voxel, voxel, (size_t)nrows * sizeof *voxel);
    D->rowptr[0] = 0;
    for (int64_t row = 0; row < nrows; row++)
        D->rowptr[row + 1] = D->rowptr[row] + len[row];
    imrt_free(voxel);
    imrt_free(len);
    for (int b = 0; b <= SYN_NBEAMS; b++)
        D->beam_start[b] = b * per;
    for (int b = 0; b < SYN_NBEAMS; b++) {
        snprintf(D->beams[b].name, sizeof D->beams[b].name, "G%03d", 40 * b);
        D->beams[b].gantry_deg = 40.0 * b;
    }
    for (int32_t j = 0; j < ncols; j++) {
        const int c = j % per;
        D->bixel_uv[2 * j] = (float)(SYN_U0 + (c % SYN_NU) * SYN_W);
        D->bixel_uv[2 * j + 1] = (float)(SYN_V0 + (c / SYN_NU) * SYN_W);
    }
#pragma omp parallel for schedule(dynamic, 1024)
    for (int64_t row = 0; row < nrows; row++) {
        int i, j, k;
        double c[3];
        imrt_grid_ijk(&g, D->voxel[row], &i, &j, &k);
        imrt_grid_center(&g, i, j, k, c);
        int64_t at = D->rowptr[row];
        for (int b = 0; b < SYN_NBEAMS; b++)
            at += beam_row(&beams[b], b * per, c[0], c[1], c[2], D->col + at, D->val + at);
    }
    *dij = D;
    *dose_phantom = P;
}
