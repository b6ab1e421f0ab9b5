/*
 * bench/case.c - the benchmark problems of bench/case.h: the TG-119 case
 * (or its generated stand-in), fused-pass programs and starting weights.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "case.h"

#include "synth.h"

#include "imrt/alloc.h"
#include "imrt/dose.h"
#include "imrt/machine.h"
#include "imrt/spec.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void tg119_defs(bench_case *c)
{
    /* phantoms/tg119_cshape.json */
    static const struct {
        const char *s;
        imrt_objective_kind k;
        double dose, vol, w;
    } def[] = {
        {"PTV", IMRT_OBJ_SQ_UNDERDOSE, 50.5, 0, 100}, {"PTV", IMRT_OBJ_SQ_OVERDOSE, 53, 0, 50},
        {"Core", IMRT_OBJ_MAX_DVH, 20, 10, 40},       {"Core", IMRT_OBJ_SQ_OVERDOSE, 25, 0, 20},
        {"BODY", IMRT_OBJ_SQ_OVERDOSE, 40, 0, 5},
    };
    c->ndefs = (int)(sizeof def / sizeof def[0]);
    c->defs = imrt_calloc((size_t)c->ndefs, sizeof *c->defs);
    if (!c->defs)
        bench_fail("case: out of memory");
    for (int i = 0; i < c->ndefs; i++) {
        snprintf(c->defs[i].structure, sizeof c->defs[i].structure, "%s", def[i].s);
        c->defs[i].kind = def[i].k;
        c->defs[i].dose = def[i].dose;
        c->defs[i].volume_pct = def[i].vol;
        c->defs[i].weight = def[i].w;
    }
}

const char *bench_box_mat(const bench_opts *o, char *buf, size_t n)
{
    const char *mat = o->arg ? o->arg : "../shared/data/BOXPHANTOM.mat";
    char tmp[PATH_MAX];
    if (access(mat, R_OK) != 0 || !realpath(mat, tmp))
        return NULL;
    snprintf(buf, n, "%s", tmp);
    return buf;
}

const char *bench_default_spec(void)
{
    const char *e = getenv("IMRT_BENCH_SPEC");
    return e && *e ? e : "phantoms/tg119_cshape.json";
}

static imrt_context *make_ctx(const bench_opts *o)
{
    imrt_context *ctx = NULL;
    if (imrt_context_create(&ctx) != IMRT_OK || imrt_context_set_threads(ctx, o->threads))
        bench_fail("%s: cannot create a context: %s", o->prog, imrt_last_error());
    return ctx;
}

/* Read a spec, replacing phantom.file by mat when given. */
static void load_spec(const bench_opts *o, const char *spec, const char *mat, bench_case *c)
{
    if (!mat) {
        if (imrt_spec_load(spec, NULL, &c->phantom, &c->plan) != IMRT_OK)
            bench_fail("%s: %s", o->prog, imrt_last_error());
        return;
    }
    json_error_t err;
    json_t *root = json_load_file(spec, 0, &err);
    json_t *ph = root ? json_object_get(root, "phantom") : NULL;
    if (!ph || !json_is_object(ph) || json_object_set_new(ph, "file", json_string(mat)) != 0)
        bench_fail("%s: %s: cannot read the spec or set phantom.file (%s, line %d)", o->prog,
                   spec, root ? "no phantom object" : err.text, err.line);
    char *text = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    if (!text)
        bench_fail("%s: out of memory", o->prog);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", spec);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    const imrt_status st = imrt_spec_parse(text, strlen(text), spec, dir, NULL, &c->phantom,
                                           &c->plan, NULL);
    free(text);
    if (st != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
}

