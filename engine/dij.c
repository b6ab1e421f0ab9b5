/*
 * engine/dij.c - the dose-influence matrix: allocation, validation, the
 * reference product D*x, the exact size estimate, and the parallel,
 * voxel-driven build (count pass -> row pointers -> budget check -> depth
 * cubes -> fill pass writing each CSR row in place).
 *
 * Determinism: every entry depends only on its voxel and beamlet, and each
 * row is written at offsets fixed by the count pass, so the dij is bitwise
 * identical for any thread count and schedule.
 */
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */
#include "imrt/dij.h"

#include "dij_impl.h"
#include "imrt/dose.h"
#include "imrt/raytrace.h"
#include "pencilbeam_impl.h"
#include "raytrace_impl.h"
#include "util_impl.h"

#include <math.h>
#include <omp.h>
#include <string.h>
#include <sys/mman.h>

uint64_t imrt_dij_bytes(int64_t nrows, int32_t ncols, int64_t nnz, int nbeams)
{
    return (uint64_t)(nrows + 1) * sizeof(int64_t)      /* rowptr */
           + (uint64_t)nnz * (sizeof(int32_t) + sizeof(float)) /* col, val */
           + (uint64_t)nrows * sizeof(int64_t)          /* voxel */
           + (uint64_t)(nbeams + 1) * sizeof(int32_t)   /* beam_start */
           + (uint64_t)ncols * 2 * sizeof(float)        /* bixel_uv */
           + (uint64_t)nbeams * sizeof(imrt_dij_beam);  /* beams */
}

void imrt_dij_destroy(imrt_dij **pd)
{
    if (!pd || !*pd)
        return;
    imrt_dij *d = *pd;
    imrt_free(d->rowptr);
    imrt_free(d->col);
    imrt_free(d->val);
    imrt_free(d->voxel);
    imrt_free(d->beam_start);
    imrt_free(d->bixel_uv);
    imrt_free(d->beams);
    imrt_free(d->smap);
    imrt_dij_scatter_free(&d->scatter);
    imrt_free(d);
    *pd = NULL;
}

/* imrt_dij_alloc; with zero_entries == 0 the col and val arrays are left
 * uninitialised (the build writes every entry, in parallel, so that the
 * pages are first touched by the threads that fill them). */
static imrt_status dij_alloc(const imrt_grid *grid, int64_t nrows, int32_t ncols, int64_t nnz,
                             int nbeams, int zero_entries, imrt_dij **out)
{
    imrt_status status = IMRT_OK;
    imrt_dij *d = NULL;
    if (!grid || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_alloc: NULL argument");
    *out = NULL;
    if (nrows < 0 || ncols < 0 || nnz < 0 || nbeams < 0)
        return imrt_error(IMRT_ERR_RANGE, "dij sizes rows %lld, columns %d, entries %lld, "
                          "beams %d must be >= 0", (long long)nrows, ncols, (long long)nnz,
                          nbeams);
    if (nbeams > ncols && ncols > 0)
        return imrt_error(IMRT_ERR_RANGE, "dij has %d beams but only %d beamlets", nbeams,
                          ncols);
    IMRT_ALLOC(d, 1);
    d->grid = *grid;
    d->nrows = nrows;
    d->ncols = ncols;
    d->nnz = nnz;
    d->nbeams = nbeams;
    d->row_begin = 0;
    d->row_end = nrows;
    IMRT_ALLOC(d->rowptr, nrows + 1);
    if (nnz > 0 && zero_entries) {
        IMRT_ALLOC(d->col, nnz);
        IMRT_ALLOC(d->val, nnz);
    } else if (nnz > 0) {
        d->col = imrt_malloc((size_t)nnz * sizeof *d->col);
        d->val = imrt_malloc((size_t)nnz * sizeof *d->val);
        if (!d->col || !d->val)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot allocate %lld dij entries (%.1f MiB)",
                      (long long)nnz, (double)nnz * 8.0 / 1048576.0);
        imrt_advise_huge(d->col, (size_t)nnz * sizeof *d->col);
        imrt_advise_huge(d->val, (size_t)nnz * sizeof *d->val);
    }
    if (nrows > 0)
        IMRT_ALLOC(d->voxel, nrows);
    IMRT_ALLOC(d->beam_start, nbeams + 1);
    if (ncols > 0)
        IMRT_ALLOC(d->bixel_uv, 2 * (int64_t)ncols);
    if (nbeams > 0)
        IMRT_ALLOC(d->beams, nbeams);
    *out = d;
    d = NULL;
cleanup:
    imrt_dij_destroy(&d);
    return status;
}

