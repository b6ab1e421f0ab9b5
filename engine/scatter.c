/*
 * engine/scatter.c - the scatter maps of the dose-influence matrix
 * (imrt/dij.h, imrt_dij_smap): the tables derived from a beam's map, the
 * expansion of beamlet weights into map nodes, its adjoint, and the eight
 * trilinear entries of a voxel.
 *
 * Per beam the beamlets sit on cells (iu, iv) of their bounding box (pitch
 * w), and P(x; s) separates along u and v, so a level k of the map is the
 * product Gv_k X Gu_k^T of two small tables and the fluence grid X: the
 * expansion costs O(levels (nq nv nu + nq np nu)) per beam, independent of
 * the dose grid.
 *
 * With a lateral cut-off R (imrt_dij_smap.cutoff) node (p, q) sums only the
 * beamlets within R of it, a disc that does not separate: for each row iv
 * of beamlets the disc leaves an interval [lo, hi] of columns iu (tabled
 * once per node and row), and prefix sums over iu of X gu give each
 * interval's sum in O(1); the adjoint scatters into difference arrays
 * instead. Same order of work as without the cut-off.
 */
#include "imrt/dij.h"

#include "dij_impl.h"
#include "util_impl.h"

#include <math.h>
#include <omp.h>
#include <string.h>

typedef struct {
    int nu, nv;     /* cells of the beam's beamlet bounding box */
    int32_t *cell;  /* per beamlet of the beam: iu + nu iv */
    double *gu;     /* nk x np x nu: P(u_p - u_iu; s_k) */
    double *gv;     /* nk x nq x nv */
    double *gu2;    /* squares of gu */
    double *gv2;    /* squares of gv */
    uint16_t *lo, *hi; /* with a cut-off: nq x nv x np, [(q nv + iv) np + p]: the columns
                          iu of row iv within the cut-off of node (p, q); lo > hi when none;
                          NULL without */
    double *guT, *gu2T; /* with a cut-off: gu and gu2 transposed, nk x nu x np */
} sbeam;

struct imrt_dij_scatter {
    int nbeams;
    sbeam *b;
    int64_t scratch; /* doubles of scratch per task */
};

void imrt_dij_scatter_free(imrt_dij_scatter **ps)
{
    if (!ps || !*ps)
        return;
    imrt_dij_scatter *s = *ps;
    if (s->b)
        for (int b = 0; b < s->nbeams; b++) {
            imrt_free(s->b[b].cell);
            imrt_free(s->b[b].gu);
            imrt_free(s->b[b].gv);
            imrt_free(s->b[b].gu2);
            imrt_free(s->b[b].gv2);
            imrt_free(s->b[b].lo);
            imrt_free(s->b[b].hi);
            imrt_free(s->b[b].guT);
            imrt_free(s->b[b].gu2T);
        }
    imrt_free(s->b);
    imrt_free(s);
    *ps = NULL;
}

int32_t imrt_dij_width(const imrt_dij *d)
{
    return d ? d->ncols + (d->nvirt > 0 ? d->nvirt : 0) : 0;
}

/* P(x; s) for a beamlet of width w: the Gaussian of sigma s integrated over
 * [x - w/2, x + w/2]. */
static double beamlet_gauss(double x, double w, double s)
{
    const double k = 1.0 / (sqrt(2.0) * s);
    return 0.5 * (erf((x + 0.5 * w) * k) - erf((x - 0.5 * w) * k));
}

