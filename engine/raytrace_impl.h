/*
 * engine/raytrace_impl.h - private ray-tracing entry points (never
 * installed): the density bounds that let the depth kernel skip the
 * uniform background (air) around a phantom, found once and reused for
 * every beam of a dij build.
 */
#ifndef IMRT_RAYTRACE_IMPL_H
#define IMRT_RAYTRACE_IMPL_H

#include "imrt/raytrace.h"

/* Voxel box of the densities that differ from the background bg (the
 * grid's first voxel); any = 0 when there are none. */
typedef struct {
    int any;
    int box[6]; /* i0, i1, j0, j1, k0, k1 */
    float bg;
} imrt_density_bounds;

void imrt_density_bounds_find(const imrt_grid *g, const float *density, imrt_density_bounds *b);

/* imrt_depth_cube with bounds from imrt_density_bounds_find on the same
 * grid and density. */
imrt_status imrt_depth_cube_bounded(const imrt_context *ctx, const imrt_grid *g,
                                    const float *density, const imrt_density_bounds *b,
                                    const double src[3], const int64_t *voxels,
                                    int64_t nvoxels, float *depth);

#endif /* IMRT_RAYTRACE_IMPL_H */