imrt_status imrt_dij_alloc(const imrt_grid *grid, int64_t nrows, int32_t ncols, int64_t nnz,
                           int nbeams, imrt_dij **out)
{
    return dij_alloc(grid, nrows, ncols, nnz, nbeams, 1, out);
}

imrt_status imrt_dij_validate(const imrt_dij *d)
{
    if (!d)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_validate: NULL dij");
    const int64_t nvox = imrt_grid_nvox(&d->grid);
    if (d->nrows < 0 || d->nrows > nvox || d->ncols < 0 || d->nnz < 0 || d->nbeams < 0 ||
        d->nvirt < 0 || (int64_t)d->ncols + d->nvirt > INT32_MAX)
        return imrt_error(IMRT_ERR_FORMAT, "dij sizes are inconsistent (rows %lld of %lld "
                          "voxels, columns %d + %d map columns, entries %lld, beams %d)",
                          (long long)d->nrows, (long long)nvox, d->ncols, d->nvirt,
                          (long long)d->nnz, d->nbeams);
    const int32_t width = imrt_dij_width(d);
    if (d->rowptr[0] != 0 || d->rowptr[d->nrows] != d->nnz)
        return imrt_error(IMRT_ERR_FORMAT, "dij row pointers run from %lld to %lld, expected "
                          "0 to %lld", (long long)d->rowptr[0], (long long)d->rowptr[d->nrows],
                          (long long)d->nnz);
    for (int64_t r = 0; r < d->nrows; r++) {
        if (d->rowptr[r + 1] < d->rowptr[r])
            return imrt_error(IMRT_ERR_FORMAT, "dij row pointer %lld decreases", (long long)r);
        if (d->voxel[r] < 0 || d->voxel[r] >= nvox || (r > 0 && d->voxel[r] <= d->voxel[r - 1]))
            return imrt_error(IMRT_ERR_FORMAT, "dij row %lld has voxel %lld (must increase, "
                              "< %lld)", (long long)r, (long long)d->voxel[r], (long long)nvox);
        for (int64_t e = d->rowptr[r]; e < d->rowptr[r + 1]; e++) {
            if (d->col[e] < 0 || d->col[e] >= width ||
                (e > d->rowptr[r] && d->col[e] <= d->col[e - 1]))
                return imrt_error(IMRT_ERR_FORMAT, "dij row %lld has column %d (must increase, "
                                  "< %d)", (long long)r, d->col[e], (int)width);
            if (!isfinite(d->val[e]))
                return imrt_error(IMRT_ERR_FORMAT, "dij row %lld has a non-finite value",
                                  (long long)r);
        }
    }
    if (d->beam_start[0] != 0 || d->beam_start[d->nbeams] != d->ncols)
        return imrt_error(IMRT_ERR_FORMAT, "dij beam columns run from %d to %d, expected 0 to %d",
                          d->beam_start[0], d->beam_start[d->nbeams], d->ncols);
    for (int b = 0; b < d->nbeams; b++)
        if (d->beam_start[b + 1] < d->beam_start[b])
            return imrt_error(IMRT_ERR_FORMAT, "dij beam %d has a negative number of columns", b);
    return imrt_dij_smap_check(d);
}

imrt_status imrt_dij_dose(const imrt_dij *d, const double *x, float *dose)
{
    imrt_status status = IMRT_OK;
    double *xe = NULL;
    if (!d || !x || !dose)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_dose: NULL argument");
    IMRT_ALLOC(xe, IMRT_MAX(imrt_dij_width(d), 1));
    IMRT_TRY(imrt_dij_expand(d, 0, x, xe));
    const int64_t nvox = imrt_grid_nvox(&d->grid);
    for (int64_t v = 0; v < nvox; v++)
        dose[v] = 0.0f;
    for (int64_t r = 0; r < d->nrows; r++) {
        double s = 0.0;
        for (int64_t e = d->rowptr[r]; e < d->rowptr[r + 1]; e++)
            s += (double)d->val[e] * xe[d->col[e]];
        dose[d->voxel[r]] = (float)s;
    }
cleanup:
    imrt_free(xe);
    return status;
}

