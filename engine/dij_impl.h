/*
 * engine/dij_impl.h - private dij entry points (never installed): the build
 * with memory already held by the caller counted against the budget, and
 * the lateral cut-off as a dij holds it.
 */
#ifndef IMRT_DIJ_IMPL_H
#define IMRT_DIJ_IMPL_H

#include "imrt/dose.h"

#include <math.h>
#include <stdint.h>

/* The lateral cut-off as a dij holds it (imrt_dij_smap.cutoff): whole
 * micrometres, as the file stores it, up to IMRT_DIJ_CUTOFF_MAX_UM; 0 =
 * none. Options are rounded with it, so that a built and a loaded dij, and
 * a spec compared with a dij, agree exactly. */
#define IMRT_DIJ_CUTOFF_MAX_UM 10000000 /* 10 m: far beyond any field */
static inline double imrt_dij_cutoff_held(double mm)
{
    return mm > 0.0 ? round(mm * 1000.0) / 1000.0 : 0.0;
}

/* The lateral cut-off dij d was computed with (mm; 0 = none or no maps). */
static inline double imrt_dij_cutoff(const imrt_dij *d)
{
    return d->nvirt > 0 && d->smap ? d->smap[0].cutoff : 0.0;
}

/* imrt_dij_build, refused with IMRT_ERR_BUDGET (before allocating) when
 * held + the build's peak exceeds imrt_context_max_memory(ctx); held is
 * what the caller already holds (phantoms, doses, optimiser), in bytes. */
imrt_status imrt_dij_build_held(const imrt_context *ctx, uint64_t held, const imrt_phantom *ph,
                                const imrt_beamset *bs, const imrt_machine *m,
                                const imrt_dose_options *opt, imrt_dij **out);

/* Scatter maps (engine/scatter.c). */
void imrt_dij_scatter_free(imrt_dij_scatter **s);
/* IMRT_ERR_FORMAT when d->smap does not describe d->nvirt columns after
 * the beamlets with sane sizes; IMRT_OK when nvirt == 0. */
imrt_status imrt_dij_smap_check(const imrt_dij *d);
/* The eight trilinear entries (increasing columns) of a point at (u, v)
 * with scatter sigma `sigma` (mm, isocentre plane), each value multiplied
 * by scale; returns 8. */
int imrt_dij_smap_entries(const imrt_dij_smap *m, double u, double v, double sigma,
                          double scale, int32_t *col, double *val);

#endif /* IMRT_DIJ_IMPL_H */
