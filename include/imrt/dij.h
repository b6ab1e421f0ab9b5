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

/* Scatter map of one beam. The engine's scatter term (the broad Gaussian of
 * spec/physics.md section 5) is smooth on the scale of a beamlet, so the dij
 * does not store it per beamlet: it stores it on a lattice of "map
 * columns" that follow the beamlet columns. Node (p, q, k) of beam b holds
 *     M(p, q, k) = sum_j x_j P(u0 + p h - u_j; s_k) P(v0 + q h - v_j; s_k)
 * over the beam's beamlets j (centres u_j, v_j, pitch w = beamlet_mm, P the
 * beamlet-integrated Gaussian of physics.md), s_k = s0 exp(k ln_ratio). A
 * voxel's scatter dose from the beam is N T (SAD/t)^2 a(z) times M
 * interpolated trilinearly at its projection (u, v) and ln sigma_s(z): eight
 * entries, whatever the fluence. Node (p, q, k) is column
 * first + p + np (q + nq k). */
typedef struct {
    int32_t first;        /* first map column of the beam (>= the dij's ncols) */
    int32_t np, nq, nk;   /* nodes along u and v (>= 2), sigma levels (>= 2) */
    double u0, v0, h;     /* node (0, 0) at the isocentre plane, and the pitch, mm */
    double s0, ln_ratio;  /* sigma of level 0 (mm) and ln(s_{k+1} / s_k) > 0 */
    double cutoff;        /* lateral cut-off (mm, isocentre plane; 0 = none): the sum
                             above runs over the beamlets whose centre lies within it
                             of the node; the same for every beam of a dij, a whole
                             number of micrometres (the file holds it so) */
} imrt_dij_smap;

/* Limits on the maps of a dij (a file cannot ask for more): nodes per beam
 * and in all; the derived tables are held to the same total. */
#define IMRT_DIJ_MAX_MAP_NODES_BEAM ((int64_t)1 << 24)
#define IMRT_DIJ_MAX_MAP_NODES ((int64_t)1 << 26)

/* Tables derived from the maps (engine/scatter.c); private. */
typedef struct imrt_dij_scatter imrt_dij_scatter;

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
    int32_t nvirt;        /* map columns ncols .. ncols+nvirt-1 (0: none) */
    imrt_dij_smap *smap;  /* nbeams maps when nvirt > 0, else NULL */
    imrt_dij_scatter *scatter; /* derived tables when nvirt > 0 (imrt_dij_scatter_prepare) */
} imrt_dij;

/* Columns of the stored matrix: ncols beamlets plus nvirt map columns. The
 * kernels of imrt/spmv.h work on vectors of this length ("extended"). */
int32_t imrt_dij_width(const imrt_dij *d);

/* Extended weights: xe[0..ncols-1] = x, then every map node (above) for the
 * fluence x. xe has imrt_dij_width entries. Uses up to `threads` OpenMP
 * threads (< 1: OpenMP default); the result does not depend on them.
 * Errors: IMRT_ERR_ARG (NULL, maps not prepared), IMRT_ERR_NOMEM. */
imrt_status imrt_dij_expand(const imrt_dij *d, int threads, const double *x, double *xe);

/* The adjoint: g = ge[0..ncols-1] + (map part of ge) pulled back to the
 * beamlets, so that g . x = ge . xe for xe = expand(x). With squared = 1 the
 * map part is pulled back through the squared node weights (the diagonal
 * of the Gauss-Newton Hessian without the cross terms between nodes). g may
 * be ge (in place). Errors: as imrt_dij_expand. */
imrt_status imrt_dij_contract(const imrt_dij *d, int threads, const double *ge, double *g,
                              int squared);

/* Derive the tables of d->smap (called by the build and the loader; with
 * nvirt == 0 it does nothing). Errors: IMRT_ERR_FORMAT (maps that do not
 * fit the columns or the beams), IMRT_ERR_NOMEM. */
imrt_status imrt_dij_scatter_prepare(imrt_dij *d);

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
 * nx*ny*nz entries, voxels that are not rows get 0; x has ncols weights
 * (the map columns are expanded from them). Plain serial loop with double
 * accumulation (the optimised kernels live elsewhere). Errors: IMRT_ERR_ARG
 * (NULL), IMRT_ERR_NOMEM. */
imrt_status imrt_dij_dose(const imrt_dij *d, const double *x, float *dose);

/* Save in imrt's dij format, version IMRT_DIJ_FORMAT_VERSION (the oldest
 * version that holds the dij, so that older readers keep working: 1 without
 * scatter maps, 2 with maps without a lateral cut-off, 3 with one):
 *   header (little-endian): magic "IMRTDIJ\0", u32 version, u32 header bytes
 *     (124 for version 1, 132 for versions 2 and 3), grid (3 x i32 dims, 3 x
 *     f64 spacing, 3 x f64 origin), i64 nrows, i32 ncols, i32 nbeams, i64
 *     nnz, f64 beamlet_mm, [version 2: i32 nvirt, i32 0; version 3: i32
 *     nvirt, i32 lateral cut-off in micrometres (1 .. 10^7)], u64 payload bytes,
 *     u32 CRC-32 of the payload, u32 CRC-32 of the header bytes before it;
 *   payload: beams (nbeams x {char[64] name, f64 gantry, f64 couch,
 *     f64 iso[3]}), beam_start (i32), bixel_uv (f32), [versions 2 and 3:
 *     scatter maps, nbeams x {i32 first, np, nq, nk, f64 u0, v0, h, s0, ln_ratio}],
 *     voxel (i64), rowptr (i64), col (i32), val (f32).
 * The file is written under a temporary name and renamed into place.
 * Errors: IMRT_ERR_ARG, IMRT_ERR_IO (cannot write; nothing is left behind). */
#define IMRT_DIJ_FORMAT_VERSION 3
imrt_status imrt_dij_save(const imrt_dij *d, const char *path);

/* Load a dij saved by imrt_dij_save (versions 1 and 2). Refuses, with IMRT_ERR_FORMAT and a
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
