/*
 * engine/spec.c - the JSON phantom/plan spec reader: key-path line index,
 * typed accessors with range-checked messages, shape and structure
 * expressions, rasterisation of the phantom, matRad imports, and the plan
 * part (prescription, beams, objectives, goals, conformal, solver).
 *
 * Errors read "FILE:LINE: key.path: message (allowed range)". jansson only
 * reports positions of syntax errors, so a small scanner records the line
 * of every key path of the (already validated) text.
 */
#include "imrt/spec.h"

#include "imrt/dose.h"
#include "imrt/matrad.h"
#include "shapes_impl.h"
#include "util_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PATH_LEN 256          /* longest key path kept in messages */
#define MAX_LIST 1000         /* entries of any array (shapes, structures, beams, ...) */
#define MAX_BEAMS 180
#define MAX_WEIGHT_EXPR 256   /* evaluation work of one expression (nodes incl. refs) */
#define MAX_WEIGHT_TOTAL 8192 /* evaluation work of the whole spec */
#define MAX_RED_PLAIN 2.2     /* RED above this is metal: needs allow_metal */
#define MAX_RED_METAL 20.0
#define MAX_SIZE_MM 5000.0    /* largest extent of a grid or solid */
#define MAX_COORD_MM 1e5      /* largest coordinate */

/* ------------------------------------------------------------------ */
/* Context                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    char *path;
    int line;
} line_entry;

typedef struct expr_s expr_t;

enum {
    OP_SHAPE = 0,  /* primitive solid */
    OP_REF_SHAPE,  /* an earlier entry of phantom.shapes */
    OP_REF_STRUCT, /* an earlier structure */
    OP_UNION,
    OP_INTER,
    OP_DIFF,
    OP_EXPAND,
    OP_SHRINK,
    OP_SHELL
};

struct expr_s {
    int op;
    imrt_shape shape;   /* OP_SHAPE */
    int ref;            /* OP_REF_*: index */
    int nargs;
    expr_t **args;      /* operands */
    double margin[6];   /* OP_EXPAND/OP_SHRINK */
    double inner, outer;/* OP_SHELL */
    expr_t *within;     /* modifier: intersect with */
    int nminus;
    expr_t **minus;     /* modifier: subtract */
    int weight;         /* evaluation work (nodes, refs followed) */
};

typedef struct {
    char name[IMRT_NAME_MAX];
    int material;       /* index into materials, -1: geometry only */
    int enabled;
    expr_t *geom;
} shape_def;

typedef struct {
    char name[IMRT_NAME_MAX];
    double red;
} material_def;

typedef struct {
    const char *label;          /* file name in messages */
    const char *text;
    size_t len;
    line_entry *lines;
    int nlines, caplines;
    char base_dir[4096];
    double grid_override;
    uint64_t max_memory; /* phantom budget in bytes, 0 = none */
    void **blocks;              /* arena of parse-time allocations */
    int nblocks, capblocks;
    material_def *materials;
    int nmaterials;
    int allow_metal;
    shape_def *shapes;
    int nshapes;
    imrt_phantom *phantom;      /* being built */
    double *analytic_cc;        /* per structure, < 0 if none */
    int total_weight;
    int imported, resampled;
    uint8_t **shape_masks;      /* per shape: cached rasterisation or NULL */
    int64_t cached_bytes;       /* bytes held by shape_masks */
} spec_ctx;

#define SHAPE_CACHE_BYTES (64L << 20) /* cache rasterised shapes up to this */

/* Arena: every parse-time block is recorded and freed at the end. */
static void *arena_alloc(spec_ctx *c, size_t n, size_t size)
{
    if (c->nblocks == c->capblocks) {
        int cap = c->capblocks ? 2 * c->capblocks : 64;
        void **grown = imrt_calloc((size_t)cap, sizeof *grown);
        if (!grown)
            return NULL;
        if (c->nblocks)
            memcpy(grown, c->blocks, (size_t)c->nblocks * sizeof *grown);
        imrt_free(c->blocks);
        c->blocks = grown;
        c->capblocks = cap;
    }
    void *p = imrt_calloc(n ? n : 1, size);
    if (p)
        c->blocks[c->nblocks++] = p;
    return p;
}

static void ctx_free(spec_ctx *c)
{
    for (int i = 0; i < c->nblocks; i++)
        imrt_free(c->blocks[i]);
    imrt_free(c->blocks);
    for (int i = 0; i < c->nlines; i++)
        imrt_free(c->lines[i].path);
    imrt_free(c->lines);
    imrt_free(c->analytic_cc);
    if (c->shape_masks) {
        for (int i = 0; i < c->nshapes; i++)
            imrt_free(c->shape_masks[i]);
        imrt_free(c->shape_masks);
    }
    imrt_phantom_destroy(&c->phantom);
}

/* ------------------------------------------------------------------ */
/* Key-path line index                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *s;
    size_t n, pos;
    int line;
} scanner;

static int add_line(spec_ctx *c, const char *path, int line)
{
    if (c->nlines == c->caplines) {
        int cap = c->caplines ? 2 * c->caplines : 256;
        line_entry *grown = imrt_calloc((size_t)cap, sizeof *grown);
        if (!grown)
            return 0;
        if (c->nlines)
            memcpy(grown, c->lines, (size_t)c->nlines * sizeof *grown);
        imrt_free(c->lines);
        c->lines = grown;
        c->caplines = cap;
    }
    size_t len = strlen(path);
    char *copy = imrt_malloc(len + 1);
    if (!copy)
        return 0;
    memcpy(copy, path, len + 1);
    c->lines[c->nlines].path = copy;
    c->lines[c->nlines].line = line;
    c->nlines++;
    return 1;
}

static void sc_ws(scanner *sc)
{
    while (sc->pos < sc->n) {
        char ch = sc->s[sc->pos];
        if (ch == '\n')
            sc->line++;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            sc->pos++;
        else
            break;
    }
}

/* Read a JSON string at sc->pos (on the opening quote) into out (simple
 * escapes decoded, others kept verbatim). Returns 0 on malformed text. */
static int sc_string(scanner *sc, char *out, size_t outsz)
{
    size_t k = 0;
    if (sc->pos >= sc->n || sc->s[sc->pos] != '"')
        return 0;
    sc->pos++;
    while (sc->pos < sc->n) {
        char ch = sc->s[sc->pos++];
        if (ch == '"') {
            if (out)
                out[k < outsz ? k : outsz - 1] = '\0';
            return 1;
        }
        if (ch == '\\' && sc->pos < sc->n) {
            char e = sc->s[sc->pos++];
            ch = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b'
                 : e == 'f' ? '\f' : e;
        }
        if (ch == '\n')
            sc->line++;
        if (out && k + 1 < outsz)
            out[k++] = ch;
    }
    return 0;
}

/* Scan one value; record (path, line) first. Returns 0 to stop (malformed
 * text or too deep: the index stays partial, lookups fall back to parents),
 * -1 when out of memory. */
static int sc_value(spec_ctx *c, scanner *sc, char *path, size_t plen, int depth, int line)
{
    sc_ws(sc);
    if (sc->pos >= sc->n || depth > 64)
        return 0;
    if (!add_line(c, path, line > 0 ? line : sc->line))
        return -1;
    char ch = sc->s[sc->pos];
    if (ch == '{') {
        sc->pos++;
        sc_ws(sc);
        if (sc->pos < sc->n && sc->s[sc->pos] == '}') {
            sc->pos++;
            return 1;
        }
        for (;;) {
            sc_ws(sc);
            char key[PATH_LEN];
            int kline = sc->line;
            if (!sc_string(sc, key, sizeof key))
                return 0;
            sc_ws(sc);
            if (sc->pos >= sc->n || sc->s[sc->pos] != ':')
                return 0;
            sc->pos++;
            int w = plen ? snprintf(path + plen, PATH_LEN - plen, ".%s", key)
                         : snprintf(path, PATH_LEN, "%s", key);
            size_t nlen = plen + (size_t)(w > 0 ? w : 0);
            if (nlen >= PATH_LEN)
                nlen = PATH_LEN - 1;
            int r = sc_value(c, sc, path, nlen, depth + 1, kline);
            path[plen] = '\0';
            if (r <= 0)
                return r;
            sc_ws(sc);
            if (sc->pos >= sc->n)
                return 0;
            if (sc->s[sc->pos] == ',') {
                sc->pos++;
                continue;
            }
            if (sc->s[sc->pos] == '}') {
                sc->pos++;
                return 1;
            }
            return 0;
        }
    }
    if (ch == '[') {
        sc->pos++;
        sc_ws(sc);
        if (sc->pos < sc->n && sc->s[sc->pos] == ']') {
            sc->pos++;
            return 1;
        }
        for (int i = 0;; i++) {
            int w = snprintf(path + plen, PATH_LEN - plen, "[%d]", i);
            size_t nlen = plen + (size_t)(w > 0 ? w : 0);
            if (nlen >= PATH_LEN)
                nlen = PATH_LEN - 1;
            int r = sc_value(c, sc, path, nlen, depth + 1, 0);
            path[plen] = '\0';
            if (r <= 0)
                return r;
            sc_ws(sc);
            if (sc->pos >= sc->n)
                return 0;
            if (sc->s[sc->pos] == ',') {
                sc->pos++;
                continue;
            }
            if (sc->s[sc->pos] == ']') {
                sc->pos++;
                return 1;
            }
            return 0;
        }
    }
    if (ch == '"')
        return sc_string(sc, NULL, 0);
    while (sc->pos < sc->n) {
        ch = sc->s[sc->pos];
        if (ch == ',' || ch == ']' || ch == '}' || ch == ' ' || ch == '\t' || ch == '\r' ||
            ch == '\n')
            break;
        sc->pos++;
    }
    return 1;
}

static imrt_status build_line_index(spec_ctx *c)
{
    scanner sc = {c->text, c->len, 0, 1};
    char path[PATH_LEN] = "";
    if (sc_value(c, &sc, path, 0, 0, 0) < 0)
        return imrt_error(IMRT_ERR_NOMEM, "%s: cannot allocate the key-line index", c->label);
    return IMRT_OK;
}

/* Line of a key path; falls back to the nearest recorded parent. 0 if none. */
static int line_of(const spec_ctx *c, const char *path)
{
    char p[PATH_LEN];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        for (int i = 0; i < c->nlines; i++)
            if (strcmp(c->lines[i].path, p) == 0)
                return c->lines[i].line;
        size_t n = strlen(p);
        if (n == 0)
            return 0;
        /* strip the last ".key" or "[i]" */
        size_t k = n;
        if (p[n - 1] == ']') {
            while (k > 0 && p[k - 1] != '[')
                k--;
            k = k > 0 ? k - 1 : 0;
        } else {
            while (k > 0 && p[k - 1] != '.' && p[k - 1] != ']')
                k--;
            if (k > 0 && p[k - 1] == '.')
                k--;
        }
        p[k] = '\0';
    }
}

/* Record "LABEL:LINE: PATH: message" and return st. */
static imrt_status perr(const spec_ctx *c, imrt_status st, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static imrt_status perr(const spec_ctx *c, imrt_status st, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = line_of(c, path);
    const char *shown = (path && *path) ? path : "(top level)";
    if (line > 0)
        return imrt_error(st, "%s:%d: %s: %s", c->label, line, shown, msg);
    return imrt_error(st, "%s: %s: %s", c->label, shown, msg);
}

/* ------------------------------------------------------------------ */
/* Typed accessors                                                     */
/* ------------------------------------------------------------------ */

/* Append src to out (PATH_LEN bytes) at *n, truncating. out may alias src
 * when *n is 0. */
static void path_append(char *out, size_t *n, const char *src)
{
    while (*src && *n + 1 < PATH_LEN)
        out[(*n)++] = *src++;
    out[*n] = '\0';
}

static void join_key(char *out, const char *path, const char *key)
{
    size_t n = 0;
    if (path && *path) {
        path_append(out, &n, path);
        path_append(out, &n, ".");
    }
    path_append(out, &n, key);
}

static void join_index(char *out, const char *path, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof idx, "[%zu]", i);
    size_t n = 0;
    path_append(out, &n, path);
    path_append(out, &n, idx);
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Levenshtein distance of short strings (for "did you mean"). */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int sub = prev + (a[i - 1] != b[j - 1]);
            int del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

/* Every key of obj must be in allowed (NULL-terminated). */
static imrt_status check_keys(const spec_ctx *c, json_t *obj, const char *path,
                              const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (ok)
            continue;
        char list[512] = "", hint[128] = "";
        size_t used = 0;
        int best = 99;
        for (int i = 0; allowed[i]; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
            if (w > 0 && (size_t)w < sizeof list - used)
                used += (size_t)w;
            int d = edit_distance(key, allowed[i]);
            size_t lk = strlen(key), la = strlen(allowed[i]);
            if (lk >= 3 && la > lk && strncmp(key, allowed[i], lk) == 0)
                d = 1; /* a prefix: "radius" for "radius_mm" */
            if (d < best && d <= 2) {
                best = d;
                snprintf(hint, sizeof hint, " (did you mean '%s'?)", allowed[i]);
            }
        }
        char kp[PATH_LEN];
        join_key(kp, path, key);
        return perr(c, IMRT_ERR_PARSE, kp, "unknown key '%s'%s; allowed keys here: %s", key, hint,
                    list);
    }
    return IMRT_OK;
}

