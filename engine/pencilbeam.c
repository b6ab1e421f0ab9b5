/*
 * engine/pencilbeam.c - the finite-size pencil-beam dose: the tabulated row
 * kernel (separable lateral term, one erf per beamlet edge per axis and
 * component), kernel selection, per-beam tables, options, and the direct
 * dose (voxels, points) for given beamlet weights, plus the machine's beam
 * data computed from the engine's own open-field dose in water.
 */
#include "dij_impl.h"
#include "pencilbeam_impl.h"

#include "imrt/raytrace.h"
#include "util_impl.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- tabulated row kernel ------------------------------------------------ */

imrt_status imrt_erf_table_create(imrt_erf_table **out)
{
    imrt_status status = IMRT_OK;
    imrt_erf_table *t = NULL;
    IMRT_ALLOC(t, 1);
    t->n = (int)(IMRT_ERF_XMAX * IMRT_ERF_STEPS);
    IMRT_ALLOC(t->f, t->n + 2);
    IMRT_ALLOC(t->d, t->n + 2);
    const double h = 1.0 / IMRT_ERF_STEPS;
    for (int i = 0; i < t->n + 2; i++) {
        const double x = i * h;
        t->f[i] = erf(x);
        t->d[i] = h * 2.0 / sqrt(IMRT_PI) * exp(-x * x);
    }
    *out = t;
    t = NULL;
cleanup:
    imrt_erf_table_free(&t);
    return status;
}

void imrt_erf_table_free(imrt_erf_table **pt)
{
    if (!pt || !*pt)
        return;
    imrt_free((*pt)->f);
    imrt_free((*pt)->d);
    imrt_free(*pt);
    *pt = NULL;
}

/* P of cells i0..i1 along one axis (cell i centred at o + i*w) for a point
 * at x: out[i - i0]. One erf per cell edge; E is scratch of i1-i0+2. */
static void edge_table(const imrt_erf_table *erf_t, double x, double o, double w, double sigma,
                       int i0, int i1, double *E, double *out)
{
    const double k = 1.0 / (sqrt(2.0) * sigma);
    const double e0 = x - (o + (i0 - 0.5) * w);
    for (int q = 0; q <= i1 - i0 + 1; q++)
        E[q] = imrt_erf_fast(erf_t, (e0 - q * w) * k);
    for (int q = 0; q <= i1 - i0; q++)
        out[q] = 0.5 * (E[q] - E[q + 1]);
}

/* Scatter table by Simpson's rule when sigma >= IMRT_SIMPSON_MIN_RATIO * w:
 * P = w/6 (phi(left edge) + 4 phi(centre) + phi(right edge)), the Gaussian
 * values on the half-cell progression from a two-multiplication
 * recurrence. Relative error (w/sigma)^4 / 2880 < 3e-7 (checked against
 * the erf reference by tests/test_pencilbeam.c). Falls back to the erf
 * table for narrow Gaussians or when the recurrence would under/overflow. */
#define IMRT_SIMPSON_MIN_RATIO 6.0
static void scatter_table(const imrt_erf_table *erf_t, double x, double o, double w, double sigma,
                          int i0, int i1, double *E, double *out)
{
    const double d = 0.5 * w, inv2s2 = 0.5 / (sigma * sigma);
    const double s0 = x - (o + (i0 - 0.5) * w);
    double g = exp(-s0 * s0 * inv2s2), rho = exp((2.0 * s0 * d - d * d) * inv2s2);
    const double c = exp(-2.0 * d * d * inv2s2);
    const double span = fabs(s0) + (i1 - i0 + 1) * w;
    if (sigma < IMRT_SIMPSON_MIN_RATIO * w || span * span * inv2s2 > 600.0 || !(g > 0) ||
        !isfinite(rho)) {
        edge_table(erf_t, x, o, w, sigma, i0, i1, E, out);
        return;
    }
    const double k = w / 6.0 / (sigma * sqrt(2.0 * IMRT_PI));
    for (int q = 0; q <= i1 - i0; q++) {
        const double g1 = g * rho;
        rho *= c;
        const double g2 = g1 * rho;
        rho *= c;
        out[q] = k * (g + 4.0 * g1 + g2);
        g = g2;
    }
}

/* Primary table over the box i0..i1: zero outside the primary range. */
static void primary_table(const imrt_erf_table *erf_t, double x, double o, double w, int n,
                          const imrt_fspb_point *P, int i0, int i1, double *E, double *out)
{
    for (int q = 0; q <= i1 - i0; q++)
        out[q] = 0.0;
    int p0, p1;
    if (!imrt_fspb_axis_range(x, o, w, n, P->rp, &p0, &p1))
        return;
    p0 = p0 > i0 ? p0 : i0;
    p1 = p1 < i1 ? p1 : i1;
    if (p0 > p1)
        return;
    edge_table(erf_t, x, o, w, P->sp, p0, p1, E, out + (p0 - i0));
}

