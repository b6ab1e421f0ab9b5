/*
 * imrt/dose.h - the photon dose engine: finite-size pencil-beam dose
 * (spec/physics.md section 5) on a dose grid, the dose-influence matrix
 * build (section 6), direct dose for given beamlet weights, dose at
 * arbitrary points, and the dose grid itself (a phantom resampled to the
 * dose-grid spacing).
 *
 * Units: mm, Gy per unit beamlet weight (weights are relative fluences,
 * imrt/machine.h). Frames: imrt/grid.h (LPS), imrt/beam.h (BEV).
 *
 * Lateral cut-off and scatter (imrt_dose_options). A 5 mm beamlet's phantom
 * scatter is broad (sigma of 4-7 cm) and, at its own peak, about 1e-3 of the
 * beamlet's primary peak, yet it makes 10-30 % of the dose of a field; a
 * relative threshold on whole beamlet values, or a plain radius, drops that
 * scatter and biases the dose low. The dij build therefore splits the model:
 *   - primary: a beamlet's primary term is dropped beyond
 *     w/2 + sqrt(2 ln(1/cutoff)) sigma_p along either BEV axis (default
 *     cutoff 1e-3) and stored per beamlet within a coupling window of
 *     `scatter_radius` (default IMRT_PRIMARY_WINDOW_MM); primary beyond the
 *     window is added to the nearest window beamlet ("folding", exact for a
 *     locally uniform fluence, and the primary is narrow);
 *   - scatter: stored on the dij's scatter maps (imrt/dij.h): eight
 *     trilinear entries per voxel and beam on a lattice of map columns that
 *     the beamlet weights are expanded into. Exact for any fluence up to the
 *     interpolation (tests/test_dij.c: 0.14 % of the maximum for a uniform,
 *     a modulated and an edges-off fluence).
 * scatter_maps = 0 keeps the whole dose on the beamlet columns with a
 * 20 mm window and folding, the model of format-1 dij files: exact for a
 * uniform fluence only (an IMRT fluence that switches the field's edge
 * beamlets off loses the out-of-field scatter folded onto them).
 * Lateral cut-off (lateral_cutoff_mm > 0). Direct dose couples a point to
 * exactly the beamlets whose centre lies within the cut-off of its
 * projection (a disc at the isocentre plane), without folding. A dij build
 * with maps gives no entries to a voxel whose projection lies farther than
 * the cut-off from the beam's beamlet box, and its maps hold the scatter of
 * the beamlets within the cut-off of each node (exact at the nodes); the
 * primary keeps its window and folding (beyond R >= 20 mm only its tail at
 * about the primary threshold remains). A build without maps refuses it.
 * Direct dose (imrt_dose_compute, imrt_dose_points) has no dij and
 * therefore no maps: with a cut-off it uses the folded model, otherwise
 * imrt_dose_options_exact() couples every voxel to every beamlet (the
 * reference dose). tests/test_dij.c measures the deviations;
 * docs/physics-model.md gives the size/accuracy table.
 *
 * Threads: every function below runs OpenMP loops with the context's thread
 * count (ctx may be NULL: OpenMP default) and gives results that do not
 * depend on the thread count. Progress of the dij build goes through
 * imrt_context_progress (stage "dij"). All functions are re-entrant.
 */
#ifndef IMRT_DOSE_H
#define IMRT_DOSE_H

#include "imrt/beam.h"
#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/machine.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double cutoff;         /* relative primary threshold in [0, 0.5); 0 = none; default 1e-3 */
    double scatter_radius; /* coupling window half-width, mm at the isocentre plane;
                              0 = the default (scatter maps: IMRT_PRIMARY_WINDOW_MM; folded
                              scatter: the machine's); INFINITY = every beamlet */
    int scatter_maps;      /* dij builds: 1 (default) = the scatter term on the dij's scatter
                              maps (imrt/dij.h, exact for any fluence up to the map
                              interpolation) and only the primary on the beamlet columns;
                              0 = the whole dose on the beamlet columns, far scatter folded
                              (exact for a uniform fluence only). Direct dose ignores it. */
    double map_pitch;      /* scatter-map node pitch, mm at the isocentre plane; 0 = default
                              (a quarter of the smallest scatter sigma, 2 mm at least) */
    double map_ratio;      /* ratio of consecutive scatter-map sigma levels, > 1; 0 = 1.1 */
    double lateral_cutoff_mm; /* geometric lateral cut-off (mm at the isocentre plane) in
                                 [IMRT_LATERAL_CUTOFF_MIN_MM, IMRT_LATERAL_CUTOFF_MAX_MM], or
                                 0 = none (default): a beamlet gives no dose, primary or
                                 scatter, to a point whose projection lies farther than this
                                 from the beamlet's centre. Peer engines use one (matRad's
                                 photon default: 50 mm); it drops the far scatter, so the
                                 dose outside the fields is low. Dij builds need the scatter
                                 maps for it; see the note below. */
} imrt_dose_options;

#define IMRT_LATERAL_CUTOFF_MIN_MM 20.0
#define IMRT_LATERAL_CUTOFF_MAX_MM 1000.0

/* Default coupling window of the primary term when the scatter is on maps:
 * the primary of a 5 mm beamlet at 1e-3 reaches 10 mm down to about 50 mm
 * depth; beyond the window it is folded (exact for a locally uniform
 * fluence). */
#define IMRT_PRIMARY_WINDOW_MM 10.0

/* cutoff = 1e-3, scatter_radius = 0 (default window), scatter maps on,
 * default map pitch and ratio. */
