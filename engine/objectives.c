/*
 * engine/objectives.c - objective set: name resolution, overlap priority,
 * per-objective row lists, the per-voxel derivative program of the fused
 * pass, evaluation of F / the augmented Lagrangian and its gradient (fused
 * and two-pass forms), constraint multipliers and the default start.
 * Distributed runs (imrt_comm in the context): the row doses are gathered
 * after the product and the gradient is summed over the processes.
 * Formulas: include/imrt/objectives.h and docs/optimization.md.
 */
#include "imrt/objectives.h"

#include "imrt/spmv.h"
#include "rowset_impl.h"
#include "spmv_impl.h"
#include "util_impl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NKINDS 7              /* imrt_objective_kind values */
#define GEUD_FLOOR 1e-3       /* a < 0: doses below this fraction of D count as it */
#define AL_MU_GROWTH 10.0     /* penalty parameter growth when progress stalls */
#define AL_STALL 0.25         /* "progress" = violation fell below this fraction */
#define AL_MU_MAX_FACTOR 1e12 /* cap on mu / mu0 */
#define DVH_WEIGHT_GROWTH 10.0
#define IMRT_HESS_SUBSAMPLE_MIN 20000 /* objectives with fewer rows are never subsampled */

typedef struct {
    imrt_objective_def def; /* copy of the definition */
    int structure;          /* structure index in the dose phantom */
    int64_t n;              /* rows the objective acts on */
    int64_t *rows;          /* n dij row indices, increasing; owned */
    int channel;            /* accumulator of a gEUD or DVH-constraint term, else 0 */
    double *mvec;           /* mean objectives: (1/n) sum of their rows of D, ncols; owned */
    /* hard-constraint state */
    double *lam;            /* per-voxel multipliers (over/underdose), n; owned */
    double lam_s, lam_s0;   /* scalar multiplier (mean, gEUD) or DVH weight, and its start */
    double mu, mu0;         /* penalty parameter and its start */
    double prev_violation;  /* at the previous outer step (+inf at first) */
    /* last evaluation */
    double share;     /* p f (penalty) or multiplier term (constraint) */
    double value;     /* constrained quantity, Gy (see imrt_constraint_status) */
    double violation; /* relative, <= 0 when it holds */
    double gfac;      /* factor of the channel / mean-vector gradient */
    double wscale;    /* DVH: weight of the window terms (p or the DVH weight) */
    double win_lo, win_hi; /* DVH: derivative window lo < d <= hi or lo <= d < hi */
} objective;

struct imrt_objectives {
    const imrt_dij *D;
    int ndefs;
    objective *obj;         /* ndefs entries */
    int ncons;
    int *cons;              /* ncons definition indices */
    imrt_spmv_kernels kern;
    imrt_spmv_ws *ws;
    imrt_eval_mode mode;
    /* per-voxel derivative program of the fused pass */
    uint16_t *row_class;    /* nrows */
    int32_t *class_start;   /* nclasses + 1 */
    imrt_voxel_term *term;  /* class_start[nclasses] */
    imrt_voxel_program prog;
    /* work arrays */
    double *dose;           /* nrows, Gy */
    double *w;              /* nrows, two-pass derivative dL/dd */
    double *gch;            /* nchannels * width (the dij's stored columns) */
    int32_t width;          /* imrt_dij_width: beamlets + scatter-map columns */
    double *xe;             /* width: expanded weights, NULL when the dij has no maps */
    double *ge;             /* width: gradient before contraction, NULL likewise */
    int64_t corr_cap, ncorr;
    int64_t *corr_rows;     /* correction rows of the fused form */
    double *corr_w;         /* their derivatives */
    double *scratch;        /* DVH selection, max n over DVH objectives */
    double *target_vec;     /* ncols: (1/nT) sum over target rows of D */
    double *shares;         /* ndefs */
    double penalty;         /* F of the last evaluation */
    double pbar;            /* largest penalty weight (1 without penalties) */
    /* Gauss-Newton Hessian at the last evaluation (imrt_objectives_hessian_*) */
    int threads;            /* of the context at creation */
    int hstride;            /* subsampling the row set was built for (0 = none yet) */
    imrt_rowset *hset;      /* compact copy of the rows that can carry curvature */
    double *hwc;            /* hset->nrows: curvature of each row of the set */
    int64_t *hpair_start;   /* ndefs + 1 offsets into hpair_c / hpair_i */
    int64_t *hpair_c;       /* row of the set ... */
    int64_t *hpair_i;       /* ... and index in the objective's row list */
    double *hscale;         /* ndefs: subsampling factor of each objective */
    double *hmean;          /* ndefs: rank-one factor of each mean objective (0 = none) */
    int have_hess;          /* imrt_objectives_hessian_prepare succeeded */
    imrt_comm comm;         /* distributed run (copied from the context), else size 0 */
};

static const char *kind_name(imrt_objective_kind k)
{
    static const char *names[NKINDS] = {"squared deviation", "squared overdose",
                                        "squared underdose", "mean dose",
                                        "max DVH",           "min DVH",
                                        "gEUD"};
    return (unsigned)k < NKINDS ? names[k] : "unknown";
}

/* Does the fused pass need this objective's per-voxel dose? */
static int needs_dose(const objective *o)
{
    return o->def.kind != IMRT_OBJ_MEAN;
}

static int is_dvh(const objective *o)
{
    return o->def.kind == IMRT_OBJ_MAX_DVH || o->def.kind == IMRT_OBJ_MIN_DVH;
}

static int is_pointwise_constraint(const objective *o)
{
    return o->def.constraint &&
           (o->def.kind == IMRT_OBJ_SQ_OVERDOSE || o->def.kind == IMRT_OBJ_SQ_UNDERDOSE);
}

/* ---- validation --------------------------------------------------------- */

static imrt_status check_def(const imrt_objective_def *d, int k)
{
    const char *s = d->structure;
    if ((unsigned)d->kind >= NKINDS)
        return imrt_error(IMRT_ERR_ARG, "objective %d (%s): kind = %d is not an objective kind",
                          k, s, (int)d->kind);
    const char *kn = kind_name(d->kind);
    if (!d->constraint && !(isfinite(d->weight) && d->weight >= 0.0))
        return imrt_error(IMRT_ERR_ARG,
                          "objective %d (%s %s): weight = %g must be finite and >= 0", k, kn, s,
                          d->weight);
    if (!(isfinite(d->dose) && d->dose >= 0.0 && d->dose <= 1e4))
        return imrt_error(IMRT_ERR_ARG, "objective %d (%s %s): dose = %g Gy is outside [0, 1e4]",
                          k, kn, s, d->dose);
    if ((d->kind == IMRT_OBJ_MAX_DVH || d->kind == IMRT_OBJ_MIN_DVH || d->kind == IMRT_OBJ_GEUD ||
         d->constraint) &&
        !(d->dose > 0.0))
        return imrt_error(IMRT_ERR_ARG, "objective %d (%s %s): dose = %g Gy must be > 0", k, kn,
                          s, d->dose);
    if ((d->kind == IMRT_OBJ_MAX_DVH || d->kind == IMRT_OBJ_MIN_DVH) &&
        !(d->volume_pct > 0.0 && d->volume_pct < 100.0))
        return imrt_error(IMRT_ERR_ARG,
                          "objective %d (%s %s): volume_pct = %g is outside (0, 100)", k, kn, s,
                          d->volume_pct);
    if (d->kind == IMRT_OBJ_GEUD &&
        !(isfinite(d->a) && (d->a >= 1.0 || d->a < 0.0) && fabs(d->a) <= 200.0))
        return imrt_error(IMRT_ERR_ARG,
                          "objective %d (gEUD %s): a = %g must be in [1, 200] (organs at risk) "
                          "or [-200, 0) (targets)",
                          k, s, d->a);
    if (d->constraint && d->kind == IMRT_OBJ_SQ_DEVIATION)
        return imrt_error(IMRT_ERR_ARG,
                          "objective %d (squared deviation %s) cannot be a hard constraint "
                          "(use squared overdose / underdose)",
                          k, s);
    return IMRT_OK;
}