void imrt_dij_partition(const int64_t *rowptr, int64_t nrows, int nparts, int64_t *bounds)
{
    const int64_t nnz = rowptr[nrows];
    bounds[0] = 0;
    for (int p = 1; p < nparts; p++) {
        if (nnz == 0) {
            bounds[p] = nrows * p / nparts;
            continue;
        }
        /* first row r >= bounds[p-1] with rowptr[r] >= p * nnz / nparts */
        const int64_t want = (int64_t)((double)nnz * p / nparts);
        int64_t lo = bounds[p - 1], hi = nrows;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (rowptr[mid] >= want)
                hi = mid;
            else
                lo = mid + 1;
        }
        bounds[p] = lo;
    }
    bounds[nparts] = nrows;
}

/* ---- build ------------------------------------------------------------------ */

#define MIB(x) ((double)(x) / 1048576.0)
#define IMRT_SMAP_ENTRIES 8 /* trilinear scatter-map entries per voxel and beam */

/* Everything a build holds before the dij itself. */
typedef struct {
    imrt_machine m;
    imrt_fspb_cut cut;
    imrt_fspb_beam *B;
    int nbeams;
    int threads;
    int64_t nrows;
    int64_t *voxel;   /* nrows */
    int64_t *rowptr;  /* nrows + 1 */
    double *cbox;     /* 4 per beam: u min, u max, v min, v max of the beamlet centres */
} build_state;

static void build_free(build_state *s)
{
    imrt_free(s->cbox);
    imrt_fspb_beams_free(&s->B, s->nbeams);
    imrt_free(s->voxel);
    imrt_free(s->rowptr);
}

static void voxel_center(const imrt_grid *g, int64_t v, double c[3])
{
    int i, j, k;
    imrt_grid_ijk(g, v, &i, &j, &k);
    imrt_grid_center(g, i, j, k, c);
}

/* Whether beam b can give dose at projection (u, v): always without a
 * lateral cut-off; with one, when (u, v) lies within the cut-off of the
 * box of the beam's beamlet centres (a superset of the points within the
 * cut-off of some beamlet). Rows get entries of beam b only where it does. */
static int beam_reaches(const build_state *s, int b, double u, double v)
{
    if (isinf(s->cut.lateral))
        return 1;
    const double *c = s->cbox + 4 * b;
    const double du = fmax(fmax(c[0] - u, u - c[1]), 0.0);
    const double dv = fmax(fmax(c[2] - v, v - c[3]), 0.0);
    return du * du + dv * dv <= s->cut.lateral * s->cut.lateral;
}

