/*
 * engine/phantom.c - phantom container: density array, structure masks,
 * volumes, centroids and the priority label map.
 */
#include "imrt/phantom.h"

#include "util_impl.h"

#include <math.h>
#include <string.h>

const char *imrt_structure_kind_name(imrt_structure_kind kind)
{
    switch (kind) {
    case IMRT_KIND_TARGET:
        return "target";
    case IMRT_KIND_OAR:
        return "oar";
    case IMRT_KIND_BODY:
        return "body";
    }
    return "unknown";
}

imrt_status imrt_phantom_create(const imrt_grid *g, const char *name, float fill,
                                imrt_phantom **out)
{
    imrt_status status = IMRT_OK;
    imrt_phantom *p = NULL;
    if (!g || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_phantom_create: NULL argument");
    *out = NULL;
    if (!isfinite(fill) || fill < 0.0f)
        return imrt_error(IMRT_ERR_RANGE, "phantom fill density %g is not a finite RED >= 0",
                          (double)fill);
    IMRT_ALLOC(p, 1);
    p->grid = *g;
    snprintf(p->name, sizeof p->name, "%s", name ? name : "phantom");
    int64_t n = imrt_grid_nvox(g);
    IMRT_ALLOC(p->density, n);
    for (int64_t v = 0; v < n; v++)
        p->density[v] = fill;
    *out = p;
    p = NULL;
cleanup:
    imrt_phantom_destroy(&p);
    return status;
}

void imrt_phantom_destroy(imrt_phantom **pp)
{
    if (!pp || !*pp)
        return;
    imrt_phantom *p = *pp;
    for (int s = 0; s < p->nstructures; s++)
        imrt_free(p->structures[s].mask);
    imrt_free(p->structures);
    imrt_free(p->density);
    imrt_free(p);
    *pp = NULL;
}

int imrt_phantom_find(const imrt_phantom *p, const char *name)
{
    if (!p || !name)
        return -1;
    for (int s = 0; s < p->nstructures; s++)
        if (strcmp(p->structures[s].name, name) == 0)
            return s;
    return -1;
}

imrt_status imrt_phantom_add_structure(imrt_phantom *p, const char *name,
                                       imrt_structure_kind kind, int priority, int *index)
{
    imrt_status status = IMRT_OK;
    uint8_t *mask = NULL;
    if (!p || !name)
        return imrt_error(IMRT_ERR_ARG, "imrt_phantom_add_structure: NULL argument");
    size_t len = strlen(name);
    if (len == 0 || len >= IMRT_NAME_MAX)
        return imrt_error(IMRT_ERR_ARG, "structure name '%s' must have 1..%d characters", name,
                          IMRT_NAME_MAX - 1);
    if (priority < 1)
        return imrt_error(IMRT_ERR_RANGE, "structure '%s': priority %d must be >= 1", name,
                          priority);
    if (kind != IMRT_KIND_TARGET && kind != IMRT_KIND_OAR && kind != IMRT_KIND_BODY)
        return imrt_error(IMRT_ERR_ARG, "structure '%s': unknown kind %d", name, (int)kind);
    if (imrt_phantom_find(p, name) >= 0)
        return imrt_error(IMRT_ERR_EXISTS, "structure '%s' is defined twice", name);
    if (p->nstructures >= IMRT_MAX_STRUCTURES)
        return imrt_error(IMRT_ERR_RANGE, "structure '%s': more than %d structures", name,
                          IMRT_MAX_STRUCTURES);
    if (p->nstructures == p->capacity) {
        int cap = p->capacity ? 2 * p->capacity : 8;
        imrt_structure *grown = NULL;
        IMRT_ALLOC(grown, cap);
        if (p->nstructures)
            memcpy(grown, p->structures, (size_t)p->nstructures * sizeof *grown);
        imrt_free(p->structures);
        p->structures = grown;
        p->capacity = cap;
    }
    IMRT_ALLOC(mask, imrt_grid_nvox(&p->grid));
    imrt_structure *s = &p->structures[p->nstructures];
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, len + 1);
    s->kind = kind;
    s->priority = priority;
    s->mask = mask;
    mask = NULL;
    if (index)
        *index = p->nstructures;
    p->nstructures++;
cleanup:
    imrt_free(mask);
    return status;
}