/* ---- structure-overlap signatures --------------------------------------- */

/* Distinct membership bit sets (over the referenced structures) of the
 * rows, with an open-addressing hash table. */
typedef struct {
    int words;        /* uint64 words per signature */
    int32_t count;    /* distinct signatures */
    int32_t capacity; /* signatures allocated */
    uint64_t *sig;    /* capacity * words */
    int64_t *rows;    /* rows per signature, capacity */
    int32_t *table;   /* hash slots (-1 empty), tsize */
    int32_t tsize;    /* power of two */
} sigset;

static uint64_t sig_hash(const uint64_t *s, int words)
{
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < words; i++) {
        h ^= s[i] + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
        h *= 0xBF58476D1CE4E5B9ull;
    }
    return h ^ (h >> 31);
}

static void sigset_free(sigset *ss)
{
    imrt_free(ss->sig);
    imrt_free(ss->rows);
    imrt_free(ss->table);
    memset(ss, 0, sizeof *ss);
}

static imrt_status sigset_rehash(sigset *ss, int32_t tsize)
{
    imrt_status status = IMRT_OK;
    int32_t *t = NULL;
    IMRT_ALLOC(t, tsize);
    for (int32_t i = 0; i < tsize; i++)
        t[i] = -1;
    for (int32_t id = 0; id < ss->count; id++) {
        uint64_t h = sig_hash(ss->sig + (size_t)id * (size_t)ss->words, ss->words);
        int32_t slot = (int32_t)(h & (uint64_t)(tsize - 1));
        while (t[slot] >= 0)
            slot = (slot + 1) & (tsize - 1);
        t[slot] = id;
    }
    imrt_free(ss->table);
    ss->table = t;
    ss->tsize = tsize;
    t = NULL;
cleanup:
    imrt_free(t);
    return status;
}

/* Id of signature s (adding it when new). */
static imrt_status sigset_find(sigset *ss, const uint64_t *s, int32_t *id)
{
    imrt_status status = IMRT_OK;
    const size_t w = (size_t)ss->words;
    uint64_t h = sig_hash(s, ss->words);
    int32_t slot = (int32_t)(h & (uint64_t)(ss->tsize - 1));
    while (ss->table[slot] >= 0) {
        int32_t cand = ss->table[slot];
        if (memcmp(ss->sig + (size_t)cand * w, s, w * sizeof *s) == 0) {
            *id = cand;
            return IMRT_OK;
        }
        slot = (slot + 1) & (ss->tsize - 1);
    }
    if (ss->count >= 65535)
        IMRT_FAIL(IMRT_ERR_RANGE,
                  "more than 65535 distinct structure overlaps among the objectives' structures");
    if (ss->count == ss->capacity) {
        int32_t cap = ss->capacity * 2;
        uint64_t *ns = NULL;
        int64_t *nr = NULL;
        IMRT_ALLOC(ns, (size_t)cap * w);
        nr = imrt_calloc((size_t)cap, sizeof *nr);
        if (!nr) {
            imrt_free(ns);
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot grow the structure-overlap table");
        }
        memcpy(ns, ss->sig, (size_t)ss->count * w * sizeof *ns);
        memcpy(nr, ss->rows, (size_t)ss->count * sizeof *nr);
        imrt_free(ss->sig);
        imrt_free(ss->rows);
        ss->sig = ns;
        ss->rows = nr;
        ss->capacity = cap;
    }
    memcpy(ss->sig + (size_t)ss->count * w, s, w * sizeof *s);
    ss->table[slot] = ss->count;
    *id = ss->count++;
    if (2 * ss->count > ss->tsize)
        IMRT_TRY(sigset_rehash(ss, ss->tsize * 2));
cleanup:
    return status;
}

static int sig_has(const uint64_t *s, int bit) { return (int)((s[bit >> 6] >> (bit & 63)) & 1u); }

/* ---- creation ----------------------------------------------------------- */

/* Better overlap owner for penalties: targets first, then the smaller
 * priority number, then the later structure. */
static int owner_better(const imrt_phantom *ph, int a, int b)
{
    const imrt_structure *sa = &ph->structures[a], *sb = &ph->structures[b];
    int ta = sa->kind == IMRT_KIND_TARGET, tb = sb->kind == IMRT_KIND_TARGET;
    if (ta != tb)
        return ta > tb;
    if (sa->priority != sb->priority)
        return sa->priority < sb->priority;
    return a > b;
}

/* Sort a class's terms by channel (insertion sort keeps definition order
 * within a channel). */
static void sort_terms(imrt_voxel_term *t, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        imrt_voxel_term v = t[i];
        int32_t j = i - 1;
        while (j >= 0 && t[j].channel > v.channel) {
            t[j + 1] = t[j];
            j--;
        }
        t[j + 1] = v;
    }
}

/* The fused-pass term of objective o (returns 0 when it has none). */
static int make_term(const objective *o, imrt_voxel_term *t)
{
    const imrt_objective_def *d = &o->def;
    const double n = (double)o->n;
    const double p = d->constraint ? 1.0 : d->weight;
    memset(t, 0, sizeof *t);
    t->type = IMRT_TERM_WINDOW;
    t->channel = o->channel;
    t->coef = 2.0 * p / n;
    t->t = d->dose;
    t->lo = -INFINITY;
    t->hi = INFINITY;
    if (is_pointwise_constraint(o) || d->kind == IMRT_OBJ_MEAN)
        return 0; /* corrections / mean vector */
    switch (d->kind) {
    case IMRT_OBJ_SQ_DEVIATION:
        break;
    case IMRT_OBJ_SQ_OVERDOSE:
    case IMRT_OBJ_MAX_DVH:
        t->lo = d->dose;
        break;
    case IMRT_OBJ_SQ_UNDERDOSE:
    case IMRT_OBJ_MIN_DVH:
        t->hi = d->dose;
        break;
    case IMRT_OBJ_GEUD:
        t->type = IMRT_TERM_POWER;
        t->coef = 1.0;
        t->lo = d->a < 0.0 ? GEUD_FLOOR * d->dose : 0.0;
        t->e = d->a - 1.0;
        break;
    default:
        return 0;
    }
    return 1;
}

/* out (ncols) = sum_i w_i D[rows_i], the map columns pulled back to the
 * beamlets (imrt_dij_contract). */
