/*
 * engine/compare.c - IMRT vs 3D-CRT (or any two plans): comparison rows with
 * the "which is better" rule of imrt/compare.h, the terminal table and the
 * JSON for metrics.json.
 */
#include "imrt/compare.h"

#include "util_impl.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Width of the table's label column (the whole table stays within 100). */
#define LABEL_W 40

typedef enum { RULE_LOWER, RULE_HIGHER, RULE_CLOSER, RULE_NONE } rank_rule;

void imrt_compare_destroy(imrt_comparison **p)
{
    if (!p || !*p)
        return;
    imrt_free((*p)->rows);
    imrt_free(*p);
    *p = NULL;
}

/* Rank a against b under `rule` (CLOSER: closer to `ref`). */
static imrt_better rank(double a, double b, rank_rule rule, double ref, int decimals)
{
    if (rule == RULE_NONE || isnan(a) || isnan(b))
        return IMRT_BETTER_NONE;
    double sa = a, sb = b;
    if (rule == RULE_HIGHER) {
        sa = -a;
        sb = -b;
    } else if (rule == RULE_CLOSER) {
        sa = fabs(a - ref);
        sb = fabs(b - ref);
    }
    double half_digit = 0.5 * pow(10.0, -(double)decimals);
    double rel = 1e-3 * fmax(fabs(a), fabs(b));
    if (fabs(sa - sb) < half_digit || fabs(sa - sb) <= rel)
        return IMRT_BETTER_TIE;
    return sa < sb ? IMRT_BETTER_A : IMRT_BETTER_B;
}