imrt_status imrt_dij_smap_check(const imrt_dij *d)
{
    if (d->nvirt <= 0)
        return IMRT_OK;
    if (!d->smap || d->nbeams < 1)
        return imrt_error(IMRT_ERR_FORMAT, "dij has %d map columns but no scatter maps",
                          (int)d->nvirt);
    int64_t next = d->ncols;
    for (int b = 0; b < d->nbeams; b++) {
        const imrt_dij_smap *m = &d->smap[b];
        if (m->np < 2 || m->nq < 2 || m->nk < 2 || m->np > 4096 || m->nq > 4096 || m->nk > 256)
            return imrt_error(IMRT_ERR_FORMAT, "scatter map of beam %d has %d x %d nodes and %d "
                              "levels (allowed 2..4096 nodes, 2..256 levels)", b, (int)m->np,
                              (int)m->nq, (int)m->nk);
        if (m->first != next)
            return imrt_error(IMRT_ERR_FORMAT, "scatter map of beam %d starts at column %d, "
                              "expected %lld", b, (int)m->first, (long long)next);
        if (!(isfinite(m->u0) && isfinite(m->v0) && fabs(m->u0) < 1e6 && fabs(m->v0) < 1e6 &&
              m->h > 0.01 && m->h < 1000.0 && m->s0 > 0.01 && m->s0 < 1e4 &&
              m->ln_ratio > 1e-4 && m->ln_ratio < 2.0))
            return imrt_error(IMRT_ERR_FORMAT, "scatter map of beam %d has an invalid origin, "
                              "pitch or sigma levels (h %g mm, s0 %g mm, ln ratio %g)", b, m->h,
                              m->s0, m->ln_ratio);
        if (!(m->cutoff == d->smap[0].cutoff &&
              (m->cutoff == 0.0 ||
               (m->cutoff >= 1e-3 && m->cutoff <= IMRT_DIJ_CUTOFF_MAX_UM / 1000.0))))
            return imrt_error(IMRT_ERR_FORMAT, "scatter map of beam %d has a lateral cut-off of "
                              "%g mm (allowed: 0 or 0.001..%g, the same for every beam)", b,
                              m->cutoff, IMRT_DIJ_CUTOFF_MAX_UM / 1000.0);
        const int64_t nodes = (int64_t)m->np * m->nq * m->nk;
        if (nodes > IMRT_DIJ_MAX_MAP_NODES_BEAM)
            return imrt_error(IMRT_ERR_FORMAT, "scatter map of beam %d has %lld nodes (at most "
                              "%lld per beam)", b, (long long)nodes,
                              (long long)IMRT_DIJ_MAX_MAP_NODES_BEAM);
        next += nodes;
        if (next - d->ncols > IMRT_DIJ_MAX_MAP_NODES)
            return imrt_error(IMRT_ERR_FORMAT, "scatter maps hold more than %lld nodes",
                              (long long)IMRT_DIJ_MAX_MAP_NODES);
    }
    if (next != (int64_t)d->ncols + d->nvirt)
        return imrt_error(IMRT_ERR_FORMAT, "scatter maps hold %lld nodes, the dij says %d",
                          (long long)(next - d->ncols), (int)d->nvirt);
    return IMRT_OK;
}

