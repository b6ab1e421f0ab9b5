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
 * Built by imrt_dij_build (imrt/dose.h); saved and loaded in imrt's own
 * binary format (below).
 *
 * Distributed runs (imrt/context.h, imrt_comm): a process's dij has every
 * row (voxel, rowptr) but entries only in its block row_begin..row_end-1;
 * the other rows are empty. A dij of a single process has row_begin = 0,
 * row_end = nrows.
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

/* Geometry of one beam, kept with the dij so that a saved dij says what it
 * was computed for. */
typedef struct {
    char name[64];        /* beam name */
    double gantry_deg;    /* IEC gantry angle, degrees */
    double couch_deg;     /* IEC couch angle, degrees */
    double iso[3];        /* isocentre, mm LPS */
} imrt_dij_beam;

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
    imrt_dij_beam *beams; /* nbeams entries, or NULL when unknown */
    int64_t row_begin;    /* first row whose entries this process holds (0) */
    int64_t row_end;      /* one past the last (nrows); only set by alloc/build/load */
} imrt_dij;

/* Split rows 0..nrows-1 into nparts contiguous blocks of about equal
 * non-zero count: block p is bounds[p] .. bounds[p+1]-1, bounds[0] = 0,
 * bounds[nparts] = nrows (nparts + 1 entries; blocks may be empty). rowptr
 * (nrows + 1 entries, non-decreasing from 0) gives the counts; with no
 * non-zeros the rows are split evenly. Block p starts at the first row
 * whose entries begin at or after p/nparts of the total. */
void imrt_dij_partition(const int64_t *rowptr, int64_t nrows, int nparts, int64_t *bounds);

/* Bytes held by a dij of this shape (arrays only). */
uint64_t imrt_dij_bytes(int64_t nrows, int32_t ncols, int64_t nnz, int nbeams);

/* Allocate a dij of the given shape with zeroed arrays (beams included) and
 * the grid copied; rowptr[0] = 0. Errors: IMRT_ERR_ARG, IMRT_ERR_RANGE
 * (negative sizes, nnz beyond int64 or more columns than INT32_MAX),
 * IMRT_ERR_NOMEM. */
imrt_status imrt_dij_alloc(const imrt_grid *grid, int64_t nrows, int32_t ncols, int64_t nnz,
                           int nbeams, imrt_dij **out);

/* Free a dij and its arrays; accepts NULL, clears *d. */
void imrt_dij_destroy(imrt_dij **d);

/* Check the structure: rowptr monotone from 0 to nnz, columns in range and
 * increasing within each row, voxels increasing and inside the grid,
 * beam_start monotone from 0 to ncols, values finite. IMRT_ERR_FORMAT names
 * the first inconsistency; IMRT_ERR_ARG for NULL. */
imrt_status imrt_dij_validate(const imrt_dij *d);

/* Reference product dose = D*x over the whole dose grid: dose has
 * nx*ny*nz entries, voxels that are not rows get 0; x has ncols weights.
 * Plain serial loop with double accumulation (the optimised kernels live
 * elsewhere). Errors: IMRT_ERR_ARG (NULL). */
imrt_status imrt_dij_dose(const imrt_dij *d, const double *x, float *dose);

/* Save in imrt's dij format, version IMRT_DIJ_FORMAT_VERSION:
 *   header (little-endian): magic "IMRTDIJ\0", u32 version, u32 header bytes,
 *     grid (3 x i32 dims, 3 x f64 spacing, 3 x f64 origin), i64 nrows,
 *     i32 ncols, i32 nbeams, i64 nnz, f64 beamlet_mm, u32 CRC-32 of the
 *     payload, u32 CRC-32 of the header bytes before it;
 *   payload: beams (nbeams x {char[64] name, f64 gantry, f64 couch,
 *     f64 iso[3]}), beam_start (i32), bixel_uv (f32), voxel (i64),
 *     rowptr (i64), col (i32), val (f32).
 * The file is written under a temporary name and renamed into place.
 * Errors: IMRT_ERR_ARG, IMRT_ERR_IO (cannot write; nothing is left behind). */
#define IMRT_DIJ_FORMAT_VERSION 1
imrt_status imrt_dij_save(const imrt_dij *d, const char *path);

/* Load a dij saved by imrt_dij_save. Refuses, with IMRT_ERR_FORMAT and a
 * message naming the problem, files that are not dij files, of another
 * version, truncated, with trailing bytes, with a checksum mismatch or with
 * inconsistent sizes or indices; never allocates more than the file size
 * justifies. max_bytes > 0 refuses (IMRT_ERR_BUDGET) a dij larger than that.
 * Errors: IMRT_ERR_ARG, IMRT_ERR_IO (cannot open/read), IMRT_ERR_FORMAT,
 * IMRT_ERR_BUDGET, IMRT_ERR_NOMEM. */
imrt_status imrt_dij_load(const char *path, uint64_t max_bytes, imrt_dij **out);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_DIJ_H */
