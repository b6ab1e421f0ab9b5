/*
 * engine/machine.c - the generic 6 MV machine of the FSPB model: the
 * compiled-in fitted parameters, validation, normalisation, and the JSON
 * machine file.
 */
#include "imrt/machine.h"

#include "util_impl.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* ---- the compiled-in machine -------------------------------------------
 * Fitted by build/progs/fit_machine (engine/prog_fit_machine.c: NLopt BOBYQA
 * on the engine's own open-field doses in a 300 mm water box, SSD 1000 mm)
 * to typical 6 MV data from BJR Supplement 25 and vendor representative
 * beam data as summarised in spec/physics.md section 5: 100 x 100 mm^2
 * d_max 15 mm, PDD(50) 86.5 %, PDD(100) 67.0 %, PDD(200) 38.5 %, 80-20 %
 * penumbra 6.0 mm at 100 mm and 2.7 mm at d_max; PDD(100) 63.0 % (50 x 50)
 * and 71.0 % (200 x 200); output at d_max relative to 100 x 100: 0.935
 * (50 x 50) and 1.055 (200 x 200). Residual table: docs/physics-model.md. */
void imrt_machine_default(imrt_machine *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "generic-6MV");
    m->sad = 1000.0;
    m->mu = 0.00200011;      /* 1/mm: broad-field attenuation; PDD(50..200) of all fields */
    m->beta = 0.257191;      /* 1/mm: build-up; d_max */
    m->sigma_p0 = 1.14045;   /* mm: primary width at the surface; penumbra at d_max */
    m->sigma_p1 = 0.0166202; /* primary growth per mm; penumbra at 100 mm */
    m->sigma_s0 = 37.236;    /* mm: scatter width at the surface; output factors */
    m->sigma_s1 = 0.149738;  /* scatter growth per mm; field-size dependence of PDD(100) */
    m->a0 = 0.124302;        /* scatter fraction at the surface; output factors */
    m->a1 = 0.00161655;      /* its growth per mm; PDD(100) of 50 x 50 vs 200 x 200 */
    m->scatter_radius = 20.0; /* mm at the isocentre plane: dij coupling half-width (imrt/dose.h;
                                 size/accuracy table in docs/physics-model.md) */
    imrt_machine_normalise(m);
}

double imrt_machine_depth_term(const imrt_machine *m, double z)
{
    if (z < 0)
        z = 0;
    return m->beta / (m->beta - m->mu) * (exp(-m->mu * z) - exp(-m->beta * z));
}

double imrt_machine_sigma_p(const imrt_machine *m, double z)
{
    return fmax(m->sigma_p0 + m->sigma_p1 * z, IMRT_MACHINE_SIGMA_MIN);
}

double imrt_machine_sigma_s(const imrt_machine *m, double z)
{
    return fmax(m->sigma_s0 + m->sigma_s1 * z, IMRT_MACHINE_SIGMA_MIN);
}

double imrt_machine_scatter_fraction(const imrt_machine *m, double z)
{
    double a = m->a0 + m->a1 * z;
    return a < 0 ? 0 : (a > IMRT_MACHINE_A_MAX ? IMRT_MACHINE_A_MAX : a);
}

/* Central-axis dose of a square field without N (N = 1). */
static double cax_raw(const imrt_machine *m, double field, double z)
{
    const double t = m->sad + z;
    const double s = m->sad / t;
    const double sp = imrt_machine_sigma_p(m, z) * s, ss = imrt_machine_sigma_s(m, z) * s;
    const double a = imrt_machine_scatter_fraction(m, z);
    const double ep = erf(0.5 * field / (sqrt(2.0) * sp));
    const double es = erf(0.5 * field / (sqrt(2.0) * ss));
    return imrt_machine_depth_term(m, z) * s * s * ((1 - a) * ep * ep + a * es * es);
}

double imrt_machine_cax_dose(const imrt_machine *m, double field, double z)
{
    return m->norm * cax_raw(m, field, z);
}

