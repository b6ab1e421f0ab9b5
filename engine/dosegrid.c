/*
 * engine/dosegrid.c - the dose grid: a phantom resampled to a (usually
 * coarser) spacing over the same physical extent, density averaged by
 * overlap volume, structure masks sampled at the dose-voxel centres.
 */
#include "imrt/dose.h"

#include "util_impl.h"

#include <math.h>
#include <string.h>

/* Overlap of coarse voxels with fine voxels along one axis: coarse voxel I
 * overlaps fine voxels first[I] .. first[I]+cnt[I]-1 with lengths
 * w[I*stride + q]. */
typedef struct {
    int *first, *cnt;
    double *w;
    int stride;
} axis_map;

static void axis_map_free(axis_map *a)
{
    imrt_free(a->first);
    imrt_free(a->cnt);
    imrt_free(a->w);
}

static imrt_status axis_map_build(double flo, double fs, int fn, double clo, double cs, int cn,
                                  axis_map *a)
{
    imrt_status status = IMRT_OK;
    a->stride = (int)ceil(cs / fs) + 2;
    IMRT_ALLOC(a->first, cn);
    IMRT_ALLOC(a->cnt, cn);
    IMRT_ALLOC(a->w, (int64_t)cn * a->stride);
    for (int I = 0; I < cn; I++) {
        const double lo = clo + I * cs, hi = lo + cs;
        int i0 = (int)floor((lo - flo) / fs), i1 = (int)floor((hi - flo) / fs);
        i0 = IMRT_MAX(i0, 0);
        i1 = IMRT_MIN(i1, fn - 1);
        int c = 0;
        a->first[I] = i0;
        for (int i = i0; i <= i1 && c < a->stride; i++) {
            const double ol = fmin(hi, flo + (i + 1) * fs) - fmax(lo, flo + i * fs);
            a->w[(int64_t)I * a->stride + c++] = ol > 0 ? ol : 0.0;
        }
        a->cnt[I] = c;
    }
cleanup:
    return status;
}

static imrt_status copy_structures(const imrt_phantom *p, imrt_phantom *q, int same_grid)
{
    imrt_status status = IMRT_OK;
    const imrt_grid *fg = &p->grid, *cg = &q->grid;
    const int64_t nvox = imrt_grid_nvox(cg);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *src = &p->structures[s];
        int idx;
        IMRT_TRY(imrt_phantom_add_structure(q, src->name, src->kind, src->priority, &idx));
        imrt_structure *dst = &q->structures[idx];
        if (same_grid) {
            memcpy(dst->mask, src->mask, (size_t)nvox);
        } else {
            for (int64_t v = 0; v < nvox; v++) {
                int i, j, k, f[3];
                double c[3];
                imrt_grid_ijk(cg, v, &i, &j, &k);
                imrt_grid_center(cg, i, j, k, c);
                dst->mask[v] = imrt_grid_locate(fg, c, f)
                                   ? src->mask[imrt_grid_index(fg, f[0], f[1], f[2])]
                                   : 0;
            }
        }
        imrt_structure_recount(q, dst);
    }
cleanup:
    return status;
}

