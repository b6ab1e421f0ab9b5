/*
 * engine/metrics.c - plan-level metrics on a dose array: mass density from
 * RED and integral dose, conformity indices, clinical-goal evaluation, plan
 * normalisation, the per-plan summary and its metrics.json object (both
 * directions). DVH metrics live in engine/dvh.c, the gamma index in
 * engine/gamma.c.
 */
#include "imrt/metrics.h"

#include "util_impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Mass density and integral dose                                           */
/* ------------------------------------------------------------------------ */

/* RED -> mass density (g/cm^3) through ICRU-44 tissues as tabulated for CT
 * calibration of treatment-planning systems (air, adipose, water, muscle,
 * cartilage, cartilage/bone mixtures, ICRP-23 bone at two densities); the
 * CIRS cortical-bone insert (rho 1.93, RED 1.78) falls on this curve within
 * 1 %. Sources in docs/metrics.md. */
static const double MASS_TABLE[][2] = {
    {0.0, 0.0},        {0.00109, 0.00121}, /* air */
    {0.95, 0.95},                          /* adipose (ICRU 44) */
    {1.0, 1.0},                            /* water */
    {1.04, 1.05},                          /* muscle (ICRU 44) */
    {1.08, 1.10},                          /* cartilage (ICRP 23) */
    {1.29, 1.35},                          /* 2/3 cartilage + 1/3 bone */
    {1.52, 1.60},                          /* 1/3 cartilage + 2/3 bone */
    {1.72, 1.85},                          /* bone (ICRP 23) */
    {1.95, 2.10},                          /* dense bone (ICRP 23) */
};
#define MASS_TABLE_N ((int)(sizeof MASS_TABLE / sizeof MASS_TABLE[0]))

double imrt_mass_density(double red)
{
    if (!(red > 0.0))
        return 0.0;
    const int last = MASS_TABLE_N - 1;
    if (red >= MASS_TABLE[last][0])
        return red * (MASS_TABLE[last][1] / MASS_TABLE[last][0]);
    int i = 1;
    while (red > MASS_TABLE[i][0])
        i++;
    const double *a = MASS_TABLE[i - 1], *b = MASS_TABLE[i];
    return a[1] + (red - a[0]) * (b[1] - a[1]) / (b[0] - a[0]);
}

imrt_status imrt_integral_dose(const imrt_grid *g, const float *dose, const float *red,
                               const uint8_t *mask, double *joules)
{
    if (!g || !dose || !red || !joules)
        return imrt_error(IMRT_ERR_ARG, "imrt_integral_dose: NULL argument");
    int64_t n = imrt_grid_nvox(g);
    /* Gy = J/kg; g/cm^3 x cm^3 = g; 1e-3 kg/g */
    double kg_per_rho = imrt_grid_voxel_cc(g) * 1e-3;
    double sum = 0.0;
    for (int64_t v = 0; v < n; v++) {
        if (mask && !mask[v])
            continue;
        if (dose[v] != 0.0f)
            sum += (double)dose[v] * imrt_mass_density((double)red[v]);
    }
    *joules = sum * kg_per_rho;
    return IMRT_OK;
}

/* ------------------------------------------------------------------------ */
/* Conformity                                                               */
/* ------------------------------------------------------------------------ */

