/*
 * tests/test_gamma.c - the gamma index against analytic answers: identical
 * distributions (gamma 0), uniform doses scaled by 2 % and 5 % (gamma = 2/3
 * and 5/3 under 3 %/3 mm), a plateau with a penumbra scaled by 5 % (fails on
 * the plateau, passes in the gradient; pass rate worked out by hand), a 3D
 * Gaussian shifted by 1 mm (sub-voxel), a 1D linear ramp shifted by delta
 * (gamma = delta / sqrt(dist^2 + (dD/g)^2)), local versus global, two
 * different grids, the low-dose threshold, thread independence and argument
 * checks.
 */
#include "imrt/alloc.h"
#include "imrt/metrics.h"

#include "test_util.h"

static imrt_grid make_grid(int nx, int ny, int nz, double h)
{
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, nx, ny, nz, h, h, h, o));
    return g;
}

static float *alloc_dose(const imrt_grid *g)
{
    float *d = calloc((size_t)imrt_grid_nvox(g), sizeof *d);
    assert_non_null(d);
    return d;
}

/* 3D Gaussian of peak 100 Gy and sigma 15 mm centred at c (mm). */
static void fill_gaussian(const imrt_grid *g, float *d, const double c[3])
{
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++) {
                double x[3];
                imrt_grid_center(g, i, j, k, x);
                double r2 = 0;
                for (int a = 0; a < 3; a++)
                    r2 += (x[a] - c[a]) * (x[a] - c[a]);
                d[imrt_grid_index(g, i, j, k)] = (float)(100.0 * exp(-r2 / (2.0 * 15.0 * 15.0)));
            }
}

static void test_identical_grids_give_zero(void **state)
{
    (void)state;
    imrt_grid g = make_grid(20, 20, 20, 2.5);
    float *d = alloc_dose(&g);
    const double c[3] = {24, 25, 23};
    fill_gaussian(&g, d, c);
    imrt_gamma_result r;
    float *map = alloc_dose(&g);
    assert_ok(imrt_gamma(NULL, &g, d, &g, d, NULL, &r, map));
    assert_true(r.evaluated > 1000);
    assert_int_equal(r.passed, r.evaluated);
    assert_close(r.pass_rate_pct, 100.0, 0, 0);
    assert_close(r.mean, 0.0, 0, 0);
    assert_close(r.max, 0.0, 0, 0);
    for (int64_t v = 0; v < imrt_grid_nvox(&g); v++)
        assert_true(map[v] == 0.0f || map[v] == -1.0f);
    free(map);
    free(d);
}

/* Uniform 100 Gy against 102 Gy: gamma = 2/3 everywhere (the best match is
 * the point itself); against 105 Gy: 5/3 everywhere, nothing passes. */
static void test_uniform_scaled_dose(void **state)
{
    (void)state;
    imrt_grid g = make_grid(8, 8, 8, 2.5);
    float *ref = alloc_dose(&g), *ev = alloc_dose(&g);
    int64_t n = imrt_grid_nvox(&g);
    imrt_gamma_result r;
    for (int64_t v = 0; v < n; v++) {
        ref[v] = 100.0f;
        ev[v] = 102.0f;
    }
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, NULL, &r, NULL));
    assert_int_equal(r.evaluated, n);
    assert_close(r.pass_rate_pct, 100.0, 0, 0);
    assert_close(r.mean, 2.0 / 3.0, 1e-6, 0);
    assert_close(r.max, 2.0 / 3.0, 1e-6, 0);
    for (int64_t v = 0; v < n; v++)
        ev[v] = 105.0f;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, NULL, &r, NULL));
    assert_close(r.pass_rate_pct, 0.0, 0, 0);
    assert_close(r.mean, 5.0 / 3.0, 1e-6, 0);
    /* 150 Gy: gamma would be 50/3 but the search (2 x 3 mm) caps it at 2 */
    for (int64_t v = 0; v < n; v++)
        ev[v] = 150.0f;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, NULL, &r, NULL));
    assert_close(r.gamma_cap, 2.0, 1e-12, 0);
    assert_close(r.max, 2.0, 1e-6, 0);
    free(ref);
    free(ev);
}

/* Plateau of 100 Gy for x <= 20 mm, falling 10 Gy/mm to 0 at x = 30 mm, 1 mm
 * voxels; evaluated = 1.05 x reference, 3 %/3 mm global (dD = 3 Gy).
 * Plateau points at x <= 14 mm see 105 Gy within 6 mm: gamma = 5/3 exactly.
 * Ramp points find their dose within 0.48 mm (gamma < 0.17). Worked by hand:
 * x = 17 has gamma 1.15 (min over u of sqrt(u^2 + (5 - 10.5 (u - 3))^2) / 3),
 * x = 18 has 0.83, so x = 18..29 pass and 0..17 fail: 12 of 30 columns. */