imrt_status imrt_machine_validate(const imrt_machine *m)
{
    if (!m)
        return imrt_error(IMRT_ERR_ARG, "imrt_machine_validate: NULL machine");
#define RANGE_(key_, v, lo, hi)                                                              \
    if (!(isfinite(v) && (v) >= (lo) && (v) <= (hi)))                                        \
    return imrt_error(IMRT_ERR_RANGE, "machine '%s': %s = %g is outside [%g, %g]", m->name, \
                      key_, (double)(v), (double)(lo), (double)(hi))
    RANGE_("sad_mm", m->sad, 500, 2000);
    RANGE_("mu_per_mm", m->mu, 1e-6, 1.0);
    RANGE_("beta_per_mm", m->beta, 1e-5, 5.0);
    RANGE_("sigma_p_mm[0]", m->sigma_p0, 0.01, 50);
    RANGE_("sigma_p(500 mm)", m->sigma_p0 + 500 * m->sigma_p1, 0.01, 200);
    RANGE_("sigma_s_mm[0]", m->sigma_s0, 0.01, 500);
    RANGE_("sigma_s(500 mm)", m->sigma_s0 + 500 * m->sigma_s1, 0.01, 1000);
    RANGE_("scatter_fraction[0]", m->a0, 0, IMRT_MACHINE_A_MAX);
    RANGE_("scatter_fraction(500 mm)", m->a0 + 500 * m->a1, 0, IMRT_MACHINE_A_MAX);
    RANGE_("scatter_radius_mm", m->scatter_radius, 0, 1000);
#undef RANGE_
    if (!(m->beta > m->mu * 1.001))
        return imrt_error(IMRT_ERR_RANGE,
                          "machine '%s': beta_per_mm = %g must exceed mu_per_mm = %g", m->name,
                          m->beta, m->mu);
    return IMRT_OK;
}

imrt_status imrt_machine_normalise(imrt_machine *m)
{
    imrt_status st = imrt_machine_validate(m);
    if (st != IMRT_OK)
        return st;
    /* Coarse scan, then golden-section refinement around the best sample. */
    const double field = 100.0, step = 0.5, zmax = 200.0;
    double best = -1, zbest = 0;
    for (double z = step; z <= zmax; z += step) {
        double d = cax_raw(m, field, z);
        if (d > best) {
            best = d;
            zbest = z;
        }
    }
    if (!(best > 0) || zbest >= zmax)
        return imrt_error(IMRT_ERR_NUMERIC,
                          "machine '%s': the reference depth dose has no maximum within %g mm",
                          m->name, zmax);
    double lo = fmax(zbest - step, 0.0), hi = zbest + step;
    const double gr = 0.5 * (sqrt(5.0) - 1.0);
    double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
    double f1 = cax_raw(m, field, x1), f2 = cax_raw(m, field, x2);
    for (int it = 0; it < 60; it++) {
        if (f1 > f2) {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - gr * (hi - lo);
            f1 = cax_raw(m, field, x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + gr * (hi - lo);
            f2 = cax_raw(m, field, x2);
        }
    }
    m->dmax = 0.5 * (lo + hi);
    m->norm = 1.0 / cax_raw(m, field, m->dmax);
    return IMRT_OK;
}

/* ---- JSON machine file --------------------------------------------------- */

static imrt_status get_number(const char *path, json_t *root, const char *key, int required,
                              double *out)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required)
            return imrt_error(IMRT_ERR_PARSE, "%s: missing key \"%s\"", path, key);
        return IMRT_OK;
    }
    if (!json_is_number(v))
        return imrt_error(IMRT_ERR_PARSE, "%s: \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return IMRT_OK;
}

static imrt_status get_pair(const char *path, json_t *root, const char *key, double *a,
                            double *b)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return imrt_error(IMRT_ERR_PARSE, "%s: missing key \"%s\"", path, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
        !json_is_number(json_array_get(v, 1)))
        return imrt_error(IMRT_ERR_PARSE,
                          "%s: \"%s\" must be an array of two numbers [value at the surface, "
                          "growth per mm]",
                          path, key);
    *a = json_number_value(json_array_get(v, 0));
    *b = json_number_value(json_array_get(v, 1));
    return IMRT_OK;
}

