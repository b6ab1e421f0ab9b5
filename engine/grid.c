/*
 * engine/grid.c - voxel grid validation and index <-> coordinate maps.
 */
#include "imrt/grid.h"

#include <math.h>

imrt_status imrt_grid_init(imrt_grid *g, int nx, int ny, int nz, double dx, double dy,
                           double dz, const double origin[3])
{
    if (!g || !origin)
        return imrt_error(IMRT_ERR_ARG, "imrt_grid_init: NULL argument");
    const int n[3] = {nx, ny, nz};
    const double d[3] = {dx, dy, dz};
    const char *axis = "xyz";
    for (int a = 0; a < 3; a++) {
        if (n[a] < 1 || n[a] > IMRT_GRID_MAX_DIM)
            return imrt_error(IMRT_ERR_RANGE, "grid: n%c = %d is outside the allowed range 1..%d",
                              axis[a], n[a], IMRT_GRID_MAX_DIM);
        if (!isfinite(d[a]) || d[a] <= 0.0 || d[a] > 1000.0)
            return imrt_error(IMRT_ERR_RANGE,
                              "grid: spacing d%c = %g mm is outside the allowed range (0, 1000]",
                              axis[a], d[a]);
        if (!isfinite(origin[a]) || fabs(origin[a]) > 1e7)
            return imrt_error(IMRT_ERR_RANGE, "grid: origin %c = %g mm is not a finite coordinate",
                              axis[a], origin[a]);
    }
    int64_t total = (int64_t)nx * ny * nz;
    if (total > IMRT_GRID_MAX_VOXELS)
        return imrt_error(IMRT_ERR_RANGE,
                          "grid: %d x %d x %d = %lld voxels exceeds the limit of %lld", nx, ny, nz,
                          (long long)total, (long long)IMRT_GRID_MAX_VOXELS);
    g->nx = nx;
    g->ny = ny;
    g->nz = nz;
    g->dx = dx;
    g->dy = dy;
    g->dz = dz;
    for (int a = 0; a < 3; a++)
        g->origin[a] = origin[a];
    return IMRT_OK;
}

int64_t imrt_grid_nvox(const imrt_grid *g) { return (int64_t)g->nx * g->ny * g->nz; }

double imrt_grid_voxel_cc(const imrt_grid *g) { return g->dx * g->dy * g->dz * 1e-3; }

void imrt_grid_ijk(const imrt_grid *g, int64_t index, int *i, int *j, int *k)
{
    int64_t plane = (int64_t)g->nx * g->ny;
    int64_t kk = index / plane;
    int64_t rem = index - kk * plane;
    int64_t jj = rem / g->nx;
    *k = (int)kk;
    *j = (int)jj;
    *i = (int)(rem - jj * g->nx);
}

void imrt_grid_center(const imrt_grid *g, int i, int j, int k, double xyz[3])
{
    xyz[0] = g->origin[0] + i * g->dx;
    xyz[1] = g->origin[1] + j * g->dy;
    xyz[2] = g->origin[2] + k * g->dz;
}

void imrt_grid_continuous(const imrt_grid *g, const double xyz[3], double ijk[3])
{
    ijk[0] = (xyz[0] - g->origin[0]) / g->dx;
    ijk[1] = (xyz[1] - g->origin[1]) / g->dy;
    ijk[2] = (xyz[2] - g->origin[2]) / g->dz;
}

int imrt_grid_locate(const imrt_grid *g, const double xyz[3], int ijk[3])
{
    double c[3];
    imrt_grid_continuous(g, xyz, c);
    const int n[3] = {g->nx, g->ny, g->nz};
    for (int a = 0; a < 3; a++) {
        double r = floor(c[a] + 0.5);
        if (!(r >= 0.0 && r < n[a]))
            return 0;
        ijk[a] = (int)r;
    }
    return 1;
}

void imrt_grid_bounds(const imrt_grid *g, double lo[3], double hi[3])
{
    const double d[3] = {g->dx, g->dy, g->dz};
    const int n[3] = {g->nx, g->ny, g->nz};
    for (int a = 0; a < 3; a++) {
        lo[a] = g->origin[a] - 0.5 * d[a];
        hi[a] = g->origin[a] + (n[a] - 0.5) * d[a];
    }
}

int imrt_grid_equal(const imrt_grid *a, const imrt_grid *b)
{
    if (a->nx != b->nx || a->ny != b->ny || a->nz != b->nz)
        return 0;
    const double tol = 1e-6;
    return fabs(a->dx - b->dx) < tol && fabs(a->dy - b->dy) < tol && fabs(a->dz - b->dz) < tol &&
           fabs(a->origin[0] - b->origin[0]) < tol && fabs(a->origin[1] - b->origin[1]) < tol &&
           fabs(a->origin[2] - b->origin[2]) < tol;
}
