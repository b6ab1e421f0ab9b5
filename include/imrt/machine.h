/*
 * imrt/machine.h - the treatment-machine description of the finite-size
 * pencil-beam (FSPB) model (spec/physics.md section 5): a generic 6 MV
 * photon beam.
 *
 * Dose per unit weight of a beamlet of pitch w at a point with radiological
 * depth z (water-equivalent mm), distance t from the source along the
 * central axis and BEV offsets (dx, dy) from the beamlet centre (mm, at the
 * isocentre plane):
 *   D = N * T(z) * (SAD/t)^2 * L(dx, dy; z)
 *   T(z) = beta/(beta - mu) * (exp(-mu z) - exp(-beta z))
 *   L = (1 - a) P(dx; sp) P(dy; sp) + a P(dx; ss) P(dy; ss)
 *   P(x; s) = 1/2 [erf((x + w/2)/(sqrt2 s)) - erf((x - w/2)/(sqrt2 s))]
 * with the physical widths at depth z
 *   sigma_p(z) = sigma_p0 + sigma_p1 z,  sigma_s(z) = sigma_s0 + sigma_s1 z,
 * scaled to the isocentre plane by SAD/t (sp = sigma_p(z) SAD/t, etc.), and
 * the scatter fraction a(z) = a0 + a1 z, clamped to [0, IMRT_MACHINE_A_MAX].
 *
 * N normalises the machine: a 100 x 100 mm^2 open field on a water phantom
 * at SSD = SAD gives 1 Gy at the depth of maximum dose on the central axis
 * (imrt_machine_normalise computes it and that depth). A beamlet weight is
 * therefore a relative fluence in "Gy at d_max of a broad field".
 *
 * Units: mm, 1/mm, Gy. The struct is plain data; copy it freely.
 * Thread safety: functions are re-entrant.
 */
#ifndef IMRT_MACHINE_H
#define IMRT_MACHINE_H

#include "imrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_MACHINE_A_MAX 0.95     /* upper clamp of the scatter fraction a(z) */
#define IMRT_MACHINE_SIGMA_MIN 0.05 /* lower clamp of the widths, mm */

typedef struct {
    char name[64];          /* e.g. "generic-6MV" */
    double sad;             /* source-axis distance, mm (1000) */
    double mu;              /* attenuation coefficient, 1/mm */
    double beta;            /* build-up coefficient, 1/mm (> mu) */
    double sigma_p0;        /* primary width at the surface, mm */
    double sigma_p1;        /* its growth per mm of depth */
    double sigma_s0;        /* scatter width at the surface, mm */
    double sigma_s1;        /* its growth per mm of depth */
    double a0;              /* scatter fraction at the surface */
    double a1;              /* its growth per mm of depth, 1/mm */
    double scatter_radius;  /* default coupling half-width of the folded model (direct
                               dose with a cut-off, dijs built with scatter_maps = 0),
                               mm at the isocentre plane (see imrt/dose.h); 0 = none.
                               Dijs with scatter maps use IMRT_PRIMARY_WINDOW_MM */
    /* Derived by imrt_machine_normalise (not free parameters): */
    double norm;            /* N, Gy per unit weight */
    double dmax;            /* depth of maximum dose of the 100 x 100 mm^2 reference field, mm */
} imrt_machine;

/* The compiled-in generic 6 MV machine (fitted by build/progs/fit_machine,
 * see docs/physics-model.md), normalised. */
void imrt_machine_default(imrt_machine *m);

/* Check ranges: sad in [500, 2000], 0 < mu < beta <= 5, widths > 0 at the
 * surface and at 500 mm depth, a0 in [0, 0.95], a(500 mm) in [0, 0.95],
 * scatter_radius in [0, 1000] (0 = no radius). IMRT_ERR_RANGE names the
 * parameter and its range; IMRT_ERR_ARG for NULL. */
imrt_status imrt_machine_validate(const imrt_machine *m);

/* Validate, then compute m->dmax and m->norm from the model's central-axis
 * dose of the 100 x 100 mm^2 reference field at SSD = SAD (the same formula
 * the engine evaluates in water). Errors: as imrt_machine_validate,
 * IMRT_ERR_NUMERIC when the depth-dose has no maximum. */
imrt_status imrt_machine_normalise(imrt_machine *m);

/* Load a machine from a JSON file, e.g.
 *   {"name": "generic-6MV", "sad_mm": 1000, "mu_per_mm": 0.0045, "beta_per_mm": 0.3,
 *    "sigma_p_mm": [2.0, 0.01], "sigma_s_mm": [35, 0.1], "scatter_fraction": [0.1, 0.001],
 *    "scatter_radius_mm": 50}
 * Every key is required except "name" and "scatter_radius_mm" (default from
 * the generic machine); unknown keys are errors. The result is normalised.
 * Errors: IMRT_ERR_IO (cannot open), IMRT_ERR_PARSE (JSON syntax: file, line,
 * column; missing/unknown key; wrong type), IMRT_ERR_RANGE (validation). */
imrt_status imrt_machine_load(const char *path, imrt_machine *m);

/* Write a machine as JSON (the format imrt_machine_load reads).
 * Errors: IMRT_ERR_ARG, IMRT_ERR_IO. */
imrt_status imrt_machine_save(const char *path, const imrt_machine *m);

/* Model pieces (no checks; z in water-equivalent mm). */
double imrt_machine_depth_term(const imrt_machine *m, double z);   /* T(z) */
double imrt_machine_sigma_p(const imrt_machine *m, double z);      /* mm, physical */
double imrt_machine_sigma_s(const imrt_machine *m, double z);      /* mm, physical */
double imrt_machine_scatter_fraction(const imrt_machine *m, double z); /* a(z) */

/* Central-axis dose per unit weight of a square open field of side `field`
 * (mm at the isocentre) at depth z in water with the isocentre on the
 * surface (SSD = SAD), computed in closed form (the beamlet sum telescopes).
 * Uses m->norm (call imrt_machine_normalise first). */
double imrt_machine_cax_dose(const imrt_machine *m, double field, double z);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_MACHINE_H */