static void test_plateau_and_penumbra_scaled_5pct(void **state)
{
    (void)state;
    imrt_grid g = make_grid(40, 3, 3, 1.0);
    float *ref = alloc_dose(&g), *ev = alloc_dose(&g), *map = alloc_dose(&g);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 40; i++) {
                double d = i <= 20 ? 100.0 : (i >= 30 ? 0.0 : 100.0 - 10.0 * (i - 20));
                int64_t v = imrt_grid_index(&g, i, j, k);
                ref[v] = (float)d;
                ev[v] = (float)(1.05 * d);
            }
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, NULL, &r, map));
    assert_int_equal(r.evaluated, 30 * 9); /* x = 30..39 are below the 10 % threshold */
    assert_int_equal(r.passed, 12 * 9);
    assert_close(r.pass_rate_pct, 40.0, 1e-9, 0);
    for (int i = 0; i <= 14; i++)
        assert_close(map[imrt_grid_index(&g, i, 1, 1)], 5.0 / 3.0, 1e-5, 0);
    for (int i = 21; i <= 29; i++)
        assert_in_range_d(map[imrt_grid_index(&g, i, 1, 1)], 0.0, 0.17);
    assert_in_range_d(map[imrt_grid_index(&g, 17, 1, 1)], 1.15, 1.17);
    assert_in_range_d(map[imrt_grid_index(&g, 18, 1, 1)], 0.81, 0.84);
    assert_close(map[imrt_grid_index(&g, 35, 1, 1)], -1.0, 0, 0);
    free(ref);
    free(ev);
    free(map);
}

/* A 3D Gaussian (sigma 15 mm) shifted by 1 mm, less than half a 2.5 mm voxel:
 * 3 %/3 mm passes everywhere above 10 %. Inside the grid the exact match
 * lies 1 mm away with the dose interpolated trilinearly, whose error is at
 * most eps = (h^2/8) sum_a max|d2f/dx_a^2| = (2.5^2/8) x 3 x 100/15^2 = 1.04 Gy,
 * so gamma <= sqrt((1/3)^2 + (eps/3)^2) = 0.48; on the faces the shift points
 * out of, the match lies outside the evaluated grid and gamma rises to about
 * 0.64 (2 Gy short where the slope is 2 Gy/mm). */
static void check_shift(const imrt_grid *g, const float *ref, const float *ev)
{
    float *map = alloc_dose(g);
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, g, ref, g, ev, NULL, &r, map));
    assert_close(r.pass_rate_pct, 100.0, 0, 0);
    assert_true(r.max < 0.7);
    const double eps = 2.5 * 2.5 / 8.0 * 3.0 * 100.0 / (15.0 * 15.0);
    const double bound = sqrt(1.0 / 9.0 + eps * eps / 9.0);
    assert_in_range_d(r.mean, 0.0, bound);
    for (int k = 1; k < g->nz - 1; k++)
        for (int j = 1; j < g->ny - 1; j++)
            for (int i = 1; i < g->nx - 1; i++)
                assert_in_range_d(map[imrt_grid_index(g, i, j, k)], -1.0, bound);
    free(map);
}

static void test_subvoxel_shift_passes(void **state)
{
    (void)state;
    imrt_grid g = make_grid(24, 24, 24, 2.5);
    float *ref = alloc_dose(&g), *ev = alloc_dose(&g);
    const double c[3] = {28.75, 28.75, 28.75};
    const double s = 1.0 / sqrt(3.0);
    const double cx[3] = {29.75, 28.75, 28.75};
    const double cd[3] = {28.75 + s, 28.75 + s, 28.75 + s};
    fill_gaussian(&g, ref, c);
    fill_gaussian(&g, ev, cx); /* 1 mm along x */
    check_shift(&g, ref, ev);
    fill_gaussian(&g, ev, cd); /* 1 mm along the diagonal */
    check_shift(&g, ref, ev);
    free(ref);
    free(ev);
}

/* 1D ramp D = g x (g = 1 Gy/mm, 1 mm voxels), evaluated = g (x - delta).
 * Minimising u^2/dd^2 + g^2 (u - delta)^2 / dD^2 over u gives
 * gamma = delta / sqrt(dd^2 + (dD/g)^2) at u* = delta g^2 dd^2/(dD^2 + g^2 dd^2).
 * With dd = 3 mm, dD = 3 Gy: gamma = delta / sqrt(18). */
