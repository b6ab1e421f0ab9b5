/*
 * engine/spmv.c - the spmv module's tables and doors: kernel tables
 * (reference, optimised, context choice), the workspace (row split and
 * private accumulators), the CSR check and the checked dose product.
 */
#include "spmv_impl.h"

#include "util_impl.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>

void imrt_spmv_kernels_reference(imrt_spmv_kernels *k)
{
    k->matvec = imrt_spmv_csr_matvec_ref;
    k->rmatvec = imrt_spmv_csr_rmatvec_ref;
    k->rows = imrt_spmv_csr_rows_ref;
    k->fused = imrt_spmv_csr_fused_ref;
    k->name_matvec = "spmv_csr_ref";
    k->name_rmatvec = "spmv_csr_t_ref";
    k->name_rows = "spmv_csr_rows_ref";
    k->name_fused = "spmv_csr_fused_ref";
}

void imrt_spmv_kernels_optimised(imrt_spmv_kernels *k)
{
    imrt_spmv_kernels_reference(k);
    k->matvec = imrt_spmv_csr_matvec_omp;
    k->rmatvec = imrt_spmv_csr_rmatvec_omp;
    k->rows = imrt_spmv_csr_rows_omp;
    k->fused = imrt_spmv_csr_fused_omp;
    k->name_matvec = "spmv_csr_omp";
    k->name_rmatvec = "spmv_csr_t_omp";
    k->name_rows = "spmv_csr_rows_omp";
    k->name_fused = "spmv_csr_fused_omp";
}

void imrt_spmv_kernels_select(imrt_spmv_kernels *k, const imrt_context *ctx)
{
    imrt_spmv_kernels_reference(k);
    if (!ctx || imrt_context_kernels(ctx) != IMRT_KERNELS_REFERENCE)
        imrt_spmv_kernels_optimised(k);
}

/* Entries of col[k0..k1) (a row, columns increasing) before its pair
 * section: the first entry with a column >= ncols (a map column) starts
 * it, and from there every two entries must be adjacent columns. Returns
 * that count, or -1 when the row has no such section (a lone map entry,
 * map entries not adjacent) or more than 65535 entries precede it. */
static int64_t row_lead(const int32_t *restrict col, int64_t k0, int64_t k1, int32_t ncols)
{
    int64_t lo = k0, hi = k1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (col[mid] < ncols)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo - k0 > UINT16_MAX || (k1 - lo) % 2 != 0)
        return -1;
    for (int64_t k = lo; k < k1; k += 2)
        if ((int64_t)col[k + 1] != (int64_t)col[k] + 1)
            return -1;
    return lo - k0;
}

/* The pair table of D (spmv_impl.h) in ws->lead, or none: every row's
 * entries from its first scatter-map column on must be pairs of adjacent
 * columns (as the dij build stores a voxel's map nodes p, p + 1), and the
 * entries before them at most 65535. One read of the column indices,
 * shared out among the threads. Errors: IMRT_ERR_NOMEM. */
static imrt_status pair_table(imrt_spmv_ws *ws, const imrt_dij *D)
{
    imrt_status status = IMRT_OK;
    if (D->nvirt <= 0 || D->nnz <= 0 || !D->col)
        return IMRT_OK;
    uint16_t *lead = NULL;
    IMRT_ALLOC(lead, (size_t)D->nrows);
    const int64_t *rowptr = D->rowptr;
    const int32_t *col = D->col;
    const int32_t ncols = D->ncols;
    int ok = 1;
#pragma omp parallel for num_threads(ws->threads) schedule(static) reduction(&& : ok)
    for (int64_t r = 0; r < D->nrows; r++) {
        const int64_t lead_r = row_lead(col, rowptr[r], rowptr[r + 1], ncols);
        lead[r] = lead_r >= 0 ? (uint16_t)lead_r : 0;
        ok = ok && lead_r >= 0;
    }
    if (ok) {
        ws->lead = lead;
        ws->paired = imrt_spmv_tie_to(D);
        lead = NULL;
    }
cleanup:
    imrt_free(lead);
    return status;
}