/* Rows, per-beam tables and the exact row pointers (count pass). */
static imrt_status build_prepare(const imrt_context *ctx, const imrt_phantom *ph,
                                 const imrt_beamset *bs, const imrt_machine *m,
                                 const imrt_dose_options *opt, build_state *s)
{
    imrt_status status = IMRT_OK;
    double *counts = NULL;
    memset(s, 0, sizeof *s);
    if (!ph || !bs)
        return imrt_error(IMRT_ERR_ARG, "dij: NULL phantom or beam set");
    if (m)
        s->m = *m;
    else
        imrt_machine_default(&s->m);
    IMRT_TRY(imrt_machine_normalise(&s->m));
    IMRT_TRY(imrt_fspb_resolve(&s->m, opt, &s->cut));
    if (!isinf(s->cut.lateral) && !s->cut.maps)
        return imrt_error(IMRT_ERR_ARG, "dij: a lateral cut-off (%g mm) needs the scatter maps "
                          "(scatter_maps = 1 and a finite scatter radius)", s->cut.lateral);
    s->threads = ctx ? imrt_context_threads(ctx) : omp_get_max_threads();
    const imrt_grid *g = &ph->grid;
    const int64_t nvox = imrt_grid_nvox(g);
    int64_t nrows = 0;
    for (int64_t v = 0; v < nvox; v++) {
        int in = 0;
        for (int q = 0; q < ph->nstructures && !in; q++)
            in = ph->structures[q].mask[v] != 0;
        nrows += in;
    }
    if (nrows == 0)
        IMRT_FAIL(IMRT_ERR_ARG, "dij: phantom '%s' has no voxel in any structure on the dose "
                  "grid", ph->name);
    s->nrows = nrows;
    IMRT_ALLOC(s->voxel, nrows);
    IMRT_ALLOC(s->rowptr, nrows + 1);
    for (int64_t v = 0, r = 0; v < nvox; v++) {
        int in = 0;
        for (int q = 0; q < ph->nstructures && !in; q++)
            in = ph->structures[q].mask[v] != 0;
        if (in)
            s->voxel[r++] = v;
    }
    s->nbeams = bs->nbeams;
    IMRT_TRY(imrt_fspb_beams_create(bs, &s->B));
    IMRT_ALLOC(s->cbox, 4 * (int64_t)IMRT_MAX(bs->nbeams, 1));
    for (int b = 0; b < bs->nbeams; b++) {
        const imrt_beam *bm = &bs->beams[b];
        double *c = s->cbox + 4 * b;
        c[0] = c[2] = INFINITY;
        c[1] = c[3] = -INFINITY;
        for (int iv = 0; iv < bm->nv; iv++)
            for (int iu = 0; iu < bm->nu; iu++)
                if (bm->cell[iu + (int64_t)bm->nu * iv] >= 0) {
                    c[0] = fmin(c[0], bm->u0 + iu * bs->beamlet_mm);
                    c[1] = fmax(c[1], bm->u0 + iu * bs->beamlet_mm);
                    c[2] = fmin(c[2], bm->v0 + iv * bs->beamlet_mm);
                    c[3] = fmax(c[3], bm->v0 + iv * bs->beamlet_mm);
                }
    }
    const double R = s->cut.radius;
    const int maps = s->cut.maps;
    const imrt_fspb_beam *B = s->B;
    const int nb = bs->nbeams;
    int64_t *rowptr = s->rowptr;
    const int64_t *voxel = s->voxel;
    /* a distributed run counts an even share of the rows on each process and
     * gathers the counts (exact in doubles below 2^53) */
    const imrt_comm *comm = imrt_context_comm(ctx);
    const int64_t c0 = comm ? nrows * comm->rank / comm->size : 0;
    const int64_t c1 = comm ? nrows * (comm->rank + 1) / comm->size : nrows;
#pragma omp parallel for num_threads(s->threads) schedule(dynamic, 4096)
    for (int64_t r = c0; r < c1; r++) {
        double c[3];
        voxel_center(g, voxel[r], c);
        int64_t n = 0;
        for (int b = 0; b < nb; b++) {
            double u, v, scale;
            if (imrt_fspb_geometry(B[b].beam, c, &u, &v, &scale) && beam_reaches(s, b, u, v)) {
                const int64_t k = imrt_fspb_count(&B[b], u, v, R);
                n += k + (maps && k > 0 ? IMRT_SMAP_ENTRIES : 0);
            }
        }
        rowptr[r + 1] = n;
    }
    if (comm) {
        IMRT_ALLOC(counts, nrows);
        for (int64_t r = c0; r < c1; r++)
            counts[r] = (double)rowptr[r + 1];
        IMRT_TRY(comm->gather(comm->user, counts, nrows, c0, c1));
        for (int64_t r = 0; r < nrows; r++)
            rowptr[r + 1] = (int64_t)counts[r];
    }
    rowptr[0] = 0;
    for (int64_t r = 0; r < nrows; r++)
        rowptr[r + 1] += rowptr[r];
cleanup:
    imrt_free(counts);
    return status;
}

/* Peak bytes of a build: the dij, the depth cubes, the row pointers held
 * twice for a moment, and the per-thread scratch. */
static uint64_t build_bytes(const build_state *s, const imrt_beamset *bs, int64_t r0, int64_t r1)
{
    uint64_t scratch = 0;
    for (int b = 0; b < bs->nbeams; b++) {
        uint64_t w = (uint64_t)imrt_fspb_work_size(&bs->beams[b]) * sizeof(double) +
                     (uint64_t)bs->beams[b].nu * (uint64_t)bs->beams[b].nv * sizeof(double);
        scratch = w > scratch ? w : scratch;
    }
    return imrt_dij_bytes(s->nrows, bs->nbeamlets, s->rowptr[r1] - s->rowptr[r0], bs->nbeams) +
           (uint64_t)bs->nbeams * (uint64_t)(r1 - r0) * sizeof(float) +
           (uint64_t)(s->nrows + 1) * sizeof(int64_t) + scratch * (uint64_t)s->threads;
}

imrt_status imrt_dij_estimate(const imrt_context *ctx, const imrt_phantom *ph,
                              const imrt_beamset *bs, const imrt_machine *m,
                              const imrt_dose_options *opt, int64_t *nrows, int64_t *nnz,
                              uint64_t *bytes)
{
    imrt_status status = IMRT_OK;
    build_state s;
    IMRT_TRY(build_prepare(ctx, ph, bs, m, opt, &s));
    if (nrows)
        *nrows = s.nrows;
    if (nnz)
        *nnz = s.rowptr[s.nrows];
    if (bytes)
        *bytes = build_bytes(&s, bs, 0, s.nrows);
cleanup:
    build_free(&s);
    return status;
}