/* Fold for any cell map: every present cell visited once. */
static void fold_general(const imrt_beam *b, int ju0, int ju1, int jv0, int jv1, double cp,
                         double cs, const double *ppx, const double *psx, const double *ppy,
                         const double *psy, double *acc)
{
    const int wn = ju1 - ju0 + 1;
    for (int iv = 0; iv < b->nv; iv++) {
        const int tv = iv < jv0 ? jv0 : (iv > jv1 ? jv1 : iv);
        double *ar = acc + (int64_t)(tv - jv0) * wn;
        const double rp = cp * ppy[iv], rs = cs * psy[iv];
        const int32_t *cell = b->cell + (int64_t)b->nu * iv;
        double left = 0.0, right = 0.0;
        for (int iu = 0; iu < ju0; iu++)
            if (cell[iu] >= 0)
                left += rp * ppx[iu] + rs * psx[iu];
        for (int iu = ju1 + 1; iu < b->nu; iu++)
            if (cell[iu] >= 0)
                right += rp * ppx[iu] + rs * psx[iu];
        ar[0] += left;
        ar[wn - 1] += right;
        for (int iu = ju0; iu <= ju1; iu++)
            if (cell[iu] >= 0)
                ar[iu - ju0] += rp * ppx[iu] + rs * psx[iu];
    }
}

/* Prefix sums S[0] = 0, S[k+1] = S[k] + t[k], k < n. */
static void prefix(const double *t, int n, double *S)
{
    S[0] = 0.0;
    for (int k = 0; k < n; k++)
        S[k + 1] = S[k] + t[k];
}

/* Sum of t over [a, b] intersected with the run [f, l], from prefix sums S. */
static inline double run_sum(const double *S, int a, int b, int f, int l)
{
    const int lo = a > f ? a : f, hi = b < l ? b : l;
    return hi >= lo ? S[hi + 1] - S[lo] : 0.0;
}

/* Fold for cell maps whose rows and columns are single runs: the sums over
 * the far cells come from prefix sums, O(nu + nv + window) per point. The
 * result equals fold_general's up to rounding. */
static void fold_contiguous(const imrt_fspb_beam *B, int ju0, int ju1, int jv0, int jv1,
                            double cp, double cs, const double *ppx, const double *psx,
                            const double *ppy, const double *psy, double *scratch, double *acc)
{
    const imrt_beam *b = B->beam;
    const int nu = b->nu, nv = b->nv, wn = ju1 - ju0 + 1;
    const int32_t *rs_ = B->span, *cs_ = B->span + 2 * nv;
    double *SXp = scratch, *SXs = SXp + nu + 1, *SYp = SXs + nu + 1, *SYs = SYp + nv + 1;
    prefix(ppx, nu, SXp);
    prefix(psx, nu, SXs);
    prefix(ppy, nv, SYp);
    prefix(psy, nv, SYs);
    /* Rows of the window band: own cells, plus left and right runs. */
    for (int iv = jv0; iv <= jv1; iv++) {
        double *ar = acc + (int64_t)(iv - jv0) * wn;
        const double rp = cp * ppy[iv], rs = cs * psy[iv];
        const int f = rs_[2 * iv], l = rs_[2 * iv + 1];
        const int32_t *cell = b->cell + (int64_t)nu * iv;
        for (int iu = ju0; iu <= ju1; iu++)
            if (cell[iu] >= 0)
                ar[iu - ju0] = rp * ppx[iu] + rs * psx[iu];
        if (ju0 > 0)
            ar[0] += rp * run_sum(SXp, 0, ju0 - 1, f, l) + rs * run_sum(SXs, 0, ju0 - 1, f, l);
        if (ju1 < nu - 1)
            ar[wn - 1] += rp * run_sum(SXp, ju1 + 1, nu - 1, f, l) +
                          rs * run_sum(SXs, ju1 + 1, nu - 1, f, l);
    }
    /* Rows above (side 0) and below (side 1) the band fold onto its edge rows. */
    for (int side = 0; side < 2; side++) {
        const int a = side ? jv1 + 1 : 0, z = side ? nv - 1 : jv0 - 1;
        if (a > z)
            continue;
        double *ar = acc + (int64_t)(side ? jv1 - jv0 : 0) * wn;
        /* window columns: column runs */
        for (int iu = ju0; iu <= ju1; iu++) {
            const int f = cs_[2 * iu], l = cs_[2 * iu + 1];
            ar[iu - ju0] += cp * ppx[iu] * run_sum(SYp, a, z, f, l) +
                            cs * psx[iu] * run_sum(SYs, a, z, f, l);
        }
        /* corners: row by row */
        double left = 0.0, right = 0.0;
        for (int iv = a; iv <= z; iv++) {
            const int f = rs_[2 * iv], l = rs_[2 * iv + 1];
            const double rp = cp * ppy[iv], rs = cs * psy[iv];
            if (ju0 > 0)
                left += rp * run_sum(SXp, 0, ju0 - 1, f, l) + rs * run_sum(SXs, 0, ju0 - 1, f, l);
            if (ju1 < nu - 1)
                right += rp * run_sum(SXp, ju1 + 1, nu - 1, f, l) +
                         rs * run_sum(SXs, ju1 + 1, nu - 1, f, l);
        }
        ar[0] += left;
        ar[wn - 1] += right;
    }
}

