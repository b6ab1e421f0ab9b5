/*
 * tests/test_dij_util.h - small hand-made and random dose-influence
 * matrices for the spmv, objective and optimiser tests: a seeded generator,
 * CSR assembly from a dense matrix, and the matching free.
 */
#ifndef IMRT_TEST_DIJ_UTIL_H
#define IMRT_TEST_DIJ_UTIL_H

#include "imrt/alloc.h"
#include "imrt/dij.h"
#include "imrt/grid.h"

#include <stdint.h>
#include <string.h>

/* splitmix64: a seeded, platform-independent generator. */
static inline uint64_t tdu_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double tdu_uniform(uint64_t *s) { return (double)(tdu_next(s) >> 11) * 0x1.0p-53; }

static inline void tdu_free(imrt_dij *D)
{
    imrt_free(D->rowptr);
    imrt_free(D->col);
    imrt_free(D->val);
    imrt_free(D->voxel);
    imrt_free(D->beam_start);
    imrt_free(D->bixel_uv);
    memset(D, 0, sizeof *D);
}

/* Shell of a dij with nrows rows on a grid of nx x ny x nz voxels (the rows
 * are voxels 0..nrows-1 unless the caller rewrites voxel[]), one beam. */
static inline int tdu_alloc(imrt_dij *D, int64_t nrows, int32_t ncols, int64_t nnz, int nx,
                            int ny, int nz)
{
    memset(D, 0, sizeof *D);
    const double o[3] = {0, 0, 0};
    if (imrt_grid_init(&D->grid, nx, ny, nz, 2.5, 2.5, 2.5, o) != IMRT_OK)
        return -1;
    D->nrows = nrows;
    D->ncols = ncols;
    D->nnz = nnz;
    D->rowptr = imrt_calloc((size_t)nrows + 1, sizeof *D->rowptr);
    D->col = imrt_calloc(nnz > 0 ? (size_t)nnz : 1, sizeof *D->col);
    D->val = imrt_calloc(nnz > 0 ? (size_t)nnz : 1, sizeof *D->val);
    D->voxel = imrt_calloc((size_t)nrows, sizeof *D->voxel);
    D->nbeams = 1;
    D->beam_start = imrt_calloc(2, sizeof *D->beam_start);
    if (!D->rowptr || !D->col || !D->val || !D->voxel || !D->beam_start) {
        tdu_free(D);
        return -1;
    }
    D->beam_start[1] = ncols;
    D->beamlet_mm = 5.0;
    for (int64_t r = 0; r < nrows; r++)
        D->voxel[r] = r;
    return 0;
}

/* Random sparse dij: each row has a random number of entries (about
 * density * ncols, some rows empty when allow_empty), values uniform in
 * [lo, lo + span). Columns increase within a row. */
static inline int tdu_random(imrt_dij *D, int64_t nrows, int32_t ncols, double density,
                             double lo, double span, int allow_empty, uint64_t seed)
{
    uint64_t s = seed;
    /* first pass: row lengths */
    int64_t *len = imrt_calloc((size_t)nrows, sizeof *len);
    if (!len)
        return -1;
    int64_t nnz = 0;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t n = 0;
        for (int32_t j = 0; j < ncols; j++)
            n += tdu_uniform(&s) < density;
        if (n == 0 && !allow_empty)
            n = 1;
        len[r] = n;
        nnz += n;
    }
    int nx = 16, ny = 16, nz = (int)((nrows + 255) / 256);
    if (tdu_alloc(D, nrows, ncols, nnz, nx, ny, nz) != 0) {
        imrt_free(len);
        return -1;
    }
    int64_t k = 0;
    for (int64_t r = 0; r < nrows; r++) {
        D->rowptr[r] = k;
        /* choose len[r] distinct columns in increasing order (selection sampling) */
        int64_t need = len[r];
        for (int32_t j = 0; j < ncols && need > 0; j++) {
            if (tdu_uniform(&s) * (double)(ncols - j) < (double)need) {
                D->col[k] = j;
                D->val[k] = (float)(lo + span * tdu_uniform(&s));
                k++;
                need--;
            }
        }
    }
    D->rowptr[nrows] = k;
    imrt_free(len);
    return 0;
}

/* CSR from a dense row-major m x n matrix (entries <= 0 are not stored). */
static inline int tdu_from_dense(imrt_dij *D, int64_t m, int32_t n, const double *A)
{
    int64_t nnz = 0;
    for (int64_t i = 0; i < m * n; i++)
        nnz += A[i] > 0.0;
    int nz = (int)((m + 255) / 256);
    if (tdu_alloc(D, m, n, nnz, 16, 16, nz) != 0)
        return -1;
    int64_t k = 0;
    for (int64_t r = 0; r < m; r++) {
        D->rowptr[r] = k;
        for (int32_t j = 0; j < n; j++)
            if (A[r * n + j] > 0.0) {
                D->col[k] = j;
                D->val[k++] = (float)A[r * n + j];
            }
    }
    D->rowptr[m] = k;
    return 0;
}

#endif /* IMRT_TEST_DIJ_UTIL_H */