static imrt_status need_object(const spec_ctx *c, json_t *v, const char *path)
{
    if (!json_is_object(v))
        return perr(c, IMRT_ERR_PARSE, path, "must be an object {...} (got %s)", json_type_name(v));
    return IMRT_OK;
}

static imrt_status missing(const spec_ctx *c, const char *path, const char *key,
                           const char *what)
{
    char kp[PATH_LEN];
    join_key(kp, path, key);
    return perr(c, IMRT_ERR_PARSE, kp, "missing required key '%s' (%s)", key, what);
}

/* Text of an interval for messages: "[lo, hi]", "(lo, hi]". */
static void range_text(char *out, size_t n, double lo, double hi, int excl_lo, const char *unit)
{
    snprintf(out, n, "%c%g, %g]%s%s", excl_lo ? '(' : '[', lo, hi, unit && *unit ? " " : "",
             unit ? unit : "");
}

static imrt_status check_range(const spec_ctx *c, const char *kp, double v, double lo, double hi,
                               int excl_lo, const char *unit)
{
    if (!isfinite(v) || v < lo || v > hi || (excl_lo && v <= lo)) {
        char r[96];
        range_text(r, sizeof r, lo, hi, excl_lo, unit);
        if (excl_lo && lo == 0.0 && v <= 0.0)
            return perr(c, IMRT_ERR_RANGE, kp, "must be > 0 (allowed %s; got %g)", r, v);
        if (!excl_lo && lo == 0.0 && v < 0.0)
            return perr(c, IMRT_ERR_RANGE, kp, "must be >= 0 (allowed %s; got %g)", r, v);
        return perr(c, IMRT_ERR_RANGE, kp, "must be in %s (got %g)", r, v);
    }
    return IMRT_OK;
}

/* A number value at kp. */
static imrt_status num_value(const spec_ctx *c, json_t *v, const char *kp, double lo, double hi,
                             int excl_lo, const char *unit, double *out)
{
    if (!json_is_number(v)) {
        char r[96];
        range_text(r, sizeof r, lo, hi, excl_lo, unit);
        return perr(c, IMRT_ERR_PARSE, kp, "must be a number in %s (got %s)", r,
                    json_type_name(v));
    }
    double x = json_number_value(v);
    imrt_status st = check_range(c, kp, x, lo, hi, excl_lo, unit);
    if (st == IMRT_OK)
        *out = x;
    return st;
}

/* obj[key] as a number; absent: error if required, else *out = def. */
static imrt_status get_num(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                           int required, double def, double lo, double hi, int excl_lo,
                           const char *unit, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) {
            char r[96], what[160];
            range_text(r, sizeof r, lo, hi, excl_lo, unit);
            snprintf(what, sizeof what, "a number in %s", r);
            return missing(c, path, key, what);
        }
        *out = def;
        return IMRT_OK;
    }
    char kp[PATH_LEN];
    join_key(kp, path, key);
    return num_value(c, v, kp, lo, hi, excl_lo, unit, out);
}

static imrt_status get_int(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                           int required, int def, int lo, int hi, int *out)
{
    json_t *v = json_object_get(obj, key);
    char kp[PATH_LEN];
    join_key(kp, path, key);
    if (!v) {
        if (required) {
            char what[96];
            snprintf(what, sizeof what, "an integer in [%d, %d]", lo, hi);
            return missing(c, path, key, what);
        }
        *out = def;
        return IMRT_OK;
    }
    double x = json_is_number(v) ? json_number_value(v) : (double)NAN;
    if (!json_is_number(v) || x != floor(x))
        return perr(c, IMRT_ERR_PARSE, kp, "must be an integer in [%d, %d] (got %s)", lo, hi,
                    json_is_number(v) ? "a fraction" : json_type_name(v));
    if (x < lo || x > hi)
        return perr(c, IMRT_ERR_RANGE, kp, "must be an integer in [%d, %d] (got %g)", lo, hi, x);
    *out = (int)x;
    return IMRT_OK;
}

static imrt_status get_bool(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                            int def, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return IMRT_OK;
    }
    if (!json_is_boolean(v)) {
        char kp[PATH_LEN];
        join_key(kp, path, key);
        return perr(c, IMRT_ERR_PARSE, kp, "must be true or false (got %s)", json_type_name(v));
    }
    *out = json_is_true(v);
    return IMRT_OK;
}

/* A string at kp into out (1..outsz-1 characters). */
static imrt_status str_value(const spec_ctx *c, json_t *v, const char *kp, char *out,
                             size_t outsz)
{
    if (!json_is_string(v))
        return perr(c, IMRT_ERR_PARSE, kp, "must be a string (got %s)", json_type_name(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n >= outsz || strlen(s) != n)
        return perr(c, IMRT_ERR_RANGE, kp, "must have 1 to %zu characters and no NUL (got %zu)",
                    outsz - 1, n);
    memcpy(out, s, n + 1);
    return IMRT_OK;
}

static imrt_status get_str(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                           int required, const char *def, char *out, size_t outsz)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return missing(c, path, key, "a string");
        snprintf(out, outsz, "%s", def ? def : "");
        return IMRT_OK;
    }
    char kp[PATH_LEN];
    join_key(kp, path, key);
    return str_value(c, v, kp, out, outsz);
}

/* A name of a shape, structure or material: letters, digits, _ - . + */
static imrt_status check_name(const spec_ctx *c, const char *kp, const char *name)
{
    for (const char *p = name; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-' || ch == '.' || ch == '+';
        if (!ok)
            return perr(c, IMRT_ERR_RANGE, kp,
                        "name '%s' may only use letters, digits and _ - . + (no spaces)", name);
    }
    return IMRT_OK;
}

/* obj[key] as an array of exactly n numbers, each in [lo, hi]. */
static imrt_status get_vec(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                           int required, int n, double lo, double hi, int excl_lo,
                           const char *unit, double *out)
{
    json_t *v = json_object_get(obj, key);
    char kp[PATH_LEN];
    join_key(kp, path, key);
    char r[96];
    range_text(r, sizeof r, lo, hi, excl_lo, unit);
    if (!v) {
        if (required) {
            char what[160];
            snprintf(what, sizeof what, "an array of %d numbers in %s", n, r);
            return missing(c, path, key, what);
        }
        return IMRT_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != (size_t)n)
        return perr(c, IMRT_ERR_PARSE, kp, "must be an array of %d numbers in %s (got %s%s)", n,
                    r, json_type_name(v), json_is_array(v) ? " of another length" : "");
    for (int i = 0; i < n; i++) {
        char ip[PATH_LEN];
        join_index(ip, kp, (size_t)i);
        imrt_status st = num_value(c, json_array_get(v, (size_t)i), ip, lo, hi, excl_lo, unit,
                                   &out[i]);
        if (st != IMRT_OK)
            return st;
    }
    return IMRT_OK;
}

