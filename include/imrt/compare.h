/*
 * imrt/compare.h - side-by-side comparison of two plan summaries (IMRT and
 * the 3D-conformal baseline, or any two plans of the same case): every goal,
 * the per-structure dose metrics and the plan indices, with the difference
 * and which plan is better; as rows (for reports), as a terminal table and as
 * JSON for metrics.json.
 *
 * Which plan is better (docs/metrics.md):
 *  - goals: a plan that meets the goal beats one that does not; when both
 *    meet it or both miss it, the goal's direction decides ("<=": lower is
 *    better, ">=": higher is better);
 *  - target structures: every dose metric is better the closer it lies to the
 *    prescription dose (|value - Rx| smaller);
 *  - organs at risk and the body: every dose metric is better lower;
 *  - HI lower is better, Paddick CI higher (its ideal is 1), RTOG CI closer
 *    to 1, integral dose lower;
 *  - a tie when the two scores differ by less than half the last digit
 *    shown in the table or by at most 0.1 % (relative).
 * The structure volume is shown for reference and never ranked.
 *
 * Units: Gy, %, cm^3, J as each row says. Ownership: imrt_compare_build
 * returns an object freed with imrt_compare_destroy; imrt_compare_table
 * returns a string allocated with imrt_malloc (free with imrt_free); JSON
 * outputs are new references. The library never prints.
 * Thread safety: reentrant.
 */
#ifndef IMRT_COMPARE_H
#define IMRT_COMPARE_H

#include "imrt/metrics.h"
#include "imrt/status.h"

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IMRT_BETTER_TIE = 0, /* equal within the tie tolerance */
    IMRT_BETTER_A = 1,   /* the first plan (IMRT) */
    IMRT_BETTER_B = 2,   /* the second plan (3D-CRT) */
    IMRT_BETTER_NONE = 3 /* not ranked (a value missing, or a reference-only row) */
} imrt_better;

typedef enum {
    IMRT_ROW_GOAL = 0,      /* a clinical goal */
    IMRT_ROW_STRUCTURE = 1, /* a per-structure metric */
    IMRT_ROW_PLAN = 2       /* a plan index (HI, CI, integral dose) */
} imrt_compare_row_kind;

typedef struct {
    imrt_compare_row_kind kind;
    char structure[IMRT_NAME_MAX]; /* structure name ("" for plan rows) */
    char item[IMRT_METRIC_MAX + 32]; /* "D95 >= 53 Gy", "Dmean", "HI (ICRU 83)" */
    char unit[8];                  /* "Gy", "%", "cm3", "J" or "" */
    int decimals;                  /* digits shown after the point */
    double a, b;                   /* values of the two plans (NAN: not available) */
    double diff;                   /* a - b (NAN if either is missing) */
    int pass_a, pass_b;            /* goal rows: 1 pass, 0 fail, -1 not evaluated; else -1 */
    int preferred;                 /* goal rows: an "also report" goal */
    imrt_better better;
} imrt_compare_row;

typedef struct {
    char name_a[32], name_b[32]; /* column titles ("IMRT", "3D-CRT") */
    double rx_gy;                /* prescription used for the target rule */
    int nrows;
    imrt_compare_row *rows;      /* goals, then structures (plan A's order), then plan rows; owned */
    int wins_a, wins_b, ties;    /* ranked rows won by each plan / tied */
    int goals_failed_a, goals_failed_b; /* required goals missed */
} imrt_comparison;

/* Compare plan a with plan b. Goals are matched by (structure, metric, op,
 * value) and structures by name; a goal or structure present in only one plan
 * gets a row with the other value missing. name_a/name_b may be NULL
 * ("IMRT" / "3D-CRT"). The target rule uses a->rx_gy (b->rx_gy if a's is not
 * positive). Errors: IMRT_ERR_ARG (NULL), IMRT_ERR_NOMEM. */
imrt_status imrt_compare_build(const imrt_plan_metrics *a, const imrt_plan_metrics *b,
                               const char *name_a, const char *name_b, imrt_comparison **out);

/* Free a comparison; accepts NULL, clears *p. */
void imrt_compare_destroy(imrt_comparison **p);

/* The comparison as a text table at most 100 columns wide (structure names
 * are shortened with '~' to fit), ending in a newline. *out is allocated with
 * imrt_malloc. Errors: IMRT_ERR_ARG, IMRT_ERR_NOMEM. */
imrt_status imrt_compare_table(const imrt_comparison *c, char **out);

/* The comparison as JSON: {"plans": [name_a, name_b], "rows": [{"kind",
 * "structure", "item", "unit", "a", "b", "diff", "better" ("a", "b", "tie",
 * "none"), "better_plan" (the plan's name or null), "pass_a", "pass_b"}], "wins":
 * {name_a: n, name_b: n, "tie": n}}. Errors: IMRT_ERR_ARG, IMRT_ERR_NOMEM. */
imrt_status imrt_compare_json(const imrt_comparison *c, json_t **out);

/* The metrics.json pieces of an IMRT vs 3D-CRT case, ready to merge into the
 * top-level object (json_object_update): {"plans": {"imrt": ..., "3dcrt": ...},
 * "comparison": ...}; either plan may be NULL (then only the other is
 * written and there is no comparison). The caller adds "solver" to
 * plans.imrt. Errors: IMRT_ERR_ARG (both NULL), IMRT_ERR_NOMEM. */
imrt_status imrt_compare_metrics_json(const imrt_plan_metrics *imrt,
                                      const imrt_plan_metrics *crt, json_t **out);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_COMPARE_H */