void imrt_dose_options_default(imrt_dose_options *o);
/* Defaults with plan->cutoff. */
void imrt_dose_options_from_plan(const imrt_plan *plan, imrt_dose_options *o);
/* No cut-off at all: cutoff = 0, scatter_radius = INFINITY, no maps. */
void imrt_dose_options_exact(imrt_dose_options *o);

/* A copy of phantom p on a grid of the given spacing (mm) covering the same
 * physical extent: the new grid has ceil(extent/spacing) voxels per axis
 * (extent = n * old spacing) and the same centre. Density is the
 * volume-weighted mean RED of the fine voxels that overlap each dose voxel;
 * a structure contains a dose voxel when its centre lies in a fine voxel of
 * the structure. spacing_mm == NULL, or equal to p's spacing within 1e-9 mm,
 * gives an exact copy. Errors: IMRT_ERR_ARG, IMRT_ERR_RANGE (spacing not in
 * (0, 1000] mm or too many voxels), IMRT_ERR_NOMEM. */
imrt_status imrt_phantom_resample(const imrt_phantom *p, const double spacing_mm[3],
                                  imrt_phantom **out);

/* The dose grid of a plan: imrt_phantom_resample with plan->dose_grid_mm,
 * where a 0 entry keeps the phantom's spacing along that axis (all 0, or
 * plan NULL: an exact copy). Errors: as imrt_phantom_resample. */
imrt_status imrt_dose_grid_phantom(const imrt_phantom *p, const imrt_plan *plan,
                                   imrt_phantom **out);

/* Size of the dij that imrt_dij_build would produce, computed exactly from
 * the geometry (no ray tracing): rows, stored entries, and the bytes the
 * build needs at its peak (dij arrays + depth cubes + counts).
 * Any output pointer may be NULL. Errors: as imrt_dij_build minus BUDGET. */
imrt_status imrt_dij_estimate(const imrt_context *ctx, const imrt_phantom *dose_phantom,
                              const imrt_beamset *bs, const imrt_machine *m,
                              const imrt_dose_options *opt, int64_t *nrows, int64_t *nnz,
                              uint64_t *bytes);

/* Build the dose-influence matrix (imrt/dij.h) on the grid of dose_phantom
 * (usually from imrt_dose_grid_phantom): rows = voxels in at least one
 * structure, columns = the beam set's beamlets. m NULL = the default
 * machine; opt NULL = imrt_dose_options_default. The result is bitwise
 * identical for any thread count. With a communicator in ctx
 * (imrt_context_set_comm) the processes share the count pass (an even split
 * of the rows, counts gathered) and each computes only its block of rows
 * (imrt_dij_partition of the counts, rank of size blocks); the other rows
 * stay empty, and the budget applies to the block. It is then a collective
 * call, as is imrt_dij_estimate.
 * Errors: IMRT_ERR_ARG (NULL, no structure voxel, bad options),
 * IMRT_ERR_RANGE (machine parameters, a voxel behind a source),
 * IMRT_ERR_BUDGET (the build needs more than imrt_context_max_memory: the
 * message gives both numbers and the settings that reduce the size),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_dij_build(const imrt_context *ctx, const imrt_phantom *dose_phantom,
                           const imrt_beamset *bs, const imrt_machine *m,
                           const imrt_dose_options *opt, imrt_dij **out);

/* Direct dose for beamlet weights without a dij: dose[v] = sum over
 * beamlets of weight * dose per unit weight, for every voxel of phantom's
 * grid with mask[v] != 0 (mask NULL = all voxels); other entries are set to
 * 0. weights has nbeamlets entries (NULL = all 1). dose has nvox entries.
 * Same kernel and options as imrt_dij_build, so D*x matches it.
 * Errors: IMRT_ERR_ARG, IMRT_ERR_RANGE (machine, options), IMRT_ERR_NOMEM. */
imrt_status imrt_dose_compute(const imrt_context *ctx, const imrt_phantom *phantom,
                              const imrt_beamset *bs, const imrt_machine *m,
                              const imrt_dose_options *opt, const double *weights,
                              const uint8_t *mask, float *dose);

/* Dose at npts arbitrary points xyz (3*npts, mm) in phantom: the
 * radiological depth is traced to each point exactly. Used for depth doses,
 * profiles and the machine fit. Errors: as imrt_dose_compute. */
imrt_status imrt_dose_points(const imrt_context *ctx, const imrt_phantom *phantom,
                             const imrt_beamset *bs, const imrt_machine *m,
                             const imrt_dose_options *opt, const double *weights, int64_t npts,
                             const double *xyz, double *dose);

/* Beam data of a machine computed by the engine itself (imrt_dose_points on
 * a 300 x 300 x 300 mm^3 water box, SSD = SAD, open fields, exact options):
 * the quantities of spec/physics.md section 5. */
typedef struct {
    double dmax_mm;         /* depth of maximum, 100 x 100 */
    double pdd50, pdd100, pdd200; /* PDD in % at 50/100/200 mm, 100 x 100 */
    double penumbra_mm;     /* 80-20 % at 100 mm depth, 100 x 100, mean of both edges */
    double penumbra_dmax_mm; /* the same at the depth of maximum */
    double of5, of20;       /* output at each field's d_max relative to 100 x 100 */
    double pdd100_5, pdd100_20; /* PDD(100 mm) of 50 x 50 and 200 x 200, % */
    double dose_dmax;       /* absolute dose at d_max of 100 x 100 (1 Gy when normalised) */
} imrt_beam_data;

/* Fill bd for machine m (ctx may be NULL). Errors: as imrt_dose_points. */
imrt_status imrt_machine_beam_data(const imrt_context *ctx, const imrt_machine *m,
                                   imrt_beam_data *bd);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_DOSE_H */
