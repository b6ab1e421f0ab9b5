/*
 * engine/dij_impl.h - private dij entry points (never installed): the build
 * with memory already held by the caller counted against the budget.
 */
#ifndef IMRT_DIJ_IMPL_H
#define IMRT_DIJ_IMPL_H

#include "imrt/dose.h"

#include <stdint.h>

/* imrt_dij_build, refused with IMRT_ERR_BUDGET (before allocating) when
 * held + the build's peak exceeds imrt_context_max_memory(ctx); held is
 * what the caller already holds (phantoms, doses, optimiser), in bytes. */
imrt_status imrt_dij_build_held(const imrt_context *ctx, uint64_t held, const imrt_phantom *ph,
                                const imrt_beamset *bs, const imrt_machine *m,
                                const imrt_dose_options *opt, imrt_dij **out);

#endif /* IMRT_DIJ_IMPL_H */
