/*
 * tests/test_grid.c - voxel grid: validation, index <-> coordinate maps,
 * bounds, and the DICOM/NIfTI index order (x fastest).
 */
#include "imrt/grid.h"

#include "test_util.h"

static void test_init_rejects_bad_values(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_int_equal(imrt_grid_init(&g, 0, 10, 10, 1, 1, 1, o), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "nx = 0"));
    assert_int_equal(imrt_grid_init(&g, 10, 10, IMRT_GRID_MAX_DIM + 1, 1, 1, 1, o),
                     IMRT_ERR_RANGE);
    assert_int_equal(imrt_grid_init(&g, 10, 10, 10, 1, -2.5, 1, o), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "dy = -2.5"));
    assert_int_equal(imrt_grid_init(&g, 10, 10, 10, 1, NAN, 1, o), IMRT_ERR_RANGE);
    const double bad_o[3] = {0, INFINITY, 0};
    assert_int_equal(imrt_grid_init(&g, 10, 10, 10, 1, 1, 1, bad_o), IMRT_ERR_RANGE);
    /* 4096^3 voxels is over the total limit even though each axis is allowed */
    assert_int_equal(imrt_grid_init(&g, 4096, 4096, 4096, 1, 1, 1, o), IMRT_ERR_RANGE);
    assert_int_equal(imrt_grid_init(NULL, 1, 1, 1, 1, 1, 1, o), IMRT_ERR_ARG);
}

static void test_index_order_is_x_fastest(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {-10, -20, -30};
    assert_ok(imrt_grid_init(&g, 4, 3, 2, 2.5, 2.5, 3.0, o));
    assert_int_equal(imrt_grid_nvox(&g), 24);
    assert_int_equal(imrt_grid_index(&g, 1, 0, 0), 1);
    assert_int_equal(imrt_grid_index(&g, 0, 1, 0), 4);
    assert_int_equal(imrt_grid_index(&g, 0, 0, 1), 12);
    assert_int_equal(imrt_grid_index(&g, 3, 2, 1), 23);
    for (int64_t v = 0; v < imrt_grid_nvox(&g); v++) {
        int i, j, k;
        imrt_grid_ijk(&g, v, &i, &j, &k);
        assert_int_equal(imrt_grid_index(&g, i, j, k), v);
    }
}

static void test_coordinates(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {-10, -20, -30};
    assert_ok(imrt_grid_init(&g, 4, 3, 2, 2.5, 2.0, 3.0, o));
    double c[3];
    imrt_grid_center(&g, 3, 2, 1, c);
    assert_close(c[0], -10 + 3 * 2.5, 0, 1e-12);
    assert_close(c[1], -20 + 2 * 2.0, 0, 1e-12);
    assert_close(c[2], -30 + 1 * 3.0, 0, 1e-12);
    double ijk[3];
    imrt_grid_continuous(&g, c, ijk);
    assert_close(ijk[0], 3, 0, 1e-12);
    assert_close(ijk[1], 2, 0, 1e-12);
    assert_close(ijk[2], 1, 0, 1e-12);
    int v[3];
    /* a point 1.2 mm (< half spacing) off a centre still locates that voxel */
    const double p[3] = {c[0] + 1.2, c[1] - 0.9, c[2] + 1.4};
    assert_int_equal(imrt_grid_locate(&g, p, v), 1);
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 1);
    const double outside[3] = {c[0] + 1.3, c[1], c[2]};
    assert_int_equal(imrt_grid_locate(&g, outside, v), 0);
    double lo[3], hi[3];
    imrt_grid_bounds(&g, lo, hi);
    assert_close(lo[0], -11.25, 0, 1e-12);
    assert_close(hi[0], -10 + 3.5 * 2.5, 0, 1e-12);
    assert_close(hi[2], -30 + 1.5 * 3.0, 0, 1e-12);
    /* voxel volume: 2.5 x 2 x 3 mm^3 = 0.015 cm^3 */
    assert_close(imrt_grid_voxel_cc(&g), 0.015, 1e-12, 0);
}

static void test_equal(void **state)
{
    (void)state;
    imrt_grid a, b;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&a, 4, 3, 2, 1, 1, 1, o));
    b = a;
    assert_true(imrt_grid_equal(&a, &b));
    b.origin[1] += 0.01;
    assert_false(imrt_grid_equal(&a, &b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_values),
        cmocka_unit_test(test_index_order_is_x_fastest),
        cmocka_unit_test(test_coordinates),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