imrt_status imrt_machine_load(const char *path, imrt_machine *out)
{
    imrt_status status = IMRT_OK;
    json_t *root = NULL;
    if (!path || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_machine_load: NULL argument");
    json_error_t err;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (err.line < 1)
            IMRT_FAIL(IMRT_ERR_IO, "%s: %s", path, err.text);
        IMRT_FAIL(IMRT_ERR_PARSE, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    }
    if (!json_is_object(root))
        IMRT_FAIL(IMRT_ERR_PARSE, "%s: the machine file must hold a JSON object", path);
    static const char *const known[] = {"name",          "sad_mm",          "mu_per_mm",
                                        "beta_per_mm",   "sigma_p_mm",      "sigma_s_mm",
                                        "scatter_fraction", "scatter_radius_mm", "description"};
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        int ok = 0;
        for (size_t q = 0; q < sizeof known / sizeof known[0]; q++)
            ok |= strcmp(key, known[q]) == 0;
        if (!ok)
            IMRT_FAIL(IMRT_ERR_PARSE,
                      "%s: unknown key \"%s\" (known: name, sad_mm, mu_per_mm, beta_per_mm, "
                      "sigma_p_mm, sigma_s_mm, scatter_fraction, scatter_radius_mm, description)",
                      path, key);
    }
    imrt_machine m;
    imrt_machine_default(&m);
    json_t *name = json_object_get(root, "name");
    if (name) {
        if (!json_is_string(name) || strlen(json_string_value(name)) >= sizeof m.name)
            IMRT_FAIL(IMRT_ERR_PARSE, "%s: \"name\" must be a string of at most %zu characters",
                      path, sizeof m.name - 1);
        snprintf(m.name, sizeof m.name, "%s", json_string_value(name));
    } else {
        snprintf(m.name, sizeof m.name, "%s", path);
    }
    IMRT_TRY(get_number(path, root, "sad_mm", 1, &m.sad));
    IMRT_TRY(get_number(path, root, "mu_per_mm", 1, &m.mu));
    IMRT_TRY(get_number(path, root, "beta_per_mm", 1, &m.beta));
    IMRT_TRY(get_pair(path, root, "sigma_p_mm", &m.sigma_p0, &m.sigma_p1));
    IMRT_TRY(get_pair(path, root, "sigma_s_mm", &m.sigma_s0, &m.sigma_s1));
    IMRT_TRY(get_pair(path, root, "scatter_fraction", &m.a0, &m.a1));
    IMRT_TRY(get_number(path, root, "scatter_radius_mm", 0, &m.scatter_radius));
    IMRT_TRY(imrt_machine_normalise(&m));
    *out = m;
cleanup:
    json_decref(root);
    return status;
}

imrt_status imrt_machine_save(const char *path, const imrt_machine *m)
{
    if (!path || !m)
        return imrt_error(IMRT_ERR_ARG, "imrt_machine_save: NULL argument");
    FILE *f = fopen(path, "w");
    if (!f)
        return imrt_error(IMRT_ERR_IO, "cannot write machine file %s", path);
    int ok = fprintf(f,
                     "{\n  \"name\": \"%s\",\n  \"sad_mm\": %.17g,\n  \"mu_per_mm\": %.17g,\n"
                     "  \"beta_per_mm\": %.17g,\n  \"sigma_p_mm\": [%.17g, %.17g],\n"
                     "  \"sigma_s_mm\": [%.17g, %.17g],\n  \"scatter_fraction\": [%.17g, %.17g],\n"
                     "  \"scatter_radius_mm\": %.17g\n}\n",
                     m->name, m->sad, m->mu, m->beta, m->sigma_p0, m->sigma_p1, m->sigma_s0,
                     m->sigma_s1, m->a0, m->a1, m->scatter_radius) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return imrt_error(IMRT_ERR_IO, "error writing machine file %s", path);
    return IMRT_OK;
}