int64_t imrt_fspb_row_tab(const imrt_fspb_beam *B, const imrt_fspb_point *P, double *work,
                          int32_t *col, double *val)
{
    const imrt_beam *b = B->beam;
    const double w = B->w;
    int jv0, jv1, ju0, ju1;
    if (imrt_fspb_window(B, P->u, P->v, P->R, &ju0, &ju1, &jv0, &jv1) == 0)
        return 0;
    const double cp = P->pre * (1.0 - P->a), cs = P->pre * P->a;
    /* with a lateral cut-off the window holds every beamlet within it and
     * nothing beyond is kept */
    const int fold = isinf(P->rc) && (ju0 > 0 || jv0 > 0 || ju1 < b->nu - 1 || jv1 < b->nv - 1);
    /* Tables over the window, or over all cells when far cells are folded in. */
    const int tu0 = fold ? 0 : ju0, tu1 = fold ? b->nu - 1 : ju1;
    const int tv0 = fold ? 0 : jv0, tv1 = fold ? b->nv - 1 : jv1;
    const int nu = tu1 - tu0 + 1, nv = tv1 - tv0 + 1;
    double *psx = work, *ppx = psx + nu, *psy = ppx + nu, *ppy = psy + nv, *E = ppy + nv;
    const imrt_erf_table *et = B->erf;
    if (cs != 0.0) {
        scatter_table(et, P->u, b->u0, w, P->ss, tu0, tu1, E, psx);
        scatter_table(et, P->v, b->v0, w, P->ss, tv0, tv1, E, psy);
    } else {
        /* primary only (the dij's scatter is on its maps) */
        memset(psx, 0, (size_t)nu * sizeof *psx);
        memset(psy, 0, (size_t)nv * sizeof *psy);
    }
    primary_table(et, P->u, b->u0, w, b->nu, P, tu0, tu1, E, ppx);
    primary_table(et, P->v, b->v0, w, b->nv, P, tv0, tv1, E, ppy);
    int64_t n = 0;
    if (!fold) {
        for (int iv = jv0; iv <= jv1; iv++) {
            const double rp = cp * ppy[iv - tv0], rs = cs * psy[iv - tv0];
            const int32_t *cell = b->cell + (int64_t)b->nu * iv;
            for (int iu = ju0; iu <= ju1; iu++) {
                const int32_t c = cell[iu];
                if (c < 0 || !imrt_fspb_within(b, w, P, iu, iv))
                    continue;
                col[n] = c;
                val[n] = rp * ppx[iu - tu0] + rs * psx[iu - tu0];
                n++;
            }
        }
        return n;
    }
    /* Fold every cell outside the window onto the window cell nearest to it
     * (indices clamped to the window), so that the far scatter is kept. */
    const int wn = ju1 - ju0 + 1, wv = jv1 - jv0 + 1;
    double *acc = E + (b->nu > b->nv ? b->nu : b->nv) + 2;
    for (int q = 0; q < wn * wv; q++)
        acc[q] = 0.0;
    if (B->contiguous)
        fold_contiguous(B, ju0, ju1, jv0, jv1, cp, cs, ppx, psx, ppy, psy, acc + wn * wv, acc);
    else
        fold_general(b, ju0, ju1, jv0, jv1, cp, cs, ppx, psx, ppy, psy, acc);
    imrt_fspb_fold_absent(b, B->nearest, ju0, ju1, jv0, jv1, acc);
    for (int iv = jv0; iv <= jv1; iv++) {
        const int32_t *cell = b->cell + (int64_t)b->nu * iv;
        const double *ar = acc + (int64_t)(iv - jv0) * wn;
        for (int iu = ju0; iu <= ju1; iu++) {
            const int32_t c = cell[iu];
            if (c < 0)
                continue;
            col[n] = c;
            val[n] = ar[iu - ju0];
            n++;
        }
    }
    return n;
}