static imrt_status rows_sum(imrt_objectives *s, int64_t n, const int64_t *rows, const double *w,
                            double *out)
{
    const imrt_dij *D = s->D;
    double *acc = s->ge ? s->ge : out;
    memset(acc, 0, (size_t)(s->ge ? s->width : D->ncols) * sizeof *acc);
    s->kern.rows(D, n, rows, w, acc, s->ws);
    return s->ge ? imrt_dij_contract(D, s->threads, s->ge, out, 0) : IMRT_OK;
}

imrt_status imrt_objectives_create(const imrt_context *ctx, const imrt_dij *dij,
                                   const imrt_phantom *ph, const imrt_objective_def *defs,
                                   int ndefs, imrt_objectives **out)
{
    imrt_status status = IMRT_OK;
    imrt_objectives *s = NULL;
    int *ref = NULL;          /* referenced structure indices */
    int *bit_of = NULL;       /* structure index -> bit, -1 */
    uint8_t *carries = NULL;  /* [bit][kind]: carries a penalty of that kind */
    sigset ss = {0};
    uint64_t *cur = NULL;     /* current row's signature */
    int32_t *sig_of_row = NULL;
    int32_t *mstart = NULL, *members = NULL; /* members of each signature */
    int32_t *class_of_sig = NULL;
    int64_t *fill = NULL;
    double *tmpw = NULL;
    int64_t *trows = NULL;
    int nref = 0;

    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_create: out is NULL");
    *out = NULL;
    if (!dij || !ph || (ndefs > 0 && !defs) || ndefs < 0)
        return imrt_error(IMRT_ERR_ARG,
                          "imrt_objectives_create: NULL dij, phantom or definitions, or "
                          "ndefs = %d < 0",
                          ndefs);
    IMRT_TRY(imrt_spmv_check(dij));
    if (ph->grid.nx != dij->grid.nx || ph->grid.ny != dij->grid.ny || ph->grid.nz != dij->grid.nz)
        IMRT_FAIL(IMRT_ERR_ARG,
                  "dose phantom grid %d x %d x %d differs from the dij grid %d x %d x %d",
                  ph->grid.nx, ph->grid.ny, ph->grid.nz, dij->grid.nx, dij->grid.ny,
                  dij->grid.nz);
    const int64_t nvox = imrt_grid_nvox(&dij->grid);
    if (!dij->voxel)
        IMRT_FAIL(IMRT_ERR_ARG, "dij has no voxel index array");
    for (int64_t r = 0; r < dij->nrows; r++)
        if (dij->voxel[r] < 0 || dij->voxel[r] >= nvox)
            IMRT_FAIL(IMRT_ERR_ARG, "dij voxel[%lld] = %lld is outside the grid (0..%lld)",
                      (long long)r, (long long)dij->voxel[r], (long long)nvox - 1);

    IMRT_ALLOC(s, 1);
    s->D = dij;
    s->ndefs = ndefs;
    s->mode = IMRT_EVAL_FUSED;
    imrt_spmv_kernels_select(&s->kern, ctx);
    if (imrt_context_comm(ctx))
        s->comm = *imrt_context_comm(ctx);
    const int32_t ncols = dij->ncols;
    const int64_t nrows = dij->nrows;

    /* definitions: copy, resolve, validate */
    if (ndefs > 0) {
        IMRT_ALLOC(s->obj, ndefs);
        IMRT_ALLOC(s->shares, ndefs);
    }
    IMRT_ALLOC(bit_of, ph->nstructures > 0 ? ph->nstructures : 1);
    for (int i = 0; i < ph->nstructures; i++)
        bit_of[i] = -1;
    IMRT_ALLOC(ref, ndefs > 0 ? ndefs : 1);
    s->pbar = 0.0;
    for (int k = 0; k < ndefs; k++) {
        objective *o = &s->obj[k];
        o->def = defs[k];
        o->def.structure[IMRT_NAME_MAX - 1] = '\0';
        o->structure = imrt_phantom_find(ph, o->def.structure);
        if (o->structure < 0)
            IMRT_FAIL(IMRT_ERR_ARG, "objective %d (%s): unknown structure '%s'", k,
                      kind_name(o->def.kind), o->def.structure);
        IMRT_TRY(check_def(&o->def, k));
        if (bit_of[o->structure] < 0) {
            bit_of[o->structure] = nref;
            ref[nref++] = o->structure;
        }
        if (o->def.constraint)
            s->ncons++;
        else
            s->pbar = fmax(s->pbar, o->def.weight);
    }
    if (!(s->pbar > 0.0))
        s->pbar = 1.0;
    if (s->ncons > 0) {
        IMRT_ALLOC(s->cons, s->ncons);
        for (int k = 0, c = 0; k < ndefs; k++)
            if (s->obj[k].def.constraint)
                s->cons[c++] = k;
    }
    IMRT_ALLOC(carries, (size_t)(nref > 0 ? nref : 1) * NKINDS);
    for (int k = 0; k < ndefs; k++)
        if (!s->obj[k].def.constraint)
            carries[(size_t)bit_of[s->obj[k].structure] * NKINDS + s->obj[k].def.kind] = 1;

    /* signatures of the rows */
    ss.words = (nref + 63) / 64 > 0 ? (nref + 63) / 64 : 1;
    ss.capacity = 16;
    IMRT_ALLOC(ss.sig, (size_t)ss.capacity * (size_t)ss.words);
    IMRT_ALLOC(ss.rows, ss.capacity);
    IMRT_TRY(sigset_rehash(&ss, 64));
    IMRT_ALLOC(cur, ss.words);
    IMRT_ALLOC(sig_of_row, nrows);
    int32_t last = -1;
    for (int64_t r = 0; r < nrows; r++) {
        memset(cur, 0, (size_t)ss.words * sizeof *cur);
        const int64_t v = dij->voxel[r];
        for (int b = 0; b < nref; b++)
            if (ph->structures[ref[b]].mask[v])
                cur[b >> 6] |= (uint64_t)1 << (b & 63);
        int32_t id = 0;
        if (last >= 0 && memcmp(ss.sig + (size_t)last * (size_t)ss.words, cur,
                                (size_t)ss.words * sizeof *cur) == 0)
            id = last;
        else
            IMRT_TRY(sigset_find(&ss, cur, &id));
        sig_of_row[r] = id;
        ss.rows[id]++;
        last = id;
    }

    /* members of each signature: penalties by the overlap rule, constraints always */
    IMRT_ALLOC(mstart, ss.count + 1);
    IMRT_ALLOC(members, (size_t)ss.count * (size_t)(ndefs > 0 ? ndefs : 1));
    for (int32_t g = 0; g < ss.count; g++) {
        const uint64_t *sg = ss.sig + (size_t)g * (size_t)ss.words;
        int owner[NKINDS];
        for (int q = 0; q < NKINDS; q++) {
            owner[q] = -1;
            for (int b = 0; b < nref; b++)
                if (sig_has(sg, b) && carries[(size_t)b * NKINDS + (size_t)q] &&
                    (owner[q] < 0 || owner_better(ph, ref[b], owner[q])))
                    owner[q] = ref[b];
        }
        mstart[g + 1] = mstart[g];
        for (int k = 0; k < ndefs; k++) {
            const objective *o = &s->obj[k];
            if (!sig_has(sg, bit_of[o->structure]))
                continue;
            if (o->def.constraint || owner[o->def.kind] == o->structure)
                members[mstart[g + 1]++] = k;
        }
    }
    for (int32_t g = 0; g < ss.count; g++)
        for (int32_t m = mstart[g]; m < mstart[g + 1]; m++)
            s->obj[members[m]].n += ss.rows[g];

    /* row lists */
    IMRT_ALLOC(fill, ndefs > 0 ? ndefs : 1);
    for (int k = 0; k < ndefs; k++)
        if (s->obj[k].n > 0)
            IMRT_ALLOC(s->obj[k].rows, s->obj[k].n);
    for (int64_t r = 0; r < nrows; r++) {
        const int32_t g = sig_of_row[r];
        for (int32_t m = mstart[g]; m < mstart[g + 1]; m++)
            s->obj[members[m]].rows[fill[members[m]]++] = r;
    }

    /* channels: one per gEUD objective and per DVH constraint */
    int nch = 1;
    for (int k = 0; k < ndefs; k++) {
        objective *o = &s->obj[k];
        if (o->def.kind == IMRT_OBJ_GEUD || (o->def.constraint && is_dvh(o)))
            o->channel = nch++;
    }
    if (nch > 65535)
        IMRT_FAIL(IMRT_ERR_RANGE, "%d gEUD objectives and DVH constraints (at most 65534)",
                  nch - 1);

    /* classes of the fused pass: signatures whose members need per-voxel dose */
    IMRT_ALLOC(class_of_sig, ss.count);
    int32_t nclasses = 1, nterms = 0;
    for (int32_t g = 0; g < ss.count; g++) {
        int need = 0;
        for (int32_t m = mstart[g]; m < mstart[g + 1]; m++)
            if (s->obj[members[m]].n > 0 && needs_dose(&s->obj[members[m]])) {
                need = 1;
                nterms++;
            }
        class_of_sig[g] = need ? nclasses++ : 0;
    }
    if (nclasses > 65536)
        IMRT_FAIL(IMRT_ERR_RANGE, "%d classes of voxels for the fused pass (at most 65535)",
                  nclasses - 1);
    IMRT_ALLOC(s->class_start, nclasses + 1);
    IMRT_ALLOC(s->term, nterms > 0 ? nterms : 1);
    {
        int32_t nt = 0;
        s->class_start[0] = s->class_start[1] = 0;
        for (int32_t g = 0; g < ss.count; g++) {
            const int32_t c = class_of_sig[g];
            if (c == 0)
                continue;
            const int32_t first = nt;
            for (int32_t m = mstart[g]; m < mstart[g + 1]; m++) {
                imrt_voxel_term t;
                if (make_term(&s->obj[members[m]], &t))
                    s->term[nt++] = t;
            }
            sort_terms(s->term + first, nt - first);
            s->class_start[c + 1] = nt;
        }
    }
    IMRT_ALLOC(s->row_class, nrows);
    for (int64_t r = 0; r < nrows; r++)
        s->row_class[r] = (uint16_t)class_of_sig[sig_of_row[r]];
    s->prog.row_class = s->row_class;
    s->prog.class_start = s->class_start;
    s->prog.term = s->term;
    s->prog.nclasses = nclasses;
    s->prog.nchannels = nch;
    s->threads = imrt_context_threads(ctx);
    IMRT_TRY(imrt_spmv_ws_create(dij, s->threads, nch, s->row_class, &s->ws));

    /* work arrays */
    IMRT_ALLOC(s->dose, nrows);
    IMRT_ALLOC(s->w, nrows);
    s->width = imrt_dij_width(dij);
    IMRT_ALLOC(s->gch, (size_t)nch * (size_t)s->width);
    if (s->width > ncols) {
        IMRT_ALLOC(s->xe, s->width);
        IMRT_ALLOC(s->ge, s->width);
    }
    int64_t maxdvh = 0, maxmean = 0;
    for (int k = 0; k < ndefs; k++) {
        objective *o = &s->obj[k];
        if (is_dvh(o) || is_pointwise_constraint(o))
            s->corr_cap += o->n;
        if (is_dvh(o))
            maxdvh = IMRT_MAX(maxdvh, o->n);
        if (o->def.kind == IMRT_OBJ_MEAN)
            maxmean = IMRT_MAX(maxmean, o->n);
    }
    if (s->corr_cap > 0) {
        IMRT_ALLOC(s->corr_rows, s->corr_cap);
        IMRT_ALLOC(s->corr_w, s->corr_cap);
    }
    if (maxdvh > 0)
        IMRT_ALLOC(s->scratch, maxdvh);

    /* target rows for the starting point */
    int ntarget_refs = 0;
    for (int b = 0; b < nref; b++)
        ntarget_refs += ph->structures[ref[b]].kind == IMRT_KIND_TARGET;
    int64_t nt = 0;
    IMRT_ALLOC(trows, nrows);
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t v = dij->voxel[r];
        int in = 0;
        for (int i = 0; i < ph->nstructures && !in; i++) {
            const imrt_structure *st = &ph->structures[i];
            if (st->kind != IMRT_KIND_TARGET || (ntarget_refs > 0 && bit_of[i] < 0))
                continue;
            in = st->mask[v] != 0;
        }
        if (in)
            trows[nt++] = r;
    }
    if (nt == 0)
        for (int64_t r = 0; r < nrows; r++)
            trows[nt++] = r;
    IMRT_ALLOC(tmpw, IMRT_MAX(nt, maxmean));
    IMRT_ALLOC(s->target_vec, ncols);
    for (int64_t i = 0; i < nt; i++)
        tmpw[i] = 1.0 / (double)nt;
    IMRT_TRY(rows_sum(s, nt, trows, tmpw, s->target_vec));

    /* mean vectors, constraint state */
    for (int k = 0; k < ndefs; k++) {
        objective *o = &s->obj[k];
        if (o->def.kind == IMRT_OBJ_MEAN && o->n > 0) {
            IMRT_ALLOC(o->mvec, ncols);
            for (int64_t i = 0; i < o->n; i++)
                tmpw[i] = 1.0 / (double)o->n;
            IMRT_TRY(rows_sum(s, o->n, o->rows, tmpw, o->mvec));
        }
        if (is_pointwise_constraint(o) && o->n > 0)
            IMRT_ALLOC(o->lam, o->n);
    }
    if (s->comm.size > 1) { /* each process summed its own rows */
        IMRT_TRY(s->comm.sum(s->comm.user, s->target_vec, ncols));
        for (int k = 0; k < ndefs; k++)
            if (s->obj[k].mvec)
                IMRT_TRY(s->comm.sum(s->comm.user, s->obj[k].mvec, ncols));
    }
    imrt_objectives_al_reset(s);

    *out = s;
    s = NULL;
