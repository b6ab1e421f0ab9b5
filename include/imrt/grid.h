/*
 * imrt/grid.h - the regular voxel grid shared by phantoms and dose arrays.
 *
 * Frame: DICOM patient coordinates (LPS), millimetres: +x to the patient's
 * left, +y posterior, +z superior. Voxel (i,j,k) has its centre at
 * origin + (i*dx, j*dy, k*dz) and linear index i + nx*(j + ny*k), x fastest
 * (the DICOM/NIfTI order). A voxel covers its centre +/- half a spacing.
 *
 * The grid is plain data (transparent struct); functions below never
 * allocate and are thread-safe.
 */
#ifndef IMRT_GRID_H
#define IMRT_GRID_H

#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest number of voxels along one axis, and in a whole grid, that the
 * engine accepts (guards index arithmetic and absurd inputs). */
#define IMRT_GRID_MAX_DIM 4096
#define IMRT_GRID_MAX_VOXELS ((int64_t)1 << 31)

typedef struct {
    int nx, ny, nz;     /* voxels along x, y, z (each >= 1) */
    double dx, dy, dz;  /* spacing in mm (each > 0) */
    double origin[3];   /* centre of voxel (0,0,0), mm, LPS */
} imrt_grid;

/* Fill *g after validating: dims in 1..IMRT_GRID_MAX_DIM, total voxels at
 * most IMRT_GRID_MAX_VOXELS, spacings finite in (0, 1000] mm, origin finite.
 * Returns IMRT_ERR_ARG (g NULL) or IMRT_ERR_RANGE naming the bad value. */
imrt_status imrt_grid_init(imrt_grid *g, int nx, int ny, int nz, double dx, double dy,
                           double dz, const double origin[3]);

/* Number of voxels nx*ny*nz. */
int64_t imrt_grid_nvox(const imrt_grid *g);

/* Volume of one voxel in cm^3. */
double imrt_grid_voxel_cc(const imrt_grid *g);

/* Linear index of voxel (i,j,k); no bounds check. */
static inline int64_t imrt_grid_index(const imrt_grid *g, int i, int j, int k)
{
    return (int64_t)i + (int64_t)g->nx * ((int64_t)j + (int64_t)g->ny * (int64_t)k);
}

/* Voxel (i,j,k) of a linear index; no bounds check. */
void imrt_grid_ijk(const imrt_grid *g, int64_t index, int *i, int *j, int *k);

/* Centre of voxel (i,j,k) in mm. */
void imrt_grid_center(const imrt_grid *g, int i, int j, int k, double xyz[3]);

/* Continuous voxel coordinates of a point: (x - origin)/spacing per axis,
 * so that voxel centres sit at integers. */
void imrt_grid_continuous(const imrt_grid *g, const double xyz[3], double ijk[3]);

/* Nearest voxel of a point; returns 1 and fills ijk when the point lies in
 * the grid (inside some voxel's extent), 0 otherwise. */
int imrt_grid_locate(const imrt_grid *g, const double xyz[3], int ijk[3]);

/* Axis-aligned extent of the grid (outer voxel faces), mm. */
void imrt_grid_bounds(const imrt_grid *g, double lo[3], double hi[3]);

/* Same dims, spacing and origin within 1e-6 mm. */
int imrt_grid_equal(const imrt_grid *a, const imrt_grid *b);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_GRID_H */
