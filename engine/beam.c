/*
 * engine/beam.c - beam geometry (the IEC 61217 convention in one function),
 * BEV projection, beamlet selection from the target's projection, open
 * fields, and the 3D-conformal aperture.
 */
#include "imrt/beam.h"

#include "util_impl.h"

#include <math.h>
#include <string.h>

/* Largest beamlet window per beam (cells), a guard against absurd inputs. */
#define IMRT_BEAM_MAX_CELLS (1 << 22)

/* sin and cos of an angle in degrees, exact at multiples of 90 degrees so
 * that cardinal beams have exactly axis-aligned frames. */
static void sincos_deg(double deg, double *s, double *c)
{
    const double q = deg / 90.0;
    if (q == floor(q)) {
        static const double sv[4] = {0, 1, 0, -1}, cv[4] = {1, 0, -1, 0};
        long k = (long)fmod(q, 4.0);
        if (k < 0)
            k += 4;
        *s = sv[k];
        *c = cv[k];
        return;
    }
    const double r = deg * IMRT_PI / 180.0;
    *s = sin(r);
    *c = cos(r);
}

imrt_status imrt_beam_frame(double gantry_deg, double couch_deg, const double iso[3],
                            imrt_beam *b)
{
    if (!iso || !b)
        return imrt_error(IMRT_ERR_ARG, "imrt_beam_frame: NULL argument");
    if (!isfinite(gantry_deg) || !isfinite(couch_deg))
        return imrt_error(IMRT_ERR_RANGE, "beam angles gantry = %g, couch = %g must be finite",
                          gantry_deg, couch_deg);
    for (int a = 0; a < 3; a++)
        if (!isfinite(iso[a]))
            return imrt_error(IMRT_ERR_RANGE, "isocentre coordinate %d = %g is not finite", a,
                              iso[a]);
    double sg, cg, sc, cc;
    sincos_deg(gantry_deg, &sg, &cg);
    sincos_deg(couch_deg, &sc, &cc);
    /* Couch 0: unit vector from the isocentre to the source, and the BEV axes. */
    const double to_src0[3] = {sg, -cg, 0.0};
    const double eu0[3] = {cg, sg, 0.0};
    const double ev0[3] = {0.0, 0.0, 1.0};
    /* The couch turns the patient counter-clockwise seen from above about the
     * vertical axis (IEC fixed Z = LPS -y); in patient coordinates the beam
     * turns the other way:  x' = cos c x + sin c z,  z' = -sin c x + cos c z. */
    double to_src[3], eu[3], ev[3];
    const double *in[3] = {to_src0, eu0, ev0};
    double *outv[3] = {to_src, eu, ev};
    for (int k = 0; k < 3; k++) {
        outv[k][0] = cc * in[k][0] + sc * in[k][2];
        outv[k][1] = in[k][1];
        outv[k][2] = -sc * in[k][0] + cc * in[k][2];
    }
    b->gantry_deg = gantry_deg;
    b->couch_deg = couch_deg;
    b->sad = IMRT_SAD_MM;
    for (int a = 0; a < 3; a++) {
        b->iso[a] = iso[a];
        b->src[a] = iso[a] + b->sad * to_src[a];
        b->dir[a] = -to_src[a];
        b->eu[a] = eu[a];
        b->ev[a] = ev[a];
    }
    return IMRT_OK;
}

int imrt_beam_project(const imrt_beam *b, const double p[3], double *u, double *v, double *t)
{
    const double r[3] = {p[0] - b->src[0], p[1] - b->src[1], p[2] - b->src[2]};
    const double tt = r[0] * b->dir[0] + r[1] * b->dir[1] + r[2] * b->dir[2];
    if (t)
        *t = tt;
    if (!(tt > 1.0))
        return 0;
    const double s = b->sad / tt;
    *u = (r[0] * b->eu[0] + r[1] * b->eu[1] + r[2] * b->eu[2]) * s;
    *v = (r[0] * b->ev[0] + r[1] * b->ev[1] + r[2] * b->ev[2]) * s;
    return 1;
}