imrt_status imrt_conformity_eval(const imrt_grid *g, const float *dose, const uint8_t *target,
                                 const uint8_t *body, double rx_gy, imrt_conformity *out)
{
    if (!g || !dose || !target || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_conformity_eval: NULL argument");
    if (!(isfinite(rx_gy) && rx_gy > 0.0))
        return imrt_error(IMRT_ERR_RANGE, "prescription dose %g Gy must be finite and > 0",
                          rx_gy);
    int64_t n = imrt_grid_nvox(g);
    int64_t tv = 0, piv = 0, tv_piv = 0;
    for (int64_t v = 0; v < n; v++) {
        int hot = (double)dose[v] >= rx_gy;
        if (target[v]) {
            tv++;
            tv_piv += hot;
        }
        if (hot && (!body || body[v] || target[v]))
            piv++;
    }
    double cc = imrt_grid_voxel_cc(g);
    out->tv_cc = (double)tv * cc;
    out->piv_cc = (double)piv * cc;
    out->tv_piv_cc = (double)tv_piv * cc;
    out->paddick = (tv > 0 && piv > 0)
                       ? ((double)tv_piv * (double)tv_piv) / ((double)tv * (double)piv)
                       : (double)NAN;
    out->rtog = tv > 0 ? (double)piv / (double)tv : (double)NAN;
    return IMRT_OK;
}

/* ------------------------------------------------------------------------ */
/* Goals and normalisation                                                  */
/* ------------------------------------------------------------------------ */

static int goal_passes(imrt_goal_op op, double achieved, double value)
{
    if (isnan(achieved))
        return 0;
    double tol = IMRT_GOAL_REL_TOL * (value != 0.0 ? fabs(value) : 1.0);
    return op == IMRT_GOAL_LE ? achieved <= value + tol : achieved >= value - tol;
}

static imrt_status check_dose_phantom(const imrt_phantom *p, const float *dose, const char *who)
{
    if (!p || !dose)
        return imrt_error(IMRT_ERR_ARG, "%s: NULL dose phantom or dose", who);
    return IMRT_OK;
}

imrt_status imrt_goal_eval(const imrt_goal_def *goal, const imrt_phantom *dose_phantom,
                           const float *dose, double *achieved, int *pass)
{
    imrt_status status = IMRT_OK;
    imrt_dvh *h = NULL;
    if (!goal || !achieved)
        return imrt_error(IMRT_ERR_ARG, "imrt_goal_eval: NULL goal or achieved");
    IMRT_TRY(check_dose_phantom(dose_phantom, dose, "imrt_goal_eval"));
    int s = imrt_phantom_find(dose_phantom, goal->structure);
    if (s < 0)
        IMRT_FAIL(IMRT_ERR_ARG, "goal %s %s: no structure called '%s' in phantom '%s'",
                  goal->structure, goal->metric, goal->structure, dose_phantom->name);
    char kind;
    double x;
    IMRT_TRY(imrt_metric_parse(goal->metric, &kind, &x));
    IMRT_TRY(imrt_dvh_create(&dose_phantom->grid, dose, dose_phantom->structures[s].mask, &h));
    IMRT_TRY(imrt_dvh_metric(h, goal->metric, achieved));
    if (pass)
        *pass = goal_passes(goal->op, *achieved, goal->value);
cleanup:
    imrt_dvh_destroy(&h);
    return status;
}

int imrt_rx_target_index(const imrt_prescription *rx, const imrt_phantom *dose_phantom)
{
    if (!rx || !dose_phantom)
        return -1;
    if (rx->target[0])
        return imrt_phantom_find(dose_phantom, rx->target);
    for (int s = 0; s < dose_phantom->nstructures; s++)
        if (dose_phantom->structures[s].kind == IMRT_KIND_TARGET)
            return s;
    return -1;
}

imrt_status imrt_normalisation_factor(const imrt_prescription *rx,
                                      const imrt_phantom *dose_phantom, const float *dose,
                                      double *factor)
{
    imrt_status status = IMRT_OK;
    imrt_dvh *h = NULL;
    if (!rx || !factor)
        return imrt_error(IMRT_ERR_ARG, "imrt_normalisation_factor: NULL argument");
    IMRT_TRY(check_dose_phantom(dose_phantom, dose, "imrt_normalisation_factor"));
    *factor = 1.0;
    if (!rx->normalise)
        goto cleanup;
    if (!(isfinite(rx->dose_gy) && rx->dose_gy > 0.0))
        IMRT_FAIL(IMRT_ERR_RANGE, "prescription dose %g Gy must be finite and > 0 to normalise",
                  rx->dose_gy);
    const char *metric = rx->metric[0] ? rx->metric : "D95";
    char kind;
    double x;
    IMRT_TRY(imrt_metric_parse(metric, &kind, &x));
    if (kind == 'V' || kind == 'W')
        IMRT_FAIL(IMRT_ERR_ARG,
                  "normalisation metric '%s' is a volume; use a dose metric (Dx, Dxcc, Dmean, "
                  "Dmax, Dmin)",
                  metric);
    int s = imrt_rx_target_index(rx, dose_phantom);
    if (s < 0)
        IMRT_FAIL(IMRT_ERR_ARG, "prescription target '%s' is not a structure of phantom '%s'",
                  rx->target[0] ? rx->target : "(first target)", dose_phantom->name);
    IMRT_TRY(imrt_dvh_create(&dose_phantom->grid, dose, dose_phantom->structures[s].mask, &h));
    double value;
    IMRT_TRY(imrt_dvh_metric(h, metric, &value));
    if (!(value > 0.0))
        IMRT_FAIL(IMRT_ERR_NUMERIC,
                  "cannot normalise: %s of %s is %g Gy (the target receives no dose)", metric,
                  dose_phantom->structures[s].name, value);
    *factor = rx->dose_gy / value;
cleanup:
    imrt_dvh_destroy(&h);
    return status;
}

void imrt_dose_scale(float *dose, int64_t n, double factor)
{
    if (!dose)
        return;
    for (int64_t v = 0; v < n; v++)
        dose[v] = (float)((double)dose[v] * factor);
}

/* ------------------------------------------------------------------------ */
/* Per-plan summary                                                         */
/* ------------------------------------------------------------------------ */

void imrt_plan_metrics_destroy(imrt_plan_metrics **p)
{
    if (!p || !*p)
        return;
    imrt_free((*p)->structures);
    imrt_free((*p)->goals);
    imrt_free(*p);
    *p = NULL;
}

int imrt_plan_metrics_find(const imrt_plan_metrics *m, const char *name)
{
    if (!m || !name)
        return -1;
    for (int s = 0; s < m->nstructures; s++)
        if (strcmp(m->structures[s].name, name) == 0)
            return s;
    return -1;
}

static void fill_structure(imrt_structure_metrics *sm, const imrt_dvh *h)
{
    sm->voxels = h->n;
    sm->volume_cm3 = h->volume_cc;
    sm->dmean = h->mean;
    sm->dmax = imrt_dvh_max(h);
    sm->d003cc = imrt_dvh_dose_at_cc(h, 0.03);
    sm->d2 = imrt_dvh_dose_at_pct(h, 2.0);
    sm->d50 = imrt_dvh_dose_at_pct(h, 50.0);
    sm->d95 = imrt_dvh_dose_at_pct(h, 95.0);
    sm->d98 = imrt_dvh_dose_at_pct(h, 98.0);
    sm->dmin = imrt_dvh_min(h);
}

imrt_status imrt_plan_metrics_compute(const imrt_phantom *dose_phantom, const float *dose,
                                      const imrt_prescription *rx, const imrt_goal_def *goals,
                                      int ngoals, imrt_plan_metrics **out)
{
    imrt_status status = IMRT_OK;
    imrt_plan_metrics *m = NULL;
    imrt_dvh *h = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_metrics_compute: out is NULL");
    *out = NULL;
    IMRT_TRY(check_dose_phantom(dose_phantom, dose, "imrt_plan_metrics_compute"));
    if (!rx || ngoals < 0 || (ngoals > 0 && !goals))
        IMRT_FAIL(IMRT_ERR_ARG, "imrt_plan_metrics_compute: NULL prescription or goals");
    if (!(isfinite(rx->dose_gy) && rx->dose_gy >= 0.0))
        IMRT_FAIL(IMRT_ERR_RANGE, "prescription dose %g Gy must be finite and >= 0",
                  rx->dose_gy);
    for (int k = 0; k < ngoals; k++) {
        char kind;
        double x;
        if (imrt_phantom_find(dose_phantom, goals[k].structure) < 0)
            IMRT_FAIL(IMRT_ERR_ARG, "goal %d (%s %s): no structure called '%s' in phantom '%s'",
                      k + 1, goals[k].structure, goals[k].metric, goals[k].structure,
                      dose_phantom->name);
        IMRT_TRY(imrt_metric_parse(goals[k].metric, &kind, &x));
    }

    const imrt_grid *g = &dose_phantom->grid;
    const int ns = dose_phantom->nstructures;
    IMRT_ALLOC(m, 1);
    m->rx_gy = rx->dose_gy;
    m->norm_factor = 1.0;
    m->hi = m->ci_paddick = m->ci_rtog = NAN;
    m->conformity = (imrt_conformity){0.0, 0.0, 0.0, NAN, NAN};
    m->nstructures = ns;
    IMRT_ALLOC(m->structures, ns);
    m->ngoals = ngoals;
    IMRT_ALLOC(m->goals, ngoals);
    for (int k = 0; k < ngoals; k++) {
        m->goals[k].goal = goals[k];
        m->goals[k].achieved = NAN;
    }

    int target = imrt_rx_target_index(rx, dose_phantom);
    int body = -1;
    for (int s = 0; s < ns && body < 0; s++)
        if (dose_phantom->structures[s].kind == IMRT_KIND_BODY)
            body = s;

    for (int s = 0; s < ns; s++) {
        const imrt_structure *st = &dose_phantom->structures[s];
        imrt_structure_metrics *sm = &m->structures[s];
        snprintf(sm->name, sizeof sm->name, "%s", st->name);
        sm->kind = st->kind;
        IMRT_TRY(imrt_dvh_create(g, dose, st->mask, &h));
        fill_structure(sm, h);
        if (s == target)
            m->hi = imrt_dvh_homogeneity(h);
        for (int k = 0; k < ngoals; k++) {
            imrt_goal_result *gr = &m->goals[k];
            if (strcmp(gr->goal.structure, st->name) != 0 || h->n == 0)
                continue;
            IMRT_TRY(imrt_dvh_metric(h, gr->goal.metric, &gr->achieved));
            gr->evaluated = 1;
            gr->pass = goal_passes(gr->goal.op, gr->achieved, gr->goal.value);
        }
        imrt_dvh_destroy(&h);
    }
    for (int k = 0; k < ngoals; k++) {
        if (m->goals[k].pass)
            continue;
        if (m->goals[k].goal.preferred)
            m->preferred_failed++;
        else
            m->goals_failed++;
    }

    if (target >= 0) {
        snprintf(m->target, sizeof m->target, "%s", dose_phantom->structures[target].name);
        if (rx->dose_gy > 0.0) {
            IMRT_TRY(imrt_conformity_eval(g, dose, dose_phantom->structures[target].mask,
                                          body >= 0 ? dose_phantom->structures[body].mask : NULL,
                                          rx->dose_gy, &m->conformity));
            m->ci_paddick = m->conformity.paddick;
            m->ci_rtog = m->conformity.rtog;
        }
    }
    IMRT_TRY(imrt_integral_dose(g, dose, dose_phantom->density,
                                body >= 0 ? dose_phantom->structures[body].mask : NULL,
                                &m->integral_dose_j));
    *out = m;
    m = NULL;
cleanup:
    imrt_dvh_destroy(&h);
    imrt_plan_metrics_destroy(&m);
    return status;
}

/* ------------------------------------------------------------------------ */
/* metrics.json                                                             */
/* ------------------------------------------------------------------------ */

/* A number, or null for NAN/inf (JSON has no NaN). */
static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Set o[k] = v (stealing v); 0 on failure (v NULL or no memory). */
static int jset(json_t *o, const char *k, json_t *v) { return json_object_set_new(o, k, v) == 0; }

static imrt_status structure_to_json(const imrt_structure_metrics *s, json_t **out)
{
    json_t *o = json_object();
    int ok = o != NULL;
    ok = ok && jset(o, "kind", json_string(imrt_structure_kind_name(s->kind)));
    ok = ok && jset(o, "Dmean", jnum(s->dmean));
    ok = ok && jset(o, "Dmax", jnum(s->dmax));
    ok = ok && jset(o, "D0.03cc", jnum(s->d003cc));
    ok = ok && jset(o, "D2", jnum(s->d2));
    ok = ok && jset(o, "D50", jnum(s->d50));
    ok = ok && jset(o, "D95", jnum(s->d95));
    ok = ok && jset(o, "D98", jnum(s->d98));
    ok = ok && jset(o, "Dmin", jnum(s->dmin));
    ok = ok && jset(o, "volume_cm3", jnum(s->volume_cm3));
    ok = ok && jset(o, "voxels", json_integer((json_int_t)s->voxels));
    if (!ok) {
        json_decref(o);
        return imrt_error(IMRT_ERR_NOMEM, "cannot build the JSON of structure %s", s->name);
    }
    *out = o;
    return IMRT_OK;
}

static imrt_status goal_to_json(const imrt_goal_result *r, json_t **out)
{
    json_t *o = json_object();
    int ok = o != NULL;
    ok = ok && jset(o, "structure", json_string(r->goal.structure));
    ok = ok && jset(o, "metric", json_string(r->goal.metric));
    ok = ok && jset(o, "op", json_string(r->goal.op == IMRT_GOAL_LE ? "<=" : ">="));
    ok = ok && jset(o, "value", jnum(r->goal.value));
    ok = ok && jset(o, "achieved", jnum(r->achieved));
    ok = ok && jset(o, "pass", json_boolean(r->pass));
    ok = ok && jset(o, "preferred", json_boolean(r->goal.preferred));
    ok = ok && jset(o, "evaluated", json_boolean(r->evaluated));
    if (!ok) {
        json_decref(o);
        return imrt_error(IMRT_ERR_NOMEM, "cannot build the JSON of goal %s %s",
                          r->goal.structure, r->goal.metric);
    }
    *out = o;
    return IMRT_OK;
}

imrt_status imrt_plan_metrics_to_json(const imrt_plan_metrics *m, json_t **out)
{
    imrt_status status = IMRT_OK;
    json_t *o = NULL, *structs = NULL, *goals = NULL, *item = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_metrics_to_json: out is NULL");
    *out = NULL;
    if (!m)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_metrics_to_json: NULL summary");
    o = json_object();
    structs = json_object();
    goals = json_array();
    if (!o || !structs || !goals)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot allocate the plan metrics JSON");
    for (int s = 0; s < m->nstructures; s++) {
        IMRT_TRY(structure_to_json(&m->structures[s], &item));
        if (json_object_set_new(structs, m->structures[s].name, item) != 0) {
            item = NULL;
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add structure %s to the JSON",
                      m->structures[s].name);
        }
        item = NULL;
    }
    for (int k = 0; k < m->ngoals; k++) {
        IMRT_TRY(goal_to_json(&m->goals[k], &item));
        if (json_array_append_new(goals, item) != 0) {
            item = NULL;
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add goal %d to the JSON", k + 1);
        }
        item = NULL;
    }
    /* json_object_set_new takes the reference whether or not it succeeds */
    int ok = jset(o, "structures", structs);
    structs = NULL;
    if (ok) {
        ok = jset(o, "goals", goals);
        goals = NULL;
    }
    ok = ok && jset(o, "hi", jnum(m->hi));
    ok = ok && jset(o, "ci_paddick", jnum(m->ci_paddick));
    ok = ok && jset(o, "ci_rtog", jnum(m->ci_rtog));
    ok = ok && jset(o, "integral_dose_j", jnum(m->integral_dose_j));
    ok = ok && jset(o, "target", json_string(m->target));
    ok = ok && jset(o, "rx_gy", jnum(m->rx_gy));
    ok = ok && jset(o, "normalisation_factor", jnum(m->norm_factor));
    ok = ok && jset(o, "tv_cm3", jnum(m->conformity.tv_cc));
    ok = ok && jset(o, "piv_cm3", jnum(m->conformity.piv_cc));
    ok = ok && jset(o, "tv_piv_cm3", jnum(m->conformity.tv_piv_cc));
    ok = ok && jset(o, "goals_failed", json_integer(m->goals_failed));
    ok = ok && jset(o, "preferred_failed", json_integer(m->preferred_failed));
    if (!ok)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the plan metrics JSON");
    *out = o;
    o = NULL;
cleanup:
    json_decref(item);
    json_decref(structs);
    json_decref(goals);
    json_decref(o);
    return status;
}

