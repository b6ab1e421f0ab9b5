/*
 * tests/test_dosegrid.c - the dose grid: a phantom resampled to a coarser
 * spacing keeps its physical extent and centre, averages density by
 * overlap volume (checked against block means and a brute-force overlap
 * sum), conserves mass, and
 * samples structure masks at the dose-voxel centres.
 */
#include "imrt/alloc.h"
#include "imrt/dose.h"

#include "test_util.h"

/* 1 mm phantom 30 x 24 x 18 with density 1 + 0.01 x + 0.02 y - 0.005 z and a sphere. */
static imrt_phantom *fine_phantom(void)
{
    imrt_grid g;
    const double o[3] = {-14.5, -11.5, -8.5};
    assert_ok(imrt_grid_init(&g, 30, 24, 18, 1, 1, 1, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "fine", 0.0f, &p));
    int s;
    assert_ok(imrt_phantom_add_structure(p, "BALL", IMRT_KIND_TARGET, 1, &s));
    for (int k = 0; k < 18; k++)
        for (int j = 0; j < 24; j++)
            for (int i = 0; i < 30; i++) {
                double c[3];
                imrt_grid_center(&g, i, j, k, c);
                const int64_t v = imrt_grid_index(&g, i, j, k);
                p->density[v] = (float)(1 + 0.01 * c[0] + 0.02 * c[1] - 0.005 * c[2]);
                p->structures[s].mask[v] = c[0] * c[0] + c[1] * c[1] + c[2] * c[2] < 64;
            }
    imrt_structure_recount(p, &p->structures[s]);
    return p;
}

