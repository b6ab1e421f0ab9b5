/*
 * imrt/beam.h - treatment-beam geometry (IEC 61217) and the beamlet grid.
 *
 * Frame: DICOM LPS patient coordinates, millimetres (see imrt/grid.h).
 * Source-axis distance SAD = 1000 mm. With couch angle 0 the source of a
 * beam with gantry angle g sits at  iso + SAD*(sin g, -cos g, 0):  g = 0 is
 * anterior, g = 90 deg the patient's left, g = 180 posterior (supine, head
 * first). A couch angle c turns the patient about the vertical (LPS y) axis
 * through the isocentre, counter-clockwise seen from above (IEC 61217); the
 * engine applies it as the inverse rotation of the beam. imrt_beam_frame()
 * is the one place where this convention is written down.
 *
 * Beam's-eye view (BEV): the plane through the isocentre perpendicular to
 * the central axis, with unit axes
 *   eu = IEC X_b (couch 0: (cos g, sin g, 0), the patient's left at g = 0),
 *   ev = IEC Y_b (couch 0: (0, 0, 1), towards the gantry = superior),
 * and (eu, ev, -dir) right-handed, dir being the central-axis direction from
 * the source to the isocentre. BEV coordinates (u, v) of a point p are the
 * coordinates of its projection from the source onto that plane:
 *   t = (p - src).dir,  u = (p - src).eu * SAD/t,  v = (p - src).ev * SAD/t.
 *
 * Beamlets (bixels) tile the BEV plane on a square grid of pitch w. Beam b
 * keeps a rectangular window of nu x nv grid cells; cell (iu, iv) has its
 * centre at (u0 + iu*w, v0 + iv*w) and holds the column index of its
 * beamlet, or -1 when the cell holds none. Target-shaped beams have their
 * centres at integer multiples of w from the isocentre; open fields are
 * centred on the central axis and tile the field exactly. Columns are
 * numbered beam by beam and, inside a beam, row by row (iv outer, iu inner),
 * so that walking a window of cells in that order gives increasing columns.
 *
 * Ownership: an imrt_beamset owns every array in it; imrt_beamset_destroy
 * frees them. The struct is plain data for the dose kernels to read;
 * programs should prefer the accessors. Thread safety: read-only use from
 * many threads is safe.
 */
#ifndef IMRT_BEAM_H
#define IMRT_BEAM_H

#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_SAD_MM 1000.0          /* source-axis distance of the generic machine, mm */
#define IMRT_BEAMLET_MIN_MM 0.5     /* accepted beamlet pitch range, mm */
#define IMRT_BEAMLET_MAX_MM 50.0
#define IMRT_FIELD_MAX_MM 400.0     /* largest open-field side at the isocentre, mm */
#define IMRT_MAX_BEAMS 360          /* beams per beam set */

/* One beam: geometry plus its window of beamlet cells. */
typedef struct {
    char name[IMRT_NAME_MAX]; /* from the beam definition, or "G<gantry>" */
    double gantry_deg;        /* IEC gantry angle, degrees */
    double couch_deg;         /* IEC couch angle, degrees */
    double sad;               /* source-axis distance, mm */
    double iso[3];            /* isocentre, mm LPS */
    double src[3];            /* source position, mm LPS */
    double dir[3];            /* unit central axis, source -> isocentre */
    double eu[3];             /* unit BEV u axis (IEC X_b) */
    double ev[3];             /* unit BEV v axis (IEC Y_b) */
    int open_field;           /* 1: open rectangular field */
    double field_mm[2];       /* open field size at the isocentre (u x v), mm */
    double u0, v0;            /* BEV centre of cell (0,0), mm at the isocentre plane */
    int nu, nv;               /* cells of the window along u and v */
    int32_t *cell;            /* nu*nv entries, index iu + nu*iv: column or -1; owned */
    int32_t first;            /* first column of this beam */
    int32_t count;            /* beamlets of this beam (columns first..first+count-1) */
} imrt_beam;

