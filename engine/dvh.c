/*
 * engine/dvh.c - exact cumulative dose-volume histograms from sorted voxel
 * doses, the DVH metrics read off them (Dx, Dxcc, Vx, Dmean/Dmax/Dmin,
 * gEUD, homogeneity index) and the binned form for output.
 * Conventions: imrt/metrics.h and docs/metrics.md.
 */
#include "imrt/metrics.h"

#include "util_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest binned DVH we produce (1e6 points is far beyond any useful plot). */
#define DVH_MAX_BINS 1000000

/* Order-preserving key of a float: unsigned order of the keys is the
 * numeric order of the values (finite values; -0 sorts before +0). */
static inline uint32_t float_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float key_float(uint32_t k)
{
    const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* keys[0..n-1] sorted ascending by an LSD radix sort (4 passes of 8 bits;
 * tmp holds n keys). O(n), against O(n log n) comparisons of qsort: a
 * 531 441-voxel BODY sorts in a few milliseconds instead of ~50. */
static void radix_sort_u32(uint32_t *keys, uint32_t *tmp, int64_t n)
{
    uint32_t *a = keys, *b = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t count[257] = {0};
        for (int64_t i = 0; i < n; i++)
            count[((a[i] >> shift) & 0xffu) + 1]++;
        if (count[((a[0] >> shift) & 0xffu) + 1] == n)
            continue; /* every key has this byte: the pass would not move anything */
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (int64_t i = 0; i < n; i++)
            b[count[(a[i] >> shift) & 0xffu]++] = a[i];
        uint32_t *t = a;
        a = b;
        b = t;
    }
    if (a != keys)
        memcpy(keys, a, (size_t)n * sizeof *keys);
}

imrt_status imrt_dvh_create(const imrt_grid *g, const float *dose, const uint8_t *mask,
                            imrt_dvh **out)
{
    imrt_status status = IMRT_OK;
    imrt_dvh *h = NULL;
    uint32_t *keys = NULL, *tmp = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dvh_create: out is NULL");
    *out = NULL;
    if (!g || !dose)
        return imrt_error(IMRT_ERR_ARG, "imrt_dvh_create: NULL grid or dose");
    int64_t nvox = imrt_grid_nvox(g);
    int64_t n = 0;
    for (int64_t v = 0; v < nvox; v++) {
        if (mask && !mask[v])
            continue;
        if (!isfinite(dose[v]))
            return imrt_error(IMRT_ERR_RANGE, "dose at voxel %lld is %g (must be finite)",
                              (long long)v, (double)dose[v]);
        n++;
    }
    IMRT_ALLOC(h, 1);
    h->n = n;
    h->voxel_cc = imrt_grid_voxel_cc(g);
    h->volume_cc = (double)n * h->voxel_cc;
    h->mean = NAN;
    if (n > 0) {
        IMRT_ALLOC(h->dose, n);
        IMRT_ALLOC(keys, n);
        IMRT_ALLOC(tmp, n);
        int64_t k = 0;
        double sum = 0.0;
        for (int64_t v = 0; v < nvox; v++) {
            if (mask && !mask[v])
                continue;
            keys[k++] = float_key(dose[v]);
            sum += (double)dose[v];
        }
        h->mean = sum / (double)n;
        /* the doses are floats: sorting their keys is exact */
        radix_sort_u32(keys, tmp, n);
        for (int64_t i = 0; i < n; i++)
            h->dose[i] = (double)key_float(keys[n - 1 - i]); /* descending */
    }
    *out = h;
    h = NULL;
cleanup:
    imrt_free(keys);
    imrt_free(tmp);
    imrt_dvh_destroy(&h);
    return status;
}

void imrt_dvh_destroy(imrt_dvh **p)
{
    if (!p || !*p)
        return;
    imrt_free((*p)->dose);
    imrt_free(*p);
    *p = NULL;
}

/* Dose on the interpolated curve at volume fraction v (0..1): the k-th
 * hottest dose d(k) (1-based) sits at v = k/n. */
static double dose_at_fraction(const imrt_dvh *h, double v)
{
    if (!h || h->n == 0 || isnan(v))
        return NAN;
    double t = v * (double)h->n; /* position in voxels */
    if (t <= 1.0)
        return h->dose[0];
    if (t >= (double)h->n)
        return h->dose[h->n - 1];
    double kf = floor(t);
    int64_t k = (int64_t)kf; /* 1 <= k < n: d(k) = dose[k-1] */
    double frac = t - kf;
    return h->dose[k - 1] + frac * (h->dose[k] - h->dose[k - 1]);
}

double imrt_dvh_dose_at_pct(const imrt_dvh *h, double pct)
{
    if (isnan(pct))
        return NAN;
    return dose_at_fraction(h, IMRT_MIN(IMRT_MAX(pct, 0.0), 100.0) / 100.0);
}

double imrt_dvh_dose_at_cc(const imrt_dvh *h, double cc)
{
    if (!h || h->n == 0 || isnan(cc))
        return NAN;
    return dose_at_fraction(h, IMRT_MAX(cc, 0.0) / h->volume_cc);
}