void imrt_structure_recount(const imrt_phantom *p, imrt_structure *s)
{
    int64_t n = imrt_grid_nvox(&p->grid), c = 0;
    for (int64_t v = 0; v < n; v++)
        c += s->mask[v] != 0;
    s->count = c;
}

double imrt_structure_volume_cc(const imrt_phantom *p, const imrt_structure *s)
{
    return (double)s->count * imrt_grid_voxel_cc(&p->grid);
}

imrt_status imrt_structure_geometry(const imrt_phantom *p, const imrt_structure *s,
                                    double centroid[3], double lo[3], double hi[3])
{
    const imrt_grid *g = &p->grid;
    double sum[3] = {0, 0, 0}, mn[3] = {INFINITY, INFINITY, INFINITY},
           mx[3] = {-INFINITY, -INFINITY, -INFINITY};
    int64_t count = 0;
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++) {
                if (!s->mask[imrt_grid_index(g, i, j, k)])
                    continue;
                double c[3];
                imrt_grid_center(g, i, j, k, c);
                for (int a = 0; a < 3; a++) {
                    sum[a] += c[a];
                    mn[a] = c[a] < mn[a] ? c[a] : mn[a];
                    mx[a] = c[a] > mx[a] ? c[a] : mx[a];
                }
                count++;
            }
    if (count == 0)
        return imrt_error(IMRT_ERR_RANGE, "structure '%s' is empty (no voxel centre inside)",
                          s->name);
    for (int a = 0; a < 3; a++) {
        if (centroid)
            centroid[a] = sum[a] / (double)count;
        if (lo)
            lo[a] = mn[a];
        if (hi)
            hi[a] = mx[a];
    }
    return IMRT_OK;
}

void imrt_phantom_label_map(const imrt_phantom *p, uint8_t *labels)
{
    int64_t n = imrt_grid_nvox(&p->grid);
    for (int64_t v = 0; v < n; v++) {
        int best = -1;
        for (int s = 0; s < p->nstructures; s++) {
            if (!p->structures[s].mask[v])
                continue;
            if (best < 0 || p->structures[s].priority <= p->structures[best].priority)
                best = s;
        }
        labels[v] = (uint8_t)(best + 1);
    }
}

/* ---- masks: margins and resampling ---- */

#define IMRT_MARGIN_FAR 4.0f       /* "unreached" scaled squared distance */
#define IMRT_MARGIN_TOL 1e-5f      /* slack on the <= 1 test (float sums) */

int64_t imrt_mask_count(const imrt_grid *g, const uint8_t *mask)
{
    int64_t n = imrt_grid_nvox(g), c = 0;
    for (int64_t v = 0; v < n; v++)
        c += mask[v] != 0;
    return c;
}

/* Windowed lower envelope along one axis inside the voxel box r[6]:
 * dst[p] = min over seeds q of the line of src[q] + cost(p - q), where
 * cost(+d) = (d*h/M_plus)^2 for d > 0 and (d*h/M_minus)^2 for d < 0, and
 * only costs <= 1 matter (the windows). */