/* A margin: number (isotropic), [x, y, z] or [-x, +x, -y, +y, -z, +z]. */
static imrt_status get_margin(const spec_ctx *c, json_t *obj, const char *path, const char *key,
                              double out[6])
{
    json_t *v = json_object_get(obj, key);
    char kp[PATH_LEN];
    join_key(kp, path, key);
    const double hi = IMRT_SPEC_MAX_MARGIN_MM;
    if (!v) {
        char what[200];
        snprintf(what, sizeof what,
                 "a margin in [0, %g] mm: a number, [x, y, z] or [right, left, anterior, "
                 "posterior, inferior, superior]",
                 hi);
        return missing(c, path, key, what);
    }
    if (json_is_number(v)) {
        double m;
        imrt_status st = num_value(c, v, kp, 0.0, hi, 0, "mm", &m);
        if (st != IMRT_OK)
            return st;
        for (int i = 0; i < 6; i++)
            out[i] = m;
        return IMRT_OK;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (n != 3 && n != 6)
        return perr(c, IMRT_ERR_PARSE, kp,
                    "must be a number, [x, y, z] or [right, left, anterior, posterior, inferior, "
                    "superior] in [0, %g] mm (got %s%s)",
                    hi, json_type_name(v), json_is_array(v) ? " of another length" : "");
    double m[6];
    for (size_t i = 0; i < n; i++) {
        char ip[PATH_LEN];
        join_index(ip, kp, i);
        imrt_status st = num_value(c, json_array_get(v, i), ip, 0.0, hi, 0, "mm", &m[i]);
        if (st != IMRT_OK)
            return st;
    }
    for (int i = 0; i < 6; i++)
        out[i] = n == 3 ? m[i / 2] : m[i];
    return IMRT_OK;
}

/* ------------------------------------------------------------------ */
/* Shapes and structure expressions                                    */
/* ------------------------------------------------------------------ */

/* Scope of names an expression may refer to. */
typedef struct {
    int nshapes;          /* shapes[0..nshapes-1] visible */
    int nstructures;      /* phantom structures[0..nstructures-1] visible */
} scope_t;

static int find_shape(const spec_ctx *c, const char *name, int n)
{
    for (int i = 0; i < n; i++)
        if (c->shapes[i].name[0] && strcmp(c->shapes[i].name, name) == 0)
            return i;
    return -1;
}

static int find_structure(const spec_ctx *c, const char *name, int n)
{
    if (!c->phantom)
        return -1;
    for (int i = 0; i < n && i < c->phantom->nstructures; i++)
        if (strcmp(c->phantom->structures[i].name, name) == 0)
            return i;
    return -1;
}

/* A unit direction: "x" "y" "z" (optionally signed) or [a, b, c] != 0. */
static imrt_status get_direction(const spec_ctx *c, json_t *obj, const char *path,
                                 const char *key, int required, const double *def, double out[3])
{
    json_t *v = json_object_get(obj, key);
    char kp[PATH_LEN];
    join_key(kp, path, key);
    if (!v) {
        if (required || !def)
            return missing(c, path, key, "\"x\", \"y\", \"z\" or a non-zero vector [a, b, c]");
        for (int i = 0; i < 3; i++)
            out[i] = def[i];
        return IMRT_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        double sign = 1.0;
        if (*s == '-' || *s == '+') {
            sign = *s == '-' ? -1.0 : 1.0;
            s++;
        }
        int a = strcmp(s, "x") == 0 ? 0 : strcmp(s, "y") == 0 ? 1 : strcmp(s, "z") == 0 ? 2 : -1;
        if (a < 0)
            return perr(c, IMRT_ERR_RANGE, kp,
                        "must be \"x\", \"y\", \"z\" (optionally signed) or a vector [a, b, c] "
                        "(got \"%s\")",
                        json_string_value(v));
        out[0] = out[1] = out[2] = 0.0;
        out[a] = sign;
        return IMRT_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return perr(c, IMRT_ERR_PARSE, kp,
                    "must be \"x\", \"y\", \"z\" or a non-zero vector [a, b, c] (got %s)",
                    json_type_name(v));
    double d[3], n2 = 0.0;
    for (size_t i = 0; i < 3; i++) {
        char ip[PATH_LEN];
        join_index(ip, kp, i);
        imrt_status st = num_value(c, json_array_get(v, i), ip, -1e6, 1e6, 0, "", &d[i]);
        if (st != IMRT_OK)
            return st;
        n2 += d[i] * d[i];
    }
    if (!(n2 > 1e-20))
        return perr(c, IMRT_ERR_RANGE, kp, "must be a non-zero vector");
    double nn = sqrt(n2);
    for (int i = 0; i < 3; i++) {
        out[i] = d[i] / nn;
        if (fabs(out[i]) < 1e-15)
            out[i] = 0.0;
    }
    return IMRT_OK;
}

static const char *const EXPR_OPS[] = {"type", "shape", "union", "intersection", "difference",
                                       "expand", "shrink", "shell", NULL};

static imrt_status parse_operand(spec_ctx *c, json_t *v, const char *kp, scope_t sc, int depth,
                                 expr_t **out);
static imrt_status parse_expr_object(spec_ctx *c, json_t *obj, const char *path, scope_t sc,
                                     int depth, const char *const *extra, expr_t **out);

/* Geometry keys of each solid type (NULL-terminated); NULL for an unknown type. */
static const char *const *primitive_keys(const char *type)
{
    static const char *const box[] = {"centre_mm", "size_mm", "min_mm", "max_mm", NULL};
    static const char *const sphere[] = {"centre_mm", "radius_mm", NULL};
    static const char *const ellipsoid[] = {"centre_mm", "radii_mm", NULL};
    static const char *const cylinder[] = {"centre_mm", "axis", "length_mm", "radius_mm", NULL};
    static const char *const ecyl[] = {"centre_mm", "axis", "length_mm", "radii_mm",
                                       "radius_dir", NULL};
    static const char *const sector[] = {"centre_mm",       "axis",    "length_mm",
                                         "inner_radius_mm", "outer_radius_mm", "gap_deg",
                                         "gap_direction",   "arc_deg", "arc_direction", NULL};
    static const char *const half[] = {"point_mm", "towards", NULL};
    if (strcmp(type, "box") == 0)
        return box;
    if (strcmp(type, "sphere") == 0)
        return sphere;
    if (strcmp(type, "ellipsoid") == 0)
        return ellipsoid;
    if (strcmp(type, "cylinder") == 0)
        return cylinder;
    if (strcmp(type, "elliptic_cylinder") == 0)
        return ecyl;
    if (strcmp(type, "annular_sector") == 0)
        return sector;
    if (strcmp(type, "half_space") == 0)
        return half;
    return NULL;
}

/* Fill a primitive solid from its keys (type already known to be valid). */
static imrt_status parse_primitive(spec_ctx *c, json_t *obj, const char *path,
                                   const char *type, imrt_shape *s)
{
    imrt_status st = IMRT_OK;
    memset(s, 0, sizeof *s);
    const double big = MAX_SIZE_MM, crd = MAX_COORD_MM;
    const double zaxis[3] = {0, 0, 1};
#define TRY(x)              \
    do {                    \
        st = (x);           \
        if (st != IMRT_OK)  \
            return st;      \
    } while (0)
    if (strcmp(type, "box") == 0) {
        s->type = IMRT_SHAPE_BOX;
        int has_c = json_object_get(obj, "centre_mm") != NULL;
        int has_s = json_object_get(obj, "size_mm") != NULL;
        int has_lo = json_object_get(obj, "min_mm") != NULL;
        int has_hi = json_object_get(obj, "max_mm") != NULL;
        if (has_lo || has_hi) {
            if (has_c || has_s)
                return perr(c, IMRT_ERR_PARSE, path,
                            "a box takes either centre_mm + size_mm or min_mm + max_mm, not both");
            double lo[3], hi[3];
            TRY(get_vec(c, obj, path, "min_mm", 1, 3, -crd, crd, 0, "mm", lo));
            TRY(get_vec(c, obj, path, "max_mm", 1, 3, -crd, crd, 0, "mm", hi));
            for (int a = 0; a < 3; a++) {
                if (!(hi[a] > lo[a])) {
                    char kp[PATH_LEN];
                    join_key(kp, path, "max_mm");
                    return perr(c, IMRT_ERR_RANGE, kp,
                                "each component must be greater than min_mm's (axis %c: %g <= %g)",
                                "xyz"[a], hi[a], lo[a]);
                }
                s->c[a] = 0.5 * (lo[a] + hi[a]);
                s->half[a] = 0.5 * (hi[a] - lo[a]);
            }
        } else {
            double size[3];
            TRY(get_vec(c, obj, path, "centre_mm", 1, 3, -crd, crd, 0, "mm", s->c));
            TRY(get_vec(c, obj, path, "size_mm", 1, 3, 0.0, 2 * crd, 1, "mm", size));
            for (int a = 0; a < 3; a++)
                s->half[a] = 0.5 * size[a];
        }
    } else if (strcmp(type, "sphere") == 0) {
        s->type = IMRT_SHAPE_SPHERE;
        TRY(get_vec(c, obj, path, "centre_mm", 1, 3, -crd, crd, 0, "mm", s->c));
        TRY(get_num(c, obj, path, "radius_mm", 1, 0, 0.0, big, 1, "mm", &s->r1));
    } else if (strcmp(type, "ellipsoid") == 0) {
        s->type = IMRT_SHAPE_ELLIPSOID;
        TRY(get_vec(c, obj, path, "centre_mm", 1, 3, -crd, crd, 0, "mm", s->c));
        TRY(get_vec(c, obj, path, "radii_mm", 1, 3, 0.0, big, 1, "mm", s->half));
    } else if (strcmp(type, "cylinder") == 0 || strcmp(type, "elliptic_cylinder") == 0) {
        int elliptic = type[0] == 'e';
        s->type = IMRT_SHAPE_CYLINDER;
        TRY(get_vec(c, obj, path, "centre_mm", 1, 3, -crd, crd, 0, "mm", s->c));
        TRY(get_direction(c, obj, path, "axis", 0, zaxis, s->axis));
        double len;
        TRY(get_num(c, obj, path, "length_mm", 0, (double)INFINITY, 0.0, 2 * crd, 1, "mm", &len));
        s->half_len = isfinite(len) ? 0.5 * len : (double)INFINITY;
        if (elliptic) {
            double r[2];
            TRY(get_vec(c, obj, path, "radii_mm", 1, 2, 0.0, big, 1, "mm", r));
            s->r1 = r[0];
            s->r2 = r[1];
        } else {
            TRY(get_num(c, obj, path, "radius_mm", 1, 0, 0.0, big, 1, "mm", &s->r1));
            s->r2 = s->r1;
        }
        double ref[3];
        int has_ref = json_object_get(obj, "radius_dir") != NULL;
        if (has_ref)
            TRY(get_direction(c, obj, path, "radius_dir", 1, NULL, ref));
        if (!imrt_shape_frame(s->axis, has_ref ? ref : NULL, s->u, s->v)) {
            char kp[PATH_LEN];
            join_key(kp, path, "radius_dir");
            return perr(c, IMRT_ERR_RANGE, kp, "must not be parallel to the axis");
        }
    } else if (strcmp(type, "annular_sector") == 0) {
        s->type = IMRT_SHAPE_SECTOR;
        TRY(get_vec(c, obj, path, "centre_mm", 1, 3, -crd, crd, 0, "mm", s->c));
        TRY(get_direction(c, obj, path, "axis", 0, zaxis, s->axis));
        double len;
        TRY(get_num(c, obj, path, "length_mm", 1, 0, 0.0, 2 * crd, 1, "mm", &len));
        s->half_len = 0.5 * len;
        TRY(get_num(c, obj, path, "inner_radius_mm", 0, 0.0, 0.0, big, 0, "mm", &s->r1));
        TRY(get_num(c, obj, path, "outer_radius_mm", 1, 0, 0.0, big, 1, "mm", &s->r2));
        if (!(s->r2 > s->r1)) {
            char kp[PATH_LEN];
            join_key(kp, path, "outer_radius_mm");
            return perr(c, IMRT_ERR_RANGE, kp, "must be greater than inner_radius_mm (%g <= %g)",
                        s->r2, s->r1);
        }
        imrt_shape_frame(s->axis, NULL, s->u, s->v);
        int has_gap = json_object_get(obj, "gap_deg") || json_object_get(obj, "gap_direction");
        int has_arc = json_object_get(obj, "arc_deg") || json_object_get(obj, "arc_direction");
        if (has_gap && has_arc)
            return perr(c, IMRT_ERR_PARSE, path,
                        "give either gap_deg + gap_direction or arc_deg + arc_direction");
        s->arc_deg = 360.0;
        s->arc_dir[0] = 1.0;
        s->arc_dir[1] = 0.0;
        s->arc_cos = -1.0;
        if (has_gap || has_arc) {
            const char *kdeg = has_gap ? "gap_deg" : "arc_deg";
            const char *kdir = has_gap ? "gap_direction" : "arc_direction";
            double deg, dir[3];
            TRY(get_num(c, obj, path, kdeg, 1, 0, 0.0, 360.0, 1, "degrees", &deg));
            TRY(get_direction(c, obj, path, kdir, 1, NULL, dir));
            double du = dir[0] * s->u[0] + dir[1] * s->u[1] + dir[2] * s->u[2];
            double dv = dir[0] * s->v[0] + dir[1] * s->v[1] + dir[2] * s->v[2];
            double dn = sqrt(du * du + dv * dv);
            if (!(dn > 1e-9)) {
                char kp[PATH_LEN];
                join_key(kp, path, kdir);
                return perr(c, IMRT_ERR_RANGE, kp, "must not be parallel to the axis");
            }
            du /= dn;
            dv /= dn;
            if (has_gap) {
                if (deg >= 360.0) {
                    char kp[PATH_LEN];
                    join_key(kp, path, kdeg);
                    return perr(c, IMRT_ERR_RANGE, kp, "must be in (0, 360) degrees (got %g)", deg);
                }
                s->arc_deg = 360.0 - deg;
                du = -du;
                dv = -dv;
            } else {
                s->arc_deg = deg;
            }
            s->arc_dir[0] = du;
            s->arc_dir[1] = dv;
            s->arc_cos = cos(0.5 * s->arc_deg * IMRT_PI / 180.0);
        }
    } else if (strcmp(type, "half_space") == 0) {
        s->type = IMRT_SHAPE_HALFSPACE;
        TRY(get_vec(c, obj, path, "point_mm", 1, 3, -crd, crd, 0, "mm", s->c));
        TRY(get_direction(c, obj, path, "towards", 1, NULL, s->axis));
    } else {
        char kp[PATH_LEN];
        join_key(kp, path, "type");
        return perr(c, IMRT_ERR_RANGE, kp,
                    "unknown shape type '%s' (allowed: box, sphere, ellipsoid, cylinder, "
                    "elliptic_cylinder, annular_sector, half_space)",
                    type);
    }
#undef TRY
    return st;
}

/* Parse an operand: a name (earlier shape or structure) or an object. */
static imrt_status parse_operand(spec_ctx *c, json_t *v, const char *kp, scope_t sc, int depth,
                                 expr_t **out)
{
    if (json_is_string(v)) {
        const char *name = json_string_value(v);
        expr_t *e = arena_alloc(c, 1, sizeof *e);
        if (!e)
            return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
        int s = find_structure(c, name, sc.nstructures);
        if (s >= 0) {
            e->op = OP_REF_STRUCT;
            e->ref = s;
            e->weight = 1;
        } else {
            int h = find_shape(c, name, sc.nshapes);
            if (h < 0) {
                char known[512] = "";
                size_t used = 0;
                for (int i = 0; i < sc.nshapes; i++)
                    if (c->shapes[i].name[0]) {
                        int w = snprintf(known + used, sizeof known - used, "%s%s",
                                         used ? ", " : "", c->shapes[i].name);
                        if (w > 0 && (size_t)w < sizeof known - used)
                            used += (size_t)w;
                    }
                for (int i = 0; c->phantom && i < sc.nstructures; i++) {
                    int w = snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                                     c->phantom->structures[i].name);
                    if (w > 0 && (size_t)w < sizeof known - used)
                        used += (size_t)w;
                }
                return perr(c, IMRT_ERR_RANGE, kp,
                            "'%s' is not a shape or structure defined before this point "
                            "(known: %s)",
                            name, used ? known : "none");
            }
            e->op = OP_REF_SHAPE;
            e->ref = h;
            e->weight = 1 + c->shapes[h].geom->weight;
        }
        *out = e;
        return IMRT_OK;
    }
    if (json_is_object(v))
        return parse_expr_object(c, v, kp, sc, depth + 1, NULL, out);
    return perr(c, IMRT_ERR_PARSE, kp,
                "must be the name of a shape or structure, or an object (got %s)",
                json_type_name(v));
}

/* Operands of union/intersection/difference/minus: an array (or, for
 * minus, also a single operand). */
static imrt_status parse_operand_list(spec_ctx *c, json_t *v, const char *kp, scope_t sc,
                                      int depth, int single_ok, expr_t ***out, int *n)
{
    if (single_ok && !json_is_array(v)) {
        *out = arena_alloc(c, 1, sizeof **out);
        if (!*out)
            return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
        *n = 1;
        return parse_operand(c, v, kp, sc, depth, &(*out)[0]);
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 64)
        return perr(c, IMRT_ERR_PARSE, kp,
                    "must be an array of 1 to 64 operands (names or objects; got %s%s)",
                    json_type_name(v), json_is_array(v) ? " of another length" : "");
    size_t m = json_array_size(v);
    *out = arena_alloc(c, m, sizeof **out);
    if (!*out)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    *n = (int)m;
    for (size_t i = 0; i < m; i++) {
        char ip[PATH_LEN];
        join_index(ip, kp, i);
        imrt_status st = parse_operand(c, json_array_get(v, i), ip, sc, depth, &(*out)[i]);
        if (st != IMRT_OK)
            return st;
    }
    return IMRT_OK;
}

/* An expression object: exactly one of EXPR_OPS, its keys, the modifiers
 * within/minus, "comment", and the caller's extra keys. */
static imrt_status parse_expr_object(spec_ctx *c, json_t *obj, const char *path, scope_t sc,
                                     int depth, const char *const *extra, expr_t **out)
{
    imrt_status st = IMRT_OK;
    if (depth > IMRT_SPEC_MAX_DEPTH)
        return perr(c, IMRT_ERR_RANGE, path, "expressions nest deeper than %d levels",
                    IMRT_SPEC_MAX_DEPTH);
    const char *op = NULL;
    for (int i = 0; EXPR_OPS[i]; i++)
        if (json_object_get(obj, EXPR_OPS[i])) {
            if (op)
                return perr(c, IMRT_ERR_PARSE, path,
                            "give only one of type, shape, union, intersection, difference, "
                            "expand, shrink, shell (found '%s' and '%s')",
                            op, EXPR_OPS[i]);
            op = EXPR_OPS[i];
        }
    if (!op)
        return perr(c, IMRT_ERR_PARSE, path,
                    "missing the geometry: one of type (a solid), shape, union, intersection, "
                    "difference, expand, shrink or shell");
    expr_t *e = arena_alloc(c, 1, sizeof *e);
    if (!e)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    const char *keys[48];
    int nkeys = 0;
    keys[nkeys++] = op;
    keys[nkeys++] = "comment";
    keys[nkeys++] = "within";
    keys[nkeys++] = "minus";
    for (int i = 0; extra && extra[i]; i++)
        keys[nkeys++] = extra[i];
    char kp[PATH_LEN];
    join_key(kp, path, op);
    json_t *v = json_object_get(obj, op);
    if (strcmp(op, "type") == 0) {
        char type[32];
        st = str_value(c, v, kp, type, sizeof type);
        if (st != IMRT_OK)
            return perr(c, IMRT_ERR_PARSE, kp,
                        "must be one of box, sphere, ellipsoid, cylinder, elliptic_cylinder, "
                        "annular_sector, half_space");
        const char *const *gkeys = primitive_keys(type);
        if (!gkeys)
            return perr(c, IMRT_ERR_RANGE, kp,
                        "unknown shape type '%s' (allowed: box, sphere, ellipsoid, cylinder, "
                        "elliptic_cylinder, annular_sector, half_space)",
                        type);
        for (int i = 0; gkeys[i]; i++)
            keys[nkeys++] = gkeys[i];
        keys[nkeys] = NULL;
        st = check_keys(c, obj, path, keys);
        if (st != IMRT_OK)
            return st;
        st = parse_primitive(c, obj, path, type, &e->shape);
        if (st != IMRT_OK)
            return st;
        e->op = OP_SHAPE;
        e->weight = 1;
    } else {
        if (strcmp(op, "expand") == 0 || strcmp(op, "shrink") == 0)
            keys[nkeys++] = "margin_mm";
        if (strcmp(op, "shell") == 0) {
            keys[nkeys++] = "inner_mm";
            keys[nkeys++] = "outer_mm";
        }
        keys[nkeys] = NULL;
        st = check_keys(c, obj, path, keys);
        if (st != IMRT_OK)
            return st;
        if (strcmp(op, "union") == 0 || strcmp(op, "intersection") == 0 ||
            strcmp(op, "difference") == 0) {
            e->op = op[0] == 'u' ? OP_UNION : op[0] == 'i' ? OP_INTER : OP_DIFF;
            st = parse_operand_list(c, v, kp, sc, depth, 0, &e->args, &e->nargs);
        } else {
            e->nargs = 1;
            e->args = arena_alloc(c, 1, sizeof *e->args);
            if (!e->args)
                return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
            st = parse_operand(c, v, kp, sc, depth, &e->args[0]);
            if (st != IMRT_OK)
                return st;
            if (strcmp(op, "shape") == 0) {
                /* identity: the operand itself, wrapped only if modifiers follow */
                expr_t *inner = e->args[0];
                if (!json_object_get(obj, "within") && !json_object_get(obj, "minus")) {
                    *out = inner;
                    return IMRT_OK;
                }
                e->op = OP_UNION;
            } else if (strcmp(op, "shell") == 0) {
                e->op = OP_SHELL;
                st = get_num(c, obj, path, "inner_mm", 0, 0.0, 0.0, IMRT_SPEC_MAX_MARGIN_MM, 0,
                             "mm", &e->inner);
                if (st == IMRT_OK)
                    st = get_num(c, obj, path, "outer_mm", 0, 0.0, 0.0, IMRT_SPEC_MAX_MARGIN_MM,
                                 0, "mm", &e->outer);
                if (st == IMRT_OK && !(e->inner + e->outer > 0.0))
                    st = perr(c, IMRT_ERR_RANGE, path,
                              "a shell needs inner_mm + outer_mm > 0 (thickness inside and "
                              "outside the surface, mm)");
            } else {
                e->op = op[0] == 'e' ? OP_EXPAND : OP_SHRINK;
                st = get_margin(c, obj, path, "margin_mm", e->margin);
            }
        }
        if (st != IMRT_OK)
            return st;
        if (e->op != OP_SHAPE && e->op != OP_REF_SHAPE && e->op != OP_REF_STRUCT) {
            e->weight = 1;
            for (int i = 0; i < e->nargs; i++)
                e->weight += e->args[i]->weight;
        }
    }
    json_t *w = json_object_get(obj, "within");
    if (w) {
        char wp[PATH_LEN];
        join_key(wp, path, "within");
        st = parse_operand(c, w, wp, sc, depth, &e->within);
        if (st != IMRT_OK)
            return st;
        e->weight += e->within->weight;
    }
    json_t *m = json_object_get(obj, "minus");
    if (m) {
        char mp[PATH_LEN];
        join_key(mp, path, "minus");
        st = parse_operand_list(c, m, mp, sc, depth, 1, &e->minus, &e->nminus);
        if (st != IMRT_OK)
            return st;
        for (int i = 0; i < e->nminus; i++)
            e->weight += e->minus[i]->weight;
    }
    if (e->weight > MAX_WEIGHT_EXPR)
        return perr(c, IMRT_ERR_RANGE, path,
                    "expression too complex (%d solids and operations, including referenced "
                    "shapes; at most %d)",
                    e->weight, MAX_WEIGHT_EXPR);
    *out = e;
    return IMRT_OK;
}

static const imrt_shape *analytic_solid(const spec_ctx *c, const expr_t *e);

/* out &= (inside solid) when keep, out &= !(inside solid) otherwise; the
 * solid is tested only at voxels already in out (cheap for half-spaces and
 * large solids cutting small structures). */
static void restrict_by_solid(const imrt_grid *g, const imrt_shape *solid, int keep, uint8_t *out)
{
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++) {
            int64_t row = imrt_grid_index(g, 0, j, k);
            double q[3] = {0.0, g->origin[1] + j * g->dy, g->origin[2] + k * g->dz};
            for (int i = 0; i < g->nx; i++) {
                if (!out[row + i])
                    continue;
                q[0] = g->origin[0] + i * g->dx;
                if (imrt_shape_contains(solid, q) != keep)
                    out[row + i] = 0;
            }
        }
}