imrt_status imrt_spmv_ws_create(const imrt_dij *D, int threads, int nchannels,
                                const uint16_t *row_class, imrt_spmv_ws **out)
{
    imrt_status status = IMRT_OK;
    imrt_spmv_ws *ws = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_spmv_ws_create: out is NULL");
    *out = NULL;
    if (!D || !D->rowptr)
        return imrt_error(IMRT_ERR_ARG, "imrt_spmv_ws_create: dij is NULL or has no rows");
    if (threads < 1 || threads > 4096)
        return imrt_error(IMRT_ERR_ARG, "imrt_spmv_ws_create: threads = %d is outside 1..4096",
                          threads);
    if (nchannels < 1 || nchannels > 65535)
        return imrt_error(IMRT_ERR_ARG,
                          "imrt_spmv_ws_create: nchannels = %d is outside 1..65535", nchannels);
    IMRT_ALLOC(ws, 1);
    ws->threads = threads;
    ws->nchannels = nchannels;
    ws->ncols = imrt_dij_width(D);
    ws->stride = ((size_t)(imrt_dij_width(D) > 0 ? imrt_dij_width(D) : 1) + 7) / 8 * 8;
    ws->block = (size_t)nchannels * ws->stride;
    ws->nchunks = 1;
    if (threads > 1) {
        /* chunks * block * 2 <= nnz / IMRT_SPMV_ACC_SHARE (spmv_impl.h) */
        const double fit = (double)D->nnz /
                           (2.0 * IMRT_SPMV_ACC_SHARE * (double)threads * (double)ws->block);
        const int per = fit >= IMRT_SPMV_CHUNKS_PER_THREAD ? IMRT_SPMV_CHUNKS_PER_THREAD
                        : fit >= 1.0                       ? (int)fit
                                                           : 1;
        ws->nchunks = threads * per;
    }
    const int nchunks = ws->nchunks;
    IMRT_ALLOC(ws->split, nchunks + 1);
    IMRT_ALLOC(ws->acc, (size_t)nchunks * ws->block);

    /* Split rows into chunks of about equal (active) non-zeros. */
    int64_t total = 0;
    for (int64_t r = 0; r < D->nrows; r++)
        if (!row_class || row_class[r])
            total += D->rowptr[r + 1] - D->rowptr[r];
    int c = 1;
    int64_t seen = 0;
    ws->split[0] = 0;
    for (int64_t r = 0; r < D->nrows && c < nchunks; r++) {
        if (!row_class || row_class[r])
            seen += D->rowptr[r + 1] - D->rowptr[r];
        while (c < nchunks && seen * (int64_t)nchunks >= total * (int64_t)c && seen > 0)
            ws->split[c++] = r + 1;
    }
    while (c <= nchunks)
        ws->split[c++] = D->nrows;
    IMRT_TRY(pair_table(ws, D));
    *out = ws;
    ws = NULL;
cleanup:
    imrt_spmv_ws_destroy(&ws);
    return status;
}

void imrt_spmv_ws_destroy(imrt_spmv_ws **ws)
{
    if (!ws || !*ws)
        return;
    imrt_free((*ws)->split);
    imrt_free((*ws)->acc);
    imrt_free((*ws)->col16);
    imrt_free((*ws)->lead);
    imrt_free(*ws);
    *ws = NULL;
}

int imrt_spmv_ws_threads(const imrt_spmv_ws *ws) { return ws ? ws->threads : 0; }