static void test_same_spacing_is_a_copy(void **state)
{
    (void)state;
    imrt_phantom *p = fine_phantom(), *q = NULL;
    assert_ok(imrt_phantom_resample(p, NULL, &q));
    assert_true(imrt_grid_equal(&p->grid, &q->grid));
    const int64_t n = imrt_grid_nvox(&p->grid);
    assert_memory_equal(p->density, q->density, (size_t)n * sizeof(float));
    assert_memory_equal(p->structures[0].mask, q->structures[0].mask, (size_t)n);
    assert_int_equal(q->structures[0].count, p->structures[0].count);
    imrt_phantom_destroy(&q);
    /* a plan with dose_grid_mm = 0 keeps the phantom grid */
    imrt_plan *plan = NULL;
    assert_ok(imrt_plan_create(&plan));
    assert_ok(imrt_dose_grid_phantom(p, plan, &q));
    assert_true(imrt_grid_equal(&p->grid, &q->grid));
    imrt_phantom_destroy(&q);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

static void test_block_means(void **state)
{
    (void)state;
    imrt_phantom *p = fine_phantom(), *q = NULL;
    const double s[3] = {3, 3, 3}; /* divides 30, 24, 18: pure 3x3x3 blocks */
    assert_ok(imrt_phantom_resample(p, s, &q));
    assert_int_equal(q->grid.nx, 10);
    assert_int_equal(q->grid.ny, 8);
    assert_int_equal(q->grid.nz, 6);
    double lo[3], hi[3], lo2[3], hi2[3];
    imrt_grid_bounds(&p->grid, lo, hi);
    imrt_grid_bounds(&q->grid, lo2, hi2);
    for (int a = 0; a < 3; a++) {
        assert_close(lo[a], lo2[a], 0, 1e-12);
        assert_close(hi[a], hi2[a], 0, 1e-12);
    }
    double mass_f = 0, mass_c = 0;
    for (int64_t v = 0; v < imrt_grid_nvox(&p->grid); v++)
        mass_f += (double)p->density[v];
    for (int K = 0; K < 6; K++)
        for (int J = 0; J < 8; J++)
            for (int I = 0; I < 10; I++) {
                double m = 0;
                for (int k = 0; k < 3; k++)
                    for (int j = 0; j < 3; j++)
                        for (int i = 0; i < 3; i++)
                            m += (double)p->density[imrt_grid_index(&p->grid, 3 * I + i, 3 * J + j,
                                                                     3 * K + k)];
                const double got = (double)q->density[imrt_grid_index(&q->grid, I, J, K)];
                assert_close(got, m / 27, 1e-6, 0);
                mass_c += got * 27;
            }
    assert_close(mass_c, mass_f, 1e-6, 0); /* mass conserved */
    imrt_phantom_destroy(&q);
    imrt_phantom_destroy(&p);
}

static void test_linear_density_and_masks(void **state)
{
    (void)state;
    imrt_phantom *p = fine_phantom(), *q = NULL;
    const double s[3] = {4, 2.5, 7}; /* not divisors: the coarse grid overhangs */
    assert_ok(imrt_phantom_resample(p, s, &q));
    assert_int_equal(q->grid.nx, 8);  /* ceil(30 / 4) */
    assert_int_equal(q->grid.ny, 10); /* ceil(24 / 2.5) */
    assert_int_equal(q->grid.nz, 3);  /* ceil(18 / 7) */
    /* same centre */
    for (int a = 0; a < 3; a++) {
        const double cf = p->grid.origin[a] + 0.5 * ((&p->grid.nx)[a] - 1) * (&p->grid.dx)[a];
        const double cc = q->grid.origin[a] + 0.5 * ((&q->grid.nx)[a] - 1) * (&q->grid.dx)[a];
        assert_close(cf, cc, 0, 1e-12);
    }
    int inside = 0;
    for (int K = 0; K < q->grid.nz; K++)
        for (int J = 0; J < q->grid.ny; J++)
            for (int I = 0; I < q->grid.nx; I++) {
                double c[3];
                imrt_grid_center(&q->grid, I, J, K, c);
                /* overlap-weighted mean of the fine voxels, by brute force */
                double num = 0, den = 0;
                for (int64_t f = 0; f < imrt_grid_nvox(&p->grid); f++) {
                    int i, j, k;
                    double fc[3], ov = 1;
                    imrt_grid_ijk(&p->grid, f, &i, &j, &k);
                    imrt_grid_center(&p->grid, i, j, k, fc);
                    for (int a = 0; a < 3; a++) {
                        const double h = 0.5 * (&q->grid.dx)[a];
                        ov *= fmax(0.0, fmin(c[a] + h, fc[a] + 0.5) - fmax(c[a] - h, fc[a] - 0.5));
                    }
                    num += ov * (double)p->density[f];
                    den += ov;
                }
                const double expect = num / den;
                const int64_t v = imrt_grid_index(&q->grid, I, J, K);
                assert_close(q->density[v], expect, 1e-5, 0);
                /* masks sampled at the dose-voxel centre */
                const double r2 = c[0] * c[0] + c[1] * c[1] + c[2] * c[2];
                int f[3];
                int expect_in = imrt_grid_locate(&p->grid, c, f) &&
                                p->structures[0].mask[imrt_grid_index(&p->grid, f[0], f[1], f[2])];
                assert_int_equal(q->structures[0].mask[v], expect_in);
                if (r2 < 36)
                    assert_int_equal(q->structures[0].mask[v], 1);
                if (r2 > 100)
                    assert_int_equal(q->structures[0].mask[v], 0);
                inside += q->structures[0].mask[v];
            }
    assert_int_equal(q->structures[0].count, inside);
    assert_string_equal(q->structures[0].name, "BALL");
    imrt_phantom_destroy(&q);
    /* the plan route: dose_grid_mm with one axis left at the phantom spacing */
    imrt_plan *plan = NULL;
    assert_ok(imrt_plan_create(&plan));
    plan->dose_grid_mm[0] = 2;
    plan->dose_grid_mm[1] = 2;
    assert_ok(imrt_dose_grid_phantom(p, plan, &q));
    assert_int_equal(q->grid.nx, 15);
    assert_int_equal(q->grid.ny, 12);
    assert_int_equal(q->grid.nz, 18);
    imrt_phantom_destroy(&q);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

static void test_errors(void **state)
{
    (void)state;
    imrt_phantom *p = fine_phantom(), *q = NULL;
    const double zero[3] = {0, 1, 1}, nan_s[3] = {1, NAN, 1}, big[3] = {1, 1, 2000};
    assert_int_equal(imrt_phantom_resample(p, zero, &q), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "x = 0"));
    assert_int_equal(imrt_phantom_resample(p, nan_s, &q), IMRT_ERR_RANGE);
    assert_int_equal(imrt_phantom_resample(p, big, &q), IMRT_ERR_RANGE);
    assert_null(q);
    assert_int_equal(imrt_phantom_resample(NULL, NULL, &q), IMRT_ERR_ARG);
    const double s[3] = {2, 2, 2};
    for (long n = 1; n < 50; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_phantom_resample(p, s, &q);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            imrt_phantom_destroy(&q);
            break;
        }
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(q);
    }
    imrt_phantom_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_spacing_is_a_copy),
        cmocka_unit_test(test_block_means),
        cmocka_unit_test(test_linear_density_and_masks),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
