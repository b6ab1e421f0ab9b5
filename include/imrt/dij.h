/*
 * imrt/dij.h - the dose-influence matrix: dose per unit beamlet weight,
 * stored as compressed sparse rows over dose-grid voxels.
 *
 * Rows are the dose-grid voxels that lie in at least one structure (the body
 * outline included), in increasing linear index; `voxel[r]` maps a row back
 * to its voxel. Columns are beamlets ordered beam by beam; beam b owns
 * columns beam_start[b] .. beam_start[b+1]-1. Values are Gy per unit weight
 * (float). Within a row, column indices increase.
 *
 * Ownership: an imrt_dij owns every array; free it with imrt_dij_destroy.
 * Thread safety: read-only use from many threads is safe.
 */
#ifndef IMRT_DIJ_H
#define IMRT_DIJ_H

#include "imrt/grid.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    imrt_grid grid;       /* dose grid the rows refer to */
    int64_t nrows;        /* rows = voxels in some structure */
    int32_t ncols;        /* columns = beamlets, all beams */
    int64_t nnz;          /* stored entries = rowptr[nrows] */
    int64_t *rowptr;      /* nrows + 1 offsets into col/val */
    int32_t *col;         /* nnz column indices, increasing within a row */
    float *val;           /* nnz doses, Gy per unit weight */
    int64_t *voxel;       /* nrows dose-grid linear indices, increasing */
    int nbeams;           /* number of beams */
    int32_t *beam_start;  /* nbeams + 1 first-column offsets */
    double beamlet_mm;    /* beamlet pitch at the isocentre, mm */
    float *bixel_uv;      /* 2*ncols: beamlet centre (u, v) in BEV axes at the isocentre, mm */
} imrt_dij;

/* Bytes held by a dij of this shape (arrays only). */
uint64_t imrt_dij_bytes(int64_t nrows, int32_t ncols, int64_t nnz, int nbeams);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_DIJ_H */