void imrt_beamset_destroy(imrt_beamset **pbs)
{
    if (!pbs || !*pbs)
        return;
    imrt_beamset *bs = *pbs;
    if (bs->beams)
        for (int b = 0; b < bs->nbeams; b++)
            imrt_free(bs->beams[b].cell);
    imrt_free(bs->beams);
    imrt_free(bs->uv);
    imrt_free(bs->beam_of);
    imrt_free(bs->cell_of);
    imrt_free(bs);
    *pbs = NULL;
}

int imrt_beamset_nbeams(const imrt_beamset *bs) { return bs ? bs->nbeams : 0; }

int32_t imrt_beamset_nbeamlets(const imrt_beamset *bs) { return bs ? bs->nbeamlets : 0; }

const imrt_beam *imrt_beamset_beam(const imrt_beamset *bs, int b)
{
    if (!bs || b < 0 || b >= bs->nbeams)
        return NULL;
    return &bs->beams[b];
}

void imrt_beamset_beamlet_uv(const imrt_beamset *bs, int32_t j, double uv[2])
{
    uv[0] = bs->uv[2 * (int64_t)j];
    uv[1] = bs->uv[2 * (int64_t)j + 1];
}

int imrt_beamset_beamlet_beam(const imrt_beamset *bs, int32_t j) { return bs->beam_of[j]; }

/* Projected target voxel centres of one beam: (u, v, h) triples, h = half the
 * diagonal of a square of the largest voxel spacing, scaled to the
 * isocentre plane: disks of radius h around the projected centres cover the
 * projection of the voxels (the covering radius of the projected lattice). */
static imrt_status project_structure(const imrt_beam *b, const imrt_phantom *p,
                                     const imrt_structure *s, double *uvh, int64_t *n_out)
{
    imrt_status status = IMRT_OK;
    const imrt_grid *g = &p->grid;
    const double half = 0.5 * sqrt(2.0) * IMRT_MAX(g->dx, IMRT_MAX(g->dy, g->dz));
    int64_t n = 0;
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++) {
                if (!s->mask[imrt_grid_index(g, i, j, k)])
                    continue;
                double c[3], u, v, t;
                imrt_grid_center(g, i, j, k, c);
                if (!imrt_beam_project(b, c, &u, &v, &t))
                    IMRT_FAIL(IMRT_ERR_RANGE,
                              "beam '%s': structure '%s' reaches behind the source (voxel %d,%d,%d "
                              "at %.1f mm along the axis); move the isocentre or the beam",
                              b->name, s->name, i, j, k, t);
                uvh[3 * n] = u;
                uvh[3 * n + 1] = v;
                uvh[3 * n + 2] = half * b->sad / t;
                n++;
            }
    *n_out = n;
cleanup:
    return status;
}

/* Mark the cells of a (lo_u, lo_v, nu, nv) integer window whose centres lie
 * within extra + h of some projected point. Cell (iu, iv) has its centre at
 * ((lo_u + iu) * w, (lo_v + iv) * w). */
static void mark_cells(const double *uvh, int64_t n, double extra, double w, int64_t lo_u,
                       int64_t lo_v, int nu, int nv, uint8_t *flag)
{
    for (int64_t q = 0; q < n; q++) {
        const double u = uvh[3 * q], v = uvh[3 * q + 1];
        const double r = extra + uvh[3 * q + 2];
        const double r2 = r * r;
        int64_t iu0 = (int64_t)ceil((u - r) / w) - lo_u, iu1 = (int64_t)floor((u + r) / w) - lo_u;
        int64_t iv0 = (int64_t)ceil((v - r) / w) - lo_v, iv1 = (int64_t)floor((v + r) / w) - lo_v;
        iu0 = IMRT_MAX(iu0, 0);
        iv0 = IMRT_MAX(iv0, 0);
        iu1 = IMRT_MIN(iu1, (int64_t)nu - 1);
        iv1 = IMRT_MIN(iv1, (int64_t)nv - 1);
        for (int64_t iv = iv0; iv <= iv1; iv++) {
            const double dv = (double)(iv + lo_v) * w - v;
            for (int64_t iu = iu0; iu <= iu1; iu++) {
                const double du = (double)(iu + lo_u) * w - u;
                if (du * du + dv * dv <= r2)
                    flag[iu + (int64_t)nu * iv] = 1;
            }
        }
    }
}