static void margin_pass(const imrt_grid *g, int axis, const int r[6], const float *src,
                        float *dst, const float *cost_pos, int wpos, const float *cost_neg,
                        int wneg)
{
    const int64_t stride[3] = {1, (int64_t)g->nx, (int64_t)g->nx * g->ny};
    int a1 = (axis + 1) % 3, a2 = (axis + 2) % 3;
    int lo = r[2 * axis], hi = r[2 * axis + 1];
    int64_t s = stride[axis];
    for (int y = r[2 * a2]; y <= r[2 * a2 + 1]; y++)
        for (int x = r[2 * a1]; x <= r[2 * a1 + 1]; x++) {
            int64_t base = (int64_t)x * stride[a1] + (int64_t)y * stride[a2];
            int prev = lo - 1 - wpos, next = lo; /* nearest reached entries around p */
            for (int p = lo; p <= hi; p++) {
                float best = src[base + p * s];
                if (best < IMRT_MARGIN_FAR)
                    prev = p;
                if (next < p)
                    next = p;
                while (next <= hi && !(src[base + next * s] < IMRT_MARGIN_FAR))
                    next++;
                if (p - prev > wpos && (next > hi || next - p > wneg)) {
                    dst[base + p * s] = IMRT_MARGIN_FAR; /* nothing within reach */
                    continue;
                }
                if (best > 0.0f) {
                    for (int d = 1; d <= wpos && p - d >= lo; d++) {
                        float t = src[base + (p - d) * s] + cost_pos[d];
                        best = t < best ? t : best;
                    }
                    for (int d = 1; d <= wneg && p + d <= hi; d++) {
                        float t = src[base + (p + d) * s] + cost_neg[d];
                        best = t < best ? t : best;
                    }
                }
                dst[base + p * s] = best;
            }
        }
}

static imrt_status check_margins(const double m[6])
{
    for (int i = 0; i < 6; i++)
        if (!isfinite(m[i]) || m[i] < 0.0 || m[i] > 1000.0)
            return imrt_error(IMRT_ERR_RANGE, "margin %d = %g mm is outside [0, 1000] mm", i, m[i]);
    return IMRT_OK;
}

/* Window (in voxels) of an effective margin M along spacing h, capped by the
 * line length. */
static int margin_window(double m, double h, int len)
{
    if (m <= 0.0)
        return 0;
    double w = floor(m / h + 1e-9);
    return w > (double)(len - 1) ? len - 1 : (int)w;
}

/* Voxel box of the non-zero entries of mask != invert; 0 if none. */
static int mask_box(const imrt_grid *g, const uint8_t *mask, int invert, int r[6])
{
    int lo[3] = {g->nx, g->ny, g->nz}, hi[3] = {-1, -1, -1};
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++) {
            const uint8_t *row = mask + imrt_grid_index(g, 0, j, k);
            int first = -1, last = -1;
            for (int i = 0; i < g->nx; i++)
                if ((row[i] != 0) != invert) {
                    if (first < 0)
                        first = i;
                    last = i;
                }
            if (first < 0)
                continue;
            lo[0] = first < lo[0] ? first : lo[0];
            hi[0] = last > hi[0] ? last : hi[0];
            lo[1] = j < lo[1] ? j : lo[1];
            hi[1] = j > hi[1] ? j : hi[1];
            lo[2] = k < lo[2] ? k : lo[2];
            hi[2] = k > hi[2] ? k : hi[2];
        }
    if (hi[0] < 0)
        return 0;
    for (int a = 0; a < 3; a++) {
        r[2 * a] = lo[a];
        r[2 * a + 1] = hi[a];
    }
    return 1;
}

/* Dilation of the seeds (in != invert) restricted to the box r (seeds
 * outside r are ignored): reach[v] = 1 for voxels of r within the effective
 * margins of a seed, 0 elsewhere in r; voxels outside r untouched. */
