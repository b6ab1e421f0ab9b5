/*
 * tests/test_raytrace.c - exact voxel traversal against analytic answers:
 * straight and diagonal rays through homogeneous boxes, a slab of known
 * thickness and density, rays grazing faces, edges and corners, segment
 * lengths summing to the clipped chord, reversal symmetry; and the
 * radiological-depth cube (reference vs fused kernel, thread independence,
 * water depth = geometric depth).
 */
#include "imrt/context.h"
#include "imrt/raytrace.h"

#include "test_util.h"

#include <omp.h>

static void make_grid(imrt_grid *g, int nx, int ny, int nz, double dx, double dy, double dz,
                      double ox, double oy, double oz)
{
    const double o[3] = {ox, oy, oz};
    assert_ok(imrt_grid_init(g, nx, ny, nz, dx, dy, dz, o));
}

static double trace_total(const imrt_grid *g, const double a[3], const double b[3],
                          imrt_ray_segment *seg, int64_t *n)
{
    assert_ok(imrt_raytrace(g, a, b, seg, imrt_raytrace_capacity(g), n));
    double s = 0;
    for (int64_t q = 0; q < *n; q++) {
        assert_true(seg[q].length > 0);
        assert_true(seg[q].voxel >= 0 && seg[q].voxel < imrt_grid_nvox(g));
        s += seg[q].length;
    }
    return s;
}

/* Independent slab clip of segment a->b against the closed grid box. */
static double clipped_chord(const imrt_grid *g, const double a[3], const double b[3])
{
    double lo[3], hi[3];
    imrt_grid_bounds(g, lo, hi);
    double t0 = 0, t1 = 1, len2 = 0;
    for (int ax = 0; ax < 3; ax++) {
        const double d = b[ax] - a[ax];
        len2 += d * d;
        if (d == 0) {
            if (a[ax] < lo[ax] || a[ax] > hi[ax])
                return 0;
            continue;
        }
        double ta = (lo[ax] - a[ax]) / d, tb = (hi[ax] - a[ax]) / d;
        if (ta > tb) {
            double t = ta;
            ta = tb;
            tb = t;
        }
        t0 = fmax(t0, ta);
        t1 = fmin(t1, tb);
    }
    return t1 > t0 ? (t1 - t0) * sqrt(len2) : 0;
}

static void test_straight_ray(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 10, 5, 5, 2, 2, 2, 0, 0, 0); /* x faces at -1, 1, ..., 19 */
    imrt_ray_segment seg[64];
    int64_t n;
    const double a[3] = {-50, 4, 4}, b[3] = {50, 4, 4};
    assert_close(trace_total(&g, a, b, seg, &n), 20.0, 1e-12, 0);
    assert_int_equal(n, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(seg[i].voxel, imrt_grid_index(&g, i, 2, 2));
        assert_close(seg[i].length, 2.0, 1e-12, 0);
    }
    /* the reverse ray visits the same voxels backwards */
    assert_close(trace_total(&g, b, a, seg, &n), 20.0, 1e-12, 0);
    assert_int_equal(n, 10);
    assert_int_equal(seg[0].voxel, imrt_grid_index(&g, 9, 2, 2));
    /* a ray that stops at a voxel centre counts half of that voxel */
    const double c[3] = {8, 4, 4}; /* centre of voxel 4 */
    assert_close(trace_total(&g, a, c, seg, &n), 9.0, 1e-12, 0);
    assert_int_equal(n, 5);
    assert_close(seg[4].length, 1.0, 1e-12, 0);
}

static void test_diagonal_through_corners(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 8, 8, 8, 1, 1, 1, 0, 0, 0); /* box [-0.5, 7.5]^3 */
    imrt_ray_segment seg[64];
    int64_t n;
    /* the space diagonal passes exactly through the corners of voxels (i,i,i) */
    const double a[3] = {-1.5, -1.5, -1.5}, b[3] = {8.5, 8.5, 8.5};
    assert_close(trace_total(&g, a, b, seg, &n), 8 * sqrt(3.0), 1e-12, 0);
    assert_int_equal(n, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(seg[i].voxel, imrt_grid_index(&g, i, i, i));
        assert_close(seg[i].length, sqrt(3.0), 1e-9, 0);
    }
    /* a 2-D diagonal at 45 degrees in a plane of voxel centres (z = 3) */
    const double c[3] = {-0.5, -0.5, 3}, d[3] = {7.5, 7.5, 3};
    assert_close(trace_total(&g, c, d, seg, &n), 8 * sqrt(2.0), 1e-12, 0);
    assert_int_equal(n, 8);
}