/* Beamlet cells of a target-shaped beam: fills b->u0, v0, nu, nv, cell (with
 * local indices 0..count-1, made global later) and count. */
static imrt_status select_target_cells(imrt_beam *b, const imrt_phantom *p,
                                       const imrt_structure *s, double w, double margin,
                                       double *uvh)
{
    imrt_status status = IMRT_OK;
    uint8_t *flag = NULL;
    int64_t n = 0;
    IMRT_TRY(project_structure(b, p, s, uvh, &n));
    double umin = INFINITY, umax = -INFINITY, vmin = INFINITY, vmax = -INFINITY, hmax = 0;
    for (int64_t q = 0; q < n; q++) {
        umin = fmin(umin, uvh[3 * q]);
        umax = fmax(umax, uvh[3 * q]);
        vmin = fmin(vmin, uvh[3 * q + 1]);
        vmax = fmax(vmax, uvh[3 * q + 1]);
        hmax = fmax(hmax, uvh[3 * q + 2]);
    }
    const double extra = 0.5 * w + margin;
    const double r = extra + hmax;
    const int64_t lo_u = (int64_t)floor((umin - r) / w), hi_u = (int64_t)ceil((umax + r) / w);
    const int64_t lo_v = (int64_t)floor((vmin - r) / w), hi_v = (int64_t)ceil((vmax + r) / w);
    const int64_t wu = hi_u - lo_u + 1, wv = hi_v - lo_v + 1;
    if (wu * wv > IMRT_BEAM_MAX_CELLS)
        IMRT_FAIL(IMRT_ERR_RANGE,
                  "beam '%s': the target projection needs %lld x %lld beamlets of %g mm (limit %d); "
                  "use a larger beamlet_mm",
                  b->name, (long long)wu, (long long)wv, w, IMRT_BEAM_MAX_CELLS);
    IMRT_ALLOC(flag, wu * wv);
    mark_cells(uvh, n, extra, w, lo_u, lo_v, (int)wu, (int)wv, flag);
    /* Trim to the bounding box of the kept cells. */
    int64_t iu_lo = wu, iu_hi = -1, iv_lo = wv, iv_hi = -1;
    for (int64_t iv = 0; iv < wv; iv++)
        for (int64_t iu = 0; iu < wu; iu++)
            if (flag[iu + wu * iv]) {
                iu_lo = IMRT_MIN(iu_lo, iu);
                iu_hi = IMRT_MAX(iu_hi, iu);
                iv_lo = IMRT_MIN(iv_lo, iv);
                iv_hi = IMRT_MAX(iv_hi, iv);
            }
    if (iu_hi < 0)
        IMRT_FAIL(IMRT_ERR_INTERNAL, "beam '%s': no beamlet selected for a non-empty target",
                  b->name);
    b->nu = (int)(iu_hi - iu_lo + 1);
    b->nv = (int)(iv_hi - iv_lo + 1);
    b->u0 = (double)(lo_u + iu_lo) * w;
    b->v0 = (double)(lo_v + iv_lo) * w;
    IMRT_ALLOC(b->cell, (int64_t)b->nu * b->nv);
    int32_t count = 0;
    for (int iv = 0; iv < b->nv; iv++)
        for (int iu = 0; iu < b->nu; iu++) {
            int64_t src = (iu + iu_lo) + wu * (iv + iv_lo);
            b->cell[iu + (int64_t)b->nu * iv] = flag[src] ? count++ : -1;
        }
    b->count = count;
cleanup:
    imrt_free(flag);
    return status;
}

/* Number of beamlets along one side of an open field; fails unless the side
 * is a whole multiple of w. */
static imrt_status open_field_cells(const char *beam, double side, double w, const char *axis,
                                    int *n)
{
    if (!isfinite(side) || side < w - 1e-9 || side > IMRT_FIELD_MAX_MM)
        return imrt_error(IMRT_ERR_RANGE,
                          "beam '%s': open field %s size %g mm is outside [%g, %g] mm", beam, axis,
                          side, w, IMRT_FIELD_MAX_MM);
    double q = side / w;
    double r = floor(q + 0.5);
    if (fabs(q - r) > 1e-6)
        return imrt_error(IMRT_ERR_RANGE,
                          "beam '%s': open field %s size %g mm is not a whole multiple of the "
                          "beamlet pitch %g mm",
                          beam, axis, side, w);
    *n = (int)r;
    return IMRT_OK;
}

