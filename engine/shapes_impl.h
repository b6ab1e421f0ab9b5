/*
 * engine/shapes_impl.h - analytic solids of the phantom spec (private):
 * box, sphere, ellipsoid, (elliptic) cylinder along any axis, annular
 * sector (C-shape) and half-space. Each solid answers "is this point
 * inside" (closed: the surface counts as inside, within IMRT_SHAPE_EPS_MM),
 * gives a bounding box and, where finite, its analytic volume.
 *
 * Units: mm, LPS frame (imrt/grid.h). Rasterisation marks a voxel when its
 * centre is inside. Thread safety: all functions are pure.
 */
#ifndef IMRT_SHAPES_IMPL_H
#define IMRT_SHAPES_IMPL_H

#include "imrt/grid.h"

#include <stdint.h>

/* Points this close to a surface (mm) count as inside: voxel centres that
 * sit exactly on a face in exact arithmetic stay inside after rounding. */
#define IMRT_SHAPE_EPS_MM 1e-6

typedef enum {
    IMRT_SHAPE_BOX = 0,       /* axis-aligned box: c, half[3] */
    IMRT_SHAPE_SPHERE,        /* c, r1 = radius */
    IMRT_SHAPE_ELLIPSOID,     /* axis-aligned: c, half[3] = semi-axes */
    IMRT_SHAPE_CYLINDER,      /* c, frame (u, v, axis), r1 along u, r2 along v, half_len */
    IMRT_SHAPE_SECTOR,        /* c, frame, r_in = r1, r_out = r2, half_len, arc */
    IMRT_SHAPE_HALFSPACE      /* points p with (p - c) . axis >= 0 */
} imrt_shape_type;

typedef struct {
    imrt_shape_type type;
    double c[3];        /* centre (box, sphere, ellipsoid, cylinders) or a point on the plane */
    double half[3];     /* box half sizes / ellipsoid semi-axes, mm */
    double axis[3];     /* unit: cylinder/sector axis; half-space direction into the solid */
    double u[3], v[3];  /* unit vectors spanning the plane normal to axis */
    double r1, r2;      /* cylinder semi-axes along u and v; sector inner and outer radius */
    double half_len;    /* cylinder/sector half length along the axis (INFINITY: unbounded) */
    double arc_dir[2];  /* sector: unit centre direction of the covered arc in (u, v) */
    double arc_cos;     /* sector: cos(half the covered arc); covered iff cos(angle) >= arc_cos */
    double arc_deg;     /* sector: covered arc in degrees (0, 360] */
} imrt_shape;

/* In-plane unit vectors u, v orthonormal to a unit axis. For the
 * coordinate axes: z -> (x, y), x -> (y, z), y -> (x, z), so that radii
 * given as [r_u, r_v] read in that order. Other axes: u is the coordinate
 * axis least aligned with `axis`, projected onto the plane; v = axis x u.
 * When ref is not NULL, u is ref projected onto the plane instead. Returns
 * 0 if ref is (nearly) parallel to axis, else 1. */
int imrt_shape_frame(const double axis[3], const double *ref, double u[3], double v[3]);

/* 1 if p is inside (closed, tolerance IMRT_SHAPE_EPS_MM), else 0. */
int imrt_shape_contains(const imrt_shape *s, const double p[3]);

/* Axis-aligned bounding box (may be infinite for half-spaces and unbounded cylinders). */
void imrt_shape_bbox(const imrt_shape *s, double lo[3], double hi[3]);

/* Analytic volume in mm^3 (INFINITY when unbounded). */
double imrt_shape_volume_mm3(const imrt_shape *s);

/* Voxel index ranges [i0,i1] x [j0,j1] x [k0,k1] whose centres can lie in
 * the shape (its bounding box clipped to the grid). Returns 0 if empty. */
int imrt_shape_voxel_range(const imrt_shape *s, const imrt_grid *g, int range[6]);

/* Set mask[v] = value for every voxel whose centre is inside; other voxels
 * are left alone. Returns the number of voxels marked. */
int64_t imrt_shape_rasterise(const imrt_shape *s, const imrt_grid *g, uint8_t *mask,
                             uint8_t value);

/* 1 when the shape's bounding box lies inside the grid's outer faces, so
 * that its analytic volume is comparable with the voxel count. */
int imrt_shape_inside_grid(const imrt_shape *s, const imrt_grid *g);

/* Name of a shape type as written in spec files ("box", "sphere", ...). */
const char *imrt_shape_type_name(imrt_shape_type t);

#endif /* IMRT_SHAPES_IMPL_H */