/* Number at key k of o: null or absent (when optional) -> NAN.
 * Returns 0 when the key is required and missing or not a number. */
static int jget(const json_t *o, const char *k, int required, double *v)
{
    json_t *x = json_object_get(o, k);
    *v = NAN;
    if (!x || json_is_null(x))
        return !required || (x && json_is_null(x));
    if (!json_is_number(x))
        return 0;
    *v = json_number_value(x);
    return 1;
}

static imrt_status structure_from_json(const char *name, const json_t *o,
                                       imrt_structure_metrics *s)
{
    if (!json_is_object(o))
        return imrt_error(IMRT_ERR_FORMAT, "structures.%s is not an object", name);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->kind = IMRT_KIND_OAR;
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (kind && strcmp(kind, "target") == 0)
        s->kind = IMRT_KIND_TARGET;
    else if (kind && strcmp(kind, "body") == 0)
        s->kind = IMRT_KIND_BODY;
    static const char *const req[] = {"Dmean", "Dmax", "D2", "D50", "D95", "D98", "volume_cm3"};
    double *dst[] = {&s->dmean, &s->dmax, &s->d2, &s->d50, &s->d95, &s->d98, &s->volume_cm3};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!jget(o, req[i], 1, dst[i]))
            return imrt_error(IMRT_ERR_FORMAT,
                              "structures.%s.%s is missing or not a number (or null)", name,
                              req[i]);
    double vox;
    if (!jget(o, "D0.03cc", 0, &s->d003cc) || !jget(o, "Dmin", 0, &s->dmin) ||
        !jget(o, "voxels", 0, &vox))
        return imrt_error(IMRT_ERR_FORMAT, "structures.%s: D0.03cc, Dmin or voxels is not a number",
                          name);
    s->voxels = isfinite(vox) ? (int64_t)vox : 0;
    return IMRT_OK;
}