/* The budget message: the estimate, the budget, and settings that would fit
 * with their estimated sizes (rows scale with the voxel volume, entries per
 * row with the beamlets inside the coupling radius, ~ 1 / beamlet pitch^2). */
static imrt_status budget_error(const imrt_phantom *ph, const imrt_beamset *bs,
                                const build_state *s, uint64_t need, uint64_t held,
                                uint64_t budget)
{
    const double dij = (double)need, h = ph->grid.dx, b = bs->beamlet_mm;
    char alt[512] = "";
    size_t used = 0;
    int shown = 0;
    static const double factors[] = {1.5, 2.0, 3.0, 4.0};
    for (int q = 0; q < 4 && shown < 2; q++) {
        const double h2 = h * factors[q];
        if (h2 > 50.0)
            break;
        const double est = dij / (factors[q] * factors[q] * factors[q]);
        if (est + (double)held > (double)budget)
            continue;
        int w = snprintf(alt + used, sizeof alt - used, "%sa %g mm grid (--grid or dose_grid_mm; "
                         "about %.1f MiB)", shown ? ", " : "", h2, est / 1048576.0);
        if (w > 0 && (size_t)w < sizeof alt - used)
            used += (size_t)w;
        shown++;
    }
    for (int q = 0; q < 4 && shown < 3; q++) {
        const double b2 = b * factors[q];
        if (b2 > 20.0)
            break;
        const double est = dij / (factors[q] * factors[q]);
        if (est + (double)held > (double)budget)
            continue;
        int w = snprintf(alt + used, sizeof alt - used, "%sbeamlet_mm %g (about %.1f MiB)",
                         shown ? ", " : "", b2, est / 1048576.0);
        if (w > 0 && (size_t)w < sizeof alt - used)
            used += (size_t)w;
        shown++;
        break;
    }
    char heldtxt[160] = "";
    if (held > 0)
        snprintf(heldtxt, sizeof heldtxt, " on top of %.1f MiB held for the phantom, doses and "
                 "optimiser", (double)held / 1048576.0);
    return imrt_error(IMRT_ERR_BUDGET,
                      "the dij needs %.1f MiB (%lld voxels x %d beamlets, %lld entries)%s, but "
                      "the memory budget is %.1f MiB (--max-memory); %s%s (now a %g x %g x %g mm "
                      "grid, beamlet_mm %g, scatter radius %g mm)",
                      MIB(need), (long long)s->nrows, bs->nbeamlets,
                      (long long)s->rowptr[s->nrows], heldtxt, MIB(budget),
                      shown ? "settings that fit: " : "nothing up to a 4x coarser grid fits; raise "
                                                      "the budget",
                      alt, ph->grid.dx, ph->grid.dy, ph->grid.dz, b, s->cut.radius);
}

/* Scatter-map layout of every beam (imrt_dij_smap): nodes covering the
 * projections of the row voxels, sigma levels covering their scatter
 * sigmas. Extents come from this process's rows and, in a distributed run,
 * are combined over the processes (each fills its own slot of a summed
 * buffer), so every process gets the same maps. */
