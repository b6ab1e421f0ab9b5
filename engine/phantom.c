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