/* Evaluate an expression into out (nvox bytes, 0/1). */
static imrt_status eval_expr(spec_ctx *c, const expr_t *e, uint8_t *out)
{
    imrt_status status = IMRT_OK;
    uint8_t *tmp = NULL;
    const imrt_grid *g = &c->phantom->grid;
    int64_t n = imrt_grid_nvox(g);
    switch (e->op) {
    case OP_SHAPE:
        memset(out, 0, (size_t)n);
        imrt_shape_rasterise(&e->shape, g, out, 1);
        break;
    case OP_REF_SHAPE: {
        /* shapes referenced by name are often used several times: cache */
        uint8_t *cached = c->shape_masks ? c->shape_masks[e->ref] : NULL;
        if (cached) {
            memcpy(out, cached, (size_t)n);
            break;
        }
        IMRT_TRY(eval_expr(c, c->shapes[e->ref].geom, out));
        if (c->shape_masks && c->cached_bytes + n <= SHAPE_CACHE_BYTES) {
            uint8_t *copy = imrt_malloc((size_t)n);
            if (copy) { /* no memory for the cache is not an error */
                memcpy(copy, out, (size_t)n);
                c->shape_masks[e->ref] = copy;
                c->cached_bytes += n;
            }
        }
        break;
    }
    case OP_REF_STRUCT: {
        const uint8_t *m = c->phantom->structures[e->ref].mask;
        for (int64_t v = 0; v < n; v++)
            out[v] = m[v] != 0;
        break;
    }
    case OP_UNION:
    case OP_INTER:
    case OP_DIFF:
        IMRT_TRY(eval_expr(c, e->args[0], out));
        if (e->nargs > 1)
            IMRT_ALLOC(tmp, n);
        for (int a = 1; a < e->nargs; a++) {
            const imrt_shape *solid = analytic_solid(c, e->args[a]);
            if (solid && e->op != OP_UNION) {
                restrict_by_solid(g, solid, e->op == OP_INTER, out);
                continue;
            }
            IMRT_TRY(eval_expr(c, e->args[a], tmp));
            if (e->op == OP_UNION)
                for (int64_t v = 0; v < n; v++)
                    out[v] |= tmp[v];
            else if (e->op == OP_INTER)
                for (int64_t v = 0; v < n; v++)
                    out[v] &= tmp[v];
            else
                for (int64_t v = 0; v < n; v++)
                    out[v] &= (uint8_t)!tmp[v];
        }
        break;
    case OP_EXPAND:
        IMRT_TRY(eval_expr(c, e->args[0], out));
        IMRT_TRY(imrt_mask_expand(g, out, e->margin, out));
        break;
    case OP_SHRINK:
        IMRT_TRY(eval_expr(c, e->args[0], out));
        IMRT_TRY(imrt_mask_shrink(g, out, e->margin, out));
        break;
    case OP_SHELL: {
        IMRT_TRY(eval_expr(c, e->args[0], out));
        IMRT_ALLOC(tmp, n);
        const double mo[6] = {e->outer, e->outer, e->outer, e->outer, e->outer, e->outer};
        const double mi[6] = {e->inner, e->inner, e->inner, e->inner, e->inner, e->inner};
        IMRT_TRY(imrt_mask_expand(g, out, mo, tmp));
        IMRT_TRY(imrt_mask_shrink(g, out, mi, out));
        for (int64_t v = 0; v < n; v++)
            out[v] = (uint8_t)(tmp[v] && !out[v]);
        break;
    }
    default:
        IMRT_FAIL(IMRT_ERR_INTERNAL, "spec: unknown expression node %d", e->op);
    }
    if (e->within || e->nminus) {
        if (!tmp)
            IMRT_ALLOC(tmp, n);
        if (e->within) {
            const imrt_shape *solid = analytic_solid(c, e->within);
            if (solid) {
                restrict_by_solid(g, solid, 1, out);
            } else {
                IMRT_TRY(eval_expr(c, e->within, tmp));
                for (int64_t v = 0; v < n; v++)
                    out[v] &= tmp[v];
            }
        }
        for (int i = 0; i < e->nminus; i++) {
            const imrt_shape *solid = analytic_solid(c, e->minus[i]);
            if (solid) {
                restrict_by_solid(g, solid, 0, out);
                continue;
            }
            IMRT_TRY(eval_expr(c, e->minus[i], tmp));
            for (int64_t v = 0; v < n; v++)
                out[v] &= (uint8_t)!tmp[v];
        }
    }
cleanup:
    imrt_free(tmp);
    return status;
}

/* The single analytic solid an expression is, or NULL. */
static const imrt_shape *analytic_solid(const spec_ctx *c, const expr_t *e)
{
    if (e->within || e->nminus)
        return NULL;
    if (e->op == OP_SHAPE)
        return &e->shape;
    if (e->op == OP_REF_SHAPE)
        return analytic_solid(c, c->shapes[e->ref].geom);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Phantom: grid, materials, shapes, structures                        */
/* ------------------------------------------------------------------ */

static int find_material(const spec_ctx *c, const char *name)
{
    for (int i = 0; i < c->nmaterials; i++)
        if (strcmp(c->materials[i].name, name) == 0)
            return i;
    return -1;
}

static imrt_status parse_materials(spec_ctx *c, json_t *ph, const char *path)
{
    char kp[PATH_LEN];
    join_key(kp, path, "materials");
    json_t *m = json_object_get(ph, "materials");
    if (!m)
        return missing(c, path, "materials",
                       "an object mapping material names to RED, e.g. {\"water\": 1.0}");
    if (!json_is_object(m) || json_object_size(m) == 0 || json_object_size(m) > 256)
        return perr(c, IMRT_ERR_PARSE, kp,
                    "must be an object of 1 to 256 materials {\"name\": RED, ...} (got %s)",
                    json_type_name(m));
    c->materials = arena_alloc(c, json_object_size(m), sizeof *c->materials);
    if (!c->materials)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    const char *key;
    json_t *val;
    double hi = c->allow_metal ? MAX_RED_METAL : MAX_RED_PLAIN;
    json_object_foreach(m, key, val) {
        char mp[PATH_LEN];
        join_key(mp, kp, key);
        material_def *md = &c->materials[c->nmaterials];
        if (strlen(key) == 0 || strlen(key) >= sizeof md->name)
            return perr(c, IMRT_ERR_RANGE, mp, "material names have 1 to %d characters",
                        IMRT_NAME_MAX - 1);
        imrt_status st = check_name(c, mp, key);
        if (st != IMRT_OK)
            return st;
        snprintf(md->name, sizeof md->name, "%s", key);
        json_t *rv = val;
        if (json_is_object(val)) {
            static const char *const mkeys[] = {"red", "comment", NULL};
            st = check_keys(c, val, mp, mkeys);
            if (st != IMRT_OK)
                return st;
            rv = json_object_get(val, "red");
            if (!rv)
                return missing(c, mp, "red", "relative electron density");
            join_key(mp, mp, "red");
        }
        if (json_is_number(rv) && json_number_value(rv) > MAX_RED_PLAIN && !c->allow_metal &&
            json_number_value(rv) <= MAX_RED_METAL)
            return perr(c, IMRT_ERR_RANGE, mp,
                        "RED %g is metal (above %g); set \"allow_metal\": true in the phantom "
                        "to use it",
                        json_number_value(rv), MAX_RED_PLAIN);
        st = num_value(c, rv, mp, 0.0, hi, 0, "(RED)", &md->red);
        if (st != IMRT_OK)
            return st;
        c->nmaterials++;
    }
    return IMRT_OK;
}

/* Material reference: a name in materials. */
static imrt_status material_ref(spec_ctx *c, json_t *v, const char *kp, int *out)
{
    char name[IMRT_NAME_MAX];
    imrt_status st = str_value(c, v, kp, name, sizeof name);
    if (st != IMRT_OK)
        return st;
    int m = find_material(c, name);
    if (m < 0) {
        char known[512] = "";
        size_t used = 0;
        for (int i = 0; i < c->nmaterials; i++) {
            int w = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                             c->materials[i].name);
            if (w > 0 && (size_t)w < sizeof known - used)
                used += (size_t)w;
        }
        return perr(c, IMRT_ERR_RANGE, kp, "unknown material '%s' (defined: %s)", name, known);
    }
    *out = m;
    return IMRT_OK;
}