void bench_case_spec(const bench_opts *o, const char *spec, const char *mat, double spacing_mm,
                     bench_case *c)
{
    memset(c, 0, sizeof *c);
    c->ctx = make_ctx(o);
    double t0 = bench_now();
    load_spec(o, spec, mat, c);
    c->spec_s = bench_now() - t0;
    c->rss_spec = bench_peak_rss();
    if (spacing_mm > 0)
        for (int a = 0; a < 3; a++)
            c->plan->dose_grid_mm[a] = spacing_mm;
    t0 = bench_now();
    const char *target = c->plan->rx.target[0] ? c->plan->rx.target : NULL;
    for (int s = 0; s < c->phantom->nstructures && !target; s++)
        if (c->phantom->structures[s].kind == IMRT_KIND_TARGET)
            target = c->phantom->structures[s].name;
    if (imrt_beamset_create(c->phantom, c->plan, c->plan->beams, c->plan->nbeams, target,
                            &c->bs) != IMRT_OK ||
        imrt_dose_grid_phantom(c->phantom, c->plan, &c->dose) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    c->setup_s = bench_now() - t0;
    c->rss_setup = bench_peak_rss();
    imrt_machine m;
    imrt_machine_default(&m);
    imrt_dose_options opt;
    imrt_dose_options_from_plan(c->plan, &opt);
    t0 = bench_now();
    if (imrt_dij_build(c->ctx, c->dose, c->bs, &m, &opt, &c->dij) != IMRT_OK)
        bench_fail("%s: %s", o->prog, imrt_last_error());
    c->build_s = bench_now() - t0;
    c->rss_dij = bench_peak_rss();
    const char *stem = strrchr(spec, '/');
    stem = stem ? stem + 1 : spec;
    snprintf(c->name, sizeof c->name, "%.*s %.3gmm", (int)strcspn(stem, "."), stem,
             c->dose->grid.dx);
    c->ndefs = c->plan->nobjectives;
    c->defs = imrt_calloc(c->ndefs > 0 ? (size_t)c->ndefs : 1, sizeof *c->defs);
    if (!c->defs)
        bench_fail("case: out of memory");
    if (c->ndefs > 0)
        memcpy(c->defs, c->plan->objectives, (size_t)c->ndefs * sizeof *c->defs);
}

void bench_case_tg119(const bench_opts *o, double spacing_mm, bench_case *c)
{
    if (!o->synthetic) {
        bench_case_spec(o, bench_default_spec(), NULL, spacing_mm, c);
        return;
    }
    memset(c, 0, sizeof *c);
    c->ctx = make_ctx(o);
    const double s = spacing_mm > 0 ? spacing_mm : 2.5;
    double t0 = bench_now();
    synth_tg119(s, &c->dij, &c->dose);
    c->build_s = bench_now() - t0;
    c->synthetic = 1;
    snprintf(c->name, sizeof c->name, "tg119_synthetic %.3gmm", s);
    tg119_defs(c);
}

void bench_case_free(bench_case *c)
{
    imrt_dij_destroy(&c->dij);
    imrt_phantom_destroy(&c->dose);
    imrt_beamset_destroy(&c->bs);
    imrt_phantom_destroy(&c->phantom);
    imrt_plan_destroy(&c->plan);
    imrt_context_destroy(&c->ctx);
    imrt_free(c->defs);
    memset(c, 0, sizeof *c);
}

/* Program with one class per distinct term list; class_of_row filled by
 * the caller. */
static void program_alloc(const imrt_dij *D, int nclasses, int nterms, bench_program *bp)
{
    memset(bp, 0, sizeof *bp);
    bp->row_class = imrt_calloc((size_t)D->nrows, sizeof *bp->row_class);
    bp->class_start = imrt_calloc((size_t)nclasses + 1, sizeof *bp->class_start);
    bp->term = imrt_calloc(nterms > 0 ? (size_t)nterms : 1, sizeof *bp->term);
    if (!bp->row_class || !bp->class_start || !bp->term)
        bench_fail("case: out of memory");
    bp->p.row_class = bp->row_class;
    bp->p.class_start = bp->class_start;
    bp->p.term = bp->term;
    bp->p.nclasses = nclasses;
    bp->p.nchannels = 1;
}

static void program_count(const imrt_dij *D, bench_program *bp)
{
    bp->active_rows = bp->active_nnz = 0;
    for (int64_t r = 0; r < D->nrows; r++)
        if (bp->row_class[r]) {
            bp->active_rows++;
            bp->active_nnz += D->rowptr[r + 1] - D->rowptr[r];
        }
}

void bench_program_all(const imrt_dij *D, double dose_gy, bench_program *bp)
{
    program_alloc(D, 2, 1, bp);
    bp->class_start[0] = 0;
    bp->class_start[1] = 0;
    bp->class_start[2] = 1;
    bp->term[0] = (imrt_voxel_term){IMRT_TERM_WINDOW, 0, 2.0 / (double)D->nrows, dose_gy,
                                    -INFINITY, INFINITY, 0.0};
    for (int64_t r = 0; r < D->nrows; r++)
        bp->row_class[r] = 1;
    program_count(D, bp);
}

void bench_program_dose_only(const imrt_dij *D, bench_program *bp)
{
    program_alloc(D, 2, 0, bp);
    for (int64_t r = 0; r < D->nrows; r++)
        bp->row_class[r] = 1;
    program_count(D, bp);
}

/* Window term of a penalty definition on a structure of n rows, or 0 when
 * the kind has no per-voxel window in the fused pass. */
static int def_term(const imrt_objective_def *d, int64_t n, imrt_voxel_term *t)
{
    const double coef = 2.0 * d->weight / (double)(n > 0 ? n : 1);
    *t = (imrt_voxel_term){IMRT_TERM_WINDOW, 0, coef, d->dose, -INFINITY, INFINITY, 0.0};
    switch (d->kind) {
    case IMRT_OBJ_SQ_DEVIATION:
        return 1;
    case IMRT_OBJ_SQ_OVERDOSE:
    case IMRT_OBJ_MAX_DVH:
        t->lo = d->dose;
        return 1;
    case IMRT_OBJ_SQ_UNDERDOSE:
    case IMRT_OBJ_MIN_DVH:
        t->hi = d->dose;
        return 1;
    default:
        return 0;
    }
}

/* Does structure a win a voxel over structure b for one kind? Targets
 * first, then the smaller priority number, then the later structure. */
static int wins(const imrt_phantom *P, int a, int b)
{
    const imrt_structure *sa = &P->structures[a], *sb = &P->structures[b];
    const int ta = sa->kind == IMRT_KIND_TARGET, tb = sb->kind == IMRT_KIND_TARGET;
    if (ta != tb)
        return ta;
    if (sa->priority != sb->priority)
        return sa->priority < sb->priority;
    return a > b;
}

void bench_program_plan(const bench_case *c, bench_program *bp)
{
    const imrt_dij *D = c->dij;
    const imrt_phantom *P = c->dose;
    const int nd = c->ndefs, ns = P->nstructures;
    if (ns > 16 || nd > 32)
        bench_fail("case: too many structures or objectives for the bench program");
    int sidx[32];
    for (int k = 0; k < nd; k++) {
        sidx[k] = imrt_phantom_find(P, c->defs[k].structure);
        if (sidx[k] < 0)
            bench_fail("case: objective structure %s not in the phantom", c->defs[k].structure);
    }
    /* per row: the set of structures (bit mask) -> the definitions acting on it */
    uint32_t *set = imrt_calloc((size_t)D->nrows, sizeof *set);
    if (!set)
        bench_fail("case: out of memory");
    for (int64_t r = 0; r < D->nrows; r++)
        for (int s = 0; s < ns; s++)
            if (P->structures[s].mask[D->voxel[r]])
                set[r] |= 1u << s;
    /* which defs act on a row of structure set m (overlap per kind) */
    uint32_t acts_cache[1 << 10];
    if (ns > 10)
        bench_fail("case: more than 10 structures");
    for (uint32_t m = 0; m < (1u << ns); m++) {
        uint32_t acts = 0;
        for (int k = 0; k < nd; k++) {
            const int s = sidx[k];
            if (!(m >> s & 1))
                continue;
            int won = 1;
            for (int q = 0; q < nd; q++) {
                const int s2 = sidx[q];
                if (q == k || s2 == s || c->defs[q].kind != c->defs[k].kind || !(m >> s2 & 1))
                    continue;
                if (wins(P, s2, s))
                    won = 0;
            }
            if (won)
                acts |= 1u << k;
        }
        acts_cache[m] = acts;
    }
    /* n per definition after the overlap rule */
    int64_t n[32] = {0};
    for (int64_t r = 0; r < D->nrows; r++)
        for (int k = 0; k < nd; k++)
            n[k] += acts_cache[set[r]] >> k & 1;
    /* classes: distinct non-empty acts sets */
    uint32_t cls_acts[1 << 10];
    int ncls = 1;
    uint16_t cls_of[1 << 10];
    for (uint32_t m = 0; m < (1u << ns); m++) {
        cls_of[m] = 0;
        uint32_t a = acts_cache[m];
        imrt_voxel_term t;
        uint32_t with_terms = 0;
        for (int k = 0; k < nd; k++)
            if ((a >> k & 1) && def_term(&c->defs[k], n[k], &t))
                with_terms |= 1u << k;
        if (!with_terms)
            continue;
        int found = 0;
        for (int q = 1; q < ncls; q++)
            if (cls_acts[q] == with_terms)
                found = q;
        if (!found) {
            found = ncls;
            cls_acts[ncls++] = with_terms;
        }
        cls_of[m] = (uint16_t)found;
    }
    int nterms = 0;
    for (int q = 1; q < ncls; q++)
        nterms += __builtin_popcount(cls_acts[q]);
    program_alloc(D, ncls, nterms, bp);
    int at = 0;
    bp->class_start[0] = bp->class_start[1] = 0;
    for (int q = 1; q < ncls; q++) {
        bp->class_start[q] = at;
        for (int k = 0; k < nd; k++)
            if (cls_acts[q] >> k & 1)
                def_term(&c->defs[k], n[k], &bp->term[at++]);
    }
    bp->class_start[ncls] = at;
    for (int64_t r = 0; r < D->nrows; r++)
        bp->row_class[r] = cls_of[set[r]];
    imrt_free(set);
    program_count(D, bp);
}

void bench_program_free(bench_program *bp)
{
    imrt_free(bp->row_class);
    imrt_free(bp->class_start);
    imrt_free(bp->term);
    memset(bp, 0, sizeof *bp);
}

int64_t bench_program_scattered(const bench_program *bp, const imrt_dij *D, const double *d,
                                int64_t *nnz)
{
    int64_t n = 0, z = 0;
    for (int64_t r = 0; r < D->nrows; r++) {
        const int c = bp->row_class[r];
        if (!c)
            continue;
        double deriv = 0.0;
        for (int32_t t = bp->class_start[c]; t < bp->class_start[c + 1]; t++) {
            const imrt_voxel_term *T = &bp->term[t];
            if (d[r] > T->lo && d[r] <= T->hi)
                deriv += T->coef * (d[r] - T->t);
        }
        if (deriv != 0.0) {
            n++;
            z += D->rowptr[r + 1] - D->rowptr[r];
        }
    }
    if (nnz)
        *nnz = z;
    return n;
}

int64_t bench_case_rows(const bench_case *c, const char *name, int64_t **rows)
{
    const int s = imrt_phantom_find(c->dose, name);
    if (s < 0)
        return 0;
    const uint8_t *mask = c->dose->structures[s].mask;
    int64_t n = 0;
    for (int64_t r = 0; r < c->dij->nrows; r++)
        n += mask[c->dij->voxel[r]] != 0;
    if (rows) {
        *rows = imrt_calloc(n > 0 ? (size_t)n : 1, sizeof **rows);
        if (!*rows)
            bench_fail("case: out of memory");
        int64_t i = 0;
        for (int64_t r = 0; r < c->dij->nrows; r++)
            if (mask[c->dij->voxel[r]])
                (*rows)[i++] = r;
    }
    return n;
}

void bench_case_start(const bench_case *c, double dose_gy, double *x)
{
    const imrt_dij *D = c->dij;
    const char *target = NULL;
    for (int s = 0; s < c->dose->nstructures && !target; s++)
        if (c->dose->structures[s].kind == IMRT_KIND_TARGET)
            target = c->dose->structures[s].name;
    int64_t *rows = NULL;
    const int64_t n = target ? bench_case_rows(c, target, &rows) : 0;
    /* mean target dose for x = 1 */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = D->rowptr[rows[i]]; k < D->rowptr[rows[i] + 1]; k++)
            sum += (double)D->val[k];
    imrt_free(rows);
    const double scale = sum > 0 ? dose_gy / (sum / (double)n) : 1.0;
    for (int32_t j = 0; j < D->ncols; j++)
        x[j] = scale;
}