static imrt_compare_row *new_row(imrt_comparison *c, imrt_compare_row_kind kind,
                                 const char *structure, const char *item, const char *unit,
                                 int decimals, double a, double b)
{
    imrt_compare_row *r = &c->rows[c->nrows++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    snprintf(r->structure, sizeof r->structure, "%s", structure ? structure : "");
    snprintf(r->item, sizeof r->item, "%s", item);
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    r->decimals = decimals;
    r->a = a;
    r->b = b;
    r->diff = (isnan(a) || isnan(b)) ? (double)NAN : a - b;
    r->pass_a = r->pass_b = -1;
    r->better = IMRT_BETTER_NONE;
    return r;
}

/* Unit and shown decimals of a goal metric: "Vx" is %, "Vx_cm3" cm^3, the rest Gy. */
static const char *metric_unit(const char *metric, int *decimals)
{
    size_t n = strlen(metric);
    if (metric[0] == 'V') {
        *decimals = 1;
        return n > 4 && strcmp(metric + n - 4, "_cm3") == 0 ? "cm3" : "%";
    }
    *decimals = 2;
    return "Gy";
}

static int same_goal(const imrt_goal_def *x, const imrt_goal_def *y)
{
    return strcmp(x->structure, y->structure) == 0 && strcmp(x->metric, y->metric) == 0 &&
           x->op == y->op && fabs(x->value - y->value) <= 1e-9 * fmax(1.0, fabs(x->value));
}

static void goal_row(imrt_comparison *c, const imrt_goal_result *ga, const imrt_goal_result *gb)
{
    const imrt_goal_def *g = ga ? &ga->goal : &gb->goal;
    int dec;
    const char *unit = metric_unit(g->metric, &dec);
    char item[sizeof c->rows[0].item];
    snprintf(item, sizeof item, "%s %s %g %s", g->metric, g->op == IMRT_GOAL_LE ? "<=" : ">=",
             g->value, unit);
    double a = ga && ga->evaluated ? ga->achieved : (double)NAN;
    double b = gb && gb->evaluated ? gb->achieved : (double)NAN;
    imrt_compare_row *r = new_row(c, IMRT_ROW_GOAL, g->structure, item, unit, dec, a, b);
    r->preferred = g->preferred;
    r->pass_a = ga ? (ga->evaluated ? ga->pass : -1) : -1;
    r->pass_b = gb ? (gb->evaluated ? gb->pass : -1) : -1;
    if (r->pass_a >= 0 && r->pass_b >= 0 && r->pass_a != r->pass_b)
        r->better = r->pass_a ? IMRT_BETTER_A : IMRT_BETTER_B;
    else
        r->better = rank(a, b, g->op == IMRT_GOAL_LE ? RULE_LOWER : RULE_HIGHER, 0.0, dec);
}

static void structure_rows(imrt_comparison *c, const imrt_structure_metrics *sa,
                           const imrt_structure_metrics *sb, double rx)
{
    const imrt_structure_metrics *s = sa ? sa : sb;
    int target = s->kind == IMRT_KIND_TARGET;
    rank_rule rule = target ? (rx > 0.0 ? RULE_CLOSER : RULE_NONE) : RULE_LOWER;
    static const char *const names[] = {"Dmean", "Dmax", "D0.03cc", "D2",
                                        "D50",   "D95",  "D98",     "Dmin"};
    for (int i = 0; i < 8; i++) {
        const imrt_structure_metrics *p[2] = {sa, sb};
        double v[2];
        for (int k = 0; k < 2; k++) {
            if (!p[k]) {
                v[k] = NAN;
                continue;
            }
            const double vals[8] = {p[k]->dmean, p[k]->dmax, p[k]->d003cc, p[k]->d2,
                                    p[k]->d50,   p[k]->d95,  p[k]->d98,    p[k]->dmin};
            v[k] = vals[i];
        }
        imrt_compare_row *r = new_row(c, IMRT_ROW_STRUCTURE, s->name, names[i], "Gy", 2, v[0], v[1]);
        r->better = rank(v[0], v[1], rule, rx, 2);
    }
    new_row(c, IMRT_ROW_STRUCTURE, s->name, "volume", "cm3", 1, sa ? sa->volume_cm3 : (double)NAN,
            sb ? sb->volume_cm3 : (double)NAN);
}

imrt_status imrt_compare_build(const imrt_plan_metrics *a, const imrt_plan_metrics *b,
                               const char *name_a, const char *name_b, imrt_comparison **out)
{
    imrt_status status = IMRT_OK;
    imrt_comparison *c = NULL;
    unsigned char *used = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_build: out is NULL");
    *out = NULL;
    if (!a || !b)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_build: NULL plan summary");
    IMRT_ALLOC(c, 1);
    snprintf(c->name_a, sizeof c->name_a, "%s", name_a ? name_a : "IMRT");
    snprintf(c->name_b, sizeof c->name_b, "%s", name_b ? name_b : "3D-CRT");
    c->rx_gy = a->rx_gy > 0.0 ? a->rx_gy : b->rx_gy;
    int64_t cap = (int64_t)a->ngoals + b->ngoals + 9 * ((int64_t)a->nstructures + b->nstructures) + 5;
    IMRT_ALLOC(c->rows, cap);

    /* goals */
    IMRT_ALLOC(used, b->ngoals + 1);
    for (int k = 0; k < a->ngoals; k++) {
        const imrt_goal_result *gb = NULL;
        for (int q = 0; q < b->ngoals && !gb; q++)
            if (!used[q] && same_goal(&a->goals[k].goal, &b->goals[q].goal)) {
                used[q] = 1;
                gb = &b->goals[q];
            }
        goal_row(c, &a->goals[k], gb);
    }
    for (int q = 0; q < b->ngoals; q++)
        if (!used[q])
            goal_row(c, NULL, &b->goals[q]);

    /* structures */
    for (int s = 0; s < a->nstructures; s++) {
        int t = imrt_plan_metrics_find(b, a->structures[s].name);
        structure_rows(c, &a->structures[s], t >= 0 ? &b->structures[t] : NULL, c->rx_gy);
    }
    for (int t = 0; t < b->nstructures; t++)
        if (imrt_plan_metrics_find(a, b->structures[t].name) < 0)
            structure_rows(c, NULL, &b->structures[t], c->rx_gy);

    /* plan indices */
    imrt_compare_row *r;
    r = new_row(c, IMRT_ROW_PLAN, "", "HI (ICRU 83)", "", 3, a->hi, b->hi);
    r->better = rank(a->hi, b->hi, RULE_LOWER, 0.0, 3);
    r = new_row(c, IMRT_ROW_PLAN, "", "CI Paddick", "", 3, a->ci_paddick, b->ci_paddick);
    r->better = rank(a->ci_paddick, b->ci_paddick, RULE_HIGHER, 0.0, 3);
    r = new_row(c, IMRT_ROW_PLAN, "", "CI RTOG (PIV/TV)", "", 3, a->ci_rtog, b->ci_rtog);
    r->better = rank(a->ci_rtog, b->ci_rtog, RULE_CLOSER, 1.0, 3);
    r = new_row(c, IMRT_ROW_PLAN, "", "Integral dose", "J", 1, a->integral_dose_j,
                b->integral_dose_j);
    r->better = rank(a->integral_dose_j, b->integral_dose_j, RULE_LOWER, 0.0, 1);
    r = new_row(c, IMRT_ROW_PLAN, "", "Required goals missed", "", 0, (double)a->goals_failed,
                (double)b->goals_failed);
    r->better = rank(r->a, r->b, RULE_LOWER, 0.0, 0);

    for (int i = 0; i < c->nrows; i++) {
        c->wins_a += c->rows[i].better == IMRT_BETTER_A;
        c->wins_b += c->rows[i].better == IMRT_BETTER_B;
        c->ties += c->rows[i].better == IMRT_BETTER_TIE;
    }
    c->goals_failed_a = a->goals_failed;
    c->goals_failed_b = b->goals_failed;
    *out = c;
    c = NULL;
cleanup:
    imrt_free(used);
    imrt_compare_destroy(&c);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Text table                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = IMRT_MAX(2 * b->cap, b->len + (size_t)n + 1024);
        char *s = imrt_malloc(cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        if (b->s)
            memcpy(s, b->s, b->len + 1);
        else
            s[0] = '\0';
        imrt_free(b->s);
        b->s = s;
        b->cap = cap;
    }
}

/* Copy `name` into out (size n > width), shortened with a trailing '~' to
 * `width` characters. */
static void fit(char *out, size_t n, const char *name, int width)
{
    size_t w = (size_t)IMRT_MAX(width, 2);
    if (w >= n)
        w = n - 1;
    size_t len = strlen(name);
    if (len <= w) {
        memcpy(out, name, len + 1);
        return;
    }
    memcpy(out, name, w - 1);
    out[w - 1] = '~';
    out[w] = '\0';
}

static void fmt_value(char *out, size_t n, double v, int decimals)
{
    if (isnan(v))
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.*f", decimals, v);
}

static const char *pass_text(int pass)
{
    return pass < 0 ? "" : (pass ? "pass" : "FAIL");
}

static void table_row(sbuf *b, const imrt_comparison *c, const imrt_compare_row *r,
                      const char *label)
{
    char va[32], vb[32], vd[32];
    fmt_value(va, sizeof va, r->a, r->decimals);
    fmt_value(vb, sizeof vb, r->b, r->decimals);
    if (isnan(r->diff))
        snprintf(vd, sizeof vd, "-");
    else
        snprintf(vd, sizeof vd, "%+.*f", r->decimals, r->diff);
    char na[16], nb[16];
    fit(na, sizeof na, c->name_a, 10);
    fit(nb, sizeof nb, c->name_b, 10);
    const char *better = r->better == IMRT_BETTER_A   ? na
                         : r->better == IMRT_BETTER_B ? nb
                         : r->better == IMRT_BETTER_TIE ? "="
                                                        : "";
    sb_printf(b, "  %-*s %10s %-4s %10s %-4s %12s  %s\n", LABEL_W - 2, label, va,
              pass_text(r->pass_a), vb, pass_text(r->pass_b), vd, better);
}

imrt_status imrt_compare_table(const imrt_comparison *c, char **out)
{
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_table: out is NULL");
    *out = NULL;
    if (!c)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_table: NULL comparison");
    sbuf b = {0};
    char na[16], nb[16], diff_title[40];
    fit(na, sizeof na, c->name_a, 10);
    fit(nb, sizeof nb, c->name_b, 10);
    snprintf(diff_title, sizeof diff_title, "%.5s-%.6s", na, nb);
    if (c->rx_gy > 0.0)
        sb_printf(&b, "%s vs %s (prescription %.2f Gy)\n", c->name_a, c->name_b, c->rx_gy);
    else
        sb_printf(&b, "%s vs %s\n", c->name_a, c->name_b);
    sb_printf(&b, "%-*s %10s %-4s %10s %-4s %12s  %s\n", LABEL_W, "", na, "", nb, "",
              diff_title, "better");

    int any_goal = 0, any_pref = 0;
    for (int i = 0; i < c->nrows; i++)
        any_goal |= c->rows[i].kind == IMRT_ROW_GOAL;
    if (any_goal)
        sb_printf(&b, "Clinical goals\n");
    for (int i = 0; i < c->nrows; i++) {
        const imrt_compare_row *r = &c->rows[i];
        if (r->kind != IMRT_ROW_GOAL)
            continue;
        char st[IMRT_NAME_MAX], label[2 * IMRT_NAME_MAX + IMRT_METRIC_MAX + 40];
        int room = LABEL_W - 2 - 1 - (int)strlen(r->item) - (r->preferred ? 1 : 0);
        fit(st, sizeof st, r->structure, IMRT_MAX(room, 4));
        snprintf(label, sizeof label, "%s %s%s", st, r->item, r->preferred ? "*" : "");
        any_pref |= r->preferred;
        table_row(&b, c, r, label);
    }
    const char *current = NULL;
    for (int i = 0; i < c->nrows; i++) {
        const imrt_compare_row *r = &c->rows[i];
        if (r->kind != IMRT_ROW_STRUCTURE)
            continue;
        if (!current || strcmp(current, r->structure) != 0) {
            current = r->structure;
            char st[IMRT_NAME_MAX];
            fit(st, sizeof st, r->structure, 40);
            sb_printf(&b, "%s\n", st);
        }
        char label[sizeof r->item + sizeof r->unit + 8];
        if (r->unit[0])
            snprintf(label, sizeof label, "%s [%s]", r->item, r->unit);
        else
            snprintf(label, sizeof label, "%s", r->item);
        table_row(&b, c, r, label);
    }
    sb_printf(&b, "Plan\n");
    for (int i = 0; i < c->nrows; i++) {
        const imrt_compare_row *r = &c->rows[i];
        if (r->kind != IMRT_ROW_PLAN)
            continue;
        char label[sizeof r->item + sizeof r->unit + 8];
        if (r->unit[0])
            snprintf(label, sizeof label, "%s [%s]", r->item, r->unit);
        else
            snprintf(label, sizeof label, "%s", r->item);
        table_row(&b, c, r, label);
    }
    sb_printf(&b, "Better: %s in %d, %s in %d, equal in %d of the ranked rows.\n", c->name_a,
              c->wins_a, c->name_b, c->wins_b, c->ties);
    sb_printf(&b, "Rule: goals met beat goals missed, else the goal's direction; targets: closer "
                  "to the\nprescription; organs and body: lower; HI lower, CI closer to 1, "
                  "integral dose lower.\n");
    if (any_pref)
        sb_printf(&b, "* preferred goal (reported, does not fail the plan)\n");
    if (b.failed) {
        imrt_free(b.s);
        return imrt_error(IMRT_ERR_NOMEM, "cannot allocate the comparison table");
    }
    *out = b.s;
    return IMRT_OK;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */
/* ------------------------------------------------------------------------ */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int jset(json_t *o, const char *k, json_t *v) { return json_object_set_new(o, k, v) == 0; }

static json_t *jpass(int p) { return p < 0 ? json_null() : json_boolean(p); }

static const char *better_key(imrt_better b)
{
    switch (b) {
    case IMRT_BETTER_A:
        return "a";
    case IMRT_BETTER_B:
        return "b";
    case IMRT_BETTER_TIE:
        return "tie";
    case IMRT_BETTER_NONE:
        break;
    }
    return "none";
}

static const char *kind_key(imrt_compare_row_kind k)
{
    return k == IMRT_ROW_GOAL ? "goal" : (k == IMRT_ROW_STRUCTURE ? "structure" : "plan");
}

imrt_status imrt_compare_json(const imrt_comparison *c, json_t **out)
{
    imrt_status status = IMRT_OK;
    json_t *o = NULL, *rows = NULL, *row = NULL, *wins = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_json: out is NULL");
    *out = NULL;
    if (!c)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_json: NULL comparison");
    o = json_object();
    rows = json_array();
    wins = json_object();
    if (!o || !rows || !wins)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot allocate the comparison JSON");
    for (int i = 0; i < c->nrows; i++) {
        const imrt_compare_row *r = &c->rows[i];
        row = json_object();
        int ok = row != NULL;
        ok = ok && jset(row, "kind", json_string(kind_key(r->kind)));
        ok = ok && jset(row, "structure", json_string(r->structure));
        ok = ok && jset(row, "item", json_string(r->item));
        ok = ok && jset(row, "unit", json_string(r->unit));
        ok = ok && jset(row, "a", jnum(r->a));
        ok = ok && jset(row, "b", jnum(r->b));
        ok = ok && jset(row, "diff", jnum(r->diff));
        ok = ok && jset(row, "better", json_string(better_key(r->better)));
        const char *who = r->better == IMRT_BETTER_A   ? c->name_a
                          : r->better == IMRT_BETTER_B ? c->name_b
                                                       : NULL;
        ok = ok && jset(row, "better_plan", who ? json_string(who) : json_null());
        if (r->kind == IMRT_ROW_GOAL) {
            ok = ok && jset(row, "pass_a", jpass(r->pass_a));
            ok = ok && jset(row, "pass_b", jpass(r->pass_b));
            ok = ok && jset(row, "preferred", json_boolean(r->preferred));
        }
        if (!ok)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build comparison row %d", i);
        int appended = json_array_append_new(rows, row) == 0;
        row = NULL;
        if (!appended)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot append comparison row %d", i);
    }
    int ok = jset(wins, c->name_a, json_integer(c->wins_a));
    ok = ok && jset(wins, c->name_b, json_integer(c->wins_b));
    ok = ok && jset(wins, "tie", json_integer(c->ties));
    ok = ok && jset(o, "plans", json_pack("[ss]", c->name_a, c->name_b));
    if (ok) {
        ok = jset(o, "rows", rows);
        rows = NULL;
    }
    if (ok) {
        ok = jset(o, "wins", wins);
        wins = NULL;
    }
    if (!ok)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the comparison JSON");
    *out = o;
    o = NULL;
cleanup:
    json_decref(row);
    json_decref(rows);
    json_decref(wins);
    json_decref(o);
    return status;
}

imrt_status imrt_compare_metrics_json(const imrt_plan_metrics *imrt,
                                      const imrt_plan_metrics *crt, json_t **out)
{
    imrt_status status = IMRT_OK;
    json_t *o = NULL, *plans = NULL, *item = NULL;
    imrt_comparison *c = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_metrics_json: out is NULL");
    *out = NULL;
    if (!imrt && !crt)
        return imrt_error(IMRT_ERR_ARG, "imrt_compare_metrics_json: both plans are NULL");
    o = json_object();
    plans = json_object();
    if (!o || !plans)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot allocate the metrics JSON");
    if (imrt) {
        IMRT_TRY(imrt_plan_metrics_to_json(imrt, &item));
        int ok = jset(plans, "imrt", item);
        item = NULL;
        if (!ok)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add plans.imrt");
    }
    if (crt) {
        IMRT_TRY(imrt_plan_metrics_to_json(crt, &item));
        int ok = jset(plans, "3dcrt", item);
        item = NULL;
        if (!ok)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add plans.3dcrt");
    }
    int ok = jset(o, "plans", plans);
    plans = NULL;
    if (!ok)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add plans");
    if (imrt && crt) {
        IMRT_TRY(imrt_compare_build(imrt, crt, "IMRT", "3D-CRT", &c));
        IMRT_TRY(imrt_compare_json(c, &item));
        ok = jset(o, "comparison", item);
        item = NULL;
        if (!ok)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot add the comparison");
    }
    *out = o;
    o = NULL;
cleanup:
    imrt_compare_destroy(&c);
    json_decref(item);
    json_decref(plans);
    json_decref(o);
    return status;
}
