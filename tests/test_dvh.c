/*
 * tests/test_dvh.c - exact cumulative DVH and its metrics against values
 * worked out by hand: doses 1..100 Gy in 100 voxels of 1 cm^3, a fine linear
 * ramp with a known continuous DVH, the binned form, gEUD limits, empty
 * structures and allocation failures.
 */
#include "imrt/alloc.h"
#include <math.h>
#include <stdlib.h>
#include "imrt/metrics.h"

#include "test_util.h"

/* 100 voxels of 1 cm^3 (10 mm spacing) holding 1..100 Gy in a scrambled order
 * (37 is coprime to 100, so v -> 37 v mod 100 is a permutation). */
static void make_1_to_100(imrt_grid *g, float *dose)
{
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(g, 10, 10, 1, 10.0, 10.0, 10.0, o));
    for (int v = 0; v < 100; v++)
        dose[v] = (float)((37 * v) % 100 + 1);
}

static void test_dvh_of_1_to_100(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    make_1_to_100(&g, dose);
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    assert_int_equal(h->n, 100);
    assert_close(h->volume_cc, 100.0, 1e-12, 0);
    for (int k = 0; k < 100; k++) /* sorted descending */
        assert_close(h->dose[k], 100 - k, 0, 0);
    /* Dx = min dose of the hottest x %: hottest 95 voxels are 100..6 */
    assert_close(imrt_dvh_dose_at_pct(h, 95), 6.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 2), 99.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 98), 3.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 50), 51.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 0), 100.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 100), 1.0, 0, 1e-12);
    /* linear interpolation between k = 95 (6 Gy) and k = 96 (5 Gy) */
    assert_close(imrt_dvh_dose_at_pct(h, 95.5), 5.5, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_pct(h, 0.5), 100.0, 0, 1e-12); /* below one voxel: max */
    /* Dxcc on the same curve: 3 cc of 100 cc = 3 % */
    assert_close(imrt_dvh_dose_at_cc(h, 3.0), 98.0, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_cc(h, 2.5), 98.5, 0, 1e-12);
    assert_close(imrt_dvh_dose_at_cc(h, 500.0), 1.0, 0, 1e-12);
    /* Vx counts voxels >= x: 20..100 is 81 voxels */
    assert_close(imrt_dvh_volume_pct(h, 20), 81.0, 0, 1e-12);
    assert_close(imrt_dvh_volume_pct(h, 20.5), 80.0, 0, 1e-12);
    assert_close(imrt_dvh_volume_pct(h, 0), 100.0, 0, 1e-12);
    assert_close(imrt_dvh_volume_pct(h, 100.0001), 0.0, 0, 1e-12);
    assert_close(imrt_dvh_volume_cc(h, 20), 81.0, 1e-12, 0);
    assert_close(h->mean, 50.5, 0, 1e-12);
    assert_close(imrt_dvh_max(h), 100.0, 0, 0);
    assert_close(imrt_dvh_min(h), 1.0, 0, 0);
    /* ICRU-83 HI = (D2 - D98) / D50 = (99 - 3) / 51 */
    assert_close(imrt_dvh_homogeneity(h), 96.0 / 51.0, 1e-12, 0);

    double v;
    assert_ok(imrt_dvh_metric(h, "D95", &v));
    assert_close(v, 6.0, 0, 1e-12);
    assert_ok(imrt_dvh_metric(h, "D3cc", &v));
    assert_close(v, 98.0, 0, 1e-12);
    assert_ok(imrt_dvh_metric(h, "V20", &v));
    assert_close(v, 81.0, 0, 1e-12);
    assert_ok(imrt_dvh_metric(h, "V20_cm3", &v));
    assert_close(v, 81.0, 1e-12, 0);
    assert_ok(imrt_dvh_metric(h, "Dmean", &v));
    assert_close(v, 50.5, 0, 1e-12);
    assert_ok(imrt_dvh_metric(h, "Dmax", &v));
    assert_close(v, 100.0, 0, 1e-12);
    assert_ok(imrt_dvh_metric(h, "Dmin", &v));
    assert_close(v, 1.0, 0, 1e-12);
    assert_int_equal(imrt_dvh_metric(h, "D95%", &v), IMRT_ERR_PARSE);
    imrt_dvh_destroy(&h);
    assert_null(h);
    imrt_dvh_destroy(NULL);
}