imrt_fspb_row_fn imrt_fspb_kernel(const imrt_context *ctx)
{
    if (ctx && imrt_context_kernels(ctx) == IMRT_KERNELS_REFERENCE)
        return imrt_fspb_row_ref;
    return imrt_fspb_row_tab;
}

/* ---- options and per-beam tables ------------------------------------------ */

void imrt_dose_options_default(imrt_dose_options *o)
{
    memset(o, 0, sizeof *o);
    o->cutoff = 1e-3;
    o->scatter_radius = 0.0;
    o->scatter_maps = 1;
}

void imrt_dose_options_from_plan(const imrt_plan *plan, imrt_dose_options *o)
{
    imrt_dose_options_default(o);
    if (plan) {
        o->cutoff = plan->cutoff;
        o->lateral_cutoff_mm = plan->lateral_cutoff_mm;
    }
}

void imrt_dose_options_exact(imrt_dose_options *o)
{
    memset(o, 0, sizeof *o);
    o->cutoff = 0.0;
    o->scatter_radius = INFINITY;
    o->scatter_maps = 0;
}

imrt_status imrt_fspb_resolve(const imrt_machine *m, const imrt_dose_options *opt,
                              imrt_fspb_cut *cut)
{
    imrt_dose_options o;
    if (opt)
        o = *opt;
    else
        imrt_dose_options_default(&o);
    if (!(o.cutoff >= 0 && o.cutoff < 0.5))
        return imrt_error(IMRT_ERR_RANGE, "dose cut-off %g is outside [0, 0.5)", o.cutoff);
    if (isnan(o.scatter_radius) || o.scatter_radius < 0)
        return imrt_error(IMRT_ERR_RANGE,
                          "scatter radius %g mm must be >= 0 (0 = machine default, inf = none)",
                          o.scatter_radius);
    if (!(o.map_pitch == 0.0 || (o.map_pitch >= 0.5 && o.map_pitch <= 100.0)))
        return imrt_error(IMRT_ERR_RANGE, "scatter-map pitch %g mm is outside [0.5, 100] (0 = "
                          "default)", o.map_pitch);
    if (!(o.map_ratio == 0.0 || (o.map_ratio > 1.001 && o.map_ratio <= 2.0)))
        return imrt_error(IMRT_ERR_RANGE, "scatter-map sigma ratio %g is outside (1.001, 2] (0 "
                          "= default)", o.map_ratio);
    cut->kp = o.cutoff > 0 ? sqrt(2.0 * log(1.0 / o.cutoff)) : HUGE_VAL;
    cut->maps = o.scatter_maps != 0 && !isinf(o.scatter_radius);
    double r = o.scatter_radius > 0 ? o.scatter_radius
               : cut->maps           ? IMRT_PRIMARY_WINDOW_MM
                                     : m->scatter_radius;
    cut->radius = r > 0 ? r : HUGE_VAL;
    cut->fold_radius = o.scatter_radius > 0 ? o.scatter_radius : m->scatter_radius;
    if (!(cut->fold_radius > 0))
        cut->fold_radius = HUGE_VAL;
    if (!(o.lateral_cutoff_mm == 0.0 || (o.lateral_cutoff_mm >= IMRT_LATERAL_CUTOFF_MIN_MM &&
                                          o.lateral_cutoff_mm <= IMRT_LATERAL_CUTOFF_MAX_MM)))
        return imrt_error(IMRT_ERR_RANGE, "lateral cut-off %g mm is outside [%g, %g] (0 = none)",
                          o.lateral_cutoff_mm, IMRT_LATERAL_CUTOFF_MIN_MM,
                          IMRT_LATERAL_CUTOFF_MAX_MM);
    cut->map_pitch = o.map_pitch;
    cut->map_ratio = o.map_ratio > 0 ? o.map_ratio : 1.1;
    cut->lateral = o.lateral_cutoff_mm > 0 ? imrt_dij_cutoff_held(o.lateral_cutoff_mm) : HUGE_VAL;
    return IMRT_OK;
}