typedef struct {
    int nbeams;               /* number of beams */
    imrt_beam *beams;         /* nbeams entries; owned */
    double beamlet_mm;        /* pitch w at the isocentre plane, mm */
    int32_t nbeamlets;        /* columns, all beams */
    double *uv;               /* 2*nbeamlets: beamlet centre (u, v) at the isocentre plane, mm */
    int32_t *beam_of;         /* nbeamlets: beam of each beamlet */
    int32_t *cell_of;         /* 2*nbeamlets: (iu, iv) cell of each beamlet in its beam */
} imrt_beamset;

/* The beam-geometry convention (see the header comment): fill b->gantry_deg,
 * couch_deg, sad (= IMRT_SAD_MM), iso, src, dir, eu, ev for the given angles
 * and isocentre. Leaves the beamlet fields alone.
 * Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_RANGE (angle or isocentre not finite). */
imrt_status imrt_beam_frame(double gantry_deg, double couch_deg, const double iso[3],
                            imrt_beam *b);

/* Project point p (mm) onto the BEV plane of beam b: *u, *v in mm at the
 * isocentre plane, *t = distance from the source along the central axis
 * (mm). Returns 0 (and leaves u, v unset) when p is not in front of the
 * source (t <= 1 mm), 1 otherwise. */
int imrt_beam_project(const imrt_beam *b, const double p[3], double *u, double *v, double *t);

/* Build the beams and their beamlets.
 *   p        phantom (grid and structures); read only.
 *   plan     beamlet_mm (pitch w) and beamlet_margin_mm; NULL = 5 mm / 5 mm.
 *   beams    nbeams definitions (1..IMRT_MAX_BEAMS): gantry in [0, 360), couch
 *            in [-90, 90]; isocentre = beams[b].isocentre when has_isocentre,
 *            else the centroid of `target`.
 *   target   name of the target structure. Target-shaped beams keep each
 *            beamlet whose central ray passes within w/2 + margin of the
 *            target's projection (the union of its voxels' projections,
 *            taken as the projected voxel centres dilated by h = half the
 *            diagonal of the largest voxel face, scaled to the isocentre
 *            plane).
 *            May be NULL when every beam is an open field with its own
 *            isocentre. Open fields (open_field = 1) tile field_mm exactly:
 *            each side must be a whole multiple of w.
 * Errors: IMRT_ERR_ARG (NULL, unknown target, target needed but missing),
 * IMRT_ERR_RANGE (angles, pitch, margin, field size; target empty or behind a
 * source), IMRT_ERR_NOMEM. */
imrt_status imrt_beamset_create(const imrt_phantom *p, const imrt_plan *plan,
                                const imrt_beam_def *beams, int nbeams, const char *target,
                                imrt_beamset **out);

/* Free a beam set; accepts NULL, clears *bs. */
void imrt_beamset_destroy(imrt_beamset **bs);

/* Accessors (no checks beyond a NULL beam set giving 0 / NULL). */
int imrt_beamset_nbeams(const imrt_beamset *bs);
int32_t imrt_beamset_nbeamlets(const imrt_beamset *bs);
const imrt_beam *imrt_beamset_beam(const imrt_beamset *bs, int b);
/* Beamlet j: centre (u, v) at the isocentre plane (mm) and its beam. */
void imrt_beamset_beamlet_uv(const imrt_beamset *bs, int32_t j, double uv[2]);
int imrt_beamset_beamlet_beam(const imrt_beamset *bs, int32_t j);

/* Aperture of a 3D-conformal field: in_aperture[j] = 1 for each beamlet j
 * whose central ray passes through the BEV projection of `target` (as in
 * imrt_beamset_create) dilated by margin_mm (>= 0, at the isocentre plane),
 * 0 otherwise. in_aperture has
 * nbeamlets entries, caller-allocated.
 * Errors: IMRT_ERR_ARG (NULL, unknown target), IMRT_ERR_RANGE (margin,
 * empty target), IMRT_ERR_NOMEM. */
imrt_status imrt_beamset_aperture(const imrt_beamset *bs, const imrt_phantom *p,
                                  const char *target, double margin_mm, uint8_t *in_aperture);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_BEAM_H */