/* A mask selects a sub-structure: the 50 voxels with even doses 2..100. */
static void test_dvh_with_mask(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    uint8_t mask[100];
    make_1_to_100(&g, dose);
    for (int v = 0; v < 100; v++)
        mask[v] = ((int)dose[v] % 2) == 0;
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, mask, &h));
    assert_int_equal(h->n, 50);
    assert_close(h->mean, 51.0, 0, 1e-12);                   /* mean of 2, 4, ..., 100 */
    assert_close(imrt_dvh_dose_at_pct(h, 10), 92.0, 0, 1e-12); /* 5 hottest: 100..92 */
    assert_close(imrt_dvh_volume_pct(h, 51), 50.0, 0, 1e-12);  /* 52..100: 25 of 50 */
    imrt_dvh_destroy(&h);
}

/* 1000 voxels with doses at the midpoints of a 0..60 Gy ramp: the continuous
 * DVH is V(D) = 1 - D/60, so Dx = 60 (1 - x/100) to within one voxel step
 * (0.06 Gy), and Vx = 100 (1 - x/60) %. */
static void test_dvh_of_linear_ramp(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 1000, 1, 1, 1.0, 1.0, 1.0, o));
    float *dose = malloc(1000 * sizeof *dose);
    assert_non_null(dose);
    for (int i = 0; i < 1000; i++)
        dose[i] = (float)((i + 0.5) / 1000.0 * 60.0);
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    const double xs[] = {2, 5, 50, 95, 98};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        assert_close(imrt_dvh_dose_at_pct(h, xs[i]), 60.0 * (1.0 - xs[i] / 100.0), 0, 0.06);
    assert_close(imrt_dvh_volume_pct(h, 20.0), 100.0 * (1.0 - 20.0 / 60.0), 0, 0.1);
    assert_close(imrt_dvh_homogeneity(h), (58.8 - 1.2) / 30.0, 0, 0.005);
    imrt_dvh_destroy(&h);
    free(dose);
}

static void test_dvh_binned(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    make_1_to_100(&g, dose);
    imrt_dvh *h = NULL;
    imrt_dvh_binned *b = NULL;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    assert_ok(imrt_dvh_bin(h, 10.0, 0.0, &b));
    /* levels 0, 10, ..., 110: the last one above the 100 Gy maximum */
    assert_int_equal(b->nbins, 12);
    assert_close(b->dose_gy[11], 110.0, 0, 1e-12);
    assert_close(b->volume_pct[0], 100.0, 0, 1e-12);
    assert_close(b->volume_pct[1], 91.0, 0, 1e-12); /* 10..100 */
    assert_close(b->volume_pct[5], 51.0, 0, 1e-12); /* 50..100 */
    assert_close(b->volume_pct[10], 1.0, 0, 1e-12);
    assert_close(b->volume_pct[11], 0.0, 0, 1e-12);
    assert_close(b->volume_cc[1], 91.0, 1e-12, 0);
    imrt_dvh_binned_destroy(&b);
    /* an explicit upper dose (common axis for several structures) */
    assert_ok(imrt_dvh_bin(h, 0.5, 150.0, &b));
    assert_int_equal(b->nbins, 302);
    assert_close(b->volume_pct[41], 80.0, 0, 1e-12); /* 20.5 Gy: 21..100 */
    imrt_dvh_binned_destroy(&b);
    assert_int_equal(imrt_dvh_bin(h, 0.0, 0.0, &b), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "bin width"));
    assert_int_equal(imrt_dvh_bin(h, 1e-6, 1e4, &b), IMRT_ERR_RANGE);
    assert_null(b);
    imrt_dvh_destroy(&h);
}

/* gEUD: a = 1 is the mean, a = 2 the RMS, a = 0 the geometric mean, large
 * |a| the maximum / minimum; sum i^2 = 100*101*201/6 and ln(100!) = lgamma(101). */
static void test_geud_limits(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    make_1_to_100(&g, dose);
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    assert_close(imrt_dvh_geud(h, 1.0), 50.5, 1e-12, 0);
    assert_close(imrt_dvh_geud(h, 2.0), sqrt(100.0 * 101.0 * 201.0 / 6.0 / 100.0), 1e-12, 0);
    assert_close(imrt_dvh_geud(h, 0.0), exp(lgamma(101.0) / 100.0), 1e-10, 0);
    /* a = 1e4: 100 * (1/100 * sum (i/100)^a)^(1/a) ~ 100 * 0.01^(1e-4) = 99.954 */
    assert_close(imrt_dvh_geud(h, 1e4), 100.0 * pow(0.01, 1e-4), 1e-6, 0);
    assert_close(imrt_dvh_geud(h, -1e4), pow(0.01, -1e-4), 1e-6, 0);
    double prev = 0.0; /* gEUD increases with a */
    const double as[] = {-20, -5, -1, 0.5, 1, 2, 5, 10, 40, 200};
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
        double e = imrt_dvh_geud(h, as[i]);
        assert_true(e > prev);
        assert_in_range_d(e, 1.0, 100.0);
        prev = e;
    }
    assert_true(isnan(imrt_dvh_geud(h, NAN)));
    imrt_dvh_destroy(&h);
    /* a < 0 with a zero dose: the cold voxel drives gEUD to 0 */
    dose[7] = 0.0f;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    assert_close(imrt_dvh_geud(h, -10.0), 0.0, 0, 0);
    imrt_dvh_destroy(&h);
}