static imrt_status smap_layout(const imrt_context *ctx, const build_state *s,
                               const imrt_phantom *ph, const imrt_beamset *bs,
                               const int64_t *voxel, const float *depth, int64_t r0, int64_t r1,
                               imrt_dij *d)
{
    imrt_status status = IMRT_OK;
    const int nb = bs->nbeams;
    const int64_t nloc = r1 - r0;
    double *ext = NULL, *all = NULL;
    const imrt_comm *comm = imrt_context_comm(ctx);
    const int nproc = comm ? comm->size : 1, me = comm ? comm->rank : 0;
    IMRT_ALLOC(ext, 6 * (size_t)nb * (size_t)s->threads);
    for (int64_t q = 0; q < 6 * (int64_t)nb * s->threads; q++)
        ext[q] = (q % 2 == 0) ? (double)INFINITY : -(double)INFINITY;
#pragma omp parallel num_threads(s->threads)
    {
        double *e = ext + 6 * (int64_t)nb * omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t r = r0; r < r1; r++) {
            double c[3];
            voxel_center(&ph->grid, voxel[r], c);
            for (int b = 0; b < nb; b++) {
                double u, v, scale;
                if (s->B[b].beam->count < 1 ||
                    !imrt_fspb_geometry(s->B[b].beam, c, &u, &v, &scale) ||
                    !beam_reaches(s, b, u, v))
                    continue;
                const double z = (double)depth[(int64_t)b * nloc + (r - r0)];
                const double sg = imrt_machine_sigma_s(&s->m, z) * scale;
                double *eb = e + 6 * b;
                eb[0] = fmin(eb[0], u);
                eb[1] = fmax(eb[1], u);
                eb[2] = fmin(eb[2], v);
                eb[3] = fmax(eb[3], v);
                eb[4] = fmin(eb[4], sg);
                eb[5] = fmax(eb[5], sg);
            }
        }
    }
    for (int t = 1; t < s->threads; t++)
        for (int q = 0; q < 6 * nb; q++)
            ext[q] = q % 2 == 0 ? fmin(ext[q], ext[6 * (int64_t)nb * t + q])
                                : fmax(ext[q], ext[6 * (int64_t)nb * t + q]);
    if (comm) {
        /* min as -max(-x); slots of other processes stay 0 in the sum */
        IMRT_ALLOC(all, 6 * (size_t)nb * (size_t)nproc);
        for (int q = 0; q < 6 * nb; q++) {
            const double x = q % 2 == 0 ? -ext[q] : ext[q];
            all[6 * (int64_t)nb * me + q] = isfinite(x) ? x : -1e300;
        }
        IMRT_TRY(comm->sum(comm->user, all, 6 * (int64_t)nb * nproc));
        for (int q = 0; q < 6 * nb; q++) {
            double mx = -(double)INFINITY;
            for (int p = 0; p < nproc; p++)
                mx = fmax(mx, all[6 * (int64_t)nb * p + q]);
            mx = mx > -1e299 ? mx : -(double)INFINITY;
            ext[q] = q % 2 == 0 ? -mx : mx;
        }
    }
    IMRT_ALLOC(d->smap, nb);
    int64_t next = d->ncols;
    for (int b = 0; b < nb; b++) {
        double *eb = ext + 6 * b;
        if (!(eb[0] <= eb[1])) { /* no voxel in front of this beam */
            eb[0] = eb[1] = eb[2] = eb[3] = 0.0;
            eb[4] = eb[5] = imrt_machine_sigma_s(&s->m, 0.0);
        }
        imrt_dij_smap *m = &d->smap[b];
        const double h = s->cut.map_pitch > 0 ? s->cut.map_pitch : fmax(2.0, 0.25 * eb[4]);
        const double lr = log(s->cut.map_ratio);
        m->h = h;
        m->u0 = eb[0] - 0.5 * h;
        m->v0 = eb[2] - 0.5 * h;
        m->np = (int32_t)IMRT_MAX(2.0, ceil((eb[1] - m->u0) / h) + 1.0);
        m->nq = (int32_t)IMRT_MAX(2.0, ceil((eb[3] - m->v0) / h) + 1.0);
        m->s0 = eb[4];
        m->ln_ratio = lr;
        m->nk = (int32_t)IMRT_MAX(2.0, ceil(log(eb[5] / eb[4]) / lr - 1e-9) + 1.0);
        if (m->np > 4096 || m->nq > 4096 || m->nk > 256)
            IMRT_FAIL(IMRT_ERR_RANGE, "beam %d's scatter map would need %d x %d nodes and %d "
                      "levels (at most 4096 x 4096 x 256): raise the map pitch or ratio", b,
                      (int)m->np, (int)m->nq, (int)m->nk);
        m->cutoff = isinf(s->cut.lateral) ? 0.0 : s->cut.lateral;
        m->first = (int32_t)next;
        const int64_t nodes = (int64_t)m->np * m->nq * m->nk;
        next += nodes;
        if (nodes > IMRT_DIJ_MAX_MAP_NODES_BEAM || next - d->ncols > IMRT_DIJ_MAX_MAP_NODES)
            IMRT_FAIL(IMRT_ERR_RANGE, "the scatter maps would need %lld nodes for beam %d (at "
                      "most %lld per beam, %lld in all): raise the map pitch or ratio",
                      (long long)nodes, b, (long long)IMRT_DIJ_MAX_MAP_NODES_BEAM,
                      (long long)IMRT_DIJ_MAX_MAP_NODES);
    }
    d->nvirt = (int32_t)(next - d->ncols);
