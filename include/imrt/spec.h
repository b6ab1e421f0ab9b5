/*
 * imrt/spec.h - the JSON phantom/plan spec: one file describes the anatomy
 * (grid, materials with relative electron density, shapes painted in order,
 * structures built from shapes, boolean combinations and margins, or an
 * imported matRad phantom) and the plan (prescription, beams, beamlet and
 * dose-grid settings, objectives, clinical goals, conformal baseline,
 * solver settings). docs/spec-format.md documents every key.
 *
 * Units: mm, Gy, degrees, RED; frame DICOM LPS (imrt/grid.h).
 * Errors: every problem with the input is reported through imrt_last_error()
 * as "FILE:LINE: KEY.PATH: what is wrong (allowed range)", e.g.
 *   phantoms/x.json:42: phantom.structures[3].margin_mm: must be >= 0 mm (got -2)
 * Unknown keys, wrong types, missing required keys and out-of-range values
 * are errors; JSON syntax errors name the line and column.
 *
 * Ownership: on success *phantom and *plan are new objects owned by the
 * caller (imrt_phantom_destroy, imrt_plan_destroy; *info with
 * imrt_spec_info_destroy). On failure every output is set to NULL.
 * Thread safety: the reader keeps no global state; concurrent calls are
 * safe, except that a spec importing a matRad file goes through libmatio,
 * whose log handler is process-wide (see imrt/matrad.h).
 */
#ifndef IMRT_SPEC_H
#define IMRT_SPEC_H

#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits the reader enforces (a spec beyond them is an IMRT_ERR_RANGE). */
#define IMRT_SPEC_MAX_BYTES (16L << 20)   /* spec file size */
#define IMRT_SPEC_MAX_VOXELS (32L << 20)  /* voxels of a rasterised phantom */
#define IMRT_SPEC_MIN_GRID_MM 0.5         /* grid spacing range, mm */
#define IMRT_SPEC_MAX_GRID_MM 50.0
#define IMRT_SPEC_MAX_SHAPES 1000
#define IMRT_SPEC_MAX_DEPTH 16            /* nesting of structure expressions */
#define IMRT_SPEC_MAX_MARGIN_MM 200.0

typedef struct {
    /* Isotropic phantom grid spacing in mm that replaces the spec's own;
     * 0 keeps the spec's spacing. The phantom keeps its physical extent
     * (the voxel count per axis becomes ceil(size / spacing)). Imported CT
     * phantoms are resampled (nearest voxel) onto the new spacing. Range 0
     * or [IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM]. */
    double grid_mm;
    /* Memory budget in bytes for the rasterised phantom (0 = no check): a
     * grid whose estimate (IMRT_SPEC_PHANTOM_BYTES) is larger is refused
     * with IMRT_ERR_BUDGET before anything is allocated, naming the coarser
     * grid spacings that would fit. */
    uint64_t max_memory;
} imrt_spec_options;

/* Estimated bytes of rasterising an analytic phantom of nvox voxels with
 * nshapes shapes and nstructures structures: the density (float), one
 * byte-mask per structure and per shape, a scratch mask and two masks of
 * expression temporaries. */
#define IMRT_SPEC_PHANTOM_BYTES(nvox, nshapes, nstructures) \
    ((uint64_t)(nvox) * (uint64_t)(4 + 1 + 2 + (nshapes) + (nstructures)))

/* Voxel and analytic volume of one structure. */
typedef struct {
    char name[IMRT_NAME_MAX];
    int64_t voxels;      /* voxel centres inside */
    double volume_cc;    /* voxels x voxel volume, cm^3 */
    double analytic_cc;  /* analytic volume of the solid it was drawn from, cm^3;
                            < 0 when not a single analytic solid inside the grid */
    double error_pct;    /* 100 (volume_cc - analytic_cc) / analytic_cc; 0 when no analytic volume */
} imrt_spec_volume;

/* What the reader learned beyond the phantom and plan. */
typedef struct {
    char name[IMRT_NAME_MAX]; /* spec "name" (or the file stem) */
    int imported;             /* 1: the anatomy came from a CT file (matRad) */
    int resampled;            /* 1: an imported CT was resampled to the grid option */
    int nstructures;          /* entries of volumes[], same order as the phantom's structures */
    imrt_spec_volume *volumes;
    double seconds;           /* wall time spent building the phantom */
} imrt_spec_info;

/* Read a spec file and build the phantom and the plan. `opt` may be NULL
 * (defaults). `plan` may be NULL when only the anatomy is wanted (the plan
 * part is still validated). Relative file names inside the spec (imported
 * CTs) are resolved against the spec's folder.
 * Returns IMRT_OK, IMRT_ERR_ARG (NULL path/phantom, bad options, an
 * imported file that cannot be read), IMRT_ERR_IO (the spec file cannot be
 * read), IMRT_ERR_PARSE (JSON syntax, unknown key,
 * wrong type, missing key), IMRT_ERR_RANGE (value out of range, grid too
 * big), IMRT_ERR_FORMAT (imported file unreadable), IMRT_ERR_BUDGET (an
 * analytic phantom over opt->max_memory, checked before rasterising),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_spec_load(const char *path, const imrt_spec_options *opt,
                           imrt_phantom **phantom, imrt_plan **plan);

/* As imrt_spec_load, and also return per-structure volumes with the
 * discretisation error of analytic solids (info may be NULL). */
imrt_status imrt_spec_load_ex(const char *path, const imrt_spec_options *opt,
                              imrt_phantom **phantom, imrt_plan **plan,
                              imrt_spec_info **info);

/* Parse a spec held in memory (`len` bytes, need not be NUL-terminated).
 * `label` names the text in messages (e.g. a file name); `base_dir`
 * resolves relative imports (NULL: the current folder). Same statuses. */
imrt_status imrt_spec_parse(const char *text, size_t len, const char *label,
                            const char *base_dir, const imrt_spec_options *opt,
                            imrt_phantom **phantom, imrt_plan **plan,
                            imrt_spec_info **info);

/* Free an info block; accepts NULL, clears *info. */
void imrt_spec_info_destroy(imrt_spec_info **info);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_SPEC_H */
