/*
 * engine/report.c - the self-contained report.html (imrt/report.h): a small
 * string builder, HTML escaping, base64 for the embedded pictures, and the
 * page's sections built from the metrics JSON.
 */
#include "imrt/report.h"

#include "imrt/alloc.h"
#include "imrt/context.h"
#include "imrt/io.h"
#include "util_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Largest number of plans shown side by side. */
#define REPORT_MAX_PLANS 8

/* ---- string builder ------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    int failed; /* an allocation failed: the content is incomplete */
} sbuf;

static int sb_reserve(sbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *nb = imrt_malloc(cap);
    if (!nb) {
        b->failed = 1;
        return -1;
    }
    if (b->len)
        memcpy(nb, b->buf, b->len);
    nb[b->len] = '\0';
    imrt_free(b->buf);
    b->buf = nb;
    b->cap = cap;
    return 0;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Text with &, <, >, " and ' escaped (safe in content and attributes). */
static void sb_esc(sbuf *b, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (const char *c = s; *c; c++) {
        const char *rep = NULL;
        switch (*c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep) {
            sb_put(b, run, (size_t)(c - run));
            sb_puts(b, rep);
            run = c + 1;
        }
    }
    sb_put(b, run, strlen(run));
}

static void sb_base64(sbuf *b, const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (sb_reserve(b, (n + 2) / 3 * 4) != 0)
        return;
    char *o = b->buf + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0u);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->buf);
    b->buf[b->len] = '\0';
}

/* ---- JSON helpers --------------------------------------------------------------- */

static const json_t *jget(const json_t *o, const char *key)
{
    return json_is_object(o) ? json_object_get(o, key) : NULL;
}

static void fmt_double(char *buf, size_t size, double v)
{
    double a = fabs(v);
    if (!isfinite(v))
        snprintf(buf, size, "%s", isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"));
    else if (a == 0)
        snprintf(buf, size, "0");
    else if (a >= 1e5 || a < 0.01)
        snprintf(buf, size, "%.3g", v);
    else if (a >= 100)
        snprintf(buf, size, "%.1f", v);
    else
        snprintf(buf, size, "%.2f", v);
}

/* A scalar JSON value as text ("-" when missing). */
static void sb_value(sbuf *b, const json_t *v)
{
    char buf[64];
    if (json_is_integer(v)) {
        /* digits grouped by three with narrow no-break spaces from 10 000 on */
        long long x = (long long)json_integer_value(v);
        char digits[32];
        int n = snprintf(digits, sizeof digits, "%lld", x < 0 ? -x : x);
        if (x < 0)
            sb_puts(b, "-");
        for (int i = 0; i < n; i++) {
            if (n > 4 && i > 0 && (n - i) % 3 == 0)
                sb_puts(b, "&#8239;");
            sb_put(b, digits + i, 1);
        }
    } else if (json_is_real(v)) {
        fmt_double(buf, sizeof buf, json_real_value(v));
        sb_puts(b, buf);
    } else if (json_is_string(v)) {
        sb_esc(b, json_string_value(v));
    } else if (json_is_true(v)) {
        sb_puts(b, "yes");
    } else if (json_is_false(v)) {
        sb_puts(b, "no");
    } else {
        sb_puts(b, "&ndash;");
    }
}

/* Unit of a goal/metric name: Vx_cm3 -> cm3, Vx -> %, volume_cm3 -> cm3,
 * every dose metric -> Gy. */
static const char *metric_unit(const char *m)
{
    size_t n = strlen(m);
    if (n >= 4 && strcmp(m + n - 4, "_cm3") == 0)
        return "cm&sup3;";
    if (m[0] == 'V')
        return "%";
    if (m[0] == 'D')
        return "Gy";
    return "";
}

static const char *plan_label(const char *key)
{
    if (strcmp(key, "imrt") == 0)
        return "IMRT";
    if (strcmp(key, "3dcrt") == 0)
        return "3D-CRT";
    return key;
}

/* The plans in display order: imrt, 3dcrt, then any others. */
static int plan_list(const json_t *plans, const char **keys, const json_t **vals)
{
    int n = 0;
    if (!json_is_object(plans))
        return 0;
    static const char *first[2] = {"imrt", "3dcrt"};
    for (int i = 0; i < 2; i++) {
        const json_t *p = json_object_get(plans, first[i]);
        if (json_is_object(p)) {
            keys[n] = first[i];
            vals[n++] = p;
        }
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)(uintptr_t)plans, key, val)
    {
        if (n >= REPORT_MAX_PLANS)
            break;
        if (strcmp(key, "imrt") == 0 || strcmp(key, "3dcrt") == 0 || !json_is_object(val))
            continue;
        keys[n] = key;
        vals[n++] = val;
    }
    return n;
}