cleanup:
    imrt_objectives_destroy(&s);
    imrt_free(ref);
    imrt_free(bit_of);
    imrt_free(carries);
    sigset_free(&ss);
    imrt_free(cur);
    imrt_free(sig_of_row);
    imrt_free(mstart);
    imrt_free(members);
    imrt_free(class_of_sig);
    imrt_free(fill);
    imrt_free(tmpw);
    imrt_free(trows);
    return status;
}

void imrt_objectives_destroy(imrt_objectives **sp)
{
    if (!sp || !*sp)
        return;
    imrt_objectives *s = *sp;
    if (s->obj)
        for (int k = 0; k < s->ndefs; k++) {
            imrt_free(s->obj[k].rows);
            imrt_free(s->obj[k].mvec);
            imrt_free(s->obj[k].lam);
        }
    imrt_free(s->obj);
    imrt_free(s->cons);
    imrt_spmv_ws_destroy(&s->ws);
    imrt_free(s->row_class);
    imrt_free(s->class_start);
    imrt_free(s->term);
    imrt_free(s->dose);
    imrt_free(s->w);
    imrt_free(s->gch);
    imrt_free(s->xe);
    imrt_free(s->ge);
    imrt_free(s->corr_rows);
    imrt_free(s->corr_w);
    imrt_free(s->scratch);
    imrt_free(s->target_vec);
    imrt_free(s->shares);
    imrt_rowset_destroy(&s->hset);
    imrt_free(s->hwc);
    imrt_free(s->hpair_start);
    imrt_free(s->hpair_c);
    imrt_free(s->hpair_i);
    imrt_free(s->hscale);
    imrt_free(s->hmean);
    imrt_free(s);
    *sp = NULL;
}