void imrt_fspb_beams_free(imrt_fspb_beam **pB, int nbeams)
{
    if (!pB || !*pB)
        return;
    for (int b = 0; b < nbeams; b++) {
        imrt_free((*pB)[b].cum);
        imrt_free((*pB)[b].nearest);
        imrt_free((*pB)[b].span);
    }
    if (nbeams > 0) {
        imrt_erf_table *t = (imrt_erf_table *)(uintptr_t)(*pB)[0].erf;
        imrt_erf_table_free(&t);
    }
    imrt_free(*pB);
    *pB = NULL;
}

/* For every cell of a beam, the nearest present cell (squared index
 * distance, ties to the first in row-major order). Present cells map to
 * themselves. Brute force over the present cells of the few absent ones. */
static imrt_status nearest_map(const imrt_beam *b, int32_t **out)
{
    imrt_status status = IMRT_OK;
    int32_t *map = NULL, *present = NULL;
    const int64_t ncell = (int64_t)b->nu * b->nv;
    IMRT_ALLOC(map, ncell);
    IMRT_ALLOC(present, ncell);
    int64_t np = 0;
    for (int64_t c = 0; c < ncell; c++)
        if (b->cell[c] >= 0)
            present[np++] = (int32_t)c;
    for (int64_t c = 0; c < ncell; c++) {
        if (b->cell[c] >= 0) {
            map[c] = (int32_t)c;
            continue;
        }
        const int iu = (int)(c % b->nu), iv = (int)(c / b->nu);
        int64_t best = INT64_MAX;
        int32_t t = -1;
        for (int64_t q = 0; q < np; q++) {
            const int qu = present[q] % b->nu, qv = present[q] / b->nu;
            const int64_t d = (int64_t)(qu - iu) * (qu - iu) + (int64_t)(qv - iv) * (qv - iv);
            if (d < best) {
                best = d;
                t = present[q];
            }
        }
        map[c] = t;
    }
    *out = map;
    map = NULL;
cleanup:
    imrt_free(map);
    imrt_free(present);
    return status;
}

/* First and last present cell of every row and column; *contiguous = 1 when
 * each row and column holds a single run. */
static imrt_status spans(const imrt_beam *b, int32_t **out, int *contiguous)
{
    imrt_status status = IMRT_OK;
    int32_t *sp = NULL;
    const int nu = b->nu, nv = b->nv;
    IMRT_ALLOC(sp, 2 * (int64_t)nv + 2 * (int64_t)nu);
    int ok = 1;
    for (int iv = 0; iv < nv; iv++) {
        int f = nu, l = -1, runs = 0, prev = 0;
        for (int iu = 0; iu < nu; iu++) {
            const int p = b->cell[iu + (int64_t)nu * iv] >= 0;
            if (p) {
                f = iu < f ? iu : f;
                l = iu;
            }
            runs += p && !prev;
            prev = p;
        }
        sp[2 * iv] = f;
        sp[2 * iv + 1] = l;
        ok &= runs <= 1;
    }
    for (int iu = 0; iu < nu; iu++) {
        int f = nv, l = -1, runs = 0, prev = 0;
        for (int iv = 0; iv < nv; iv++) {
            const int p = b->cell[iu + (int64_t)nu * iv] >= 0;
            if (p) {
                f = iv < f ? iv : f;
                l = iv;
            }
            runs += p && !prev;
            prev = p;
        }
        sp[2 * nv + 2 * iu] = f;
        sp[2 * nv + 2 * iu + 1] = l;
        ok &= runs <= 1;
    }
    *contiguous = ok;
    *out = sp;
    sp = NULL;
cleanup:
    imrt_free(sp);
    return status;
}

imrt_status imrt_fspb_beams_create(const imrt_beamset *bs, imrt_fspb_beam **out)
{
    imrt_status status = IMRT_OK;
    imrt_fspb_beam *B = NULL;
    imrt_erf_table *et = NULL;
    IMRT_ALLOC(B, bs->nbeams);
    IMRT_TRY(imrt_erf_table_create(&et));
    for (int b = 0; b < bs->nbeams; b++)
        B[b].erf = et;
    et = NULL;
    for (int b = 0; b < bs->nbeams; b++) {
        const imrt_beam *bm = &bs->beams[b];
        B[b].beam = bm;
        B[b].w = bs->beamlet_mm;
        const int64_t s = bm->nu + 1;
        IMRT_ALLOC(B[b].cum, s * (bm->nv + 1));
        int32_t *cum = B[b].cum;
        for (int iv = 0; iv < bm->nv; iv++) {
            int32_t row = 0;
            for (int iu = 0; iu < bm->nu; iu++) {
                row += bm->cell[iu + (int64_t)bm->nu * iv] >= 0;
                cum[(iu + 1) + s * (iv + 1)] = cum[(iu + 1) + s * iv] + row;
            }
        }
        IMRT_TRY(nearest_map(bm, &B[b].nearest));
        IMRT_TRY(spans(bm, &B[b].span, &B[b].contiguous));
    }
    *out = B;
    B = NULL;
cleanup:
    imrt_fspb_beams_free(&B, bs->nbeams);
    return status;
}