#define IMRT_TRY_ST(expr)           \
    do {                            \
        imrt_status try_st_ = (expr); \
        if (try_st_ != IMRT_OK)     \
            return try_st_;         \
    } while (0)

/* Refuse a phantom whose rasterisation would exceed the memory budget,
 * before allocating it, naming coarser spacings that would fit. */
static imrt_status check_phantom_budget(const spec_ctx *c, json_t *ph, const char *kp,
                                        const double size[3], const double sp[3], const int n[3])
{
    if (c->max_memory == 0)
        return IMRT_OK;
    json_t *sh = json_object_get(ph, "shapes"), *su = json_object_get(ph, "structures");
    const int nsh = json_is_array(sh) ? (int)json_array_size(sh) : 0;
    const int nsu = json_is_array(su) ? (int)json_array_size(su) : 0;
    const uint64_t need = IMRT_SPEC_PHANTOM_BYTES((int64_t)n[0] * n[1] * n[2], nsh, nsu);
    if (need <= c->max_memory)
        return IMRT_OK;
    static const double coarser[] = {1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50};
    char alt[512] = "";
    size_t used = 0;
    int shown = 0;
    for (size_t q = 0; q < sizeof coarser / sizeof coarser[0] && shown < 3; q++) {
        const double h = coarser[q];
        if (h <= fmax(sp[0], fmax(sp[1], sp[2])))
            continue;
        double nv = 1.0;
        for (int a = 0; a < 3; a++)
            nv *= fmax(1.0, ceil(size[a] / h - 1e-9));
        const uint64_t b = IMRT_SPEC_PHANTOM_BYTES((int64_t)nv, nsh, nsu);
        if (b > c->max_memory)
            continue;
        int w = snprintf(alt + used, sizeof alt - used, "%s%g mm (%.1f MiB)", shown ? ", " : "",
                         h, (double)b / 1048576.0);
        if (w > 0 && (size_t)w < sizeof alt - used)
            used += (size_t)w;
        shown++;
    }
    return perr(c, IMRT_ERR_BUDGET, kp,
                "the phantom needs %.1f MiB (%d x %d x %d voxels of %g x %g x %g mm, density "
                "and %d masks) but the memory budget is %.1f MiB (--max-memory); %s%s",
                (double)need / 1048576.0, n[0], n[1], n[2], sp[0], sp[1], sp[2], nsh + nsu + 3,
                (double)c->max_memory / 1048576.0,
                shown ? "a coarser spacing (--grid or grid.spacing_mm) fits: "
                      : "no grid spacing up to 50 mm fits; raise the budget",
                alt);
}

static imrt_status parse_grid(spec_ctx *c, json_t *ph, const char *path, imrt_grid *g)
{
    static const char *const gkeys[] = {"size_mm", "spacing_mm", "centre_mm", "comment", NULL};
    char kp[PATH_LEN];
    join_key(kp, path, "grid");
    json_t *gj = json_object_get(ph, "grid");
    if (!gj)
        return missing(c, path, "grid", "an object with size_mm, spacing_mm, centre_mm");
    imrt_status st = need_object(c, gj, kp);
    if (st != IMRT_OK)
        return st;
    st = check_keys(c, gj, kp, gkeys);
    if (st != IMRT_OK)
        return st;
    double size[3], sp[3], centre[3] = {0, 0, 0};
    st = get_vec(c, gj, kp, "size_mm", 1, 3, 0.0, MAX_SIZE_MM, 1, "mm", size);
    if (st != IMRT_OK)
        return st;
    json_t *sv = json_object_get(gj, "spacing_mm");
    if (sv && json_is_array(sv)) {
        st = get_vec(c, gj, kp, "spacing_mm", 1, 3, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM,
                     0, "mm", sp);
    } else {
        st = get_num(c, gj, kp, "spacing_mm", 1, 0, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM,
                     0, "mm", &sp[0]);
        sp[1] = sp[2] = sp[0];
    }
    if (st != IMRT_OK)
        return st;
    st = get_vec(c, gj, kp, "centre_mm", 0, 3, -MAX_COORD_MM, MAX_COORD_MM, 0, "mm", centre);
    if (st != IMRT_OK)
        return st;
    if (c->grid_override > 0.0)
        sp[0] = sp[1] = sp[2] = c->grid_override;
    int n[3];
    double total = 1.0;
    for (int a = 0; a < 3; a++) {
        double cnt = ceil(size[a] / sp[a] - 1e-9);
        if (cnt < 1.0)
            cnt = 1.0;
        total *= cnt;
        if (cnt > IMRT_GRID_MAX_DIM || total > (double)IMRT_SPEC_MAX_VOXELS) {
            char sp_path[PATH_LEN];
            join_key(sp_path, kp, "size_mm");
            return perr(c, IMRT_ERR_RANGE, sp_path,
                        "the grid would have more than %ld voxels (or %d along one axis) at "
                        "%g x %g x %g mm spacing; use a coarser spacing or a smaller size",
                        (long)IMRT_SPEC_MAX_VOXELS, IMRT_GRID_MAX_DIM, sp[0], sp[1], sp[2]);
        }
        n[a] = (int)cnt;
    }
    IMRT_TRY_ST(check_phantom_budget(c, ph, kp, size, sp, n));
    double origin[3];
    for (int a = 0; a < 3; a++)
        origin[a] = centre[a] - 0.5 * (n[a] - 1) * sp[a];
    st = imrt_grid_init(g, n[0], n[1], n[2], sp[0], sp[1], sp[2], origin);
    if (st != IMRT_OK)
        return perr(c, st, kp, "%s", imrt_last_error());
    return IMRT_OK;
}

/* Paint one shape's material. */
static imrt_status paint_shape(spec_ctx *c, const shape_def *sd, uint8_t *scratch)
{
    imrt_phantom *p = c->phantom;
    const imrt_grid *g = &p->grid;
    float red = (float)c->materials[sd->material].red;
    const imrt_shape *solid = analytic_solid(c, sd->geom);
    if (solid) {
        int r[6];
        if (!imrt_shape_voxel_range(solid, g, r))
            return IMRT_OK;
        for (int k = r[4]; k <= r[5]; k++)
            for (int j = r[2]; j <= r[3]; j++) {
                double q[3] = {0.0, g->origin[1] + j * g->dy, g->origin[2] + k * g->dz};
                int64_t row = imrt_grid_index(g, 0, j, k);
                for (int i = r[0]; i <= r[1]; i++) {
                    q[0] = g->origin[0] + i * g->dx;
                    if (imrt_shape_contains(solid, q))
                        p->density[row + i] = red;
                }
            }
        return IMRT_OK;
    }
    imrt_status st = eval_expr(c, sd->geom, scratch);
    if (st != IMRT_OK)
        return st;
    int64_t n = imrt_grid_nvox(g);
    for (int64_t v = 0; v < n; v++)
        if (scratch[v])
            p->density[v] = red;
    return IMRT_OK;
}

static imrt_status parse_shapes(spec_ctx *c, json_t *ph, const char *path, uint8_t *scratch)
{
    static const char *const extra[] = {"name", "material", "enabled", NULL};
    char kp[PATH_LEN];
    join_key(kp, path, "shapes");
    json_t *arr = json_object_get(ph, "shapes");
    if (!arr)
        return missing(c, path, "shapes", "an array of solids painted in order");
    if (!json_is_array(arr) || json_array_size(arr) > IMRT_SPEC_MAX_SHAPES)
        return perr(c, IMRT_ERR_PARSE, kp, "must be an array of at most %d shapes (got %s)",
                    IMRT_SPEC_MAX_SHAPES, json_type_name(arr));
    size_t n = json_array_size(arr);
    c->shapes = arena_alloc(c, n, sizeof *c->shapes);
    if (!c->shapes)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    c->shape_masks = imrt_calloc(n ? n : 1, sizeof *c->shape_masks);
    if (!c->shape_masks)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    for (size_t i = 0; i < n; i++) {
        char sp[PATH_LEN];
        join_index(sp, kp, i);
        json_t *o = json_array_get(arr, i);
        imrt_status st = need_object(c, o, sp);
        if (st != IMRT_OK)
            return st;
        shape_def *sd = &c->shapes[i];
        sd->material = -1;
        st = get_str(c, o, sp, "name", 0, "", sd->name, sizeof sd->name);
        if (st == IMRT_OK && sd->name[0]) {
            char np[PATH_LEN];
            join_key(np, sp, "name");
            st = check_name(c, np, sd->name);
            if (st == IMRT_OK && find_shape(c, sd->name, (int)i) >= 0)
                st = perr(c, IMRT_ERR_RANGE, np, "shape name '%s' is used twice", sd->name);
        }
        if (st != IMRT_OK)
            return st;
        scope_t sc = {(int)i, 0};
        st = parse_expr_object(c, o, sp, sc, 0, extra, &sd->geom);
        if (st != IMRT_OK)
            return st;
        c->total_weight += sd->geom->weight;
        st = get_bool(c, o, sp, "enabled", 1, &sd->enabled);
        if (st != IMRT_OK)
            return st;
        json_t *mv = json_object_get(o, "material");
        if (mv) {
            char mp[PATH_LEN];
            join_key(mp, sp, "material");
            st = material_ref(c, mv, mp, &sd->material);
            if (st != IMRT_OK)
                return st;
        }
        c->nshapes = (int)i + 1;
        if (c->total_weight > MAX_WEIGHT_TOTAL)
            return perr(c, IMRT_ERR_RANGE, sp,
                        "the spec's shapes and structures need more than %d solid evaluations",
                        MAX_WEIGHT_TOTAL);
        if (sd->enabled && sd->material >= 0) {
            st = paint_shape(c, sd, scratch);
            if (st != IMRT_OK)
                return st;
        }
    }
    return IMRT_OK;
}

static imrt_status parse_kind(const spec_ctx *c, json_t *o, const char *path,
                              imrt_structure_kind *kind)
{
    char k[16];
    imrt_status st = get_str(c, o, path, "kind", 1, NULL, k, sizeof k);
    if (st != IMRT_OK) {
        if (json_object_get(o, "kind")) {
            char kp[PATH_LEN];
            join_key(kp, path, "kind");
            return perr(c, IMRT_ERR_PARSE, kp, "must be \"target\", \"oar\" or \"body\"");
        }
        return missing(c, path, "kind", "\"target\", \"oar\" or \"body\"");
    }
    if (strcmp(k, "target") == 0)
        *kind = IMRT_KIND_TARGET;
    else if (strcmp(k, "oar") == 0)
        *kind = IMRT_KIND_OAR;
    else if (strcmp(k, "body") == 0)
        *kind = IMRT_KIND_BODY;
    else {
        char kp[PATH_LEN];
        join_key(kp, path, "kind");
        return perr(c, IMRT_ERR_RANGE, kp, "must be \"target\", \"oar\" or \"body\" (got \"%s\")",
                    k);
    }
    return IMRT_OK;
}

static imrt_status record_analytic(spec_ctx *c, int index, double cc)
{
    double *grown = imrt_calloc((size_t)index + 1, sizeof *grown);
    if (!grown)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    for (int i = 0; i < index; i++)
        grown[i] = c->analytic_cc ? c->analytic_cc[i] : -1.0;
    grown[index] = cc;
    imrt_free(c->analytic_cc);
    c->analytic_cc = grown;
    return IMRT_OK;
}