void imrt_objectives_set_mode(imrt_objectives *s, imrt_eval_mode mode)
{
    if (s)
        s->mode = mode == IMRT_EVAL_TWO_PASS ? IMRT_EVAL_TWO_PASS : IMRT_EVAL_FUSED;
}

imrt_eval_mode imrt_objectives_mode(const imrt_objectives *s)
{
    return s ? s->mode : IMRT_EVAL_FUSED;
}

/* ---- evaluation helpers --------------------------------------------------- */

/* The j-th largest (1-based) of a[0..n-1]; reorders a. Quickselect with a
 * median-of-three pivot; deterministic. */
static double kth_largest(double *a, int64_t n, int64_t j)
{
    int64_t lo = 0, hi = n - 1, want = j - 1; /* index in descending order */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        double p0 = a[lo], p1 = a[mid], p2 = a[hi];
        double piv = p0 > p1 ? (p1 > p2 ? p1 : (p0 > p2 ? p2 : p0))
                             : (p0 > p2 ? p0 : (p1 > p2 ? p2 : p1));
        int64_t i = lo, k = hi;
        while (i <= k) {
            while (a[i] > piv)
                i++;
            while (a[k] < piv)
                k--;
            if (i <= k) {
                double t = a[i];
                a[i] = a[k];
                a[k] = t;
                i++;
                k--;
            }
        }
        if (want <= k)
            hi = k;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

static double dot_n(const double *a, const double *b, int32_t n)
{
    double s = 0.0;
    for (int32_t j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* Scalar AL term and its derivative for inequality c <= 0 or equality. */
static double al_term(double lam, double mu, double c, int equality, double *dpsi)
{
    if (equality) {
        *dpsi = lam + mu * c;
        return lam * c + 0.5 * mu * c * c;
    }
    const double t = fmax(0.0, lam + mu * c);
    *dpsi = t;
    return (t * t - lam * lam) / (2.0 * mu);
}

/* Add a correction row to the fused form's list. */
static inline void add_corr(imrt_objectives *s, int64_t r, double w)
{
    s->corr_rows[s->ncorr] = r;
    s->corr_w[s->ncorr] = w;
    s->ncorr++;
}

/* Evaluate objective o from the dose (and x for mean objectives in the
 * fused form): its share, constraint value, scalar gradient factors, and
 * the per-voxel derivative in the two-pass form (into s->w) or the
 * corrections in the fused form. */
static void eval_objective(imrt_objectives *s, objective *o, const double *x, int fused)
{
    const imrt_objective_def *d = &o->def;
    const double *dose = s->dose;
    const int64_t n = o->n;
    const double D = d->dose;
    const double p = d->weight;
    double *w = s->w;
    o->share = 0.0;
    o->gfac = 0.0;
    o->value = 0.0;
    o->violation = 0.0;
    if (n == 0)
        return;
    const double inv_n = 1.0 / (double)n;

    switch (d->kind) {
    case IMRT_OBJ_SQ_DEVIATION:
    case IMRT_OBJ_SQ_OVERDOSE:
    case IMRT_OBJ_SQ_UNDERDOSE: {
        const int over = d->kind == IMRT_OBJ_SQ_OVERDOSE, under = d->kind == IMRT_OBJ_SQ_UNDERDOSE;
        if (d->constraint) {
            /* per-voxel multipliers: c_i = d_i - D (over) or D - d_i (under) */
            const double sign = over ? 1.0 : -1.0;
            double psi = 0.0, ext = over ? -INFINITY : INFINITY;
            for (int64_t i = 0; i < n; i++) {
                const int64_t r = o->rows[i];
                const double c = sign * (dose[r] - D);
                const double t = fmax(0.0, o->lam[i] + o->mu * c);
                psi += t * t - o->lam[i] * o->lam[i];
                ext = over ? fmax(ext, dose[r]) : fmin(ext, dose[r]);
                if (t > 0.0) {
                    if (fused)
                        add_corr(s, r, sign * t * inv_n);
                    else
                        w[r] += sign * t * inv_n;
                }
            }
            o->share = psi * inv_n / (2.0 * o->mu);
            o->value = ext;
            o->violation = over ? (ext - D) / D : (D - ext) / D;
            return;
        }
        double sum = 0.0;
        const double coef = 2.0 * p * inv_n;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = o->rows[i];
            const double e = dose[r] - D;
            if ((over && e <= 0.0) || (under && e >= 0.0))
                continue;
            sum += e * e;
            if (!fused)
                w[r] += coef * e;
        }
        o->share = p * sum * inv_n;
        return;
    }
    case IMRT_OBJ_MEAN: {
        double m;
        if (fused) {
            m = dot_n(o->mvec, x, s->D->ncols);
        } else {
            m = 0.0;
            for (int64_t i = 0; i < n; i++)
                m += dose[o->rows[i]];
            m *= inv_n;
        }
        o->value = m;
        const double c = m - D;
        if (d->constraint) {
            double dpsi;
            o->share = al_term(o->lam_s, o->mu, c, !d->at_most, &dpsi);
            o->gfac = dpsi;
            o->violation = d->at_most ? c / D : fabs(c) / D;
        } else if (!d->at_most || c > 0.0) {
            o->share = p * c * c;
            o->gfac = 2.0 * p * c;
        }
        if (!fused && o->gfac != 0.0)
            for (int64_t i = 0; i < n; i++)
                w[o->rows[i]] += o->gfac * inv_n;
        return;
    }
    case IMRT_OBJ_MAX_DVH:
    case IMRT_OBJ_MIN_DVH: {
        const int maxdvh = d->kind == IMRT_OBJ_MAX_DVH;
        for (int64_t i = 0; i < n; i++)
            s->scratch[i] = dose[o->rows[i]];
        double lo, hi; /* window: lo < dd <= hi (max) or lo <= dd < hi (min) */
        if (maxdvh) {
            int64_t kx = (int64_t)floor(d->volume_pct * (double)n / 100.0 + 1e-9);
            kx = IMRT_MIN(kx, n - 1);
            const double dk = kth_largest(s->scratch, n, kx + 1);
            lo = D;
            hi = dk;
            o->value = dk;
            o->violation = (dk - D) / D;
        } else {
            int64_t q = (int64_t)ceil(d->volume_pct * (double)n / 100.0 - 1e-9);
            q = IMRT_MAX(IMRT_MIN(q, n), 1);
            const double dq = kth_largest(s->scratch, n, q);
            lo = dq;
            hi = D;
            o->value = dq;
            o->violation = (D - dq) / D;
        }
        o->win_lo = lo;
        o->win_hi = hi;
        const double wsc = d->constraint ? o->lam_s : p;
        o->wscale = wsc;
        const double coef = 2.0 * wsc * inv_n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = o->rows[i];
            const double dd = dose[r], e = dd - D;
            const int in = maxdvh ? (dd > lo && dd <= hi) : (dd >= lo && dd < hi);
            if (in) {
                sum += e * e;
                if (!fused)
                    w[r] += coef * e;
            } else if (fused) {
                /* the fused pass applied the one-sided term to every voxel
                 * beyond D; take it back where the window excludes the voxel */
                const int local = maxdvh ? dd > D : dd <= D;
                if (local && e != 0.0)
                    add_corr(s, r, -coef * e);
            }
        }
        o->share = wsc * sum * inv_n;
        /* the channel of a DVH constraint holds the unweighted window term */
        o->gfac = wsc;
        return;
    }
    case IMRT_OBJ_GEUD: {
        const double a = d->a;
        const double floor_d = a < 0.0 ? GEUD_FLOOR * D : 0.0;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double u = fmax(dose[o->rows[i]], floor_d) / D;
            sum += pow(u, a);
        }
        const double mpow = sum * inv_n;
        const double E = D * pow(mpow, 1.0 / a);
        o->value = E;
        /* dE/dd_i = mpow^(1/a - 1) u_i^(a-1) / n for d_i above the floor */
        const double dE = mpow > 0.0 ? pow(mpow, 1.0 / a - 1.0) * inv_n : 0.0;
        const double sign = a >= 1.0 ? 1.0 : -1.0; /* excess for OARs, shortfall for targets */
        const double c = sign * (E - D);
        if (d->constraint) {
            double dpsi;
            o->share = al_term(o->lam_s, o->mu, c, 0, &dpsi);
            o->gfac = dpsi * sign * dE;
            o->violation = c / D;
        } else if (c > 0.0) {
            o->share = p * c * c;
            o->gfac = 2.0 * p * (E - D) * dE;
        }
        if (!fused && o->gfac != 0.0)
            for (int64_t i = 0; i < n; i++) {
                const int64_t r = o->rows[i];
                if (dose[r] > floor_d)
                    w[r] += o->gfac * pow(dose[r] / D, a - 1.0);
            }
        return;
    }
    }
}

