/*
 * bench/synth.h - a generated dose-influence matrix with the shape of the
 * TG-119 C-shape plan (same grid, body, structures, nine beams, 5 mm
 * beamlets, 20 mm coupling window), for kernel benchmarks that must not
 * depend on the dose engine (--synthetic) and for the kernels' stress
 * cases. Values are a separable Gaussian beamlet profile times an
 * exponential depth dose: realistic sparsity and column pattern, not
 * physics.
 */
#ifndef IMRT_BENCH_SYNTH_H
#define IMRT_BENCH_SYNTH_H

#include "imrt/dij.h"
#include "imrt/phantom.h"

/* Build the dij (rows = BODY voxels) and its dose phantom (PTV, Core, BODY)
 * on a grid of `spacing_mm` (free with imrt_dij_destroy and
 * imrt_phantom_destroy). Exits the program on allocation failure. */
void synth_tg119(double spacing_mm, imrt_dij **dij, imrt_phantom **dose_phantom);

#endif /* IMRT_BENCH_SYNTH_H */