static void test_slab_of_known_thickness(void **state)
{
    (void)state;
    /* water 1.0 with a 20 mm slab of RED 1.7 between y = 50 and 70 mm */
    imrt_grid g;
    make_grid(&g, 40, 100, 20, 5, 1, 5, -97.5, 0.5, -47.5); /* y from 0 to 100, x +-100 */
    const int64_t nvox = imrt_grid_nvox(&g);
    float *rho = malloc((size_t)nvox * sizeof *rho);
    for (int k = 0; k < 20; k++)
        for (int j = 0; j < 100; j++)
            for (int i = 0; i < 40; i++)
                rho[imrt_grid_index(&g, i, j, k)] = (j >= 50 && j < 70) ? 1.7f : 1.0f;
    /* vertical ray from far above to y = 90: 90 mm of path, 20 of it at 1.7 */
    const double s[3] = {0.3, -1000, 0.2}, p[3] = {0.3, 90, 0.2};
    assert_close(imrt_raytrace_depth(&g, rho, s, p), 70 + 20 * (double)1.7f, 1e-12, 0);
    /* oblique ray at 30 degrees from the y axis: every path length grows by 1/cos */
    const double th = 30 * 3.14159265358979323846 / 180;
    const double q[3] = {0, 90, 0};
    const double s2[3] = {q[0] - 2000 * sin(th), q[1] - 2000 * cos(th), 0};
    assert_close(imrt_raytrace_depth(&g, rho, s2, q), (70 + 20 * (double)1.7f) / cos(th), 1e-10, 0);
    free(rho);
}

static void test_grazing_faces_edges_corners(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 6, 6, 6, 2, 2, 2, 1, 1, 1); /* box [0, 12]^3, interior planes at 2, 4, ... */
    imrt_ray_segment seg[64];
    int64_t n;
    /* along an interior plane x = 4 (between voxels 1 and 2): the + side voxel */
    const double a[3] = {4, -5, 5}, b[3] = {4, 20, 5};
    assert_close(trace_total(&g, a, b, seg, &n), 12.0, 1e-12, 0);
    assert_int_equal(n, 6);
    for (int q = 0; q < n; q++) {
        int i, j, k;
        imrt_grid_ijk(&g, seg[q].voxel, &i, &j, &k);
        assert_int_equal(i, 2);
        assert_int_equal(j, q);
        assert_int_equal(k, 2);
    }
    /* along an interior edge (x = 4, z = 6) */
    const double c[3] = {4, -5, 6}, d[3] = {4, 20, 6};
    assert_close(trace_total(&g, c, d, seg, &n), 12.0, 1e-12, 0);
    /* on the outer faces: the lower face x = 0 and the upper face x = 12 */
    const double e[3] = {0, -5, 5}, f[3] = {0, 20, 5};
    assert_close(trace_total(&g, e, f, seg, &n), 12.0, 1e-12, 0);
    const double e2[3] = {12, -5, 5}, f2[3] = {12, 20, 5};
    assert_close(trace_total(&g, e2, f2, seg, &n), 12.0, 1e-12, 0);
    /* a ray touching the box in a single corner has no length inside */
    const double h[3] = {-1, 1, 0}, k2[3] = {1, -1, 0};
    assert_close(trace_total(&g, h, k2, seg, &n), 0.0, 0, 1e-9);
    /* a ray that misses entirely */
    const double m1[3] = {-1, -1, -1}, m2[3] = {-1, 20, 30};
    assert_close(trace_total(&g, m1, m2, seg, &n), 0.0, 0, 0);
    assert_int_equal(n, 0);
    /* a zero-length ray */
    assert_close(trace_total(&g, a, a, seg, &n), 0.0, 0, 0);
}

static void test_lengths_sum_to_chord(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 17, 11, 7, 1.3, 2.1, 3.7, -5, 2, 7);
    const int64_t cap = imrt_raytrace_capacity(&g);
    imrt_ray_segment *seg = malloc((size_t)cap * sizeof *seg);
    double lo[3], hi[3];
    imrt_grid_bounds(&g, lo, hi);
    unsigned s = 12345;
    double worst = 0;
    for (int r = 0; r < 5000; r++) {
        double a[3], b[3];
        for (int ax = 0; ax < 3; ax++) {
            const double w = hi[ax] - lo[ax];
            s = s * 1103515245u + 12345u;
            a[ax] = lo[ax] - w + 3 * w * (double)(s >> 8) / 16777216.0;
            s = s * 1103515245u + 12345u;
            b[ax] = lo[ax] - w + 3 * w * (double)(s >> 8) / 16777216.0;
        }
        if (r % 7 == 0) /* some rays parallel to an axis */
            b[r % 3] = a[r % 3];
        int64_t n;
        double tot = trace_total(&g, a, b, seg, &n);
        double err = fabs(tot - clipped_chord(&g, a, b));
        worst = fmax(worst, err);
        /* consecutive segments are face neighbours, or equal after a skipped
         * edge/corner crossing; reversal gives the same voxels backwards */
        int64_t nr;
        imrt_ray_segment *rev = malloc((size_t)cap * sizeof *rev);
        double totr = trace_total(&g, b, a, rev, &nr);
        assert_close(totr, tot, 1e-12, 1e-9);
        if (nr == n)
            for (int64_t q = 0; q < n; q++)
                if (seg[q].length > 1e-6 && rev[n - 1 - q].length > 1e-6)
                    assert_int_equal(seg[q].voxel, rev[n - 1 - q].voxel);
        free(rev);
    }
    print_message("worst |sum of lengths - clipped chord| over 5000 rays: %.3g mm\n", worst);
    assert_true(worst < 1e-9);
    free(seg);
}