static imrt_status goal_from_json(int k, const json_t *o, imrt_goal_result *r)
{
    const char *st = json_string_value(json_object_get(o, "structure"));
    const char *metric = json_string_value(json_object_get(o, "metric"));
    const char *op = json_string_value(json_object_get(o, "op"));
    if (!json_is_object(o) || !st || !metric || !op)
        return imrt_error(IMRT_ERR_FORMAT,
                          "goals[%d] needs string keys structure, metric and op", k);
    if (strlen(st) >= IMRT_NAME_MAX || strlen(metric) >= IMRT_METRIC_MAX)
        return imrt_error(IMRT_ERR_FORMAT, "goals[%d]: structure or metric name too long", k);
    if (strcmp(op, "<=") != 0 && strcmp(op, ">=") != 0)
        return imrt_error(IMRT_ERR_FORMAT, "goals[%d].op is '%s' (allowed: \"<=\", \">=\")", k,
                          op);
    snprintf(r->goal.structure, sizeof r->goal.structure, "%s", st);
    snprintf(r->goal.metric, sizeof r->goal.metric, "%s", metric);
    r->goal.op = op[0] == '<' ? IMRT_GOAL_LE : IMRT_GOAL_GE;
    if (!jget(o, "value", 1, &r->goal.value) || !jget(o, "achieved", 1, &r->achieved))
        return imrt_error(IMRT_ERR_FORMAT, "goals[%d]: value or achieved missing or not a number",
                          k);
    json_t *pass = json_object_get(o, "pass");
    if (!json_is_boolean(pass))
        return imrt_error(IMRT_ERR_FORMAT, "goals[%d].pass is missing or not true/false", k);
    r->pass = json_is_true(pass);
    r->goal.preferred = json_is_true(json_object_get(o, "preferred"));
    json_t *ev = json_object_get(o, "evaluated");
    r->evaluated = ev ? json_is_true(ev) : !isnan(r->achieved);
    return IMRT_OK;
}