cleanup:
    imrt_free(ext);
    imrt_free(all);
    return status;
}

imrt_status imrt_dij_build(const imrt_context *ctx, const imrt_phantom *ph,
                           const imrt_beamset *bs, const imrt_machine *m,
                           const imrt_dose_options *opt, imrt_dij **out)
{
    return imrt_dij_build_held(ctx, 0, ph, bs, m, opt, out);
}

imrt_status imrt_dij_build_held(const imrt_context *ctx, uint64_t held, const imrt_phantom *ph,
                                const imrt_beamset *bs, const imrt_machine *m,
                                const imrt_dose_options *opt, imrt_dij **out)
{
    imrt_status status = IMRT_OK;
    build_state s;
    imrt_dij *d = NULL;
    float *depth = NULL;
    double *work = NULL, *vals = NULL, *geo = NULL;
    int64_t *bounds = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_build: out is NULL");
    *out = NULL;
    imrt_context_progress(ctx, "dij", 0.0);
    IMRT_TRY(build_prepare(ctx, ph, bs, m, opt, &s));
    /* a distributed run computes only this process's block of rows */
    const imrt_comm *comm = imrt_context_comm(ctx);
    int64_t r0 = 0, r1 = s.nrows;
    if (comm) {
        IMRT_ALLOC(bounds, comm->size + 1);
        imrt_dij_partition(s.rowptr, s.nrows, comm->size, bounds);
        r0 = bounds[comm->rank];
        r1 = bounds[comm->rank + 1];
    }
    const int64_t nrows = s.nrows, nnz = s.rowptr[r1] - s.rowptr[r0], nloc = r1 - r0;
    const uint64_t need = build_bytes(&s, bs, r0, r1);
    const uint64_t budget = ctx ? imrt_context_max_memory(ctx) : 0;
    if (budget > 0 && (need > budget || held > budget - need)) {
        status = budget_error(ph, bs, &s, need, held, budget);
        goto cleanup;
    }
    IMRT_TRY(dij_alloc(&ph->grid, nrows, bs->nbeamlets, nnz, bs->nbeams, 0, &d));
    for (int64_t r = 0; r <= nrows; r++)
        d->rowptr[r] = s.rowptr[IMRT_MIN(IMRT_MAX(r, r0), r1)] - s.rowptr[r0];
    d->row_begin = r0;
    d->row_end = r1;
    memcpy(d->voxel, s.voxel, (size_t)nrows * sizeof *d->voxel);
    imrt_free(s.rowptr);
    s.rowptr = NULL;
    d->beamlet_mm = bs->beamlet_mm;
    for (int b = 0; b < bs->nbeams; b++) {
        const imrt_beam *bm = &bs->beams[b];
        d->beam_start[b] = bm->first;
        snprintf(d->beams[b].name, sizeof d->beams[b].name, "%s", bm->name);
        d->beams[b].gantry_deg = bm->gantry_deg;
        d->beams[b].couch_deg = bm->couch_deg;
        memcpy(d->beams[b].iso, bm->iso, sizeof bm->iso);
    }
    d->beam_start[bs->nbeams] = bs->nbeamlets;
    for (int64_t q = 0; q < 2 * (int64_t)bs->nbeamlets; q++)
        d->bixel_uv[q] = (float)bs->uv[q];

    /* Radiological depth of every row voxel, beam by beam (about a fifth of the work). */
    const double depth_share = 0.2;
    IMRT_ALLOC(depth, IMRT_MAX((int64_t)bs->nbeams * nloc, (int64_t)1));
    imrt_density_bounds dbounds; /* the same for every beam */
    imrt_density_bounds_find(&ph->grid, ph->density, &dbounds);
    for (int b = 0; b < bs->nbeams && nloc > 0; b++) {
        IMRT_TRY(imrt_depth_cube_bounded(ctx, &ph->grid, ph->density, &dbounds, bs->beams[b].src,
                                         d->voxel + r0, nloc, depth + (int64_t)b * nloc));
        imrt_context_progress(ctx, "dij", depth_share * (b + 1) / bs->nbeams);
    }

    const int maps = s.cut.maps;
    if (maps)
        IMRT_TRY(smap_layout(ctx, &s, ph, bs, d->voxel, depth, r0, r1, d));

    /* Fill pass: rows in chunks (progress between chunks), threads inside.
     * A row holds the beams' primary entries (beamlet columns), then, with
     * scatter maps, eight map entries per beam in front (map columns). */
    int64_t work_size = 0, max_cells = 0;
    for (int b = 0; b < bs->nbeams; b++) {
        work_size = IMRT_MAX(work_size, imrt_fspb_work_size(&bs->beams[b]));
        max_cells = IMRT_MAX(max_cells, (int64_t)bs->beams[b].nu * bs->beams[b].nv);
    }
    IMRT_ALLOC(work, work_size * s.threads);
    IMRT_ALLOC(vals, max_cells * s.threads);
    IMRT_ALLOC(geo, IMRT_MAX(4 * (int64_t)bs->nbeams, 1) * s.threads);
    const imrt_fspb_row_fn kernel = imrt_fspb_kernel(ctx);
    const int64_t nchunks = IMRT_MIN((int64_t)64, nloc / 2048 + 1);
    int mismatch = 0;
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t c0 = r0 + nloc * ch / nchunks, c1 = r0 + nloc * (ch + 1) / nchunks;
#pragma omp parallel num_threads(s.threads) reduction(| : mismatch)
        {
            const int tid = omp_get_thread_num();
            double *my_work = work + work_size * tid;
            double *my_val = vals + max_cells * tid;
            double *my_geo = geo + 4 * (int64_t)bs->nbeams * tid;
#pragma omp for schedule(dynamic, 256)
            for (int64_t r = c0; r < c1; r++) {
                double c[3];
                voxel_center(&ph->grid, d->voxel[r], c);
                int64_t pos = d->rowptr[r], end = d->rowptr[r + 1];
                /* the voxel's projection in every beam, once; the map
                 * entries go after every primary entry of the row */
                int nfront = 0;
                for (int b = 0; b < bs->nbeams; b++) {
                    double *gb = my_geo + 4 * b;
                    gb[3] = imrt_fspb_geometry(s.B[b].beam, c, &gb[0], &gb[1], &gb[2]) &&
                            beam_reaches(&s, b, gb[0], gb[1]);
                    nfront += gb[3] != 0.0 && s.B[b].beam->count > 0;
                }
                if (maps)
                    end -= (int64_t)IMRT_SMAP_ENTRIES * nfront;
                int64_t spos = end;
                for (int b = 0; b < bs->nbeams; b++) {
                    const double *gb = my_geo + 4 * b;
                    if (gb[3] == 0.0)
                        continue;
                    const double u = gb[0], v = gb[1], scale = gb[2];
                    imrt_fspb_point P;
                    imrt_fspb_physics(&s.m, &s.cut, bs->beamlet_mm, u, v, scale,
                                      (double)depth[(int64_t)b * nloc + (r - r0)], &P);
                    const double cs = P.pre * P.a, ss = P.ss;
                    if (maps) {
                        P.pre *= 1.0 - P.a;
                        P.a = 0.0;
                    }
                    if (pos + imrt_fspb_count(&s.B[b], u, v, P.R) > end) {
                        mismatch = 1;
                        break;
                    }
                    const int64_t n = kernel(&s.B[b], &P, my_work, d->col + pos, my_val);
                    for (int64_t e = 0; e < n; e++)
                        d->val[pos + e] = (float)my_val[e];
                    pos += n;
                    if (maps && n > 0) {
                        if (spos + IMRT_SMAP_ENTRIES > d->rowptr[r + 1]) {
                            mismatch = 1;
                            break;
                        }
                        double sv[IMRT_SMAP_ENTRIES];
                        imrt_dij_smap_entries(&d->smap[b], u, v, ss, cs, d->col + spos, sv);
                        for (int e = 0; e < IMRT_SMAP_ENTRIES; e++)
                            d->val[spos + e] = (float)sv[e];
                        spos += IMRT_SMAP_ENTRIES;
                    }
                }
                mismatch |= pos != end || spos != d->rowptr[r + 1];
            }
        }
        imrt_context_progress(ctx, "dij",
                              depth_share + (1 - depth_share) * (double)(ch + 1) / (double)nchunks);
    }
    if (mismatch)
        IMRT_FAIL(IMRT_ERR_INTERNAL, "dij: the fill pass disagrees with the count pass");
    IMRT_TRY(imrt_dij_scatter_prepare(d));
    *out = d;
    d = NULL;
cleanup:
    imrt_free(depth);
    imrt_free(bounds);
    imrt_free(work);
    imrt_free(vals);
    imrt_free(geo);
    build_free(&s);
    imrt_dij_destroy(&d);
    return status;
}