static imrt_status parse_structures(spec_ctx *c, json_t *ph, const char *path, int required)
{
    static const char *const extra[] = {"name", "kind", "priority", NULL};
    char kp[PATH_LEN];
    join_key(kp, path, "structures");
    json_t *arr = json_object_get(ph, "structures");
    if (!arr) {
        if (required)
            return missing(c, path, "structures", "an array of named structures");
        return IMRT_OK;
    }
    if (!json_is_array(arr) || json_array_size(arr) > IMRT_MAX_STRUCTURES)
        return perr(c, IMRT_ERR_PARSE, kp, "must be an array of at most %d structures (got %s)",
                    IMRT_MAX_STRUCTURES, json_type_name(arr));
    size_t n = json_array_size(arr);
    if (required && n == 0)
        return perr(c, IMRT_ERR_RANGE, kp, "must list at least one structure");
    for (size_t i = 0; i < n; i++) {
        char sp[PATH_LEN];
        join_index(sp, kp, i);
        json_t *o = json_array_get(arr, i);
        imrt_status st = need_object(c, o, sp);
        if (st != IMRT_OK)
            return st;
        char name[IMRT_NAME_MAX];
        st = get_str(c, o, sp, "name", 1, NULL, name, sizeof name);
        char np[PATH_LEN];
        join_key(np, sp, "name");
        if (st == IMRT_OK)
            st = check_name(c, np, name);
        if (st != IMRT_OK)
            return st;
        if (imrt_phantom_find(c->phantom, name) >= 0)
            return perr(c, IMRT_ERR_RANGE, np, "structure name '%s' is used twice", name);
        if (find_shape(c, name, c->nshapes) >= 0)
            return perr(c, IMRT_ERR_RANGE, np,
                        "'%s' names a shape already; structures and shapes share one namespace",
                        name);
        imrt_structure_kind kind;
        st = parse_kind(c, o, sp, &kind);
        if (st != IMRT_OK)
            return st;
        int defprio = kind == IMRT_KIND_TARGET ? 1 : kind == IMRT_KIND_OAR ? 10 : 100;
        int prio;
        st = get_int(c, o, sp, "priority", 0, defprio, 1, 1000, &prio);
        if (st != IMRT_OK)
            return st;
        scope_t sc = {c->nshapes, c->phantom->nstructures};
        expr_t *e = NULL;
        st = parse_expr_object(c, o, sp, sc, 0, extra, &e);
        if (st != IMRT_OK)
            return st;
        c->total_weight += e->weight;
        if (c->total_weight > MAX_WEIGHT_TOTAL)
            return perr(c, IMRT_ERR_RANGE, sp,
                        "the spec's shapes and structures need more than %d solid evaluations",
                        MAX_WEIGHT_TOTAL);
        int idx = -1;
        st = imrt_phantom_add_structure(c->phantom, name, kind, prio, &idx);
        if (st != IMRT_OK)
            return st == IMRT_ERR_NOMEM ? st : perr(c, st, sp, "%s", imrt_last_error());
        imrt_structure *s = &c->phantom->structures[idx];
        st = eval_expr(c, e, s->mask);
        if (st != IMRT_OK)
            return st;
        imrt_structure_recount(c->phantom, s);
        if (s->count == 0)
            return perr(c, IMRT_ERR_RANGE, sp,
                        "structure '%s' contains no voxel centre (outside the grid, or thinner "
                        "than the spacing of %g mm?)",
                        name, c->phantom->grid.dx);
        const imrt_shape *solid = analytic_solid(c, e);
        double cc = -1.0;
        if (solid && imrt_shape_inside_grid(solid, &c->phantom->grid)) {
            double v = imrt_shape_volume_mm3(solid);
            if (isfinite(v))
                cc = v * 1e-3;
        }
        st = record_analytic(c, idx, cc);
        if (st != IMRT_OK)
            return st;
    }
    return IMRT_OK;
}

/* Join base_dir and a relative file name. */
static void resolve_path(const spec_ctx *c, const char *file, char *out, size_t n)
{
    if (file[0] == '/' || !c->base_dir[0])
        snprintf(out, n, "%s", file);
    else
        snprintf(out, n, "%s/%s", c->base_dir, file);
}

static imrt_status parse_imported(spec_ctx *c, json_t *ph, const char *path)
{
    static const char *const ikeys[] = {"import",   "file",       "hu_table", "rename",
                                        "structures", "comment", NULL};
    imrt_status st = check_keys(c, ph, path, ikeys);
    if (st != IMRT_OK)
        return st;
    char kind[32], file[2048], full[4096 + 2048 + 2];
    char kp[PATH_LEN];
    join_key(kp, path, "import");
    st = get_str(c, ph, path, "import", 1, NULL, kind, sizeof kind);
    if (st != IMRT_OK)
        return st;
    if (strcmp(kind, "matrad") != 0)
        return perr(c, IMRT_ERR_RANGE, kp, "unknown import format '%s' (allowed: matrad)", kind);
    st = get_str(c, ph, path, "file", 1, NULL, file, sizeof file);
    if (st != IMRT_OK)
        return st;
    imrt_hu_table table;
    imrt_hu_table_default(&table);
    json_t *hv = json_object_get(ph, "hu_table");
    if (hv) {
        char hp[PATH_LEN];
        join_key(hp, path, "hu_table");
        if (!json_is_array(hv) || json_array_size(hv) < 2 ||
            json_array_size(hv) > IMRT_HU_TABLE_MAX)
            return perr(c, IMRT_ERR_PARSE, hp,
                        "must be an array of 2 to %d [HU, RED] pairs (got %s)", IMRT_HU_TABLE_MAX,
                        json_type_name(hv));
        table.n = (int)json_array_size(hv);
        for (int i = 0; i < table.n; i++) {
            char ip[PATH_LEN];
            join_index(ip, hp, (size_t)i);
            json_t *pair = json_array_get(hv, (size_t)i);
            if (!json_is_array(pair) || json_array_size(pair) != 2)
                return perr(c, IMRT_ERR_PARSE, ip, "must be a pair [HU, RED] (got %s)",
                            json_type_name(pair));
            char pp[PATH_LEN];
            join_index(pp, ip, 0);
            st = num_value(c, json_array_get(pair, 0), pp, -10000.0, 100000.0, 0, "HU",
                           &table.hu[i]);
            if (st != IMRT_OK)
                return st;
            join_index(pp, ip, 1);
            st = num_value(c, json_array_get(pair, 1), pp, 0.0, MAX_RED_METAL, 0, "(RED)",
                           &table.red[i]);
            if (st != IMRT_OK)
                return st;
        }
        st = imrt_hu_table_validate(&table);
        if (st != IMRT_OK)
            return perr(c, st, hp, "%s", imrt_last_error());
    }
    resolve_path(c, file, full, sizeof full);
    imrt_phantom *p = NULL;
    st = imrt_matrad_import(full, &table, &p);
    if (st != IMRT_OK) {
        char fp[PATH_LEN];
        join_key(fp, path, "file");
        /* a file the spec names but that cannot be read is an input error */
        return st == IMRT_ERR_NOMEM ? st
                                    : perr(c, st == IMRT_ERR_IO ? IMRT_ERR_ARG : st, fp, "%s",
                                           imrt_last_error());
    }
    c->imported = 1;
    if (c->grid_override > 0.0) {
        const imrt_grid *sg = &p->grid;
        const int sn[3] = {sg->nx, sg->ny, sg->nz};
        const double sd[3] = {sg->dx, sg->dy, sg->dz};
        int n[3];
        double origin[3], h = c->grid_override, total = 1.0;
        for (int a = 0; a < 3; a++) {
            double size = sn[a] * sd[a];
            double cnt = ceil(size / h - 1e-9);
            cnt = cnt < 1.0 ? 1.0 : cnt;
            total *= cnt;
            if (cnt > IMRT_GRID_MAX_DIM || total > (double)IMRT_SPEC_MAX_VOXELS) {
                imrt_phantom_destroy(&p);
                return perr(c, IMRT_ERR_RANGE, path,
                            "resampling the imported CT to %g mm would exceed %ld voxels", h,
                            (long)IMRT_SPEC_MAX_VOXELS);
            }
            n[a] = (int)cnt;
            double centre = sg->origin[a] + 0.5 * (sn[a] - 1) * sd[a];
            origin[a] = centre - 0.5 * (n[a] - 1) * h;
        }
        imrt_grid g;
        imrt_phantom *q = NULL;
        st = imrt_grid_init(&g, n[0], n[1], n[2], h, h, h, origin);
        if (st == IMRT_OK)
            st = imrt_phantom_resample_nearest(p, &g, &q);
        imrt_phantom_destroy(&p);
        if (st != IMRT_OK)
            return st;
        p = q;
        c->resampled = 1;
    }
    c->phantom = p;
    for (int i = 0; i < p->nstructures; i++) {
        st = record_analytic(c, i, -1.0);
        if (st != IMRT_OK)
            return st;
    }
    json_t *rn = json_object_get(ph, "rename");
    if (rn) {
        char rp[PATH_LEN];
        join_key(rp, path, "rename");
        st = need_object(c, rn, rp);
        if (st != IMRT_OK)
            return st;
        const char *key;
        json_t *val;
        json_object_foreach(rn, key, val) {
            char ep[PATH_LEN];
            join_key(ep, rp, key);
            int s = imrt_phantom_find(p, key);
            if (s < 0)
                return perr(c, IMRT_ERR_RANGE, ep, "the imported phantom has no structure '%s'",
                            key);
            char to[IMRT_NAME_MAX];
            st = str_value(c, val, ep, to, sizeof to);
            if (st == IMRT_OK)
                st = check_name(c, ep, to);
            if (st != IMRT_OK)
                return st;
            int other = imrt_phantom_find(p, to);
            if (other >= 0 && other != s)
                return perr(c, IMRT_ERR_RANGE, ep, "'%s' is already a structure's name", to);
            snprintf(p->structures[s].name, sizeof p->structures[s].name, "%s", to);
        }
    }
    return parse_structures(c, ph, path, 0);
}

static imrt_status build_phantom(spec_ctx *c, json_t *root, const char *name)
{
    imrt_status status = IMRT_OK;
    uint8_t *scratch = NULL;
    const char *path = "phantom";
    json_t *ph = json_object_get(root, "phantom");
    if (!ph)
        return missing(c, "", "phantom", "an object describing the anatomy");
    IMRT_TRY(need_object(c, ph, path));
    if (json_object_get(ph, "import")) {
        IMRT_TRY(parse_imported(c, ph, path));
        snprintf(c->phantom->name, sizeof c->phantom->name, "%s", name);
        return IMRT_OK;
    }
    static const char *const pkeys[] = {"grid",   "background", "materials", "shapes",
                                        "structures", "allow_metal", "comment", NULL};
    IMRT_TRY(check_keys(c, ph, path, pkeys));
    IMRT_TRY(get_bool(c, ph, path, "allow_metal", 0, &c->allow_metal));
    imrt_grid g;
    IMRT_TRY(parse_grid(c, ph, path, &g));
    IMRT_TRY(parse_materials(c, ph, path));
    double bg = 0.001;
    json_t *bv = json_object_get(ph, "background");
    if (bv) {
        char bp[PATH_LEN];
        join_key(bp, path, "background");
        if (json_is_number(bv)) {
            IMRT_TRY(num_value(c, bv, bp, 0.0, c->allow_metal ? MAX_RED_METAL : MAX_RED_PLAIN, 0,
                               "(RED)", &bg));
        } else {
            int m = -1;
            IMRT_TRY(material_ref(c, bv, bp, &m));
            bg = c->materials[m].red;
        }
    }
    IMRT_TRY(imrt_phantom_create(&g, name, (float)bg, &c->phantom));
    IMRT_ALLOC(scratch, imrt_grid_nvox(&g));
    IMRT_TRY(parse_shapes(c, ph, path, scratch));
    IMRT_TRY(parse_structures(c, ph, path, 1));
cleanup:
    imrt_free(scratch);
    return status;
}

/* ------------------------------------------------------------------ */
/* Plan part                                                           */
/* ------------------------------------------------------------------ */

static imrt_status structure_ref(const spec_ctx *c, json_t *o, const char *path,
                                 const char *key, int required, char *out)
{
    imrt_status st = get_str(c, o, path, key, required, "", out, IMRT_NAME_MAX);
    if (st != IMRT_OK || !out[0])
        return st;
    if (imrt_phantom_find(c->phantom, out) < 0) {
        char known[768] = "";
        size_t used = 0;
        for (int i = 0; i < c->phantom->nstructures; i++) {
            int w = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                             c->phantom->structures[i].name);
            if (w > 0 && (size_t)w < sizeof known - used)
                used += (size_t)w;
        }
        char kp[PATH_LEN];
        join_key(kp, path, key);
        return perr(c, IMRT_ERR_RANGE, kp, "unknown structure '%s' (the phantom has: %s)", out,
                    known);
    }
    return IMRT_OK;
}

