/*
 * imrt/phantom.h - a voxel phantom: relative electron density on a grid plus
 * named structures (targets, organs at risk, the body outline).
 *
 * Units: density is relative electron density (RED, water = 1.0); lengths mm;
 * volumes cm^3. Frame and index order: see imrt/grid.h.
 * Structures are bit-per-byte masks over the phantom grid (1 inside). A voxel
 * may belong to several structures; `priority` decides overlaps where a
 * single owner is needed (label maps, optimisation): the smaller number wins
 * (1 = highest, the matRad convention).
 *
 * Ownership: the phantom owns its density array and every structure mask;
 * imrt_phantom_destroy frees them all. Pointers returned into the phantom
 * (structure entries, masks) stay valid until the next add_structure call or
 * destroy. Thread safety: read-only use from many threads is safe.
 */
#ifndef IMRT_PHANTOM_H
#define IMRT_PHANTOM_H

#include "imrt/grid.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_NAME_MAX 64        /* longest structure/phantom name incl. NUL */
#define IMRT_MAX_STRUCTURES 250 /* label maps are 8-bit: 0 = none */

typedef enum {
    IMRT_KIND_TARGET = 0, /* PTV, CTV, GTV */
    IMRT_KIND_OAR = 1,    /* organ at risk */
    IMRT_KIND_BODY = 2    /* external outline */
} imrt_structure_kind;

typedef struct {
    char name[IMRT_NAME_MAX];  /* unique within the phantom */
    imrt_structure_kind kind;  /* target / OAR / body */
    int priority;              /* overlap priority, smaller wins, >= 1 */
    uint8_t *mask;             /* nvox bytes, 1 = voxel centre inside; owned */
    int64_t count;             /* number of voxels with mask == 1 */
} imrt_structure;

typedef struct {
    char name[IMRT_NAME_MAX];  /* phantom name (spec name or file stem) */
    imrt_grid grid;            /* voxel grid of density and masks */
    float *density;            /* nvox values, RED; owned */
    int nstructures;           /* structures in use */
    int capacity;              /* allocated entries of structures[] */
    imrt_structure *structures;/* nstructures entries; owned */
} imrt_phantom;

/* Allocate a phantom on grid *g with density filled with `fill` (RED) and
 * no structures. Returns IMRT_ERR_ARG, IMRT_ERR_RANGE (fill not finite or
 * negative) or IMRT_ERR_NOMEM. */
imrt_status imrt_phantom_create(const imrt_grid *g, const char *name, float fill,
                                imrt_phantom **out);

/* Free the phantom and everything it owns; accepts NULL, clears *p. */
void imrt_phantom_destroy(imrt_phantom **p);

/* Append an empty structure (all-zero mask) and return its index in *index.
 * Errors: IMRT_ERR_ARG (empty or too long name, priority < 1),
 * IMRT_ERR_EXISTS (duplicate name), IMRT_ERR_RANGE (too many structures),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_phantom_add_structure(imrt_phantom *p, const char *name,
                                       imrt_structure_kind kind, int priority, int *index);

/* Index of the structure called `name`, or -1. */
int imrt_phantom_find(const imrt_phantom *p, const char *name);

/* Recount structure s's voxels after its mask was written. */
void imrt_structure_recount(const imrt_phantom *p, imrt_structure *s);

/* Volume of a structure in cm^3 (count x voxel volume). */
double imrt_structure_volume_cc(const imrt_phantom *p, const imrt_structure *s);

/* Centroid (mm) and bounding box of voxel centres (mm) of a structure.
 * IMRT_ERR_RANGE if the structure is empty. Any output may be NULL. */
imrt_status imrt_structure_geometry(const imrt_phantom *p, const imrt_structure *s,
                                    double centroid[3], double lo[3], double hi[3]);

/* Label map: labels[v] = 1 + index of the highest-priority structure that
 * contains v (ties: the later structure, painted last), 0 where none.
 * `labels` has nvox entries, caller-allocated. */
void imrt_phantom_label_map(const imrt_phantom *p, uint8_t *labels);

/* Name of a structure kind ("target", "oar", "body"). */
const char *imrt_structure_kind_name(imrt_structure_kind kind);

/* ---- Masks: margins and resampling ----
 * A margin is given per direction in mm, in the order
 *   [0] -x (right)  [1] +x (left)  [2] -y (anterior)
 *   [3] +y (posterior)  [4] -z (inferior)  [5] +z (superior).
 * Expansion is a Euclidean (ellipsoidal) dilation of the voxel centres: a
 * voxel joins when its centre p lies within the "octant ellipsoid" of some
 * centre q of the input,
 *   sum over axes a of ((p - q)_a / M_a)^2 <= 1,
 * where M_a = m_a + IMRT_MARGIN_BOUNDARY_OFFSET * h_a for the margin m_a > 0
 * on the side p lies towards (h_a the spacing), and M_a = 0 (no movement)
 * for a zero margin. Equal margins give a sphere. The offset accounts for
 * the true surface of a voxelised structure lying on average a fraction of a
 * spacing beyond its outermost voxel centres: without it a 5 mm expansion
 * of a 20 mm sphere on a 2.5 mm grid comes out 9 % small (the 25 mm sphere's
 * volume), with it 3 % large; docs/phantoms.md tabulates the errors.
 * Computed exactly (for the rule above) by separable per-axis lower-envelope
 * passes, O(nvox x margin/spacing).
 */
#define IMRT_MARGIN_BOUNDARY_OFFSET 0.3

/* out = in expanded by margin_mm (see above). `out` may equal `in`.
 * Margins must be finite, in [0, 1000] mm. Returns IMRT_OK, IMRT_ERR_ARG
 * (NULL), IMRT_ERR_RANGE (bad margin) or IMRT_ERR_NOMEM. */
imrt_status imrt_mask_expand(const imrt_grid *g, const uint8_t *in, const double margin_mm[6],
                             uint8_t *out);

/* out = in shrunk by margin_mm: the voxels whose expansion by the mirrored
 * margin stays inside `in`. The grid edge is not a surface: a mask that
 * touches the edge is not eroded from there (phantoms are often cropped
 * through the anatomy). `out` may equal `in`. Statuses as for expand. */
imrt_status imrt_mask_shrink(const imrt_grid *g, const uint8_t *in, const double margin_mm[6],
                             uint8_t *out);

/* Number of non-zero bytes of a mask of imrt_grid_nvox(g) entries. */
int64_t imrt_mask_count(const imrt_grid *g, const uint8_t *mask);

/* New phantom on grid *g: each voxel takes the density and structure
 * membership of the nearest voxel of p (indices clamped to p's grid).
 * Names, kinds and priorities are kept. Returns IMRT_OK, IMRT_ERR_ARG,
 * IMRT_ERR_NOMEM. */
imrt_status imrt_phantom_resample_nearest(const imrt_phantom *p, const imrt_grid *g,
                                  imrt_phantom **out);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_PHANTOM_H */