imrt_status imrt_beamset_create(const imrt_phantom *p, const imrt_plan *plan,
                                const imrt_beam_def *defs, int nbeams, const char *target,
                                imrt_beamset **out)
{
    imrt_status status = IMRT_OK;
    imrt_beamset *bs = NULL;
    double *uvh = NULL;
    if (!p || !defs || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_beamset_create: NULL argument");
    *out = NULL;
    if (nbeams < 1 || nbeams > IMRT_MAX_BEAMS)
        return imrt_error(IMRT_ERR_RANGE, "number of beams %d is outside 1..%d", nbeams,
                          IMRT_MAX_BEAMS);
    const double w = plan ? plan->beamlet_mm : 5.0;
    const double margin = plan ? plan->beamlet_margin_mm : 5.0;
    if (!isfinite(w) || w < IMRT_BEAMLET_MIN_MM || w > IMRT_BEAMLET_MAX_MM)
        return imrt_error(IMRT_ERR_RANGE, "beamlet_mm = %g is outside [%g, %g] mm", w,
                          IMRT_BEAMLET_MIN_MM, IMRT_BEAMLET_MAX_MM);
    if (!isfinite(margin) || margin < 0 || margin > 100)
        return imrt_error(IMRT_ERR_RANGE, "beamlet_margin_mm = %g is outside [0, 100] mm",
                          margin);
    const imrt_structure *ts = NULL;
    if (target) {
        int ti = imrt_phantom_find(p, target);
        if (ti < 0)
            return imrt_error(IMRT_ERR_ARG, "target structure '%s' is not in phantom '%s'",
                              target, p->name);
        ts = &p->structures[ti];
        if (ts->count <= 0)
            return imrt_error(IMRT_ERR_RANGE, "target structure '%s' is empty", target);
    }
    for (int b = 0; b < nbeams; b++) {
        const imrt_beam_def *d = &defs[b];
        if (!isfinite(d->gantry_deg) || d->gantry_deg < 0 || d->gantry_deg >= 360)
            return imrt_error(IMRT_ERR_RANGE, "beam %d: gantry angle %g is outside [0, 360) deg",
                              b + 1, d->gantry_deg);
        if (!isfinite(d->couch_deg) || d->couch_deg < -90 || d->couch_deg > 90)
            return imrt_error(IMRT_ERR_RANGE, "beam %d: couch angle %g is outside [-90, 90] deg",
                              b + 1, d->couch_deg);
        if (!ts && (!d->open_field || !d->has_isocentre))
            return imrt_error(IMRT_ERR_ARG,
                              "beam %d needs a target structure (for its isocentre or its "
                              "beamlets) but none was given",
                              b + 1);
    }
    double centroid[3] = {0, 0, 0};
    if (ts)
        IMRT_TRY(imrt_structure_geometry(p, ts, centroid, NULL, NULL));

    IMRT_ALLOC(bs, 1);
    IMRT_ALLOC(bs->beams, nbeams);
    bs->nbeams = nbeams;
    bs->beamlet_mm = w;
    if (ts)
        IMRT_ALLOC(uvh, 3 * ts->count);
    int64_t total = 0;
    for (int b = 0; b < nbeams; b++) {
        const imrt_beam_def *d = &defs[b];
        imrt_beam *bm = &bs->beams[b];
        if (d->name[0])
            snprintf(bm->name, sizeof bm->name, "%s", d->name);
        else
            snprintf(bm->name, sizeof bm->name, "G%03.0f", d->gantry_deg);
        IMRT_TRY(imrt_beam_frame(d->gantry_deg, d->couch_deg,
                                 d->has_isocentre ? d->isocentre : centroid, bm));
        bm->open_field = d->open_field;
        if (d->open_field) {
            bm->field_mm[0] = d->field_mm[0];
            bm->field_mm[1] = d->field_mm[1];
            IMRT_TRY(open_field_cells(bm->name, d->field_mm[0], w, "u", &bm->nu));
            IMRT_TRY(open_field_cells(bm->name, d->field_mm[1], w, "v", &bm->nv));
            bm->u0 = -0.5 * (bm->nu - 1) * w;
            bm->v0 = -0.5 * (bm->nv - 1) * w;
            IMRT_ALLOC(bm->cell, (int64_t)bm->nu * bm->nv);
            for (int32_t c = 0; c < bm->nu * bm->nv; c++)
                bm->cell[c] = c;
            bm->count = bm->nu * bm->nv;
        } else {
            IMRT_TRY(select_target_cells(bm, p, ts, w, margin, uvh));
        }
        bm->first = (int32_t)total;
        total += bm->count;
        if (total > INT32_MAX / 2)
            IMRT_FAIL(IMRT_ERR_RANGE, "%lld beamlets exceed the limit of %d; use a larger "
                      "beamlet_mm or fewer beams", (long long)total, INT32_MAX / 2);
    }
    bs->nbeamlets = (int32_t)total;
    IMRT_ALLOC(bs->uv, 2 * total);
    IMRT_ALLOC(bs->beam_of, total);
    IMRT_ALLOC(bs->cell_of, 2 * total);
    for (int b = 0; b < nbeams; b++) {
        imrt_beam *bm = &bs->beams[b];
        for (int iv = 0; iv < bm->nv; iv++)
            for (int iu = 0; iu < bm->nu; iu++) {
                int32_t *c = &bm->cell[iu + (int64_t)bm->nu * iv];
                if (*c < 0)
                    continue;
                *c += bm->first;
                bs->uv[2 * (int64_t)*c] = bm->u0 + iu * w;
                bs->uv[2 * (int64_t)*c + 1] = bm->v0 + iv * w;
                bs->beam_of[*c] = b;
                bs->cell_of[2 * (int64_t)*c] = iu;
                bs->cell_of[2 * (int64_t)*c + 1] = iv;
            }
    }
    *out = bs;
    bs = NULL;
cleanup:
    imrt_free(uvh);
    imrt_beamset_destroy(&bs);
    return status;
}

imrt_status imrt_beamset_aperture(const imrt_beamset *bs, const imrt_phantom *p,
                                  const char *target, double margin_mm, uint8_t *in_aperture)
{
    imrt_status status = IMRT_OK;
    double *uvh = NULL;
    uint8_t *flag = NULL;
    if (!bs || !p || !target || !in_aperture)
        return imrt_error(IMRT_ERR_ARG, "imrt_beamset_aperture: NULL argument");
    if (!isfinite(margin_mm) || margin_mm < 0 || margin_mm > 100)
        return imrt_error(IMRT_ERR_RANGE, "aperture margin %g mm is outside [0, 100] mm",
                          margin_mm);
    int ti = imrt_phantom_find(p, target);
    if (ti < 0)
        return imrt_error(IMRT_ERR_ARG, "target structure '%s' is not in phantom '%s'", target,
                          p->name);
    const imrt_structure *ts = &p->structures[ti];
    if (ts->count <= 0)
        return imrt_error(IMRT_ERR_RANGE, "target structure '%s' is empty", target);
    IMRT_ALLOC(uvh, 3 * ts->count);
    memset(in_aperture, 0, (size_t)bs->nbeamlets);
    const double w = bs->beamlet_mm;
    for (int b = 0; b < bs->nbeams; b++) {
        const imrt_beam *bm = &bs->beams[b];
        int64_t n = 0;
        IMRT_TRY(project_structure(bm, p, ts, uvh, &n));
        /* Cells are centred at u0 + iu*w; shift the points so that the cell
         * lattice sits at integer multiples of w for mark_cells. */
        for (int64_t q = 0; q < n; q++) {
            uvh[3 * q] -= bm->u0;
            uvh[3 * q + 1] -= bm->v0;
        }
        IMRT_ALLOC(flag, (int64_t)bm->nu * bm->nv);
        mark_cells(uvh, n, margin_mm, w, 0, 0, bm->nu, bm->nv, flag);
        for (int64_t c = 0; c < (int64_t)bm->nu * bm->nv; c++)
            if (flag[c] && bm->cell[c] >= 0)
                in_aperture[bm->cell[c]] = 1;
        imrt_free(flag);
        flag = NULL;
    }
cleanup:
    imrt_free(flag);
    imrt_free(uvh);
    return status;
}