/* Number of voxels with dose >= d (binary search in the descending array). */
static int64_t count_at_least(const imrt_dvh *h, double d)
{
    int64_t lo = 0, hi = h->n; /* answer in [lo, hi] */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (h->dose[mid] >= d)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double imrt_dvh_volume_pct(const imrt_dvh *h, double dose_gy)
{
    if (!h || h->n == 0 || isnan(dose_gy))
        return NAN;
    return 100.0 * (double)count_at_least(h, dose_gy) / (double)h->n;
}

double imrt_dvh_volume_cc(const imrt_dvh *h, double dose_gy)
{
    if (!h || h->n == 0 || isnan(dose_gy))
        return NAN;
    return (double)count_at_least(h, dose_gy) * h->voxel_cc;
}

double imrt_dvh_max(const imrt_dvh *h) { return h && h->n > 0 ? h->dose[0] : (double)NAN; }

double imrt_dvh_min(const imrt_dvh *h) { return h && h->n > 0 ? h->dose[h->n - 1] : (double)NAN; }

double imrt_dvh_geud(const imrt_dvh *h, double a)
{
    if (!h || h->n == 0 || !isfinite(a))
        return NAN;
    const double *d = h->dose;
    int64_t n = h->n;
    double dmax = d[0], dmin = d[n - 1];
    if (a == 0.0) { /* limit a -> 0: geometric mean */
        if (dmin <= 0.0)
            return 0.0;
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += log(d[i]);
        return exp(s / (double)n);
    }
    if (a < 0.0) {
        if (dmin <= 0.0)
            return 0.0;
        /* scale by the minimum so that every (d/dmin)^a lies in (0, 1] */
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += pow(d[i] / dmin, a);
        return dmin * pow(s / (double)n, 1.0 / a);
    }
    if (dmax <= 0.0)
        return 0.0;
    /* a > 0: scale by the maximum so that (d/dmax)^a <= 1 never overflows;
     * negative doses count as 0 (a dose is never negative). */
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += d[i] > 0.0 ? pow(d[i] / dmax, a) : 0.0;
    return dmax * pow(s / (double)n, 1.0 / a);
}

double imrt_dvh_homogeneity(const imrt_dvh *h)
{
    double d50 = imrt_dvh_dose_at_pct(h, 50.0);
    if (!(d50 > 0.0))
        return NAN;
    return (imrt_dvh_dose_at_pct(h, 2.0) - imrt_dvh_dose_at_pct(h, 98.0)) / d50;
}

imrt_status imrt_dvh_metric(const imrt_dvh *h, const char *metric, double *value)
{
    if (!h || !metric || !value)
        return imrt_error(IMRT_ERR_ARG, "imrt_dvh_metric: NULL argument");
    char kind = 0;
    double x = 0.0;
    imrt_status st = imrt_metric_parse(metric, &kind, &x);
    if (st != IMRT_OK)
        return st;
    if (h->n == 0)
        return imrt_error(IMRT_ERR_RANGE,
                          "metric %s of an empty structure (no voxel on the dose grid)", metric);
    switch (kind) {
    case 'D':
        *value = imrt_dvh_dose_at_pct(h, x);
        break;
    case 'C':
        *value = imrt_dvh_dose_at_cc(h, x);
        break;
    case 'V':
        *value = imrt_dvh_volume_pct(h, x);
        break;
    case 'W':
        *value = imrt_dvh_volume_cc(h, x);
        break;
    case 'M':
        *value = h->mean;
        break;
    case 'X':
        *value = imrt_dvh_max(h);
        break;
    case 'N':
        *value = imrt_dvh_min(h);
        break;
    default:
        return imrt_error(IMRT_ERR_INTERNAL, "metric kind '%c' of %s not handled", kind, metric);
    }
    return IMRT_OK;
}

imrt_status imrt_dvh_bin(const imrt_dvh *h, double bin_gy, double max_gy, imrt_dvh_binned **out)
{
    imrt_status status = IMRT_OK;
    imrt_dvh_binned *b = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dvh_bin: out is NULL");
    *out = NULL;
    if (!h)
        return imrt_error(IMRT_ERR_ARG, "imrt_dvh_bin: NULL DVH");
    if (!(bin_gy > 0.0 && bin_gy <= 1e4))
        return imrt_error(IMRT_ERR_RANGE, "DVH bin width %g Gy is outside (0, 10000]", bin_gy);
    if (!isfinite(max_gy))
        return imrt_error(IMRT_ERR_RANGE, "DVH maximum dose %g Gy is not finite", max_gy);
    double top = max_gy > 0.0 ? max_gy : (h->n > 0 ? IMRT_MAX(h->dose[0], 0.0) : 0.0);
    /* levels 0 .. m*bin with m*bin > top, so the last point is at 0 % */
    double m = floor(top / bin_gy) + 1.0;
    if (m + 1.0 > (double)DVH_MAX_BINS)
        return imrt_error(IMRT_ERR_RANGE,
                          "DVH with bin %g Gy up to %g Gy needs %.0f points (at most %d)", bin_gy,
                          top, m + 1.0, DVH_MAX_BINS);
    IMRT_ALLOC(b, 1);
    b->nbins = (int)m + 1;
    b->bin_gy = bin_gy;
    IMRT_ALLOC(b->dose_gy, b->nbins);
    IMRT_ALLOC(b->volume_pct, b->nbins);
    IMRT_ALLOC(b->volume_cc, b->nbins);
    for (int j = 0; j < b->nbins; j++) {
        double d = (double)j * bin_gy;
        b->dose_gy[j] = d;
        if (h->n > 0) {
            int64_t c = count_at_least(h, d);
            b->volume_pct[j] = 100.0 * (double)c / (double)h->n;
            b->volume_cc[j] = (double)c * h->voxel_cc;
        }
    }
    *out = b;
    b = NULL;
cleanup:
    imrt_dvh_binned_destroy(&b);
    return status;
}

void imrt_dvh_binned_destroy(imrt_dvh_binned **p)
{
    if (!p || !*p)
        return;
    imrt_free((*p)->dose_gy);
    imrt_free((*p)->volume_pct);
    imrt_free((*p)->volume_cc);
    imrt_free(*p);
    *p = NULL;
}