imrt_status imrt_dij_scatter_prepare(imrt_dij *d)
{
    imrt_status status = IMRT_OK;
    imrt_dij_scatter *s = NULL;
    if (!d)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_scatter_prepare: NULL dij");
    imrt_dij_scatter_free(&d->scatter);
    if (d->nvirt <= 0)
        return IMRT_OK;
    IMRT_TRY(imrt_dij_smap_check(d));
    if (!(d->beamlet_mm > 0.0) || !d->bixel_uv || !d->beam_start)
        IMRT_FAIL(IMRT_ERR_FORMAT, "dij with scatter maps needs beamlet positions and a pitch");
    const double w = d->beamlet_mm;
    int64_t tables = 0;
    IMRT_ALLOC(s, 1);
    s->nbeams = d->nbeams;
    IMRT_ALLOC(s->b, d->nbeams);
    for (int b = 0; b < d->nbeams; b++) {
        const imrt_dij_smap *m = &d->smap[b];
        sbeam *B = &s->b[b];
        const int32_t j0 = d->beam_start[b], j1 = d->beam_start[b + 1];
        double umin = INFINITY, vmin = INFINITY, umax = -INFINITY, vmax = -INFINITY;
        for (int32_t j = j0; j < j1; j++) {
            const double u = d->bixel_uv[2 * (int64_t)j], v = d->bixel_uv[2 * (int64_t)j + 1];
            if (!(isfinite(u) && isfinite(v)))
                IMRT_FAIL(IMRT_ERR_FORMAT, "beamlet %d has a non-finite position", (int)j);
            umin = fmin(umin, u);
            umax = fmax(umax, u);
            vmin = fmin(vmin, v);
            vmax = fmax(vmax, v);
        }
        if (j1 > j0) {
            const double nu = floor((umax - umin) / w + 0.5) + 1, nv = floor((vmax - vmin) / w + 0.5) + 1;
            if (!(nu <= 4096 && nv <= 4096))
                IMRT_FAIL(IMRT_ERR_FORMAT, "beam %d's beamlets span %g x %g cells (at most 4096)",
                          b, nu, nv);
            B->nu = (int)nu;
            B->nv = (int)nv;
        }
        IMRT_ALLOC(B->cell, IMRT_MAX(j1 - j0, 1));
        for (int32_t j = j0; j < j1; j++) {
            const double u = d->bixel_uv[2 * (int64_t)j], v = d->bixel_uv[2 * (int64_t)j + 1];
            const int iu = (int)floor((u - umin) / w + 0.5), iv = (int)floor((v - vmin) / w + 0.5);
            B->cell[j - j0] = iu + B->nu * iv;
        }
        const int64_t nu_ = IMRT_MAX(B->nu, 1), nv_ = IMRT_MAX(B->nv, 1);
        tables += 2 * (int64_t)m->nk * (m->np * nu_ + m->nq * nv_);
        if (tables > IMRT_DIJ_MAX_MAP_NODES)
            IMRT_FAIL(IMRT_ERR_FORMAT, "scatter-map tables of %lld values (beam %d; at most %lld): "
                      "the maps do not fit the beamlets", (long long)tables, b,
                      (long long)IMRT_DIJ_MAX_MAP_NODES);
        IMRT_ALLOC(B->gu, (int64_t)m->nk * m->np * nu_);
        IMRT_ALLOC(B->gv, (int64_t)m->nk * m->nq * nv_);
        IMRT_ALLOC(B->gu2, (int64_t)m->nk * m->np * nu_);
        IMRT_ALLOC(B->gv2, (int64_t)m->nk * m->nq * nv_);
        for (int k = 0; k < m->nk; k++) {
            const double sk = m->s0 * exp(k * m->ln_ratio);
            for (int p = 0; p < m->np; p++)
                for (int iu = 0; iu < B->nu; iu++) {
                    const int64_t e = ((int64_t)k * m->np + p) * nu_ + iu;
                    B->gu[e] = beamlet_gauss(m->u0 + p * m->h - (umin + iu * w), w, sk);
                    B->gu2[e] = B->gu[e] * B->gu[e];
                }
            for (int q = 0; q < m->nq; q++)
                for (int iv = 0; iv < B->nv; iv++) {
                    const int64_t e = ((int64_t)k * m->nq + q) * nv_ + iv;
                    B->gv[e] = beamlet_gauss(m->v0 + q * m->h - (vmin + iv * w), w, sk);
                    B->gv2[e] = B->gv[e] * B->gv[e];
                }
        }
        int64_t need = nu_ * nv_ + (int64_t)IMRT_MAX(m->nq, 1) * nu_;
        if (m->cutoff > 0.0) {
            const int64_t cells = (int64_t)m->np * m->nq * nv_;
            tables += cells + 2 * (int64_t)m->nk * m->np * nu_;
            if (tables > IMRT_DIJ_MAX_MAP_NODES)
                IMRT_FAIL(IMRT_ERR_FORMAT, "scatter-map cut-off tables of %lld values (beam %d; "
                          "at most %lld)", (long long)tables, b,
                          (long long)IMRT_DIJ_MAX_MAP_NODES);
            IMRT_ALLOC(B->lo, cells);
            IMRT_ALLOC(B->hi, cells);
            IMRT_ALLOC(B->guT, (int64_t)m->nk * m->np * nu_);
            IMRT_ALLOC(B->gu2T, (int64_t)m->nk * m->np * nu_);
            for (int k = 0; k < m->nk; k++)
                for (int p = 0; p < m->np; p++)
                    for (int iu = 0; iu < B->nu; iu++) {
                        const int64_t e = ((int64_t)k * m->np + p) * nu_ + iu;
                        const int64_t t = ((int64_t)k * nu_ + iu) * m->np + p;
                        B->guT[t] = B->gu[e];
                        B->gu2T[t] = B->gu2[e];
                    }
            const double R = m->cutoff;
            for (int q = 0; q < m->nq; q++)
                for (int p = 0; p < m->np; p++)
                    for (int iv = 0; iv < nv_; iv++) {
                        const int64_t e = ((int64_t)q * nv_ + iv) * m->np + p;
                        const double dv = m->v0 + q * m->h - (vmin + iv * w);
                        const double up = m->u0 + p * m->h - umin;
                        double lo = 1.0, hi = 0.0;
                        if (B->nu > 0 && dv * dv <= R * R) {
                            const double rho = sqrt(R * R - dv * dv);
                            lo = fmax(ceil((up - rho) / w), 0.0);
                            hi = fmin(floor((up + rho) / w), (double)(B->nu - 1));
                        }
                        if (!(lo <= hi)) {
                            lo = 1.0;
                            hi = 0.0;
                        }
                        B->lo[e] = (uint16_t)lo;
                        B->hi[e] = (uint16_t)hi;
                    }
            /* expand: X and the prefix sums Ps[iv][0..nu][p]; contract: X, the
             * difference arrays and the running sums of one row */
            need = IMRT_MAX(need, nu_ * nv_ + nv_ * (int64_t)m->np * (nu_ + 1));
            need = IMRT_MAX(need, nu_ * nv_ + (nu_ + 2) * (int64_t)m->np);
        }
        s->scratch = IMRT_MAX(s->scratch, need);
    }
    d->scatter = s;
    s = NULL;
cleanup:
    imrt_dij_scatter_free(&s);
    return status;
}