/* ---- direct dose -------------------------------------------------------- */

/* Shared state of a direct-dose computation. */
typedef struct {
    const imrt_phantom *ph;
    const imrt_beamset *bs;
    imrt_machine m;
    imrt_fspb_cut cut;
    imrt_fspb_beam *B;
    imrt_fspb_row_fn kernel;
    int64_t work_size, max_cells;
    int threads;
    double *work;   /* threads * work_size */
    int32_t *col;   /* threads * max_cells */
    double *val;    /* threads * max_cells */
} direct_ctx;

static void direct_free(direct_ctx *d)
{
    imrt_fspb_beams_free(&d->B, d->bs ? d->bs->nbeams : 0);
    imrt_free(d->work);
    imrt_free(d->col);
    imrt_free(d->val);
}

static imrt_status direct_init(direct_ctx *d, const imrt_context *ctx, const imrt_phantom *ph,
                               const imrt_beamset *bs, const imrt_machine *m,
                               const imrt_dose_options *opt)
{
    imrt_status status = IMRT_OK;
    memset(d, 0, sizeof *d);
    d->ph = ph;
    d->bs = bs;
    if (m)
        d->m = *m;
    else
        imrt_machine_default(&d->m);
    IMRT_TRY(imrt_machine_normalise(&d->m));
    IMRT_TRY(imrt_fspb_resolve(&d->m, opt, &d->cut));
    /* direct dose has no maps: the whole dose on the beamlets, far scatter
     * folded; with a lateral cut-off, exactly the beamlets within it */
    d->cut.maps = 0;
    d->cut.radius = isinf(d->cut.lateral) ? d->cut.fold_radius : d->cut.lateral;
    IMRT_TRY(imrt_fspb_beams_create(bs, &d->B));
    d->kernel = imrt_fspb_kernel(ctx);
    d->threads = ctx ? imrt_context_threads(ctx) : omp_get_max_threads();
    for (int b = 0; b < bs->nbeams; b++) {
        d->work_size = IMRT_MAX(d->work_size, imrt_fspb_work_size(&bs->beams[b]));
        d->max_cells = IMRT_MAX(d->max_cells, (int64_t)bs->beams[b].nu * bs->beams[b].nv);
    }
    IMRT_ALLOC(d->work, d->work_size * d->threads);
    IMRT_ALLOC(d->col, d->max_cells * d->threads);
    IMRT_ALLOC(d->val, d->max_cells * d->threads);
cleanup:
    return status;
}

/* Dose at point c with the scratch of thread `tid`. */
static double direct_point(const direct_ctx *d, int tid, const double c[3],
                           const double *weights)
{
    double *work = d->work + d->work_size * tid;
    int32_t *col = d->col + d->max_cells * tid;
    double *val = d->val + d->max_cells * tid;
    double sum = 0.0;
    for (int b = 0; b < d->bs->nbeams; b++) {
        const imrt_beam *bm = &d->bs->beams[b];
        double u, v, scale;
        if (!imrt_fspb_geometry(bm, c, &u, &v, &scale))
            continue;
        const double z = imrt_raytrace_depth(&d->ph->grid, d->ph->density, bm->src, c);
        imrt_fspb_point P;
        imrt_fspb_physics(&d->m, &d->cut, d->bs->beamlet_mm, u, v, scale, z, &P);
        const int64_t n = d->kernel(&d->B[b], &P, work, col, val);
        if (weights)
            for (int64_t e = 0; e < n; e++)
                sum += weights[col[e]] * val[e];
        else
            for (int64_t e = 0; e < n; e++)
                sum += val[e];
    }
    return sum;
}

static imrt_status check_common(const imrt_phantom *ph, const imrt_beamset *bs,
                                const double *weights)
{
    if (!ph || !bs)
        return imrt_error(IMRT_ERR_ARG, "dose: NULL phantom or beam set");
    if (weights)
        for (int32_t j = 0; j < bs->nbeamlets; j++)
            if (!isfinite(weights[j]) || weights[j] < 0)
                return imrt_error(IMRT_ERR_RANGE,
                                  "beamlet weight %d = %g is not a finite value >= 0", j,
                                  weights[j]);
    return IMRT_OK;
}