imrt_status imrt_phantom_resample(const imrt_phantom *p, const double spacing_mm[3],
                                  imrt_phantom **out)
{
    imrt_status status = IMRT_OK;
    imrt_phantom *q = NULL;
    axis_map ax[3];
    memset(ax, 0, sizeof ax);
    if (!p || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_phantom_resample: NULL argument");
    *out = NULL;
    const imrt_grid *fg = &p->grid;
    const double fs[3] = {fg->dx, fg->dy, fg->dz};
    const int fn[3] = {fg->nx, fg->ny, fg->nz};
    double cs[3];
    int same = 1;
    for (int a = 0; a < 3; a++) {
        cs[a] = spacing_mm ? spacing_mm[a] : fs[a];
        if (!isfinite(cs[a]) || cs[a] <= 0 || cs[a] > 1000)
            return imrt_error(IMRT_ERR_RANGE, "dose-grid spacing %c = %g mm is outside (0, 1000]",
                              "xyz"[a], cs[a]);
        same &= fabs(cs[a] - fs[a]) <= 1e-9;
    }
    if (same) {
        IMRT_TRY(imrt_phantom_create(fg, p->name, 0.0f, &q));
        memcpy(q->density, p->density, (size_t)imrt_grid_nvox(fg) * sizeof *q->density);
        IMRT_TRY(copy_structures(p, q, 1));
        *out = q;
        return IMRT_OK;
    }
    int cn[3];
    double corigin[3], flo[3], clo[3];
    for (int a = 0; a < 3; a++) {
        const double extent = fn[a] * fs[a];
        const double n = ceil(extent / cs[a] - 1e-9);
        if (n > IMRT_GRID_MAX_DIM)
            return imrt_error(IMRT_ERR_RANGE, "dose-grid spacing %c = %g mm gives %.0f voxels "
                              "(limit %d)", "xyz"[a], cs[a], n, IMRT_GRID_MAX_DIM);
        cn[a] = (int)IMRT_MAX(n, 1.0);
        const double centre = fg->origin[a] + 0.5 * (fn[a] - 1) * fs[a];
        corigin[a] = centre - 0.5 * (cn[a] - 1) * cs[a];
        flo[a] = fg->origin[a] - 0.5 * fs[a];
        clo[a] = corigin[a] - 0.5 * cs[a];
    }
    imrt_grid cg;
    IMRT_TRY(imrt_grid_init(&cg, cn[0], cn[1], cn[2], cs[0], cs[1], cs[2], corigin));
    IMRT_TRY(imrt_phantom_create(&cg, p->name, 0.0f, &q));
    for (int a = 0; a < 3; a++)
        IMRT_TRY(axis_map_build(flo[a], fs[a], fn[a], clo[a], cs[a], cn[a], &ax[a]));
    const float *rho = p->density;
#pragma omp parallel for schedule(static)
    for (int K = 0; K < cn[2]; K++)
        for (int J = 0; J < cn[1]; J++)
            for (int I = 0; I < cn[0]; I++) {
                double sum = 0.0, wsum = 0.0;
                for (int c = 0; c < ax[2].cnt[K]; c++) {
                    const int k = ax[2].first[K] + c;
                    const double wz = ax[2].w[(int64_t)K * ax[2].stride + c];
                    for (int b = 0; b < ax[1].cnt[J]; b++) {
                        const int j = ax[1].first[J] + b;
                        const double wyz = wz * ax[1].w[(int64_t)J * ax[1].stride + b];
                        const float *row = rho + imrt_grid_index(fg, 0, j, k);
                        for (int a = 0; a < ax[0].cnt[I]; a++) {
                            const double wt = wyz * ax[0].w[(int64_t)I * ax[0].stride + a];
                            sum += wt * (double)row[ax[0].first[I] + a];
                            wsum += wt;
                        }
                    }
                }
                q->density[imrt_grid_index(&cg, I, J, K)] = wsum > 0 ? (float)(sum / wsum) : 0.0f;
            }
    IMRT_TRY(copy_structures(p, q, 0));
    *out = q;
    q = NULL;
cleanup:
    for (int a = 0; a < 3; a++)
        axis_map_free(&ax[a]);
    imrt_phantom_destroy(&q);
    return status;
}

imrt_status imrt_dose_grid_phantom(const imrt_phantom *p, const imrt_plan *plan,
                                   imrt_phantom **out)
{
    if (!p || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dose_grid_phantom: NULL argument");
    double s[3] = {p->grid.dx, p->grid.dy, p->grid.dz};
    if (plan)
        for (int a = 0; a < 3; a++)
            if (plan->dose_grid_mm[a] != 0)
                s[a] = plan->dose_grid_mm[a];
    return imrt_phantom_resample(p, s, out);
}
