/*
 * imrt/raytrace.h - exact voxel traversal (Siddon 1985 in the incremental
 * form of Jacobs et al. 1998 / Amanatides & Woo 1987) and radiological depth.
 *
 * Frame and index order: imrt/grid.h. A voxel covers its centre +/- half a
 * spacing; the grid is the closed box of its outer faces. A ray lying exactly
 * on a plane between two voxels is counted in the voxel on the + side of the
 * plane (the one whose floor index contains the plane), so that lengths still
 * add up to the clipped chord. Lengths in mm.
 *
 * Radiological depth of a point p for a source s: the line integral of the
 * relative electron density along the segment s -> p, RED = 0 outside the
 * grid, in water-equivalent mm.
 *
 * Thread safety: every function is re-entrant; imrt_depth_cube runs its own
 * OpenMP loop with the context's thread count.
 */
#ifndef IMRT_RAYTRACE_H
#define IMRT_RAYTRACE_H

#include "imrt/context.h"
#include "imrt/grid.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Segments shorter than this (mm) are not reported: they arise where a ray
 * crosses an edge or corner and belong to no voxel in a measurable way. */
#define IMRT_RAY_MIN_SEGMENT_MM 1e-9

/* One piece of a ray inside one voxel. */
typedef struct {
    int64_t voxel;  /* linear voxel index */
    double length;  /* mm */
} imrt_ray_segment;

/* Segments a ray can produce on grid g at most (nx + ny + nz + 3): size of
 * the caller's buffer for imrt_raytrace. */
int64_t imrt_raytrace_capacity(const imrt_grid *g);

/* Trace the segment a -> b (mm) through grid g, writing (voxel, length)
 * pairs in order from a to b into seg[0 .. *nseg-1]. The lengths sum to the
 * length of the part of a->b inside the grid box. cap must be at least
 * imrt_raytrace_capacity(g). Errors: IMRT_ERR_ARG (NULL or cap too small). */
imrt_status imrt_raytrace(const imrt_grid *g, const double a[3], const double b[3],
                          imrt_ray_segment *seg, int64_t cap, int64_t *nseg);

/* Line integral of density (RED per voxel, nvox floats) along a -> b, in
 * water-equivalent mm: the same traversal as imrt_raytrace without writing
 * segments. No argument checks (hot path). */
double imrt_raytrace_depth(const imrt_grid *g, const float *density, const double a[3],
                           const double b[3]);

/* Radiological-depth cube of a source: depth[q] = radiological depth of the
 * centre of voxel voxels[q] (q < nvoxels) seen from src, or of every voxel
 * (depth has nvox entries) when voxels is NULL. Parallel over voxels with
 * the context's threads (ctx may be NULL: OpenMP default); the reference
 * kernel (IMRT_KERNELS=reference) sums imrt_raytrace segments, the optimised
 * one integrates in the traversal. Results do not depend on the thread count.
 * Errors: IMRT_ERR_ARG (NULL arguments, nvoxels < 0), IMRT_ERR_NOMEM. */
imrt_status imrt_depth_cube(const imrt_context *ctx, const imrt_grid *g, const float *density,
                            const double src[3], const int64_t *voxels, int64_t nvoxels,
                            float *depth);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_RAYTRACE_H */