static void test_capacity_checked(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 4, 4, 4, 1, 1, 1, 0, 0, 0);
    imrt_ray_segment seg[4];
    int64_t n;
    const double a[3] = {0, 0, 0}, b[3] = {3, 3, 3};
    assert_int_equal(imrt_raytrace(&g, a, b, seg, 4, &n), IMRT_ERR_ARG);
}

/* Depth cube of a heterogeneous phantom: reference (segments) and fused kernels agree,
 * any thread count gives the same bits, and water depth equals geometric depth. */
static void test_depth_cube(void **state)
{
    (void)state;
    imrt_grid g;
    make_grid(&g, 30, 40, 20, 3, 2.5, 4, -43.5, -48.75, -38);
    const int64_t nvox = imrt_grid_nvox(&g);
    float *rho = malloc((size_t)nvox * sizeof *rho);
    float *d1 = malloc((size_t)nvox * sizeof *d1), *d2 = malloc((size_t)nvox * sizeof *d2);
    float *d3 = malloc((size_t)nvox * sizeof *d3);
    unsigned s = 7;
    for (int64_t v = 0; v < nvox; v++) {
        s = s * 1103515245u + 12345u;
        rho[v] = 0.2f + 1.6f * (float)(s >> 8) / 16777216.0f;
    }
    const double src[3] = {300, -900, 150};
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    imrt_context_set_kernels(ctx, IMRT_KERNELS_REFERENCE);
    assert_ok(imrt_depth_cube(ctx, &g, rho, src, NULL, 0, d1));
    imrt_context_set_kernels(ctx, IMRT_KERNELS_OPTIMISED);
    assert_ok(imrt_context_set_threads(ctx, 1));
    assert_ok(imrt_depth_cube(ctx, &g, rho, src, NULL, 0, d2));
    assert_ok(imrt_context_set_threads(ctx, 3));
    assert_ok(imrt_depth_cube(ctx, &g, rho, src, NULL, 0, d3));
    for (int64_t v = 0; v < nvox; v++) {
        assert_close(d1[v], d2[v], 1e-6, 1e-5);
        assert_true(memcmp(&d2[v], &d3[v], sizeof(float)) == 0);
    }
    /* water: the depth of a voxel centre is the distance from where the ray enters */
    for (int64_t v = 0; v < nvox; v++)
        rho[v] = 1.0f;
    const double top[3] = {0, -2000, 0};
    assert_ok(imrt_depth_cube(ctx, &g, rho, top, NULL, 0, d1));
    double lo[3], hi[3];
    imrt_grid_bounds(&g, lo, hi);
    for (int64_t v = 0; v < nvox; v += 37) {
        int i, j, k;
        double c[3];
        imrt_grid_ijk(&g, v, &i, &j, &k);
        imrt_grid_center(&g, i, j, k, c);
        /* the ray from top to c enters through the face y = lo[1] */
        const double t = (lo[1] - top[1]) / (c[1] - top[1]);
        const double len = sqrt((c[0] - top[0]) * (c[0] - top[0]) + (c[1] - top[1]) * (c[1] - top[1]) +
                                (c[2] - top[2]) * (c[2] - top[2]));
        assert_close(d1[v], (1 - t) * len, 1e-6, 1e-4);
    }
    /* a subset of voxels */
    const int64_t list[3] = {5, 700, nvox - 1};
    float sub[3];
    assert_ok(imrt_depth_cube(ctx, &g, rho, top, list, 3, sub));
    for (int q = 0; q < 3; q++)
        assert_true(memcmp(&sub[q], &d1[list[q]], sizeof(float)) == 0);
    imrt_context_destroy(&ctx);
    free(rho);
    free(d1);
    free(d2);
    free(d3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_straight_ray),
        cmocka_unit_test(test_diagonal_through_corners),
        cmocka_unit_test(test_slab_of_known_thickness),
        cmocka_unit_test(test_grazing_faces_edges_corners),
        cmocka_unit_test(test_lengths_sum_to_chord),
        cmocka_unit_test(test_capacity_checked),
        cmocka_unit_test(test_depth_cube),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
