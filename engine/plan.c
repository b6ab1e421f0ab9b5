/*
 * engine/plan.c - plan settings container and metric-name parsing.
 */
#include "imrt/plan.h"

#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

imrt_status imrt_plan_create(imrt_plan **out)
{
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_plan_create: out is NULL");
    imrt_plan *p = imrt_calloc(1, sizeof *p);
    *out = p;
    if (!p)
        return imrt_error(IMRT_ERR_NOMEM, "cannot allocate a plan");
    p->rx.fractions = 1;
    p->rx.normalise = 1;
    snprintf(p->rx.metric, sizeof p->rx.metric, "D95");
    p->beamlet_mm = 5.0;
    p->beamlet_margin_mm = 5.0;
    p->cutoff = 1e-3;
    p->crt_margin_mm = 7.0;
    p->solver.max_iterations = 300;
    p->solver.ftol_rel = 1e-6;
    p->solver.pgtol = 1e-8;
    p->solver.max_time_s = 0.0;
    return IMRT_OK;
}

void imrt_plan_destroy(imrt_plan **pp)
{
    if (!pp || !*pp)
        return;
    imrt_plan *p = *pp;
    imrt_free(p->description);
    imrt_free(p->beams);
    imrt_free(p->objectives);
    imrt_free(p->goals);
    imrt_free(p->crt_beams);
    imrt_free(p);
    *pp = NULL;
}

/* Parse a non-negative finite number that fills the whole of [s, end). */
static int parse_number(const char *s, size_t len, double *out)
{
    char buf[IMRT_METRIC_MAX];
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!((buf[0] >= '0' && buf[0] <= '9') || buf[0] == '.'))
        return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno || *end != '\0' || !isfinite(v) || v < 0.0)
        return 0;
    *out = v;
    return 1;
}

imrt_status imrt_metric_parse(const char *metric, char *kind, double *param)
{
    if (!metric || !kind || !param)
        return imrt_error(IMRT_ERR_ARG, "imrt_metric_parse: NULL argument");
    *param = 0.0;
    size_t n = strlen(metric);
    if (strcmp(metric, "Dmean") == 0) {
        *kind = 'M';
        return IMRT_OK;
    }
    if (strcmp(metric, "Dmax") == 0) {
        *kind = 'X';
        return IMRT_OK;
    }
    if (strcmp(metric, "Dmin") == 0) {
        *kind = 'N';
        return IMRT_OK;
    }
    if (n >= 2 && metric[0] == 'D') {
        if (n > 3 && strcmp(metric + n - 2, "cc") == 0 && parse_number(metric + 1, n - 3, param)) {
            *kind = 'C';
            return IMRT_OK;
        }
        if (parse_number(metric + 1, n - 1, param) && *param <= 100.0) {
            *kind = 'D';
            return IMRT_OK;
        }
    }
    if (n >= 2 && metric[0] == 'V') {
        if (n > 5 && strcmp(metric + n - 4, "_cm3") == 0 &&
            parse_number(metric + 1, n - 5, param)) {
            *kind = 'W';
            return IMRT_OK;
        }
        if (parse_number(metric + 1, n - 1, param)) {
            *kind = 'V';
            return IMRT_OK;
        }
    }
    return imrt_error(IMRT_ERR_PARSE,
                      "unknown metric '%s' (allowed: Dx with 0 <= x <= 100, Dxcc, Vx, Vx_cm3, "
                      "Dmean, Dmax, Dmin; x a number, e.g. D95, D0.03cc, V20, V45_cm3)",
                      metric);
}