static imrt_status parse_beam(const spec_ctx *c, json_t *v, const char *bp, imrt_beam_def *b)
{
    static const char *const bkeys[] = {"name",         "gantry_deg", "couch_deg",
                                        "isocentre_mm", "field_mm",   "comment", NULL};
    imrt_status st = IMRT_OK;
    memset(b, 0, sizeof *b);
    char gp[PATH_LEN], cp[PATH_LEN];
    join_key(gp, bp, "gantry_deg");
    join_key(cp, bp, "couch_deg");
    json_t *gv = json_is_number(v) ? v : json_is_object(v) ? json_object_get(v, "gantry_deg") : NULL;
    if (json_is_number(v))
        snprintf(gp, sizeof gp, "%s", bp);
    if (json_is_number(gv) && !(json_number_value(gv) >= 0.0))
        return perr(c, IMRT_ERR_RANGE, gp, "must be in [0, 360) degrees (got %g; write %g)",
                    json_number_value(gv), fmod(json_number_value(gv), 360.0) + 360.0);
    if (json_is_number(v)) {
        st = num_value(c, v, bp, 0.0, 360.0, 0, "degrees (gantry)", &b->gantry_deg);
    } else {
        st = need_object(c, v, bp);
        if (st == IMRT_OK)
            st = check_keys(c, v, bp, bkeys);
        if (st == IMRT_OK)
            st = get_num(c, v, bp, "gantry_deg", 1, 0, 0.0, 360.0, 0, "degrees",
                         &b->gantry_deg);
        if (st == IMRT_OK)
            st = get_num(c, v, bp, "couch_deg", 0, 0.0, -90.0, 90.0, 0, "degrees",
                         &b->couch_deg);
        if (st == IMRT_OK && b->couch_deg <= -90.0)
            st = perr(c, IMRT_ERR_RANGE, cp, "must be in (-90, 90] degrees (got %g)",
                      b->couch_deg);
        if (st == IMRT_OK && json_object_get(v, "isocentre_mm")) {
            b->has_isocentre = 1;
            st = get_vec(c, v, bp, "isocentre_mm", 1, 3, -MAX_COORD_MM, MAX_COORD_MM, 0, "mm",
                         b->isocentre);
            double lo[3], hi[3];
            if (st == IMRT_OK && c->phantom) {
                imrt_grid_bounds(&c->phantom->grid, lo, hi);
                for (int a = 0; a < 3 && st == IMRT_OK; a++)
                    if (!(b->isocentre[a] >= lo[a] && b->isocentre[a] <= hi[a])) {
                        char ip[PATH_LEN];
                        join_key(ip, bp, "isocentre_mm");
                        st = perr(c, IMRT_ERR_RANGE, ip,
                                  "must lie inside the phantom grid (x %g..%g, y %g..%g, "
                                  "z %g..%g mm; got %c = %g)",
                                  lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], "xyz"[a],
                                  b->isocentre[a]);
                    }
            }
        }
        if (st == IMRT_OK && json_object_get(v, "field_mm")) {
            b->open_field = 1;
            st = get_vec(c, v, bp, "field_mm", 1, 2, 0.0, 400.0, 1, "mm", b->field_mm);
        }
        if (st == IMRT_OK)
            st = get_str(c, v, bp, "name", 0, "", b->name, sizeof b->name);
    }
    if (st == IMRT_OK && b->gantry_deg >= 360.0)
        st = perr(c, IMRT_ERR_RANGE, gp, "must be in [0, 360) degrees (got %g; write 0)",
                  b->gantry_deg);
    if (st != IMRT_OK)
        return st;
    if (!b->name[0]) {
        long gd = lround(b->gantry_deg);
        long cd = lround(b->couch_deg);
        if (cd != 0)
            snprintf(b->name, sizeof b->name, "G%03ldC%+03ld", gd % 360, cd);
        else
            snprintf(b->name, sizeof b->name, "G%03ld", gd % 360);
    }
    return IMRT_OK;
}

static imrt_status parse_beam_list(spec_ctx *c, json_t *arr, const char *kp, imrt_beam_def **out,
                                   int *nout)
{
    if (!json_is_array(arr))
        return perr(c, IMRT_ERR_PARSE, kp,
                    "must be an array of 1 to %d beams (gantry angles or beam objects; got %s)",
                    MAX_BEAMS, json_type_name(arr));
    if (json_array_size(arr) == 0 || json_array_size(arr) > MAX_BEAMS)
        return perr(c, IMRT_ERR_RANGE, kp,
                    "must be an array of 1 to %d beams (got %zu beams)", MAX_BEAMS,
                    json_array_size(arr));
    size_t n = json_array_size(arr);
    imrt_beam_def *b = imrt_calloc(n, sizeof *b);
    if (!b)
        return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
    for (size_t i = 0; i < n; i++) {
        char bp[PATH_LEN];
        join_index(bp, kp, i);
        json_t *bv = json_array_get(arr, i);
        imrt_status st = parse_beam(c, bv, bp, &b[i]);
        /* an explicit name must be unique: it names the beam's outputs */
        for (size_t j = 0; st == IMRT_OK && json_is_object(bv) && json_object_get(bv, "name") &&
                           j < i; j++)
            if (strcmp(b[j].name, b[i].name) == 0) {
                char np[PATH_LEN];
                join_key(np, bp, "name");
                st = perr(c, IMRT_ERR_RANGE, np, "beam name '%s' is already used by %s[%zu]; "
                          "beam names must be unique", b[i].name, kp, j);
            }
        if (st != IMRT_OK) {
            imrt_free(b);
            return st;
        }
    }
    *out = b;
    *nout = (int)n;
    return IMRT_OK;
}

static imrt_status parse_prescription(spec_ctx *c, json_t *root, imrt_plan *plan)
{
    static const char *const rkeys[] = {"dose_gy", "fractions", "target", "metric", "normalise",
                                        "comment", NULL};
    const char *path = "prescription";
    json_t *o = json_object_get(root, path);
    if (!o) {
        if (imrt_phantom_find(c->phantom, "PTV") >= 0)
            snprintf(plan->rx.target, sizeof plan->rx.target, "PTV");
        plan->rx.normalise = 0;
        return IMRT_OK;
    }
    imrt_status st = need_object(c, o, path);
    if (st == IMRT_OK)
        st = check_keys(c, o, path, rkeys);
    if (st == IMRT_OK)
        st = get_num(c, o, path, "dose_gy", 1, 0, 0.0, 200.0, 1, "Gy", &plan->rx.dose_gy);
    if (st == IMRT_OK)
        st = get_int(c, o, path, "fractions", 0, 1, 1, 100, &plan->rx.fractions);
    if (st == IMRT_OK)
        st = get_bool(c, o, path, "normalise", 1, &plan->rx.normalise);
    if (st == IMRT_OK)
        st = get_str(c, o, path, "metric", 0, "D95", plan->rx.metric, sizeof plan->rx.metric);
    if (st != IMRT_OK)
        return st;
    char kind;
    double param;
    if (imrt_metric_parse(plan->rx.metric, &kind, &param) != IMRT_OK) {
        char kp[PATH_LEN];
        join_key(kp, path, "metric");
        return perr(c, IMRT_ERR_RANGE, kp, "%s", imrt_last_error());
    }
    if (json_object_get(o, "target"))
        return structure_ref(c, o, path, "target", 1, plan->rx.target);
    if (imrt_phantom_find(c->phantom, "PTV") >= 0) {
        snprintf(plan->rx.target, sizeof plan->rx.target, "PTV");
        return IMRT_OK;
    }
    if (plan->rx.normalise)
        return missing(c, path, "target",
                       "the structure the normalisation refers to; the phantom has no 'PTV'");
    return IMRT_OK;
}

static imrt_status parse_objective(spec_ctx *c, json_t *o, const char *op, imrt_objective_def *d)
{
    static const char *const okeys[] = {"structure", "type",     "weight",  "dose_gy",
                                        "volume_pct", "a",       "at_most", "constraint",
                                        "comment",   NULL};
    static const char *const types[] = {"sq_deviation", "sq_overdose", "sq_underdose", "mean",
                                        "max_dvh",      "min_dvh",     "geud",         NULL};
    imrt_status st = need_object(c, o, op);
    if (st == IMRT_OK)
        st = check_keys(c, o, op, okeys);
    if (st == IMRT_OK)
        st = structure_ref(c, o, op, "structure", 1, d->structure);
    if (st != IMRT_OK)
        return st;
    char type[32];
    st = get_str(c, o, op, "type", 1, NULL, type, sizeof type);
    if (st != IMRT_OK) {
        if (!json_object_get(o, "type"))
            return missing(c, op, "type",
                           "sq_deviation, sq_overdose, sq_underdose, mean, max_dvh, min_dvh or "
                           "geud");
        return st;
    }
    int t = -1;
    for (int i = 0; types[i]; i++)
        if (strcmp(type, types[i]) == 0)
            t = i;
    if (t < 0) {
        char kp[PATH_LEN];
        join_key(kp, op, "type");
        return perr(c, IMRT_ERR_RANGE, kp,
                    "unknown objective type '%s' (allowed: sq_deviation, sq_overdose, "
                    "sq_underdose, mean, max_dvh, min_dvh, geud)",
                    type);
    }
    d->kind = (imrt_objective_kind)t;
    int dvh = d->kind == IMRT_OBJ_MAX_DVH || d->kind == IMRT_OBJ_MIN_DVH;
    int geud = d->kind == IMRT_OBJ_GEUD;
    int mean = d->kind == IMRT_OBJ_MEAN;
    struct {
        const char *key;
        int ok;
        const char *used_by;
    } only[] = {{"volume_pct", dvh, "max_dvh and min_dvh"},
                {"a", geud, "geud"},
                {"at_most", mean, "mean"}};
    for (int i = 0; i < 3; i++)
        if (!only[i].ok && json_object_get(o, only[i].key)) {
            char kp[PATH_LEN];
            join_key(kp, op, only[i].key);
            return perr(c, IMRT_ERR_PARSE, kp, "is only used by %s objectives, not %s",
                        only[i].used_by, type);
        }
    st = get_num(c, o, op, "weight", 0, 1.0, 0.0, 1e6, 0, "", &d->weight);
    if (st == IMRT_OK)
        st = get_num(c, o, op, "dose_gy", 1, 0, 0.0, 1000.0, 0, "Gy", &d->dose);
    if (st == IMRT_OK && dvh) {
        st = get_num(c, o, op, "volume_pct", 1, 0, 0.0, 100.0, 1, "%", &d->volume_pct);
        if (st == IMRT_OK && d->volume_pct >= 100.0) {
            char kp[PATH_LEN];
            join_key(kp, op, "volume_pct");
            st = perr(c, IMRT_ERR_RANGE, kp, "must be in (0, 100) %% (got %g)", d->volume_pct);
        }
    }
    if (st == IMRT_OK && geud) {
        st = get_num(c, o, op, "a", 1, 0, -100.0, 100.0, 0, "", &d->a);
        if (st == IMRT_OK && fabs(d->a) < 1e-9) {
            char kp[PATH_LEN];
            join_key(kp, op, "a");
            st = perr(c, IMRT_ERR_RANGE, kp, "must not be 0 (a >= 1 for organs, a < 0 for targets)");
        }
    }
    if (st == IMRT_OK && mean)
        st = get_bool(c, o, op, "at_most", 1, &d->at_most);
    if (st == IMRT_OK)
        st = get_bool(c, o, op, "constraint", 0, &d->constraint);
    return st;
}

static imrt_status parse_goal(spec_ctx *c, json_t *o, const char *gp, imrt_goal_def *d)
{
    static const char *const gkeys[] = {"structure", "metric", "op", "value", "preferred",
                                        "comment", NULL};
    imrt_status st = need_object(c, o, gp);
    if (st == IMRT_OK)
        st = check_keys(c, o, gp, gkeys);
    if (st == IMRT_OK)
        st = structure_ref(c, o, gp, "structure", 1, d->structure);
    if (st == IMRT_OK)
        st = get_str(c, o, gp, "metric", 1, NULL, d->metric, sizeof d->metric);
    if (st != IMRT_OK)
        return st;
    char kind;
    double param;
    if (imrt_metric_parse(d->metric, &kind, &param) != IMRT_OK) {
        char kp[PATH_LEN];
        join_key(kp, gp, "metric");
        return perr(c, IMRT_ERR_RANGE, kp, "%s", imrt_last_error());
    }
    char op[8];
    st = get_str(c, o, gp, "op", 1, NULL, op, sizeof op);
    if (st != IMRT_OK)
        return st;
    if (strcmp(op, "<=") == 0)
        d->op = IMRT_GOAL_LE;
    else if (strcmp(op, ">=") == 0)
        d->op = IMRT_GOAL_GE;
    else {
        char kp[PATH_LEN];
        join_key(kp, gp, "op");
        return perr(c, IMRT_ERR_RANGE, kp, "must be \"<=\" or \">=\" (got \"%s\")", op);
    }
    st = get_num(c, o, gp, "value", 1, 0, 0.0, 1e5, 0, "", &d->value);
    if (st == IMRT_OK)
        st = get_bool(c, o, gp, "preferred", 0, &d->preferred);
    return st;
}