static imrt_status dilate_box(const imrt_grid *g, const uint8_t *in, int invert,
                              const double margin_mm[6], const int r[6], uint8_t *reach)
{
    imrt_status status = IMRT_OK;
    float *f = NULL, *h = NULL, *cost = NULL;
    const int n[3] = {g->nx, g->ny, g->nz};
    const double sp[3] = {g->dx, g->dy, g->dz};
    int maxlen = IMRT_MAX(n[0], IMRT_MAX(n[1], n[2]));
    int64_t bn = (int64_t)(r[1] - r[0] + 1) * (r[3] - r[2] + 1) * (r[5] - r[4] + 1);
    (void)bn;
    int64_t nvox = imrt_grid_nvox(g);
    IMRT_ALLOC(f, nvox);
    IMRT_ALLOC(h, nvox);
    IMRT_ALLOC(cost, 2 * (int64_t)maxlen + 2);
    for (int k = r[4]; k <= r[5]; k++)
        for (int j = r[2]; j <= r[3]; j++)
            for (int i = r[0]; i <= r[1]; i++) {
                int64_t v = imrt_grid_index(g, i, j, k);
                f[v] = ((in[v] != 0) != invert) ? 0.0f : IMRT_MARGIN_FAR;
            }
    for (int a = 0; a < 3; a++) {
        double mneg = margin_mm[2 * a], mpos = margin_mm[2 * a + 1];
        /* the surface lies beyond the outermost centres: see phantom.h */
        mneg = mneg > 0.0 ? mneg + IMRT_MARGIN_BOUNDARY_OFFSET * sp[a] : 0.0;
        mpos = mpos > 0.0 ? mpos + IMRT_MARGIN_BOUNDARY_OFFSET * sp[a] : 0.0;
        int wpos = margin_window(mpos, sp[a], n[a]);
        int wneg = margin_window(mneg, sp[a], n[a]);
        if (wpos == 0 && wneg == 0)
            continue;
        float *cpos = cost, *cneg = cost + maxlen + 1;
        for (int d = 0; d <= wpos; d++) {
            double t = d * sp[a] / mpos;
            cpos[d] = (float)(t * t);
        }
        for (int d = 0; d <= wneg; d++) {
            double t = d * sp[a] / mneg;
            cneg[d] = (float)(t * t);
        }
        margin_pass(g, a, r, f, h, cpos, wpos, cneg, wneg);
        float *t = f;
        f = h;
        h = t;
    }
    for (int k = r[4]; k <= r[5]; k++)
        for (int j = r[2]; j <= r[3]; j++)
            for (int i = r[0]; i <= r[1]; i++) {
                int64_t v = imrt_grid_index(g, i, j, k);
                reach[v] = f[v] <= 1.0f + IMRT_MARGIN_TOL;
            }
cleanup:
    imrt_free(f);
    imrt_free(h);
    imrt_free(cost);
    return status;
}

/* Grow box r by the windows of the effective margins (reach: seeds move
 * towards +a by the +a margin), clipped to the grid. */
static void grow_box(const imrt_grid *g, const double margin_mm[6], int r[6])
{
    const int n[3] = {g->nx, g->ny, g->nz};
    const double sp[3] = {g->dx, g->dy, g->dz};
    for (int a = 0; a < 3; a++) {
        double mneg = margin_mm[2 * a] > 0.0 ? margin_mm[2 * a] + IMRT_MARGIN_BOUNDARY_OFFSET * sp[a] : 0.0;
        double mpos = margin_mm[2 * a + 1] > 0.0 ? margin_mm[2 * a + 1] + IMRT_MARGIN_BOUNDARY_OFFSET * sp[a] : 0.0;
        int lo = r[2 * a] - margin_window(mneg, sp[a], n[a]);
        int hi = r[2 * a + 1] + margin_window(mpos, sp[a], n[a]);
        r[2 * a] = lo < 0 ? 0 : lo;
        r[2 * a + 1] = hi > n[a] - 1 ? n[a] - 1 : hi;
    }
}