static void ramp_gamma(double delta, double step, double *gamma_mid)
{
    imrt_grid g = make_grid(61, 1, 1, 1.0);
    float ref[61], ev[61], map[61];
    for (int i = 0; i < 61; i++) {
        ref[i] = (float)i;
        ev[i] = (float)(i - delta);
    }
    imrt_gamma_options opt;
    imrt_gamma_defaults(&opt);
    opt.norm_gy = 100.0; /* dD = 3 Gy */
    opt.threshold_pct = 0.0;
    opt.step_mm = step;
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, &opt, &r, map));
    for (int i = 10; i <= 50; i++) /* away from the ends of the profile */
        assert_close(map[i], map[30], 0, 1e-5);
    *gamma_mid = map[30];
}

/* g = 10 Gy/mm over 0..60 Gy on 0.5 mm voxels, shifted by 1 mm. */
static void ramp_gamma_steep(double *gamma_mid)
{
    imrt_grid g = make_grid(13, 1, 1, 0.5);
    float ref[13], ev[13], map[13];
    for (int i = 0; i < 13; i++) {
        ref[i] = (float)(10.0 * 0.5 * i);
        ev[i] = (float)(10.0 * (0.5 * i - 1.0));
    }
    imrt_gamma_options opt;
    imrt_gamma_defaults(&opt);
    opt.norm_gy = 100.0;
    opt.threshold_pct = 0.0;
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, &opt, &r, map));
    *gamma_mid = map[6];
}

static void test_ramp_hand_computed(void **state)
{
    (void)state;
    double gm;
    /* delta = 1.2 mm: u* = 0.6 mm lies on the default 0.3 mm lattice */
    ramp_gamma(1.2, 0.0, &gm);
    assert_close(gm, 1.2 / sqrt(18.0), 1e-5, 0);
    /* delta = 2 mm: u* = 1 mm lies between lattice points 0.9 and 1.2 (whose
     * gamma is sqrt(0.81 + 1.21)/3 = 0.47376); the refinement on the linear
     * interpolant reaches the exact 2/sqrt(18) = 0.47140 */
    ramp_gamma(2.0, 0.0, &gm);
    assert_close(gm, 2.0 / sqrt(18.0), 1e-5, 0);
    /* a coarse 1 mm lattice: still exact after refinement */
    ramp_gamma(2.0, 1.0, &gm);
    assert_close(gm, 2.0 / sqrt(18.0), 1e-5, 0);
    /* a steep ramp (g = 10 Gy/mm) shifted by 1 mm: 1 / sqrt(9 + 0.09) */
    ramp_gamma_steep(&gm);
    assert_close(gm, 1.0 / sqrt(9.0 + 0.09), 1e-5, 0);
}

/* Uniform 50 Gy against 51 Gy with norm 100 Gy: global dD = 3 Gy -> 1/3;
 * local dD = 3 % of 50 = 1.5 Gy -> 2/3. */
static void test_local_versus_global(void **state)
{
    (void)state;
    imrt_grid g = make_grid(6, 6, 6, 2.0);
    float *ref = alloc_dose(&g), *ev = alloc_dose(&g);
    for (int64_t v = 0; v < imrt_grid_nvox(&g); v++) {
        ref[v] = 50.0f;
        ev[v] = 51.0f;
    }
    imrt_gamma_options opt;
    imrt_gamma_defaults(&opt);
    opt.norm_gy = 100.0;
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, &opt, &r, NULL));
    assert_close(r.mean, 1.0 / 3.0, 1e-6, 0);
    opt.local = 1;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ev, &opt, &r, NULL));
    assert_close(r.mean, 2.0 / 3.0, 1e-6, 0);
    free(ref);
    free(ev);
}

/* Reference on a 2 mm grid, evaluated on a 3 mm grid with another origin; a
 * linear dose is reproduced exactly by trilinear interpolation: gamma = 0. */
static void test_different_grids(void **state)
{
    (void)state;
    imrt_grid gr = make_grid(20, 20, 20, 2.0), ge;
    const double oe[3] = {-1.0, -1.0, -1.0};
    assert_ok(imrt_grid_init(&ge, 15, 15, 15, 3.0, 3.0, 3.0, oe));
    float *ref = alloc_dose(&gr), *ev = alloc_dose(&ge);
    const imrt_grid *gs[2] = {&gr, &ge};
    float *ds[2] = {ref, ev};
    for (int q = 0; q < 2; q++)
        for (int k = 0; k < gs[q]->nz; k++)
            for (int j = 0; j < gs[q]->ny; j++)
                for (int i = 0; i < gs[q]->nx; i++) {
                    double x[3];
                    imrt_grid_center(gs[q], i, j, k, x);
                    ds[q][imrt_grid_index(gs[q], i, j, k)] =
                        (float)(20.0 + 0.5 * x[0] + 0.3 * x[1] + 0.2 * x[2]);
                }
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &gr, ref, &ge, ev, NULL, &r, NULL));
    assert_int_equal(r.evaluated, imrt_grid_nvox(&gr));
    assert_true(r.max < 1e-4);
    free(ref);
    free(ev);
}