/* The common start of expand and contract: checks, the beamlet part copied
 * (in -> out), and the tables, or NULL when nothing is left to do (*st:
 * IMRT_OK, or the error). */
static const imrt_dij_scatter *scatter_begin(const imrt_dij *d, const double *in, double *out,
                                             const char *fn, imrt_status *st)
{
    *st = IMRT_OK;
    if (!d || !in || !out) {
        *st = imrt_error(IMRT_ERR_ARG, "%s: NULL argument", fn);
        return NULL;
    }
    if (out != in)
        memmove(out, in, (size_t)d->ncols * sizeof *out);
    if (d->nvirt <= 0)
        return NULL;
    if (!d->scatter)
        *st = imrt_error(IMRT_ERR_ARG, "%s: scatter maps not prepared", fn);
    return d->scatter;
}

/* Scratch for a team working on ntask tasks: *nt threads (at most the
 * tasks) of s->scratch doubles each; NULL when out of memory. */
static double *scatter_scratch(const imrt_dij_scatter *s, int threads, int ntask, int *nt)
{
    *nt = IMRT_MAX(1, IMRT_MIN(threads > 0 ? threads : omp_get_max_threads(), ntask));
    return imrt_malloc((size_t)*nt * (size_t)s->scratch * sizeof(double));
}

/* One level of a beam's map with the lateral cut-off: M[q][p] = sum_iv
 * gv[q][iv] sum_{iu = lo..hi} gu[p][iu] X[iv][iu], the inner sums from
 * prefix sums Ps[iv][iu][p] (iu = 0..nu). Loops run over p innermost, so
 * that the nodes of a row are independent chains (guT = gu transposed). */
static void expand_cut(const imrt_dij_smap *m, const sbeam *B, const double *guT,
                       const double *gv, const double *X, double *Ps, double *out)
{
    const int nu = B->nu, nv = B->nv, np = m->np;
    const int64_t row = (int64_t)(nu + 1) * np;
    for (int iv = 0; iv < nv; iv++) {
        const double *Xr = X + (int64_t)iv * nu;
        double *P = Ps + iv * row;
        for (int p = 0; p < np; p++)
            P[p] = 0.0;
        for (int iu = 0; iu < nu; iu++) {
            const double xv = Xr[iu], *g = guT + (int64_t)iu * np;
            const double *prev = P + (int64_t)iu * np;
            double *cur = P + (int64_t)(iu + 1) * np;
            for (int p = 0; p < np; p++)
                cur[p] = prev[p] + g[p] * xv;
        }
    }
    for (int q = 0; q < m->nq; q++) {
        double *Mq = out + (int64_t)q * np;
        for (int p = 0; p < np; p++)
            Mq[p] = 0.0;
        for (int iv = 0; iv < nv; iv++) {
            const double c = gv[(int64_t)q * nv + iv];
            const int64_t e = ((int64_t)q * nv + iv) * np;
            const double *P = Ps + iv * row;
            for (int p = 0; p < np; p++) {
                const int lo = B->lo[e + p], hi = B->hi[e + p];
                if (lo <= hi)
                    Mq[p] += c * (P[(int64_t)(hi + 1) * np + p] - P[(int64_t)lo * np + p]);
            }
        }
    }
}

/* The adjoint of expand_cut for one level, added to X[iv][iu]: per row iv
 * the nodes' E[q][p] gv[q][iv] go into difference arrays Dd[iu][p] (iu =
 * 0..nu), whose running sums over iu, weighted by gu[p][iu] and summed over
 * p, are added to the row. Scratch Dd: (nu + 2) np doubles. */