imrt_status imrt_plan_metrics_from_json(const json_t *obj, imrt_plan_metrics **out)
{
    imrt_status status = IMRT_OK;
    imrt_plan_metrics *m = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_metrics_from_json: out is NULL");
    *out = NULL;
    if (!obj)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_metrics_from_json: NULL object");
    if (!json_is_object(obj))
        return imrt_error(IMRT_ERR_FORMAT, "plan metrics: not a JSON object");
    json_t *structs = json_object_get(obj, "structures");
    json_t *goals = json_object_get(obj, "goals");
    if (!json_is_object(structs))
        return imrt_error(IMRT_ERR_FORMAT, "plan metrics: \"structures\" missing or not an object");
    if (!json_is_array(goals))
        return imrt_error(IMRT_ERR_FORMAT, "plan metrics: \"goals\" missing or not an array");
    size_t ns = json_object_size(structs), ng = json_array_size(goals);
    if (ns > IMRT_MAX_STRUCTURES || ng > 100000)
        return imrt_error(IMRT_ERR_FORMAT, "plan metrics: %zu structures / %zu goals (at most %d / "
                                           "100000)",
                          ns, ng, IMRT_MAX_STRUCTURES);
    IMRT_ALLOC(m, 1);
    IMRT_ALLOC(m->structures, ns);
    IMRT_ALLOC(m->goals, ng);
    const char *key;
    json_t *val;
    json_object_foreach(structs, key, val)
    {
        if (strlen(key) >= IMRT_NAME_MAX)
            IMRT_FAIL(IMRT_ERR_FORMAT, "structure name '%s' is too long", key);
        IMRT_TRY(structure_from_json(key, val, &m->structures[m->nstructures]));
        m->nstructures++;
    }
    for (size_t k = 0; k < ng; k++) {
        IMRT_TRY(goal_from_json((int)k, json_array_get(goals, k), &m->goals[k]));
        m->ngoals++;
        if (!m->goals[k].pass) {
            if (m->goals[k].goal.preferred)
                m->preferred_failed++;
            else
                m->goals_failed++;
        }
    }
    static const char *const req[] = {"hi", "ci_paddick", "integral_dose_j"};
    double *dst[] = {&m->hi, &m->ci_paddick, &m->integral_dose_j};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!jget(obj, req[i], 1, dst[i]))
            IMRT_FAIL(IMRT_ERR_FORMAT, "plan metrics: \"%s\" missing or not a number (or null)",
                      req[i]);
    if (!jget(obj, "ci_rtog", 0, &m->ci_rtog) || !jget(obj, "rx_gy", 0, &m->rx_gy) ||
        !jget(obj, "normalisation_factor", 0, &m->norm_factor) ||
        !jget(obj, "tv_cm3", 0, &m->conformity.tv_cc) ||
        !jget(obj, "piv_cm3", 0, &m->conformity.piv_cc) ||
        !jget(obj, "tv_piv_cm3", 0, &m->conformity.tv_piv_cc))
        IMRT_FAIL(IMRT_ERR_FORMAT, "plan metrics: ci_rtog, rx_gy, normalisation_factor, tv_cm3, "
                                   "piv_cm3 or tv_piv_cm3 is not a number");
    m->conformity.paddick = m->ci_paddick;
    m->conformity.rtog = m->ci_rtog;
    const char *target = json_string_value(json_object_get(obj, "target"));
    if (target && strlen(target) < IMRT_NAME_MAX)
        snprintf(m->target, sizeof m->target, "%s", target);
    *out = m;
    m = NULL;
cleanup:
    imrt_plan_metrics_destroy(&m);
    return status;
}
