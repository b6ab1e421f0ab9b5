/*
 * engine/spmv_ref.c - reference kernels of the dij products: serial, one
 * accumulator per row, loops that read like the formulas. The optimised
 * kernels are tested against these.
 */
#include "spmv_impl.h"

#include <string.h>

void imrt_spmv_csr_matvec_ref(const imrt_dij *D, const double *restrict x, double *restrict d,
                              imrt_spmv_ws *ws)
{
    (void)ws;
    for (int64_t r = 0; r < D->nrows; r++) {
        double s = 0.0;
        for (int64_t k = D->rowptr[r]; k < D->rowptr[r + 1]; k++)
            s += (double)D->val[k] * x[D->col[k]];
        d[r] = s;
    }
}

void imrt_spmv_csr_rmatvec_ref(const imrt_dij *D, const double *restrict w, double *restrict g,
                               imrt_spmv_ws *ws)
{
    (void)ws;
    memset(g, 0, (size_t)imrt_dij_width(D) * sizeof *g);
    for (int64_t r = 0; r < D->nrows; r++)
        for (int64_t k = D->rowptr[r]; k < D->rowptr[r + 1]; k++)
            g[D->col[k]] += (double)D->val[k] * w[r];
}

void imrt_spmv_csr_rows_ref(const imrt_dij *D, int64_t n, const int64_t *restrict rows,
                            const double *restrict w, double *restrict g, imrt_spmv_ws *ws)
{
    (void)ws;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows[i];
        for (int64_t k = D->rowptr[r]; k < D->rowptr[r + 1]; k++)
            g[D->col[k]] += (double)D->val[k] * w[i];
    }
}

void imrt_spmv_csr_fused_ref(const imrt_dij *D, const double *restrict x,
                             const imrt_voxel_program *p, double *restrict d, double *restrict g,
                             imrt_spmv_ws *ws)
{
    (void)ws;
    const size_t ncols = (size_t)imrt_dij_width(D);
    memset(g, 0, (size_t)p->nchannels * ncols * sizeof *g);
    for (int64_t r = 0; r < D->nrows; r++) {
        const int c = p->row_class[r];
        if (c == 0)
            continue;
        double s = 0.0;
        for (int64_t k = D->rowptr[r]; k < D->rowptr[r + 1]; k++)
            s += (double)D->val[k] * x[D->col[k]];
        d[r] = s;
        for (int32_t t = p->class_start[c]; t < p->class_start[c + 1]; t++) {
            const double deriv = imrt_term_eval(&p->term[t], s);
            double *gk = g + (size_t)p->term[t].channel * ncols;
            for (int64_t k = D->rowptr[r]; k < D->rowptr[r + 1]; k++)
                gk[D->col[k]] += (double)D->val[k] * deriv;
        }
    }
}