imrt_status imrt_dose_compute(const imrt_context *ctx, const imrt_phantom *ph,
                              const imrt_beamset *bs, const imrt_machine *m,
                              const imrt_dose_options *opt, const double *weights,
                              const uint8_t *mask, float *dose)
{
    imrt_status status = IMRT_OK;
    direct_ctx d;
    memset(&d, 0, sizeof d);
    if (!dose)
        return imrt_error(IMRT_ERR_ARG, "imrt_dose_compute: dose is NULL");
    IMRT_TRY(check_common(ph, bs, weights));
    IMRT_TRY(direct_init(&d, ctx, ph, bs, m, opt));
    const imrt_grid *g = &ph->grid;
    const int64_t nvox = imrt_grid_nvox(g);
#pragma omp parallel num_threads(d.threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 64)
        for (int64_t v = 0; v < nvox; v++) {
            if (mask && !mask[v]) {
                dose[v] = 0.0f;
                continue;
            }
            int i, j, k;
            double c[3];
            imrt_grid_ijk(g, v, &i, &j, &k);
            imrt_grid_center(g, i, j, k, c);
            dose[v] = (float)direct_point(&d, tid, c, weights);
        }
    }
cleanup:
    direct_free(&d);
    return status;
}

imrt_status imrt_dose_points(const imrt_context *ctx, const imrt_phantom *ph,
                             const imrt_beamset *bs, const imrt_machine *m,
                             const imrt_dose_options *opt, const double *weights, int64_t npts,
                             const double *xyz, double *dose)
{
    imrt_status status = IMRT_OK;
    direct_ctx d;
    memset(&d, 0, sizeof d);
    if (npts < 0 || (npts > 0 && (!xyz || !dose)))
        return imrt_error(IMRT_ERR_ARG, "imrt_dose_points: NULL points or negative count");
    IMRT_TRY(check_common(ph, bs, weights));
    for (int64_t q = 0; q < 3 * npts; q++)
        if (!isfinite(xyz[q]))
            IMRT_FAIL(IMRT_ERR_RANGE, "dose point %lld has a non-finite coordinate",
                      (long long)(q / 3));
    IMRT_TRY(direct_init(&d, ctx, ph, bs, m, opt));
#pragma omp parallel num_threads(d.threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 16)
        for (int64_t q = 0; q < npts; q++)
            dose[q] = direct_point(&d, tid, xyz + 3 * q, weights);
    }
cleanup:
    direct_free(&d);
    return status;
}

/* ---- beam data of a machine ---------------------------------------------- */

/* Water box 300 mm wide, surface at y = -150 mm; one open field of side
 * `field` at gantry 0 with the isocentre on the surface (SSD = SAD). */
static imrt_status water_setup(double field, imrt_phantom **ph, imrt_beamset **bs)
{
    imrt_status status = IMRT_OK;
    imrt_grid g;
    const double o[3] = {-145, -145, -145};
    IMRT_TRY(imrt_grid_init(&g, 30, 30, 30, 10, 10, 10, o));
    IMRT_TRY(imrt_phantom_create(&g, "water_box", 1.0f, ph));
    imrt_beam_def def;
    memset(&def, 0, sizeof def);
    def.has_isocentre = 1;
    def.isocentre[1] = -150.0;
    def.open_field = 1;
    def.field_mm[0] = def.field_mm[1] = field;
    imrt_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.beamlet_mm = 5.0;
    plan.beamlet_margin_mm = 0.0;
    IMRT_TRY(imrt_beamset_create(*ph, &plan, &def, 1, NULL, bs));
cleanup:
    return status;
}

/* Depth dose of a field on the central axis, 0..300 mm step 1 mm, the
 * refined depth of maximum and the dose there. */
static imrt_status cax_scan(const imrt_context *ctx, const imrt_machine *m, double field,
                            double *pdd /* 301 */, double *dmax, double *dose_max)
{
    imrt_status status = IMRT_OK;
    imrt_phantom *ph = NULL;
    imrt_beamset *bs = NULL;
    double pts[3 * 301];
    imrt_dose_options ex;
    imrt_dose_options_exact(&ex);
    IMRT_TRY(water_setup(field, &ph, &bs));
    for (int q = 0; q <= 300; q++) {
        pts[3 * q] = 0;
        pts[3 * q + 1] = -150.0 + q;
        pts[3 * q + 2] = 0;
    }
    IMRT_TRY(imrt_dose_points(ctx, ph, bs, m, &ex, NULL, 301, pts, pdd));
    int best = 1;
    for (int q = 1; q < 300; q++)
        if (pdd[q] > pdd[best])
            best = q;
    /* Parabola through the best sample and its neighbours. */
    double y0 = pdd[best - 1], y1 = pdd[best], y2 = pdd[best + 1];
    double den = y0 - 2 * y1 + y2;
    double off = den < 0 ? 0.5 * (y0 - y2) / den : 0.0;
    *dmax = best + IMRT_MAX(-0.5, IMRT_MIN(0.5, off));
    double p[3] = {0, -150.0 + *dmax, 0};
    IMRT_TRY(imrt_dose_points(ctx, ph, bs, m, &ex, NULL, 1, p, dose_max));
cleanup:
    imrt_beamset_destroy(&bs);
    imrt_phantom_destroy(&ph);
    return status;
}