imrt_status imrt_mask_expand(const imrt_grid *g, const uint8_t *in, const double margin_mm[6],
                             uint8_t *out)
{
    imrt_status status = IMRT_OK;
    uint8_t *reach = NULL;
    if (!g || !in || !margin_mm || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_mask_expand: NULL argument");
    IMRT_TRY(check_margins(margin_mm));
    int64_t nvox = imrt_grid_nvox(g);
    int r[6];
    if (!mask_box(g, in, 0, r)) {
        memset(out, 0, (size_t)nvox);
        return IMRT_OK;
    }
    grow_box(g, margin_mm, r);
    IMRT_ALLOC(reach, nvox);
    IMRT_TRY(dilate_box(g, in, 0, margin_mm, r, reach));
    memcpy(out, reach, (size_t)nvox);
cleanup:
    imrt_free(reach);
    return status;
}

imrt_status imrt_mask_shrink(const imrt_grid *g, const uint8_t *in, const double margin_mm[6],
                             uint8_t *out)
{
    imrt_status status = IMRT_OK;
    uint8_t *reach = NULL;
    if (!g || !in || !margin_mm || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_mask_shrink: NULL argument");
    IMRT_TRY(check_margins(margin_mm));
    int64_t nvox = imrt_grid_nvox(g);
    int r[6];
    if (!mask_box(g, in, 0, r)) {
        memset(out, 0, (size_t)nvox);
        return IMRT_OK;
    }
    /* A voxel of `in` is removed when an outside voxel reaches it with the
     * mirrored margins; such outside voxels lie within the box of `in`
     * grown by the margins. */
    const double mirrored[6] = {margin_mm[1], margin_mm[0], margin_mm[3],
                                margin_mm[2], margin_mm[5], margin_mm[4]};
    grow_box(g, margin_mm, r);
    IMRT_ALLOC(reach, nvox);
    IMRT_TRY(dilate_box(g, in, 1, mirrored, r, reach));
    for (int64_t v = 0; v < nvox; v++)
        out[v] = in[v] && !reach[v];
cleanup:
    imrt_free(reach);
    return status;
}

/* Nearest source index along one axis for a target centre, clamped. */
static int nearest_clamped(double x, double origin, double h, int n)
{
    double c = floor((x - origin) / h + 0.5);
    if (!(c >= 0.0))
        return 0;
    if (c > (double)(n - 1))
        return n - 1;
    return (int)c;
}

imrt_status imrt_phantom_resample_nearest(const imrt_phantom *p, const imrt_grid *g,
                                  imrt_phantom **out)
{
    imrt_status status = IMRT_OK;
    imrt_phantom *q = NULL;
    int64_t *src = NULL;
    if (!p || !g || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_phantom_resample_nearest: NULL argument");
    *out = NULL;
    IMRT_TRY(imrt_phantom_create(g, p->name, 0.0f, &q));
    int64_t n = imrt_grid_nvox(g);
    IMRT_ALLOC(src, n);
    const imrt_grid *sg = &p->grid;
    for (int k = 0; k < g->nz; k++) {
        int ks = nearest_clamped(g->origin[2] + k * g->dz, sg->origin[2], sg->dz, sg->nz);
        for (int j = 0; j < g->ny; j++) {
            int js = nearest_clamped(g->origin[1] + j * g->dy, sg->origin[1], sg->dy, sg->ny);
            for (int i = 0; i < g->nx; i++) {
                int is = nearest_clamped(g->origin[0] + i * g->dx, sg->origin[0], sg->dx, sg->nx);
                int64_t v = imrt_grid_index(g, i, j, k);
                src[v] = imrt_grid_index(sg, is, js, ks);
                q->density[v] = p->density[src[v]];
            }
        }
    }
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *ps = &p->structures[s];
        int idx = -1;
        IMRT_TRY(imrt_phantom_add_structure(q, ps->name, ps->kind, ps->priority, &idx));
        imrt_structure *qs = &q->structures[idx];
        for (int64_t v = 0; v < n; v++)
            qs->mask[v] = ps->mask[src[v]] ? 1 : 0;
        imrt_structure_recount(q, qs);
    }
    *out = q;
    q = NULL;
cleanup:
    imrt_free(src);
    imrt_phantom_destroy(&q);
    return status;
}