imrt_status imrt_objectives_eval(imrt_objectives *s, const double *x, double *f, double *grad)
{
    if (!s || !x || !f)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_eval: NULL set, weights or result");
    const imrt_dij *D = s->D;
    const size_t ncols = (size_t)D->ncols, width = (size_t)s->width;
    const int fused = s->mode == IMRT_EVAL_FUSED;
    s->ncorr = 0;
    const double *xk = x; /* the kernels' weights: x expanded to the map columns */
    if (s->xe) {
        IMRT_TRY_RET(imrt_dij_expand(D, s->threads, x, s->xe));
        xk = s->xe;
    }
    if (fused) {
        s->kern.fused(D, xk, &s->prog, s->dose, s->gch, s->ws);
    } else {
        s->kern.matvec(D, xk, s->dose, s->ws);
        memset(s->w, 0, (size_t)D->nrows * sizeof *s->w);
    }
    const int dist = s->comm.size > 1;
    if (dist) {
        imrt_status st = s->comm.gather(s->comm.user, s->dose, D->nrows, D->row_begin, D->row_end);
        if (st != IMRT_OK)
            return st;
    }
    double total = 0.0, penalty = 0.0;
    for (int k = 0; k < s->ndefs; k++) {
        objective *o = &s->obj[k];
        eval_objective(s, o, x, fused);
        s->shares[k] = o->share;
        total += o->share;
        if (!o->def.constraint)
            penalty += o->share;
    }
    s->penalty = penalty;
    if (grad) {
        double *gk = s->ge ? s->ge : grad; /* gradient over the stored columns */
        if (fused) {
            memcpy(gk, s->gch, width * sizeof *gk);
            for (int k = 0; k < s->ndefs; k++) {
                const objective *o = &s->obj[k];
                if (o->gfac == 0.0)
                    continue;
                const double *v = NULL;
                size_t len = width;
                if (o->def.kind == IMRT_OBJ_MEAN) {
                    v = dist && s->comm.rank > 0 ? NULL : o->mvec; /* summed: add once */
                    len = ncols; /* already over the beamlets */
                } else if (o->channel > 0) {
                    v = s->gch + (size_t)o->channel * width;
                }
                if (v)
                    for (size_t j = 0; j < len; j++)
                        gk[j] += o->gfac * v[j];
            }
            if (s->ncorr > 0)
                s->kern.rows(D, s->ncorr, s->corr_rows, s->corr_w, gk, s->ws);
        } else {
            s->kern.rmatvec(D, s->w, gk, s->ws);
        }
        if (s->ge)
            IMRT_TRY_RET(imrt_dij_contract(D, s->threads, s->ge, grad, 0));
        if (dist) {
            imrt_status st = s->comm.sum(s->comm.user, grad, (int64_t)ncols);
            if (st != IMRT_OK)
                return st;
        }
    }
    *f = total;
    if (!isfinite(total))
        return imrt_error(IMRT_ERR_NUMERIC,
                          "objective value is not finite (%g): weights hold NaN or infinity?",
                          total);
    return IMRT_OK;
}

/* ---- accessors ------------------------------------------------------------ */

int imrt_objectives_count(const imrt_objectives *s) { return s ? s->ndefs : 0; }

int32_t imrt_objectives_ncols(const imrt_objectives *s) { return s ? s->D->ncols : 0; }

int64_t imrt_objectives_nrows(const imrt_objectives *s) { return s ? s->D->nrows : 0; }

double imrt_objectives_penalty(const imrt_objectives *s) { return s ? s->penalty : 0.0; }

double imrt_objectives_share(const imrt_objectives *s, int k)
{
    return s && k >= 0 && k < s->ndefs ? s->shares[k] : 0.0;
}

const double *imrt_objectives_shares(const imrt_objectives *s) { return s ? s->shares : NULL; }

int64_t imrt_objectives_rows(const imrt_objectives *s, int k, const int64_t **rows)
{
    if (!s || k < 0 || k >= s->ndefs)
        return -1;
    if (rows)
        *rows = s->obj[k].rows;
    return s->obj[k].n;
}

const double *imrt_objectives_dose(const imrt_objectives *s) { return s ? s->dose : NULL; }