/* Position where a falling profile crosses `level` (linear interpolation). */
static double crossing(const double *x, const double *y, int n, double level)
{
    for (int q = 1; q < n; q++)
        if (y[q - 1] >= level && y[q] < level)
            return x[q - 1] + (y[q - 1] - level) / (y[q - 1] - y[q]) * (x[q] - x[q - 1]);
    return NAN;
}

imrt_status imrt_machine_beam_data(const imrt_context *ctx, const imrt_machine *m_in,
                                   imrt_beam_data *bd)
{
    imrt_status status = IMRT_OK;
    imrt_phantom *ph = NULL;
    imrt_beamset *bs = NULL;
    double *pts = NULL, *prof = NULL, *xs = NULL;
    if (!bd)
        return imrt_error(IMRT_ERR_ARG, "imrt_machine_beam_data: NULL output");
    imrt_machine m;
    if (m_in)
        m = *m_in;
    else
        imrt_machine_default(&m);
    IMRT_TRY(imrt_machine_normalise(&m));
    double pdd[301], dm10, d10, dm5, d5, dm20, d20;
    IMRT_TRY(cax_scan(ctx, &m, 50.0, pdd, &dm5, &d5));
    bd->pdd100_5 = 100.0 * pdd[100] / d5;
    IMRT_TRY(cax_scan(ctx, &m, 200.0, pdd, &dm20, &d20));
    bd->pdd100_20 = 100.0 * pdd[100] / d20;
    IMRT_TRY(cax_scan(ctx, &m, 100.0, pdd, &dm10, &d10));
    bd->dmax_mm = dm10;
    bd->dose_dmax = d10;
    bd->pdd50 = 100.0 * pdd[50] / d10;
    bd->pdd100 = 100.0 * pdd[100] / d10;
    bd->pdd200 = 100.0 * pdd[200] / d10;
    bd->of5 = d5 / d10;
    bd->of20 = d20 / d10;
    /* Profiles along x (BEV u) through the central axis, both edges, at
     * 100 mm depth and at the depth of maximum. */
    const int n = 501;
    const double step = 0.2;
    IMRT_ALLOC(pts, 3 * 2 * n);
    IMRT_ALLOC(prof, 2 * n);
    IMRT_ALLOC(xs, n);
    IMRT_TRY(water_setup(100.0, &ph, &bs));
    imrt_dose_options ex;
    imrt_dose_options_exact(&ex);
    for (int which = 0; which < 2; which++) {
        const double depth = which == 0 ? 100.0 : dm10;
        for (int q = 0; q < n; q++) {
            xs[q] = q * step;
            pts[3 * q] = xs[q];
            pts[3 * (n + q)] = -xs[q];
            pts[3 * q + 1] = pts[3 * (n + q) + 1] = -150.0 + depth;
            pts[3 * q + 2] = pts[3 * (n + q) + 2] = 0.0;
        }
        IMRT_TRY(imrt_dose_points(ctx, ph, bs, &m, &ex, NULL, 2 * n, pts, prof));
        double pen = 0;
        for (int side = 0; side < 2; side++) {
            const double *y = prof + side * n;
            const double c = y[0];
            double x80 = crossing(xs, y, n, 0.8 * c), x20 = crossing(xs, y, n, 0.2 * c);
            pen += 0.5 * (x20 - x80);
        }
        if (!isfinite(pen))
            IMRT_FAIL(IMRT_ERR_NUMERIC, "machine '%s': the 100 x 100 profile at %g mm has no "
                      "80 %%/20 %% crossing within 100 mm", m.name, depth);
        if (which == 0)
            bd->penumbra_mm = pen;
        else
            bd->penumbra_dmax_mm = pen;
    }
cleanup:
    imrt_free(pts);
    imrt_free(prof);
    imrt_free(xs);
    imrt_beamset_destroy(&bs);
    imrt_phantom_destroy(&ph);
    return status;
}