static void contract_cut(const imrt_dij_smap *m, const sbeam *B, const double *guT,
                         const double *gv, const double *E, double *Dd, double *X)
{
    const int nu = B->nu, nv = B->nv, np = m->np;
    double *run = Dd + (int64_t)(nu + 1) * np;
    for (int iv = 0; iv < nv; iv++) {
        memset(Dd, 0, (size_t)(nu + 1) * (size_t)np * sizeof *Dd);
        int any = 0;
        for (int q = 0; q < m->nq; q++) {
            const double c0 = gv[(int64_t)q * nv + iv];
            const int64_t e = ((int64_t)q * nv + iv) * np;
            const double *Eq = E + (int64_t)q * np;
            for (int p = 0; p < np; p++) {
                const int lo = B->lo[e + p], hi = B->hi[e + p];
                if (lo > hi)
                    continue;
                const double c = Eq[p] * c0;
                Dd[(int64_t)lo * np + p] += c;
                Dd[(int64_t)(hi + 1) * np + p] -= c;
                any = 1;
            }
        }
        if (!any)
            continue;
        double *Xr = X + (int64_t)iv * nu;
        for (int p = 0; p < np; p++)
            run[p] = 0.0;
        for (int iu = 0; iu < nu; iu++) {
            const double *D = Dd + (int64_t)iu * np, *g = guT + (int64_t)iu * np;
            double s = 0.0;
            for (int p = 0; p < np; p++) {
                run[p] += D[p];
                s += g[p] * run[p];
            }
            Xr[iu] += s;
        }
    }
}

imrt_status imrt_dij_expand(const imrt_dij *d, int threads, const double *x, double *xe)
{
    imrt_status st;
    const imrt_dij_scatter *s = scatter_begin(d, x, xe, "imrt_dij_expand", &st);
    if (!s)
        return st;
    int ntask = 0;
    for (int b = 0; b < d->nbeams; b++)
        ntask += d->smap[b].nk;
    int nt;
    double *scratch = scatter_scratch(s, threads, ntask, &nt);
    if (!scratch)
        return imrt_error(IMRT_ERR_NOMEM, "no memory for the scatter-map scratch");
#pragma omp parallel num_threads(nt)
    {
        double *X = scratch + (size_t)omp_get_thread_num() * (size_t)s->scratch;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntask; t++) {
            int b = 0, k = t;
            while (k >= d->smap[b].nk)
                k -= d->smap[b++].nk;
            const imrt_dij_smap *m = &d->smap[b];
            const sbeam *B = &s->b[b];
            const int nu = B->nu, nv = B->nv;
            double *out = xe + m->first + (int64_t)k * m->np * m->nq;
            if (nu < 1) {
                memset(out, 0, (size_t)m->np * (size_t)m->nq * sizeof *out);
                continue;
            }
            double *T = X + (int64_t)nu * nv;
            memset(X, 0, (size_t)nu * (size_t)nv * sizeof *X);
            const int32_t j0 = d->beam_start[b], j1 = d->beam_start[b + 1];
            for (int32_t j = j0; j < j1; j++)
                X[B->cell[j - j0]] = x[j];
            const double *gv = B->gv + (int64_t)k * m->nq * nv;
            const double *gu = B->gu + (int64_t)k * m->np * nu;
            if (B->lo) {
                expand_cut(m, B, B->guT + (int64_t)k * m->np * nu, gv, X, X + (int64_t)nu * nv,
                           out);
                continue;
            }
            /* T[q][iu] = sum_iv gv[k][q][iv] X[iv][iu] */
            for (int q = 0; q < m->nq; q++) {
                double *Tq = T + (int64_t)q * nu;
                for (int iu = 0; iu < nu; iu++)
                    Tq[iu] = 0.0;
                for (int iv = 0; iv < nv; iv++) {
                    const double c = gv[(int64_t)q * nv + iv];
                    const double *Xr = X + (int64_t)iv * nu;
                    for (int iu = 0; iu < nu; iu++)
                        Tq[iu] += c * Xr[iu];
                }
            }
            /* M[q][p] = sum_iu T[q][iu] gu[k][p][iu] */
            for (int q = 0; q < m->nq; q++) {
                const double *Tq = T + (int64_t)q * nu;
                double *Mq = out + (int64_t)q * m->np;
                for (int p = 0; p < m->np; p++) {
                    const double *gp = gu + (int64_t)p * nu;
                    double acc = 0.0;
                    for (int iu = 0; iu < nu; iu++)
                        acc += Tq[iu] * gp[iu];
                    Mq[p] = acc;
                }
            }
        }
    }
    imrt_free(scratch);
    return IMRT_OK;
}