/* Threshold 10 % of the 60 Gy maximum: the six points below 6 Gy are skipped. */
static void test_low_dose_threshold(void **state)
{
    (void)state;
    imrt_grid g = make_grid(61, 1, 1, 1.0);
    float ref[61], map[61];
    for (int i = 0; i < 61; i++)
        ref[i] = (float)i;
    imrt_gamma_result r;
    assert_ok(imrt_gamma(NULL, &g, ref, &g, ref, NULL, &r, map));
    assert_int_equal(r.evaluated, 55);
    for (int i = 0; i < 6; i++)
        assert_close(map[i], -1.0, 0, 0);
    assert_close(map[6], 0.0, 0, 0);
}

/* The map does not depend on the number of threads. */
static void test_threads_agree(void **state)
{
    (void)state;
    imrt_grid g = make_grid(16, 16, 16, 2.5);
    float *ref = alloc_dose(&g), *ev = alloc_dose(&g);
    float *m1 = alloc_dose(&g), *m2 = alloc_dose(&g);
    const double c[3] = {18, 19, 20}, c2[3] = {19.3, 18.2, 20.4};
    fill_gaussian(&g, ref, c);
    fill_gaussian(&g, ev, c2);
    for (int64_t v = 0; v < imrt_grid_nvox(&g); v++)
        ev[v] *= 1.02f;
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    imrt_gamma_result r1, r2;
    assert_ok(imrt_context_set_threads(ctx, 1));
    assert_ok(imrt_gamma(ctx, &g, ref, &g, ev, NULL, &r1, m1));
    assert_ok(imrt_context_set_threads(ctx, 2));
    assert_ok(imrt_gamma(ctx, &g, ref, &g, ev, NULL, &r2, m2));
    assert_memory_equal(m1, m2, (size_t)imrt_grid_nvox(&g) * sizeof *m1);
    assert_int_equal(r1.passed, r2.passed);
    assert_true(r1.mean == r2.mean); /* bitwise: same serial reduction */
    imrt_context_destroy(&ctx);
    free(ref);
    free(ev);
    free(m1);
    free(m2);
}

static void test_gamma_rejects_bad_input(void **state)
{
    (void)state;
    imrt_grid g = make_grid(4, 4, 4, 2.0);
    float *d = alloc_dose(&g);
    imrt_gamma_options opt;
    imrt_gamma_result r;
    /* an all-zero reference has no global normalisation */
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, NULL, &r, NULL), IMRT_ERR_RANGE);
    for (int64_t v = 0; v < 64; v++)
        d[v] = 1.0f;
    imrt_gamma_defaults(&opt);
    opt.dose_pct = 0.0;
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, &opt, &r, NULL), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "dose criterion"));
    imrt_gamma_defaults(&opt);
    opt.search_mm = 1.0;
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, &opt, &r, NULL), IMRT_ERR_RANGE);
    imrt_gamma_defaults(&opt);
    opt.step_mm = 0.01;
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, &opt, &r, NULL), IMRT_ERR_RANGE);
    imrt_gamma_defaults(&opt);
    opt.threshold_pct = 100.0;
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, &opt, &r, NULL), IMRT_ERR_RANGE);
    d[5] = INFINITY;
    assert_int_equal(imrt_gamma(NULL, &g, d, &g, d, NULL, &r, NULL), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "voxel 5"));
    assert_int_equal(imrt_gamma(NULL, &g, NULL, &g, d, NULL, &r, NULL), IMRT_ERR_ARG);
    d[5] = 1.0f;
    for (long n = 1; n <= 3; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_gamma(NULL, &g, d, &g, d, NULL, &r, NULL);
        imrt_alloc_fail_after(0);
        assert_true(st == IMRT_OK || st == IMRT_ERR_NOMEM);
    }
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_grids_give_zero),
        cmocka_unit_test(test_uniform_scaled_dose),
        cmocka_unit_test(test_plateau_and_penumbra_scaled_5pct),
        cmocka_unit_test(test_subvoxel_shift_passes),
        cmocka_unit_test(test_ramp_hand_computed),
        cmocka_unit_test(test_local_versus_global),
        cmocka_unit_test(test_different_grids),
        cmocka_unit_test(test_low_dose_threshold),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_gamma_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