/* ---- constraints ------------------------------------------------------------ */

int imrt_objectives_nconstraints(const imrt_objectives *s) { return s ? s->ncons : 0; }

imrt_status imrt_objectives_constraint(const imrt_objectives *s, int i, double tol,
                                       imrt_constraint_status *st)
{
    if (!s || !st || i < 0 || i >= s->ncons)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_constraint: constraint %d of %d", i,
                          s ? s->ncons : 0);
    const objective *o = &s->obj[s->cons[i]];
    st->def = s->cons[i];
    st->value = o->value;
    st->bound = o->def.dose;
    st->violation = o->n > 0 ? o->violation : 0.0;
    st->holds = st->violation <= tol;
    return IMRT_OK;
}

double imrt_objectives_al_update(imrt_objectives *s, double tol)
{
    if (!s || s->ncons == 0)
        return 0.0;
    double worst = 0.0;
    int any = 0;
    for (int i = 0; i < s->ncons; i++) {
        objective *o = &s->obj[s->cons[i]];
        if (o->n == 0)
            continue;
        const double v = o->violation;
        worst = any ? fmax(worst, v) : v;
        any = 1;
        const double D = o->def.dose;
        if (is_pointwise_constraint(o)) {
            const double sign = o->def.kind == IMRT_OBJ_SQ_OVERDOSE ? 1.0 : -1.0;
            for (int64_t j = 0; j < o->n; j++) {
                const double c = sign * (s->dose[o->rows[j]] - D);
                o->lam[j] = fmax(0.0, o->lam[j] + o->mu * c);
            }
        } else if (is_dvh(o)) {
            if (v > tol)
                o->lam_s *= DVH_WEIGHT_GROWTH;
            continue;
        } else {
            /* mean or gEUD: c in Gy, from the stored relative violation */
            const int equality = o->def.kind == IMRT_OBJ_MEAN && !o->def.at_most;
            double c = o->def.kind == IMRT_OBJ_MEAN ? o->value - D : v * D;
            o->lam_s = equality ? o->lam_s + o->mu * c : fmax(0.0, o->lam_s + o->mu * c);
        }
        const double av = o->def.kind == IMRT_OBJ_MEAN && !o->def.at_most ? fabs(v) : v;
        if (av > tol && av > AL_STALL * o->prev_violation && o->mu < AL_MU_MAX_FACTOR * o->mu0)
            o->mu *= AL_MU_GROWTH;
        o->prev_violation = av;
    }
    return worst;
}

void imrt_objectives_al_reset(imrt_objectives *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ncons; i++) {
        objective *o = &s->obj[s->cons[i]];
        o->mu0 = o->mu = 2.0 * s->pbar;
        o->lam_s0 = is_dvh(o) ? s->pbar : 0.0;
        o->lam_s = o->lam_s0;
        o->prev_violation = INFINITY;
        if (o->lam)
            memset(o->lam, 0, (size_t)o->n * sizeof *o->lam);
    }
}

/* ---- starting point ----------------------------------------------------------- */

double imrt_objectives_target_mean(const imrt_objectives *s, const double *x)
{
    if (!s || !x)
        return 0.0;
    return dot_n(s->target_vec, x, s->D->ncols);
}

imrt_status imrt_objectives_default_start(const imrt_objectives *s, double dose_gy, double *x)
{
    if (!s || !x)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_default_start: NULL set or weights");
    if (!(isfinite(dose_gy) && dose_gy > 0.0))
        return imrt_error(IMRT_ERR_RANGE,
                          "prescription dose = %g Gy must be finite and > 0 for the starting point",
                          dose_gy);
    const int32_t n = s->D->ncols;
    double per_unit = 0.0; /* mean target dose for all weights 1 */
    for (int32_t j = 0; j < n; j++)
        per_unit += s->target_vec[j];
    if (!(per_unit > 0.0))
        return imrt_error(IMRT_ERR_RANGE,
                          "the target receives no dose from any beamlet: no starting point");
    const double c = dose_gy / per_unit;
    for (int32_t j = 0; j < n; j++)
        x[j] = c;
    return IMRT_OK;
}

/* ---- Gauss-Newton Hessian ------------------------------------------------------ */

int imrt_objectives_hessian_supported(const imrt_objectives *s)
{
    if (!s || s->comm.size > 1)
        return 0; /* each process holds a block of rows: products would need a sum */
    for (int k = 0; k < s->ndefs; k++)
        if (s->obj[k].def.kind == IMRT_OBJ_GEUD && s->obj[k].n > 0)
            return 0;
    return 1;
}

int imrt_objectives_hessian_exact(const imrt_objectives *s)
{
    if (!imrt_objectives_hessian_supported(s))
        return 0;
    for (int k = 0; k < s->ndefs; k++)
        if (is_dvh(&s->obj[k]) && s->obj[k].n > 0)
            return 0;
    return 1;
}

/* Curvature of objective o at row i of its list (dose dd), 0 when the
 * row's term is inactive. */
static double row_curvature(const objective *o, int64_t i, double dd)
{
    const imrt_objective_def *d = &o->def;
    const double inv_n = 1.0 / (double)o->n;
    if (is_pointwise_constraint(o)) {
        const double c = d->kind == IMRT_OBJ_SQ_OVERDOSE ? dd - d->dose : d->dose - dd;
        return o->lam[i] + o->mu * c > 0.0 ? o->mu * inv_n : 0.0;
    }
    switch (d->kind) {
    case IMRT_OBJ_SQ_DEVIATION:
        return 2.0 * d->weight * inv_n;
    case IMRT_OBJ_SQ_OVERDOSE:
        return dd > d->dose ? 2.0 * d->weight * inv_n : 0.0;
    case IMRT_OBJ_SQ_UNDERDOSE:
        return dd < d->dose ? 2.0 * d->weight * inv_n : 0.0;
    case IMRT_OBJ_MAX_DVH:
        return dd > o->win_lo && dd <= o->win_hi ? 2.0 * o->wscale * inv_n : 0.0;
    case IMRT_OBJ_MIN_DVH:
        return dd >= o->win_lo && dd < o->win_hi ? 2.0 * o->wscale * inv_n : 0.0;
    default:
        return 0.0;
    }
}

/* Does objective o carry per-row curvature? */
static int has_row_curvature(const objective *o)
{
    return o->n > 0 && o->def.kind != IMRT_OBJ_MEAN && o->def.kind != IMRT_OBJ_GEUD;
}

static int on_lattice(const imrt_grid *g, int64_t voxel, int stride)
{
    int a, b, c;
    imrt_grid_ijk(g, voxel, &a, &b, &c);
    return a % stride == 0 && b % stride == 0 && c % stride == 0;
}

/* The row set of the Hessian model for this stride: every row of the small
 * objectives, the lattice rows of the large ones; and the (set row,
 * objective row) pairs of each objective. */