imrt_status imrt_spmv_ws_pack(imrt_spmv_ws *ws, const imrt_dij *D)
{
    imrt_status status = IMRT_OK;
    uint16_t *c16 = NULL;
    if (!ws || !D || !D->rowptr || (D->nnz > 0 && !D->col))
        return imrt_error(IMRT_ERR_ARG, "imrt_spmv_ws_pack: NULL workspace or dij");
    if (imrt_dij_width(D) != ws->ncols)
        return imrt_error(IMRT_ERR_ARG,
                          "imrt_spmv_ws_pack: the workspace was made for %d columns, the dij "
                          "has %d",
                          (int)ws->ncols, (int)imrt_dij_width(D));
    if (imrt_dij_width(D) > IMRT_SPMV_PACK16_MAX_COLS)
        return imrt_error(IMRT_ERR_RANGE,
                          "imrt_spmv_ws_pack: the dij has %d columns; 16-bit indices allow "
                          "at most %d",
                          (int)imrt_dij_width(D), IMRT_SPMV_PACK16_MAX_COLS);
    if (imrt_spmv_ws_col16(ws, D))
        return IMRT_OK;
    const size_t n16 = (size_t)(D->nnz > 0 ? D->nnz : 1);
    c16 = imrt_malloc(n16 * sizeof *c16);
    if (!c16)
        IMRT_FAIL(IMRT_ERR_NOMEM, "imrt_spmv_ws_pack: cannot allocate %.1f MiB of 16-bit indices",
                  (double)(n16 * sizeof *c16) / 1048576.0);
    imrt_advise_huge(c16, n16 * sizeof *c16);
    const int32_t *col = D->col;
    const int64_t nnz = D->nnz;
#pragma omp parallel for num_threads(ws->threads) schedule(static)
    for (int64_t k = 0; k < nnz; k++)
        c16[k] = (uint16_t)col[k];
    imrt_free(ws->col16);
    ws->col16 = c16;
    ws->packed = imrt_spmv_tie_to(D);
    c16 = NULL;
cleanup:
    imrt_free(c16);
    return status;
}

int imrt_spmv_ws_packed(const imrt_spmv_ws *ws, const imrt_dij *D)
{
    return imrt_spmv_ws_col16(ws, D) != NULL;
}

int imrt_spmv_ws_paired(const imrt_spmv_ws *ws, const imrt_dij *D)
{
    return imrt_spmv_ws_lead(ws, D) != NULL;
}

imrt_status imrt_spmv_check(const imrt_dij *D)
{
    if (!D)
        return imrt_error(IMRT_ERR_ARG, "dij is NULL");
    if (D->nrows < 1 || D->ncols < 1)
        return imrt_error(IMRT_ERR_ARG, "dij has nrows = %lld, ncols = %d (both must be >= 1)",
                          (long long)D->nrows, (int)D->ncols);
    if (!D->rowptr || (D->nnz > 0 && (!D->col || !D->val)))
        return imrt_error(IMRT_ERR_ARG, "dij has a NULL rowptr, col or val array");
    if (D->rowptr[0] != 0 || D->rowptr[D->nrows] != D->nnz)
        return imrt_error(IMRT_ERR_ARG,
                          "dij rowptr[0] = %lld and rowptr[nrows] = %lld "
                          "(must be 0 and nnz = %lld)",
                          (long long)D->rowptr[0], (long long)D->rowptr[D->nrows],
                          (long long)D->nnz);
    for (int64_t r = 0; r < D->nrows; r++)
        if (D->rowptr[r + 1] < D->rowptr[r])
            return imrt_error(IMRT_ERR_ARG, "dij rowptr decreases at row %lld", (long long)r);
    for (int64_t k = 0; k < D->nnz; k++) {
        if (D->col[k] < 0 || D->col[k] >= imrt_dij_width(D))
            return imrt_error(IMRT_ERR_ARG, "dij col[%lld] = %d is outside 0..%d", (long long)k,
                              (int)D->col[k], (int)imrt_dij_width(D) - 1);
        if (!(D->val[k] >= 0.0f) || !isfinite(D->val[k]))
            return imrt_error(IMRT_ERR_ARG, "dij val[%lld] = %g is not a finite dose >= 0",
                              (long long)k, (double)D->val[k]);
    }
    return IMRT_OK;
}

imrt_status imrt_spmv_dose(const imrt_context *ctx, const imrt_dij *D, const double *x, double *d)
{
    imrt_status status = IMRT_OK;
    imrt_spmv_ws *ws = NULL;
    if (!D || !x || !d)
        return imrt_error(IMRT_ERR_ARG, "imrt_spmv_dose: NULL dij, weights or dose array");
    double *xe = NULL;
    imrt_spmv_kernels k;
    imrt_spmv_kernels_select(&k, ctx);
    IMRT_TRY(imrt_spmv_ws_create(D, imrt_context_threads(ctx), 1, NULL, &ws));
    IMRT_ALLOC(xe, IMRT_MAX(imrt_dij_width(D), 1));
    IMRT_TRY(imrt_dij_expand(D, imrt_context_threads(ctx), x, xe));
    k.matvec(D, xe, d, ws);
cleanup:
    imrt_free(xe);
    imrt_spmv_ws_destroy(&ws);
    return status;
}