static void test_empty_structure_and_bad_dose(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    uint8_t mask[100] = {0};
    make_1_to_100(&g, dose);
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, mask, &h));
    assert_int_equal(h->n, 0);
    assert_true(isnan(imrt_dvh_dose_at_pct(h, 95)));
    assert_true(isnan(imrt_dvh_volume_pct(h, 20)));
    assert_true(isnan(imrt_dvh_geud(h, 1)));
    assert_true(isnan(h->mean));
    double v;
    assert_int_equal(imrt_dvh_metric(h, "D95", &v), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "empty"));
    imrt_dvh_binned *b = NULL;
    assert_ok(imrt_dvh_bin(h, 1.0, 10.0, &b));
    assert_close(b->volume_pct[0], 0.0, 0, 0);
    imrt_dvh_binned_destroy(&b);
    imrt_dvh_destroy(&h);

    dose[42] = NAN;
    assert_int_equal(imrt_dvh_create(&g, dose, NULL, &h), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "voxel 42"));
    assert_null(h);
    assert_int_equal(imrt_dvh_create(NULL, dose, NULL, &h), IMRT_ERR_ARG);
}

static void test_dvh_allocation_failures(void **state)
{
    (void)state;
    imrt_grid g;
    float dose[100];
    make_1_to_100(&g, dose);
    for (long n = 1; n <= 8; n++) {
        imrt_dvh *h = NULL;
        imrt_dvh_binned *b = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_dvh_create(&g, dose, NULL, &h);
        if (st == IMRT_OK)
            st = imrt_dvh_bin(h, 1.0, 0.0, &b);
        imrt_alloc_fail_after(0);
        if (st != IMRT_OK) {
            assert_int_equal(st, IMRT_ERR_NOMEM);
            assert_null(b);
        }
        imrt_dvh_binned_destroy(&b);
        imrt_dvh_destroy(&h);
    }
}

static int cmp_desc_ref(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The DVH's sorted doses (radix sort of float keys) against qsort, on
 * doses with ties, zeros of both signs, negatives, denormals and the full
 * float range. */
static void test_sort_matches_qsort(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 97, 31, 17, 1, 1, 1, o));
    const int64_t n = imrt_grid_nvox(&g);
    float *dose = malloc((size_t)n * sizeof *dose);
    double *ref = malloc((size_t)n * sizeof *ref);
    uint64_t seed = 42;
    for (int64_t v = 0; v < n; v++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        const uint32_t r = (uint32_t)(seed >> 33);
        switch (r % 6) {
        case 0: dose[v] = (float)(r % 1000) * 0.1f; break;   /* ties */
        case 1: dose[v] = (r & 1) ? 0.0f : -0.0f; break;
        case 2: dose[v] = -(float)(r % 5000) * 0.01f; break;
        case 3: dose[v] = 1e-42f * (float)(r % 7); break;    /* denormals */
        case 4: dose[v] = (float)ldexp((double)(r % 1024), (int)(r % 200) - 100); break;
        default: dose[v] = (float)r * 1e-6f; break;
        }
        ref[v] = (double)dose[v];
    }
    qsort(ref, (size_t)n, sizeof *ref, cmp_desc_ref);
    imrt_dvh *h = NULL;
    assert_ok(imrt_dvh_create(&g, dose, NULL, &h));
    assert_int_equal(h->n, n);
    for (int64_t i = 0; i < n; i++)
        assert_true(h->dose[i] == ref[i]);
    imrt_dvh_destroy(&h);
    free(dose);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dvh_of_1_to_100),
        cmocka_unit_test(test_sort_matches_qsort),
        cmocka_unit_test(test_dvh_with_mask),
        cmocka_unit_test(test_dvh_of_linear_ramp),
        cmocka_unit_test(test_dvh_binned),
        cmocka_unit_test(test_geud_limits),
        cmocka_unit_test(test_empty_structure_and_bad_dose),
        cmocka_unit_test(test_dvh_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