static imrt_status build_hessian_rows(imrt_objectives *s, int stride)
{
    imrt_status status = IMRT_OK;
    const imrt_dij *D = s->D;
    const int64_t nrows = D->nrows;
    int64_t *map = NULL, *rows = NULL;
    uint8_t *keep = NULL, *usek = NULL;
    imrt_rowset_destroy(&s->hset);
    imrt_free(s->hwc);
    imrt_free(s->hpair_c);
    imrt_free(s->hpair_i);
    s->hwc = NULL;
    s->hpair_c = s->hpair_i = NULL;
    s->hstride = 0;
    if (!s->hpair_start) {
        IMRT_ALLOC(s->hpair_start, s->ndefs + 1);
        IMRT_ALLOC(s->hscale, s->ndefs > 0 ? s->ndefs : 1);
        IMRT_ALLOC(s->hmean, s->ndefs > 0 ? s->ndefs : 1);
    }
    IMRT_ALLOC(map, nrows);
    IMRT_ALLOC(keep, nrows);
    IMRT_ALLOC(usek, s->ndefs > 0 ? s->ndefs : 1);
    int64_t npairs = 0;
    for (int k = 0; k < s->ndefs; k++) {
        const objective *o = &s->obj[k];
        s->hscale[k] = 1.0;
        if (!has_row_curvature(o))
            continue;
        const int sub = stride > 1 && o->n >= IMRT_HESS_SUBSAMPLE_MIN;
        int64_t kept = 0;
        for (int64_t i = 0; i < o->n; i++)
            kept += !sub || on_lattice(&D->grid, D->voxel[o->rows[i]], stride);
        const int use = sub && kept > 0;
        usek[k] = (uint8_t)use;
        if (!use)
            kept = o->n;
        s->hscale[k] = (double)o->n / (double)kept;
        for (int64_t i = 0; i < o->n; i++)
            if (!use || on_lattice(&D->grid, D->voxel[o->rows[i]], stride))
                keep[o->rows[i]] = (uint8_t)(use ? 2 : 1);
        npairs += kept;
    }
    int64_t nset = 0;
    for (int64_t r = 0; r < nrows; r++)
        if (keep[r])
            map[r] = nset++;
    IMRT_ALLOC(rows, nset > 0 ? nset : 1);
    for (int64_t r = 0; r < nrows; r++)
        if (keep[r])
            rows[map[r]] = r;
    IMRT_TRY(imrt_rowset_create(D, rows, nset, imrt_spmv_ws_lead(s->ws, D), s->threads,
                                &s->hset));
    IMRT_ALLOC(s->hwc, nset > 0 ? nset : 1);
    IMRT_ALLOC(s->hpair_c, npairs > 0 ? npairs : 1);
    IMRT_ALLOC(s->hpair_i, npairs > 0 ? npairs : 1);
    int64_t q = 0;
    for (int k = 0; k < s->ndefs; k++) {
        const objective *o = &s->obj[k];
        s->hpair_start[k] = q;
        if (!has_row_curvature(o))
            continue;
        const int use = usek[k];
        for (int64_t i = 0; i < o->n; i++) {
            const int64_t r = o->rows[i];
            if (use && !on_lattice(&D->grid, D->voxel[r], stride))
                continue;
            s->hpair_c[q] = map[r];
            s->hpair_i[q] = i;
            q++;
        }
    }
    s->hpair_start[s->ndefs] = q;
    s->hstride = stride;
cleanup:
    imrt_free(map);
    imrt_free(rows);
    imrt_free(keep);
    imrt_free(usek);
    return status;
}

imrt_status imrt_objectives_hessian_prepare(imrt_objectives *s, int stride, double *diag,
                                            double *nnz_frac)
{
    imrt_status status = IMRT_OK;
    if (!s || stride < 1)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_hessian_prepare: NULL set or stride < 1");
    if (!imrt_objectives_hessian_supported(s))
        return imrt_error(IMRT_ERR_ARG, "the Gauss-Newton Hessian does not cover gEUD objectives");
    const imrt_dij *D = s->D;
    const int32_t ncols = D->ncols;
    s->have_hess = 0;
    if (s->hstride != stride)
        IMRT_TRY(build_hessian_rows(s, stride));
    imrt_rowset *hs = s->hset;
    memset(s->hwc, 0, (size_t)(hs->nrows > 0 ? hs->nrows : 1) * sizeof *s->hwc);
    for (int k = 0; k < s->ndefs; k++) {
        objective *o = &s->obj[k];
        s->hmean[k] = 0.0;
        if (o->n == 0)
            continue;
        if (o->def.kind == IMRT_OBJ_MEAN) {
            const double c = o->value - o->def.dose;
            if (!o->def.constraint)
                s->hmean[k] = !o->def.at_most || c > 0.0 ? 2.0 * o->def.weight : 0.0;
            else
                s->hmean[k] = !o->def.at_most || o->lam_s + o->mu * c > 0.0 ? o->mu : 0.0;
            continue;
        }
        const double scale = s->hscale[k];
        for (int64_t q = s->hpair_start[k]; q < s->hpair_start[k + 1]; q++) {
            const int64_t i = s->hpair_i[q];
            s->hwc[s->hpair_c[q]] += scale * row_curvature(o, i, s->dose[o->rows[i]]);
        }
    }
    if (nnz_frac) {
        int64_t used = 0;
        for (int64_t i = 0; i < hs->nrows; i++)
            if (s->hwc[i] != 0.0)
                used += hs->ptr[i + 1] - hs->ptr[i];
        *nnz_frac = D->nnz > 0 ? (double)used / (double)D->nnz : 0.0;
    }
    if (diag) {
        /* with scatter maps: the map columns' diagonal pulled back through
         * the squared node weights (cross terms left out: a preconditioner) */
        imrt_rowset_diag(hs, s->hwc, s->ge ? s->ge : diag);
        if (s->ge)
            IMRT_TRY(imrt_dij_contract(D, s->threads, s->ge, diag, 1));
        for (int k = 0; k < s->ndefs; k++)
            if (s->hmean[k] != 0.0)
                for (int32_t j = 0; j < ncols; j++)
                    diag[j] += s->hmean[k] * s->obj[k].mvec[j] * s->obj[k].mvec[j];
    }
    s->have_hess = 1;
cleanup:
    return status;
}

imrt_status imrt_objectives_hessian_vec(imrt_objectives *s, const double *v, double *hv)
{
    if (!s || !v || !hv)
        return imrt_error(IMRT_ERR_ARG, "imrt_objectives_hessian_vec: NULL argument");
    if (!s->have_hess)
        return imrt_error(IMRT_ERR_ARG,
                          "imrt_objectives_hessian_vec: call imrt_objectives_hessian_prepare first");
    const int32_t ncols = s->D->ncols;
    if (s->xe) {
        IMRT_TRY_RET(imrt_dij_expand(s->D, s->threads, v, s->xe));
        imrt_rowset_wtw(s->hset, s->hwc, s->xe, s->ge);
        IMRT_TRY_RET(imrt_dij_contract(s->D, s->threads, s->ge, hv, 0));
    } else {
        imrt_rowset_wtw(s->hset, s->hwc, v, hv);
    }
    for (int k = 0; k < s->ndefs; k++)
        if (s->hmean[k] != 0.0) {
            const double *m = s->obj[k].mvec;
            const double f = s->hmean[k] * dot_n(m, v, ncols);
            for (int32_t j = 0; j < ncols; j++)
                hv[j] += f * m[j];
        }
    return IMRT_OK;
}