static imrt_status parse_plan(spec_ctx *c, json_t *root, imrt_plan *plan)
{
    imrt_status st = parse_prescription(c, root, plan);
    if (st != IMRT_OK)
        return st;
    json_t *v = json_object_get(root, "description");
    if (v) {
        if (!json_is_string(v) || json_string_length(v) > 65536)
            return perr(c, IMRT_ERR_PARSE, "description",
                        "must be a string of at most 65536 characters (got %s)", json_type_name(v));
        size_t n = json_string_length(v);
        plan->description = imrt_malloc(n + 1);
        if (!plan->description)
            return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
        memcpy(plan->description, json_string_value(v), n + 1);
    }
    v = json_object_get(root, "beams");
    if (v) {
        st = parse_beam_list(c, v, "beams", &plan->beams, &plan->nbeams);
        if (st != IMRT_OK)
            return st;
    }
    st = get_num(c, root, "", "beamlet_mm", 0, plan->beamlet_mm, 1.0, 20.0, 0, "mm",
                 &plan->beamlet_mm);
    if (st == IMRT_OK)
        st = get_num(c, root, "", "beamlet_margin_mm", 0, plan->beamlet_margin_mm, 0.0, 50.0, 0,
                     "mm", &plan->beamlet_margin_mm);
    if (st == IMRT_OK)
        st = get_num(c, root, "", "cutoff", 0, plan->cutoff, 0.0, 0.5, 0, "", &plan->cutoff);
    if (st == IMRT_OK) /* absent: none */
        st = get_num(c, root, "", "lateral_cutoff_mm", 0, plan->lateral_cutoff_mm,
                     IMRT_LATERAL_CUTOFF_MIN_MM, IMRT_LATERAL_CUTOFF_MAX_MM, 0, "mm",
                     &plan->lateral_cutoff_mm);
    if (st != IMRT_OK)
        return st;
    v = json_object_get(root, "dose_grid_mm");
    if (v) {
        double d[3];
        if (json_is_array(v))
            st = get_vec(c, root, "", "dose_grid_mm", 1, 3, 0.0, IMRT_SPEC_MAX_GRID_MM, 0, "mm", d);
        else {
            st = num_value(c, v, "dose_grid_mm", 0.0, IMRT_SPEC_MAX_GRID_MM, 0, "mm", &d[0]);
            d[1] = d[2] = d[0];
        }
        if (st != IMRT_OK)
            return st;
        for (int a = 0; a < 3; a++) {
            if (d[a] != 0.0 && d[a] < IMRT_SPEC_MIN_GRID_MM)
                return perr(c, IMRT_ERR_RANGE, "dose_grid_mm",
                            "must be 0 (the phantom grid) or in [%g, %g] mm (got %g)",
                            IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM, d[a]);
            plan->dose_grid_mm[a] = d[a];
        }
    }
    v = json_object_get(root, "objectives");
    if (v) {
        if (!json_is_array(v) || json_array_size(v) > MAX_LIST)
            return perr(c, IMRT_ERR_PARSE, "objectives", "must be an array of objectives (got %s)",
                        json_type_name(v));
        size_t n = json_array_size(v);
        plan->objectives = imrt_calloc(n ? n : 1, sizeof *plan->objectives);
        if (!plan->objectives)
            return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
        for (size_t i = 0; i < n; i++) {
            char op[PATH_LEN];
            join_index(op, "objectives", i);
            st = parse_objective(c, json_array_get(v, i), op, &plan->objectives[i]);
            if (st != IMRT_OK)
                return st;
            plan->nobjectives = (int)i + 1;
        }
    }
    v = json_object_get(root, "goals");
    if (v) {
        if (!json_is_array(v) || json_array_size(v) > MAX_LIST)
            return perr(c, IMRT_ERR_PARSE, "goals", "must be an array of goals (got %s)",
                        json_type_name(v));
        size_t n = json_array_size(v);
        plan->goals = imrt_calloc(n ? n : 1, sizeof *plan->goals);
        if (!plan->goals)
            return imrt_error(IMRT_ERR_NOMEM, "%s: out of memory", c->label);
        for (size_t i = 0; i < n; i++) {
            char gp[PATH_LEN];
            join_index(gp, "goals", i);
            st = parse_goal(c, json_array_get(v, i), gp, &plan->goals[i]);
            if (st != IMRT_OK)
                return st;
            plan->ngoals = (int)i + 1;
        }
    }
    v = json_object_get(root, "conformal");
    if (v) {
        static const char *const ckeys[] = {"beams", "margin_mm", "comment", NULL};
        st = need_object(c, v, "conformal");
        if (st == IMRT_OK)
            st = check_keys(c, v, "conformal", ckeys);
        if (st == IMRT_OK)
            st = get_num(c, v, "conformal", "margin_mm", 0, plan->crt_margin_mm, 0.0, 50.0, 0,
                         "mm", &plan->crt_margin_mm);
        if (st == IMRT_OK && json_object_get(v, "beams"))
            st = parse_beam_list(c, json_object_get(v, "beams"), "conformal.beams",
                                 &plan->crt_beams, &plan->crt_nbeams);
        if (st != IMRT_OK)
            return st;
    }
    v = json_object_get(root, "solver");
    if (v) {
        static const char *const skeys[] = {"max_iterations", "ftol_rel", "pgtol", "max_time_s",
                                            "comment", NULL};
        imrt_solver_settings *s = &plan->solver;
        st = need_object(c, v, "solver");
        if (st == IMRT_OK)
            st = check_keys(c, v, "solver", skeys);
        if (st == IMRT_OK)
            st = get_int(c, v, "solver", "max_iterations", 0, s->max_iterations, 1, 100000,
                         &s->max_iterations);
        if (st == IMRT_OK)
            st = get_num(c, v, "solver", "ftol_rel", 0, s->ftol_rel, 0.0, 0.5, 0, "", &s->ftol_rel);
        if (st == IMRT_OK)
            st = get_num(c, v, "solver", "pgtol", 0, s->pgtol, 0.0, 1.0, 0, "", &s->pgtol);
        if (st == IMRT_OK)
            st = get_num(c, v, "solver", "max_time_s", 0, s->max_time_s, 0.0, 1e6, 0, "s",
                         &s->max_time_s);
        if (st != IMRT_OK)
            return st;
    }
    return IMRT_OK;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* File stem of a label: "phantoms/x.json" -> "x". */
static void label_stem(const char *label, char *out, size_t n)
{
    const char *base = strrchr(label, '/');
    base = base ? base + 1 : label;
    snprintf(out, n, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
    if (!out[0])
        snprintf(out, n, "phantom");
}

imrt_status imrt_spec_parse(const char *text, size_t len, const char *label,
                            const char *base_dir, const imrt_spec_options *opt,
                            imrt_phantom **phantom, imrt_plan **plan, imrt_spec_info **info)
{
    imrt_status status = IMRT_OK;
    spec_ctx c;
    json_t *root = NULL;
    imrt_plan *pl = NULL;
    imrt_spec_info *inf = NULL;
    memset(&c, 0, sizeof c);
    if (phantom)
        *phantom = NULL;
    if (plan)
        *plan = NULL;
    if (info)
        *info = NULL;
    if (!text)
        return imrt_error(IMRT_ERR_ARG, "imrt_spec_parse: text is NULL");
    c.label = label && *label ? label : "(spec)";
    c.text = text;
    c.len = len;
    if (base_dir)
        snprintf(c.base_dir, sizeof c.base_dir, "%s", base_dir);
    if (opt) {
        if (!isfinite(opt->grid_mm) ||
            (opt->grid_mm != 0.0 &&
             (opt->grid_mm < IMRT_SPEC_MIN_GRID_MM || opt->grid_mm > IMRT_SPEC_MAX_GRID_MM)))
            return imrt_error(IMRT_ERR_ARG,
                              "grid spacing option %g mm must be 0 (the spec's) or in [%g, %g] mm",
                              opt->grid_mm, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM);
        c.grid_override = opt->grid_mm;
        c.max_memory = opt->max_memory;
    }
    if (len > (size_t)IMRT_SPEC_MAX_BYTES)
        IMRT_FAIL(IMRT_ERR_RANGE, "%s: the spec has %zu bytes, more than the limit of %ld",
                  c.label, len, (long)IMRT_SPEC_MAX_BYTES);
    double t0 = now_s();
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        IMRT_FAIL(IMRT_ERR_PARSE, "%s:%d:%d: JSON syntax error: %s", c.label, jerr.line,
                  jerr.column, jerr.text);
    IMRT_TRY(build_line_index(&c));
    if (!json_is_object(root))
        IMRT_FAIL(IMRT_ERR_PARSE, "%s:1: the spec must be a JSON object {...} (got %s)", c.label,
                  json_type_name(root));
    static const char *const tkeys[] = {"name",       "description", "phantom",
                                        "prescription", "beams",     "beamlet_mm",
                                        "beamlet_margin_mm", "dose_grid_mm", "cutoff", "lateral_cutoff_mm",
                                        "objectives", "goals",       "conformal",
                                        "solver",     "comment",     NULL};
    IMRT_TRY(check_keys(&c, root, "", tkeys));
    char name[IMRT_NAME_MAX];
    char stem[IMRT_NAME_MAX];
    label_stem(c.label, stem, sizeof stem);
    IMRT_TRY(get_str(&c, root, "", "name", 0, stem, name, sizeof name));
    IMRT_TRY(build_phantom(&c, root, name));
    double t1 = now_s();
    IMRT_TRY(imrt_plan_create(&pl));
    IMRT_TRY(parse_plan(&c, root, pl));
    if (info) {
        IMRT_ALLOC(inf, 1);
        snprintf(inf->name, sizeof inf->name, "%s", name);
        inf->imported = c.imported;
        inf->resampled = c.resampled;
        inf->seconds = t1 - t0;
        int ns = c.phantom->nstructures;
        IMRT_ALLOC(inf->volumes, ns ? ns : 1);
        inf->nstructures = ns;
        for (int s = 0; s < ns; s++) {
            const imrt_structure *st = &c.phantom->structures[s];
            imrt_spec_volume *v = &inf->volumes[s];
            snprintf(v->name, sizeof v->name, "%s", st->name);
            v->voxels = st->count;
            v->volume_cc = imrt_structure_volume_cc(c.phantom, st);
            v->analytic_cc = c.analytic_cc ? c.analytic_cc[s] : -1.0;
            v->error_pct = v->analytic_cc > 0.0
                               ? 100.0 * (v->volume_cc - v->analytic_cc) / v->analytic_cc
                               : 0.0;
        }
    }
    if (phantom) {
        *phantom = c.phantom;
        c.phantom = NULL;
    }
    if (plan) {
        *plan = pl;
        pl = NULL;
    }
    if (info) {
        *info = inf;
        inf = NULL;
    }
cleanup:
    imrt_spec_info_destroy(&inf);
    imrt_plan_destroy(&pl);
    json_decref(root);
    ctx_free(&c);
    return status;
}

imrt_status imrt_spec_load_ex(const char *path, const imrt_spec_options *opt,
                              imrt_phantom **phantom, imrt_plan **plan, imrt_spec_info **info)
{
    imrt_status status = IMRT_OK;
    char *text = NULL;
    FILE *f = NULL;
    if (phantom)
        *phantom = NULL;
    if (plan)
        *plan = NULL;
    if (info)
        *info = NULL;
    if (!path || !phantom)
        return imrt_error(IMRT_ERR_ARG, "imrt_spec_load: NULL path or phantom");
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        IMRT_FAIL(IMRT_ERR_IO, "%s: not a regular file", path);
    f = fopen(path, "rb");
    if (!f)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot read (not a regular file?)", path);
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot read (not a regular file?)", path);
    if (size > IMRT_SPEC_MAX_BYTES)
        IMRT_FAIL(IMRT_ERR_RANGE, "%s: %ld bytes is more than the spec limit of %ld", path, size,
                  (long)IMRT_SPEC_MAX_BYTES);
    IMRT_ALLOC(text, (size_t)size + 1);
    if (size > 0 && fread(text, 1, (size_t)size, f) != (size_t)size)
        IMRT_FAIL(IMRT_ERR_IO, "%s: read error", path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    status = imrt_spec_parse(text, (size_t)size, path, slash ? (dir[0] ? dir : "/") : NULL, opt,
                             phantom, plan, info);
cleanup:
    if (f)
        fclose(f);
    imrt_free(text);
    return status;
}

imrt_status imrt_spec_load(const char *path, const imrt_spec_options *opt,
                           imrt_phantom **phantom, imrt_plan **plan)
{
    return imrt_spec_load_ex(path, opt, phantom, plan, NULL);
}

void imrt_spec_info_destroy(imrt_spec_info **info)
{
    if (!info || !*info)
        return;
    imrt_free((*info)->volumes);
    imrt_free(*info);
    *info = NULL;
}