imrt_status imrt_dij_contract(const imrt_dij *d, int threads, const double *ge, double *g,
                              int squared)
{
    imrt_status st;
    const imrt_dij_scatter *s = scatter_begin(d, ge, g, "imrt_dij_contract", &st);
    if (!s)
        return st;
    int nt;
    double *scratch = scatter_scratch(s, threads, d->nbeams, &nt);
    if (!scratch)
        return imrt_error(IMRT_ERR_NOMEM, "no memory for the scatter-map scratch");
#pragma omp parallel num_threads(nt)
    {
        double *X = scratch + (size_t)omp_get_thread_num() * (size_t)s->scratch;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->nbeams; b++) {
            const imrt_dij_smap *m = &d->smap[b];
            const sbeam *B = &s->b[b];
            const int nu = B->nu, nv = B->nv;
            const int32_t j0 = d->beam_start[b], j1 = d->beam_start[b + 1];
            if (nu < 1)
                continue;
            double *S = X + (int64_t)nu * nv; /* nq x nu */
            memset(X, 0, (size_t)nu * (size_t)nv * sizeof *X);
            for (int k = 0; k < m->nk; k++) {
                const double *gu = (squared ? B->gu2 : B->gu) + (int64_t)k * m->np * nu;
                const double *gv = (squared ? B->gv2 : B->gv) + (int64_t)k * m->nq * nv;
                const double *E = ge + m->first + (int64_t)k * m->np * m->nq;
                if (B->lo) {
                    contract_cut(m, B, (squared ? B->gu2T : B->guT) + (int64_t)k * m->np * nu, gv,
                                 E, S, X);
                    continue;
                }
                /* S[q][iu] = sum_p E[q][p] gu[p][iu] */
                for (int q = 0; q < m->nq; q++) {
                    double *Sq = S + (int64_t)q * nu;
                    for (int iu = 0; iu < nu; iu++)
                        Sq[iu] = 0.0;
                    const double *Eq = E + (int64_t)q * m->np;
                    for (int p = 0; p < m->np; p++) {
                        const double c = Eq[p];
                        const double *gp = gu + (int64_t)p * nu;
                        for (int iu = 0; iu < nu; iu++)
                            Sq[iu] += c * gp[iu];
                    }
                }
                /* X[iv][iu] += sum_q gv[q][iv] S[q][iu] */
                for (int q = 0; q < m->nq; q++) {
                    const double *Sq = S + (int64_t)q * nu;
                    const double *gq = gv + (int64_t)q * nv;
                    for (int iv = 0; iv < nv; iv++) {
                        const double c = gq[iv];
                        double *Xr = X + (int64_t)iv * nu;
                        for (int iu = 0; iu < nu; iu++)
                            Xr[iu] += c * Sq[iu];
                    }
                }
            }
            for (int32_t j = j0; j < j1; j++)
                g[j] += X[B->cell[j - j0]];
        }
    }
    imrt_free(scratch);
    return IMRT_OK;
}

int imrt_dij_smap_entries(const imrt_dij_smap *m, double u, double v, double sigma,
                          double scale, int32_t *col, double *val)
{
    double fp = (u - m->u0) / m->h, fq = (v - m->v0) / m->h;
    double fk = log(sigma / m->s0) / m->ln_ratio;
    int p = (int)floor(fp), q = (int)floor(fq), k = (int)floor(fk);
    p = p < 0 ? 0 : (p > m->np - 2 ? m->np - 2 : p);
    q = q < 0 ? 0 : (q > m->nq - 2 ? m->nq - 2 : q);
    k = k < 0 ? 0 : (k > m->nk - 2 ? m->nk - 2 : k);
    fp = fmin(fmax(fp - p, 0.0), 1.0);
    fq = fmin(fmax(fq - q, 0.0), 1.0);
    fk = fmin(fmax(fk - k, 0.0), 1.0);
    const int32_t base = m->first + p + m->np * (q + m->nq * k);
    int n = 0;
    for (int dk = 0; dk < 2; dk++)
        for (int dq = 0; dq < 2; dq++)
            for (int dp = 0; dp < 2; dp++) {
                col[n] = base + dp + m->np * (dq + m->nq * dk);
                val[n] = scale * (dp ? fp : 1.0 - fp) * (dq ? fq : 1.0 - fq) * (dk ? fk : 1.0 - fk);
                n++;
            }
    return n;
}