static int goal_same(const json_t *a, const json_t *b)
{
    const char *f[3] = {"structure", "metric", "op"};
    for (int i = 0; i < 3; i++) {
        const char *x = json_string_value(jget(a, f[i])), *y = json_string_value(jget(b, f[i]));
        if (!x || !y || strcmp(x, y) != 0)
            return 0;
    }
    double va = json_number_value(jget(a, "value")), vb = json_number_value(jget(b, "value"));
    return fabs(va - vb) <= 1e-9 * fmax(1.0, fabs(va));
}

/* ---- sections --------------------------------------------------------------------- */

static const char *STYLE =
    "body{font-family:system-ui,-apple-system,'Segoe UI','DejaVu Sans',Arial,sans-serif;"
    "color:#1d2125;background:#fff;margin:0;line-height:1.45}"
    "main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}"
    "h1{font-size:1.7em;margin:0 0 4px}h2{font-size:1.25em;margin:34px 0 10px;"
    "padding-bottom:4px;border-bottom:2px solid #e4e7eb}"
    ".sub{color:#5f6b76;margin:0 0 8px}"
    "table{border-collapse:collapse;font-size:0.93em;margin:6px 0}"
    "th,td{border:1px solid #d9dee3;padding:5px 10px;text-align:left;vertical-align:top}"
    "thead th{background:#f1f3f5;white-space:nowrap}tbody th{background:#fafbfc;font-weight:600}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "td.pass{background:#e3f4e1;color:#1b5e20}td.fail{background:#fde4e1;color:#b3261e}"
    "td.soft{background:#fff5d9;color:#7a5300}"
    ".mark{font-weight:700;margin-right:6px}"
    ".scroll{overflow-x:auto}"
    "table.metrics{font-size:0.86em}table.metrics th,table.metrics td{padding:4px 7px}"
    ".kv th{width:190px}"
    ".figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:18px}"
    "figure{margin:0;border:1px solid #e4e7eb;border-radius:6px;padding:8px;background:#fff}"
    "figure img{max-width:100%;height:auto;display:block;margin:0 auto}"
    "figcaption{color:#5f6b76;font-size:0.9em;margin-top:6px;text-align:center}"
    "pre{background:#f6f8fa;border:1px solid #e4e7eb;border-radius:6px;padding:12px;"
    "font-size:0.85em;overflow-x:auto;white-space:pre-wrap}"
    ".summary b.ok{color:#1b5e20}.summary b.bad{color:#b3261e}"
    "footer{color:#8a949e;font-size:0.85em;margin-top:40px}";

static void section_run(sbuf *b, const json_t *m)
{
    const json_t *ph = jget(m, "phantom"), *dij = jget(m, "dij"), *tm = jget(m, "timings_s");
    sb_puts(b, "<section id=\"run\"><h2>Run</h2><table class=\"kv\"><tbody>\n");
    sb_puts(b, "<tr><th>Phantom</th><td>");
    sb_value(b, jget(ph, "name"));
    sb_puts(b, "</td></tr>\n<tr><th>Grid</th><td>");
    const json_t *dims = jget(ph, "dims"), *sp = jget(ph, "spacing_mm");
    if (json_array_size(dims) == 3) {
        for (size_t i = 0; i < 3; i++) {
            sb_value(b, json_array_get(dims, i));
            sb_puts(b, i < 2 ? " &times; " : " voxels");
        }
    } else {
        sb_puts(b, "&ndash;");
    }
    if (json_array_size(sp) == 3) {
        sb_puts(b, " of ");
        for (size_t i = 0; i < 3; i++) {
            sb_value(b, json_array_get(sp, i));
            sb_puts(b, i < 2 ? " &times; " : " mm");
        }
    }
    sb_puts(b, "</td></tr>\n<tr><th>Dose-influence matrix</th><td>");
    if (json_is_object(dij)) {
        sb_value(b, jget(dij, "voxels"));
        sb_puts(b, " voxels &times; ");
        sb_value(b, jget(dij, "beamlets"));
        sb_puts(b, " beamlets, ");
        sb_value(b, jget(dij, "nnz"));
        sb_puts(b, " non-zeros");
        const json_t *bytes = jget(dij, "bytes");
        if (json_is_number(bytes))
            sb_printf(b, ", %.1f MiB", json_number_value(bytes) / (1024.0 * 1024.0));
    } else {
        sb_puts(b, "&ndash;");
    }
    sb_puts(b, "</td></tr>\n<tr><th>Timings</th><td>");
    if (json_is_object(tm)) {
        const char *key;
        json_t *val;
        int first = 1;
        json_object_foreach((json_t *)(uintptr_t)tm, key, val)
        {
            if (!json_is_number(val))
                continue;
            sb_puts(b, first ? "" : " &middot; ");
            sb_esc(b, key);
            sb_printf(b, " %.2f s", json_number_value(val));
            first = 0;
        }
    } else {
        sb_puts(b, "&ndash;");
    }
    sb_puts(b, "</td></tr>\n<tr><th>Threads</th><td>");
    sb_value(b, jget(m, "threads"));
    sb_puts(b, "</td></tr>\n<tr><th>Version</th><td>imrt ");
    sb_value(b, jget(m, "version"));
    sb_puts(b, "</td></tr>\n</tbody></table></section>\n");
}

static void section_goals(sbuf *b, int np, const char **pk, const json_t **pv)
{
    sb_puts(b, "<section id=\"goals\"><h2>Clinical goals</h2>\n");
    /* rows: the union of all plans' goals, in order of first appearance */
    const json_t *rows[512];
    int nr = 0;
    for (int p = 0; p < np; p++) {
        const json_t *g = jget(pv[p], "goals");
        for (size_t i = 0; i < json_array_size(g) && nr < 512; i++) {
            const json_t *goal = json_array_get(g, i);
            int dup = 0;
            for (int r = 0; r < nr && !dup; r++)
                dup = goal_same(rows[r], goal);
            if (!dup)
                rows[nr++] = goal;
        }
    }
    if (nr == 0) {
        sb_puts(b, "<p>No clinical goals were given.</p></section>\n");
        return;
    }
    /* summary line */
    sb_puts(b, "<p class=\"summary\">");
    for (int p = 0; p < np; p++) {
        const json_t *g = jget(pv[p], "goals");
        int met = 0, n = 0;
        for (size_t i = 0; i < json_array_size(g); i++) {
            const json_t *goal = json_array_get(g, i);
            if (json_is_true(jget(goal, "preferred")))
                continue;
            n++;
            met += json_is_true(jget(goal, "pass"));
        }
        sb_puts(b, p ? "; " : "");
        sb_esc(b, plan_label(pk[p]));
        sb_printf(b, " meets <b class=\"%s\">%d of %d</b> required goals", met == n ? "ok" : "bad",
                  met, n);
    }
    sb_puts(b, ".</p>\n<div class=\"scroll\"><table class=\"goals\"><thead><tr><th>Structure</th>"
               "<th>Goal</th>");
    for (int p = 0; p < np; p++) {
        sb_puts(b, "<th>");
        sb_esc(b, plan_label(pk[p]));
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr></thead>\n<tbody>\n");
    for (int r = 0; r < nr; r++) {
        const json_t *goal = rows[r];
        const char *metric = json_string_value(jget(goal, "metric"));
        const char *op = json_string_value(jget(goal, "op"));
        const char *unit = metric ? metric_unit(metric) : "";
        int preferred = json_is_true(jget(goal, "preferred"));
        sb_puts(b, "<tr><th>");
        sb_value(b, jget(goal, "structure"));
        sb_puts(b, "</th><td>");
        sb_value(b, jget(goal, "metric"));
        if (op && strcmp(op, ">=") == 0)
            sb_puts(b, " &ge; ");
        else if (op && strcmp(op, "<=") == 0)
            sb_puts(b, " &le; ");
        else {
            sb_puts(b, " ");
            sb_esc(b, op ? op : "?");
            sb_puts(b, " ");
        }
        sb_value(b, jget(goal, "value"));
        sb_printf(b, " %s%s</td>", unit, preferred ? " <small>(optional)</small>" : "");
        for (int p = 0; p < np; p++) {
            const json_t *g = jget(pv[p], "goals"), *mine = NULL;
            for (size_t i = 0; i < json_array_size(g) && !mine; i++)
                if (goal_same(json_array_get(g, i), goal))
                    mine = json_array_get(g, i);
            if (!mine) {
                sb_puts(b, "<td class=\"num\">&ndash;</td>");
                continue;
            }
            int pass = json_is_true(jget(mine, "pass"));
            sb_printf(b, "<td class=\"num %s\"><span class=\"mark\">%s</span>",
                      pass ? "pass" : preferred ? "soft" : "fail", pass ? "&#10003;" : "&#10007;");
            sb_value(b, jget(mine, "achieved"));
            sb_printf(b, " %s</td>", unit);
        }
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody></table></div>\n<p class=\"sub\">&#10003; met, &#10007; not met. Dx: dose "
               "to the hottest x % of the structure; Vx: volume receiving at least x Gy.</p>"
               "</section>\n");
}

static void section_indices(sbuf *b, int np, const char **pk, const json_t **pv)
{
    sb_puts(b, "<section id=\"indices\"><h2>Plan indices</h2>\n<div class=\"scroll\"><table>"
               "<thead><tr><th></th>");
    for (int p = 0; p < np; p++) {
        sb_puts(b, "<th>");
        sb_esc(b, plan_label(pk[p]));
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr></thead>\n<tbody>\n");
    static const char *keys[3] = {"hi", "ci_paddick", "integral_dose_j"};
    static const char *names[3] = {"Homogeneity index (HI)", "Conformity index (Paddick)",
                                   "Integral dose (J)"};
    for (int k = 0; k < 3; k++) {
        sb_printf(b, "<tr><th>%s</th>", names[k]);
        for (int p = 0; p < np; p++) {
            sb_puts(b, "<td class=\"num\">");
            sb_value(b, jget(pv[p], keys[k]));
            sb_puts(b, "</td>");
        }
        sb_puts(b, "</tr>\n");
    }
    /* solver: the union of scalar keys */
    const char *skeys[64];
    int ns = 0;
    for (int p = 0; p < np; p++) {
        const json_t *s = jget(pv[p], "solver");
        const char *key;
        json_t *val;
        if (!json_is_object(s))
            continue;
        json_object_foreach((json_t *)(uintptr_t)s, key, val)
        {
            if (json_is_object(val) || json_is_array(val) || ns >= 64)
                continue;
            int dup = 0;
            for (int i = 0; i < ns && !dup; i++)
                dup = strcmp(skeys[i], key) == 0;
            if (!dup)
                skeys[ns++] = key;
        }
    }
    for (int i = 0; i < ns; i++) {
        sb_puts(b, "<tr><th>Solver: ");
        sb_esc(b, skeys[i]);
        sb_puts(b, "</th>");
        for (int p = 0; p < np; p++) {
            sb_puts(b, "<td class=\"num\">");
            sb_value(b, jget(jget(pv[p], "solver"), skeys[i]));
            sb_puts(b, "</td>");
        }
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody></table></div></section>\n");
}

static void section_structures(sbuf *b, int np, const char **pk, const json_t **pv)
{
    const char *names[256], *metrics[64];
    int nn = 0, nm = 0;
    for (int p = 0; p < np; p++) {
        const json_t *st = jget(pv[p], "structures");
        const char *key;
        json_t *val;
        if (!json_is_object(st))
            continue;
        json_object_foreach((json_t *)(uintptr_t)st, key, val)
        {
            int dup = 0;
            for (int i = 0; i < nn && !dup; i++)
                dup = strcmp(names[i], key) == 0;
            if (!dup && nn < 256)
                names[nn++] = key;
            const char *mk;
            json_t *mv;
            if (!json_is_object(val))
                continue;
            json_object_foreach(val, mk, mv)
            {
                if (!json_is_number(mv))
                    continue;
                dup = 0;
                for (int i = 0; i < nm && !dup; i++)
                    dup = strcmp(metrics[i], mk) == 0;
                if (!dup && nm < 64)
                    metrics[nm++] = mk;
            }
        }
    }
    sb_puts(b, "<section id=\"structures\"><h2>Structure metrics</h2>\n");
    if (nn == 0) {
        sb_puts(b, "<p>No structure metrics.</p></section>\n");
        return;
    }
    sb_puts(b, "<div class=\"scroll\"><table class=\"metrics\"><thead><tr><th rowspan=\"2\">"
               "Structure</th>");
    for (int m = 0; m < nm; m++) {
        sb_printf(b, "<th colspan=\"%d\">", np);
        sb_esc(b, strcmp(metrics[m], "volume_cm3") == 0 ? "Volume" : metrics[m]);
        const char *u = metric_unit(metrics[m]);
        if (*u)
            sb_printf(b, " (%s)", u);
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr>\n<tr>");
    for (int m = 0; m < nm; m++)
        for (int p = 0; p < np; p++) {
            sb_puts(b, "<th>");
            sb_esc(b, plan_label(pk[p]));
            sb_puts(b, "</th>");
        }
    sb_puts(b, "</tr></thead>\n<tbody>\n");
    for (int i = 0; i < nn; i++) {
        sb_puts(b, "<tr><th>");
        sb_esc(b, names[i]);
        sb_puts(b, "</th>");
        for (int m = 0; m < nm; m++)
            for (int p = 0; p < np; p++) {
                sb_puts(b, "<td class=\"num\">");
                sb_value(b, jget(jget(jget(pv[p], "structures"), names[i]), metrics[m]));
                sb_puts(b, "</td>");
            }
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody></table></div></section>\n");
}

static imrt_status section_pictures(sbuf *b, const imrt_report_image *im, int n)
{
    imrt_status status = IMRT_OK;
    char *data = NULL;
    if (n == 0)
        return IMRT_OK;
    sb_puts(b, "<section id=\"pictures\"><h2>Pictures</h2>\n<div class=\"figs\">\n");
    for (int i = 0; i < n; i++) {
        size_t size = 0;
        IMRT_TRY(imrt_io_read_file(im[i].path, &data, &size));
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        if (size < 8 || memcmp(data, sig, 8) != 0)
            IMRT_FAIL(IMRT_ERR_FORMAT, "report: picture '%s' is not a PNG file", im[i].path);
        const char *slash = strrchr(im[i].path, '/');
        const char *caption = im[i].caption ? im[i].caption : (slash ? slash + 1 : im[i].path);
        sb_puts(b, "<figure><img alt=\"");
        sb_esc(b, caption);
        sb_puts(b, "\" src=\"data:image/png;base64,");
        sb_base64(b, (const unsigned char *)data, size);
        sb_puts(b, "\"><figcaption>");
        sb_esc(b, caption);
        sb_puts(b, "</figcaption></figure>\n");
        imrt_free(data);
        data = NULL;
    }
    sb_puts(b, "</div></section>\n");
cleanup:
    imrt_free(data);
    return status;
}

/* ---- page ------------------------------------------------------------------------ */

imrt_status imrt_report_build(const json_t *metrics, const imrt_report_image *images, int nimages,
                              const char *solver_log, const char *title, char **html, size_t *len)
{
    imrt_status status = IMRT_OK;
    sbuf b = {0};
    if (!html)
        return imrt_error(IMRT_ERR_ARG, "imrt_report_build: html is NULL");
    *html = NULL;
    if (len)
        *len = 0;
    if (!json_is_object(metrics))
        return imrt_error(IMRT_ERR_ARG, "report: the metrics must be a JSON object");
    if (nimages < 0 || (nimages > 0 && !images))
        return imrt_error(IMRT_ERR_ARG, "report: %d pictures with a NULL list", nimages);
    for (int i = 0; i < nimages; i++)
        if (!images[i].path)
            return imrt_error(IMRT_ERR_ARG, "report: picture %d has no path", i);

    const char *pk[REPORT_MAX_PLANS];
    const json_t *pv[REPORT_MAX_PLANS];
    int np = plan_list(jget(metrics, "plans"), pk, pv);
    const char *pname = json_string_value(jget(jget(metrics, "phantom"), "name"));

    sb_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                "<title>");
    if (title)
        sb_esc(&b, title);
    else {
        sb_puts(&b, "imrt plan report");
        if (pname) {
            sb_puts(&b, " &ndash; ");
            sb_esc(&b, pname);
        }
    }
    sb_puts(&b, "</title>\n<style>");
    sb_puts(&b, STYLE);
    sb_puts(&b, "</style>\n</head>\n<body>\n<main>\n<header><h1>");
    if (title)
        sb_esc(&b, title);
    else {
        sb_puts(&b, "Plan report");
        if (pname) {
            sb_puts(&b, ": ");
            sb_esc(&b, pname);
        }
    }
    sb_puts(&b, "</h1><p class=\"sub\">IMRT (fluence-map optimisation) compared with the "
                "conformal 3D-CRT baseline. Doses in Gy.</p></header>\n");
    section_run(&b, metrics);
    section_goals(&b, np, pk, pv);
    section_indices(&b, np, pk, pv);
    section_structures(&b, np, pk, pv);
    IMRT_TRY(section_pictures(&b, images, nimages));
    sb_puts(&b, "<section id=\"log\"><h2>Solver log</h2>\n<pre>");
    if (solver_log && *solver_log)
        sb_esc(&b, solver_log);
    else
        sb_puts(&b, "(no solver log)");
    sb_printf(&b, "</pre></section>\n<footer>Written by imrt %s. This page is self-contained: "
                  "pictures are embedded and nothing is loaded from the network.</footer>\n"
                  "</main>\n</body>\n</html>\n",
              imrt_version());
    if (b.failed)
        IMRT_FAIL(IMRT_ERR_NOMEM, "report: out of memory while building the page");
    *html = b.buf;
    if (len)
        *len = b.len;
    b.buf = NULL;
cleanup:
    imrt_free(b.buf);
    return status;
}

imrt_status imrt_report_write(const char *path, const json_t *metrics,
                              const imrt_report_image *images, int nimages,
                              const char *solver_log, const char *title)
{
    imrt_status status = IMRT_OK;
    char *html = NULL;
    size_t len = 0;
    if (!path)
        return imrt_error(IMRT_ERR_ARG, "imrt_report_write: path is NULL");
    IMRT_TRY(imrt_report_build(metrics, images, nimages, solver_log, title, &html, &len));
    IMRT_TRY(imrt_io_write_file(path, html, len));
cleanup:
    imrt_free(html);
    return status;
}
