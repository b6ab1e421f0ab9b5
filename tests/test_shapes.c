/*
 * tests/test_shapes.c - analytic solids and margins: voxel-centre volumes
 * of every solid type against their analytic volumes, exact voxel counts of
 * boxes, orientation of frames and C-shape gaps, Euclidean expansions and
 * shrinks against a brute-force reference, and the 20 mm sphere + 5 mm =
 * 25 mm sphere check.
 *
 * Tolerances. Marking a voxel when its centre is inside a solid counts the
 * lattice points of the solid; the error comes from the boundary voxels.
 * (1) On a 0.5 mm grid the solids below (20-40 mm across) are 40-80 voxels
 * wide: the boundary error is a few tenths of a percent, and 1 % holds it
 * with margin. (2) On the planning grid (2.5 mm) a single placement can be
 * off by several percent, but the count is unbiased: averaged over uniform
 * random sub-voxel shifts of the grid, the expected voxel volume equals the
 * analytic volume exactly (each voxel centre is then uniformly distributed
 * in its cell). With 64 shifts the standard error is about a quarter of a
 * percent, so 1 % is a 4-sigma bound. (3) The rigorous bound: a voxel whose
 * membership differs from the solid's lies within its cell diagonal
 * sqrt(3) h of the surface, so for a sphere of radius R the error is at
 * most the volume of the shell R +/- sqrt(3) h.
 */
#include "imrt/grid.h"
#include "imrt/phantom.h"
#include "shapes_impl.h"

#include "test_util.h"

#define PI 3.14159265358979323846

static imrt_grid cube_grid(double h, double half_extent, const double shift[3])
{
    imrt_grid g;
    int n = (int)ceil(2.0 * half_extent / h);
    double o[3];
    for (int a = 0; a < 3; a++)
        o[a] = -0.5 * (n - 1) * h + (shift ? shift[a] : 0.0);
    assert_ok(imrt_grid_init(&g, n, n, n, h, h, h, o));
    return g;
}

static double voxel_volume_mm3(const imrt_shape *s, const imrt_grid *g)
{
    uint8_t *m = calloc((size_t)imrt_grid_nvox(g), 1);
    assert_non_null(m);
    int64_t n = imrt_shape_rasterise(s, g, m, 1);
    assert_int_equal(n, imrt_mask_count(g, m));
    free(m);
    return (double)n * g->dx * g->dy * g->dz;
}

static void set_axis(imrt_shape *s, double x, double y, double z, const double *ref)
{
    double n = sqrt(x * x + y * y + z * z);
    s->axis[0] = x / n;
    s->axis[1] = y / n;
    s->axis[2] = z / n;
    assert_true(imrt_shape_frame(s->axis, ref, s->u, s->v));
}

/* One solid of each kind, placed off the grid's symmetry. */
static int make_solids(imrt_shape *out)
{
    int n = 0;
    imrt_shape s;
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_SPHERE;
    s.c[0] = 1.3; s.c[1] = -0.7; s.c[2] = 0.4;
    s.r1 = 15.0;
    out[n++] = s;

    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_ELLIPSOID;
    s.c[0] = -0.9; s.c[1] = 0.6; s.c[2] = 1.1;
    s.half[0] = 18.0; s.half[1] = 11.0; s.half[2] = 14.0;
    out[n++] = s;

    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_CYLINDER; /* along y */
    s.c[0] = 0.3; s.c[1] = 0.2; s.c[2] = -0.8;
    set_axis(&s, 0, 1, 0, NULL);
    s.r1 = s.r2 = 12.0;
    s.half_len = 16.0;
    out[n++] = s;

    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_CYLINDER; /* elliptic, oblique axis, oriented */
    s.c[0] = 0.5; s.c[1] = -1.2; s.c[2] = 0.9;
    const double ref[3] = {1, 1, 0};
    set_axis(&s, 1, -1, 2, ref);
    s.r1 = 13.0;
    s.r2 = 7.0;
    s.half_len = 14.0;
    out[n++] = s;

    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_SECTOR; /* TG-119-like C: r 8..19, 90 degree gap */
    s.c[0] = -0.4; s.c[1] = 0.8; s.c[2] = 0.1;
    set_axis(&s, 0, 0, 1, NULL);
    s.r1 = 8.0;
    s.r2 = 19.0;
    s.half_len = 17.0;
    s.arc_deg = 270.0;
    s.arc_dir[0] = 0.0;
    s.arc_dir[1] = 1.0; /* covered arc centred on +y, gap on -y */
    s.arc_cos = cos(0.5 * 270.0 * PI / 180.0);
    out[n++] = s;

    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_BOX;
    s.c[0] = 0.37; s.c[1] = -0.81; s.c[2] = 0.23;
    s.half[0] = 16.2; s.half[1] = 9.7; s.half[2] = 12.9;
    out[n++] = s;
    return n;
}

static void test_volumes_fine_grid(void **state)
{
    (void)state;
    imrt_shape solids[8];
    int n = make_solids(solids);
    imrt_grid g = cube_grid(0.5, 26.0, NULL);
    for (int i = 0; i < n; i++) {
        double exact = imrt_shape_volume_mm3(&solids[i]);
        double vox = voxel_volume_mm3(&solids[i], &g);
        assert_true(imrt_shape_inside_grid(&solids[i], &g));
        print_message("%-14s analytic %9.1f mm3  voxels(0.5 mm) %9.1f  error %+.3f %%\n",
                      imrt_shape_type_name(solids[i].type), exact, vox,
                      100.0 * (vox - exact) / exact);
        assert_close(vox, exact, 0.01, 0.0);
    }
}

/* Deterministic uniform numbers in [0, 1) (64-bit LCG, high bits). */
static double lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

static void test_volumes_shift_average(void **state)
{
    (void)state;
    imrt_shape solids[8];
    int n = make_solids(solids);
    const double h = 2.5;
    uint64_t seed = 12345;
    for (int i = 0; i < n; i++) {
        double exact = imrt_shape_volume_mm3(&solids[i]);
        double sum = 0.0, worst = 0.0;
        const int K = 64;
        for (int k = 0; k < K; k++) {
            double shift[3] = {h * lcg(&seed), h * lcg(&seed), h * lcg(&seed)};
            imrt_grid g = cube_grid(h, 30.0, shift);
            double v = voxel_volume_mm3(&solids[i], &g);
            sum += v;
            worst = fmax(worst, fabs(v - exact) / exact);
        }
        double mean = sum / K;
        print_message("%-14s 2.5 mm: mean of %d shifts %+.3f %%, worst single %.2f %%\n",
                      imrt_shape_type_name(solids[i].type), K, 100.0 * (mean - exact) / exact,
                      100.0 * worst);
        assert_close(mean, exact, 0.01, 0.0);
    }
}

static void test_sphere_rigorous_bound(void **state)
{
    (void)state;
    imrt_shape s;
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_SPHERE;
    s.r1 = 20.0;
    for (int step = 0; step < 3; step++) {
        double h = step == 0 ? 2.0 : step == 1 ? 2.5 : 4.0;
        imrt_grid g = cube_grid(h, 30.0, NULL);
        double t = sqrt(3.0) * h;
        double bound = 4.0 / 3.0 * PI * (pow(20.0 + t, 3) - pow(20.0 - t, 3));
        double exact = 4.0 / 3.0 * PI * 8000.0;
        double vox = voxel_volume_mm3(&s, &g);
        assert_true(fabs(vox - exact) <= bound);
    }
}

/* Box faces that do not sit on voxel centres: the count is exactly the
 * product over axes of the centres inside [c - half, c + half]. */
static void test_box_exact_count(void **state)
{
    (void)state;
    imrt_shape s;
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_BOX;
    s.c[0] = 3.1; s.c[1] = -7.3; s.c[2] = 0.6;
    s.half[0] = 21.4; s.half[1] = 8.2; s.half[2] = 13.0;
    imrt_grid g;
    const double o[3] = {-40.0, -31.0, -22.0};
    assert_ok(imrt_grid_init(&g, 40, 30, 25, 2.0, 2.5, 1.75, o));
    const int nn[3] = {g.nx, g.ny, g.nz};
    const double hh[3] = {g.dx, g.dy, g.dz};
    int64_t expected = 1;
    for (int a = 0; a < 3; a++) {
        int cnt = 0;
        for (int i = 0; i < nn[a]; i++) {
            double x = o[a] + i * hh[a];
            if (x >= s.c[a] - s.half[a] && x <= s.c[a] + s.half[a])
                cnt++;
        }
        expected *= cnt;
    }
    uint8_t *m = calloc((size_t)imrt_grid_nvox(&g), 1);
    assert_int_equal(imrt_shape_rasterise(&s, &g, m, 1), expected);
    free(m);
}

static void test_frames_and_orientation(void **state)
{
    (void)state;
    /* an elliptic cylinder along y with radii (x, z) = (20, 6) */
    imrt_shape s;
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_CYLINDER;
    set_axis(&s, 0, 1, 0, NULL);
    s.r1 = 20.0;
    s.r2 = 6.0;
    s.half_len = 10.0;
    double lo[3], hi[3];
    imrt_shape_bbox(&s, lo, hi);
    assert_close(hi[0], 20.0, 0, 1e-9);
    assert_close(hi[1], 10.0, 0, 1e-9);
    assert_close(hi[2], 6.0, 0, 1e-9);
    const double px[3] = {19.0, 0.0, 0.0}, pz[3] = {0.0, 0.0, 19.0}, py[3] = {0.0, 9.9, 5.9};
    assert_true(imrt_shape_contains(&s, px));
    assert_false(imrt_shape_contains(&s, pz));
    assert_true(imrt_shape_contains(&s, py));
    /* frame of the z axis: u = x, v = y; of x: u = y, v = z */
    double u[3], v[3];
    const double zx[3] = {0, 0, 1}, xx[3] = {1, 0, 0};
    assert_true(imrt_shape_frame(zx, NULL, u, v));
    assert_close(u[0], 1, 0, 1e-12);
    assert_close(v[1], 1, 0, 1e-12);
    assert_true(imrt_shape_frame(xx, NULL, u, v));
    assert_close(u[1], 1, 0, 1e-12);
    assert_close(v[2], 1, 0, 1e-12);
    /* a reference parallel to the axis is refused */
    assert_false(imrt_shape_frame(zx, zx, u, v));

    /* the C-shape's gap faces anterior (-y) */
    imrt_shape solids[8];
    make_solids(solids);
    const imrt_shape *c = &solids[4];
    const double ant[3] = {-0.4, 0.8 - 13.0, 0.1}, post[3] = {-0.4, 0.8 + 13.0, 0.1};
    const double left[3] = {-0.4 + 13.0, 0.8, 0.1}, inner[3] = {-0.4, 0.8 + 5.0, 0.1};
    const double edge_in[3] = {-0.4 + 13.0 * cos(-40.0 * PI / 180), 0.8 + 13.0 * sin(-40.0 * PI / 180), 0.1};
    const double edge_out[3] = {-0.4 + 13.0 * cos(-50.0 * PI / 180), 0.8 + 13.0 * sin(-50.0 * PI / 180), 0.1};
    assert_false(imrt_shape_contains(c, ant));
    assert_true(imrt_shape_contains(c, post));
    assert_true(imrt_shape_contains(c, left));
    assert_false(imrt_shape_contains(c, inner));
    assert_true(imrt_shape_contains(c, edge_in));   /* 40 deg below +x: outside the 45 deg half gap */
    assert_false(imrt_shape_contains(c, edge_out)); /* 50 deg below +x: in the gap */

    /* half-space: kept side is where `axis` points */
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_HALFSPACE;
    s.c[1] = 5.0;
    set_axis(&s, 0, -1, 0, NULL);
    const double a4[3] = {0, 4, 0}, a6[3] = {0, 6, 0};
    assert_true(imrt_shape_contains(&s, a4));
    assert_false(imrt_shape_contains(&s, a6));
    assert_true(isinf(imrt_shape_volume_mm3(&s)));
}

/* ---- margins ---- */

/* The margin the rule of imrt/phantom.h applies on a side: m + offset x h
 * for m > 0, else 0. */
static double eff(double m, double h)
{
    return m > 0.0 ? m + IMRT_MARGIN_BOUNDARY_OFFSET * h : 0.0;
}

/* Brute-force expansion: p joins if some q of the input satisfies
 * sum_a ((p-q)_a / M_a(side))^2 <= 1 (M = 0: no movement on that side). */
static void brute_expand(const imrt_grid *g, const uint8_t *in, const double m0[6], uint8_t *out)
{
    const double h[3] = {g->dx, g->dy, g->dz};
    double m[6];
    for (int i = 0; i < 6; i++)
        m[i] = eff(m0[i], h[i / 2]);
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++) {
                int hit = 0;
                for (int kk = 0; kk < g->nz && !hit; kk++)
                    for (int jj = 0; jj < g->ny && !hit; jj++)
                        for (int ii = 0; ii < g->nx && !hit; ii++) {
                            if (!in[imrt_grid_index(g, ii, jj, kk)])
                                continue;
                            const int d[3] = {i - ii, j - jj, k - kk};
                            double q = 0.0;
                            int ok = 1;
                            for (int a = 0; a < 3 && ok; a++) {
                                if (d[a] == 0)
                                    continue;
                                double mm = d[a] > 0 ? m[2 * a + 1] : m[2 * a];
                                if (mm <= 0.0) {
                                    ok = 0;
                                    break;
                                }
                                double t = d[a] * h[a] / mm;
                                q += t * t;
                            }
                            if (ok && q <= 1.0 + 1e-9)
                                hit = 1;
                        }
                out[imrt_grid_index(g, i, j, k)] = (uint8_t)hit;
            }
}

/* Brute-force erosion: p stays if every grid voxel q reached from p by the
 * margin (q - p within the ellipsoid) is inside. */
static void brute_shrink(const imrt_grid *g, const uint8_t *in, const double m0[6], uint8_t *out)
{
    const double h[3] = {g->dx, g->dy, g->dz};
    double m[6];
    for (int i = 0; i < 6; i++)
        m[i] = eff(m0[i], h[i / 2]);
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++) {
                int keep = in[imrt_grid_index(g, i, j, k)] != 0;
                for (int kk = 0; kk < g->nz && keep; kk++)
                    for (int jj = 0; jj < g->ny && keep; jj++)
                        for (int ii = 0; ii < g->nx && keep; ii++) {
                            const int d[3] = {ii - i, jj - j, kk - k};
                            double q = 0.0;
                            int ok = 1;
                            for (int a = 0; a < 3 && ok; a++) {
                                if (d[a] == 0)
                                    continue;
                                double mm = d[a] > 0 ? m[2 * a + 1] : m[2 * a];
                                if (mm <= 0.0) {
                                    ok = 0;
                                    break;
                                }
                                double t = d[a] * h[a] / mm;
                                q += t * t;
                            }
                            if (ok && q <= 1.0 + 1e-9 && !in[imrt_grid_index(g, ii, jj, kk)])
                                keep = 0;
                        }
                out[imrt_grid_index(g, i, j, k)] = (uint8_t)keep;
            }
}

static void test_margins_match_brute_force(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 17, 13, 11, 2.0, 2.5, 3.0, o));
    int64_t n = imrt_grid_nvox(&g);
    uint8_t *in = calloc((size_t)n, 1), *a = calloc((size_t)n, 1), *b = calloc((size_t)n, 1);
    uint8_t *in2 = calloc((size_t)n, 1);
    uint64_t seed = 99;
    /* a few random blobs and single voxels, some touching the grid edge */
    for (int v = 0; v < 12; v++)
        in[(int64_t)(lcg(&seed) * (double)n)] = 1;
    for (int k = 3; k < 7; k++)
        for (int j = 0; j < 4; j++)
            for (int i = 5; i < 12; i++)
                in[imrt_grid_index(&g, i, j, k)] = 1;
    const double margins[][6] = {{5, 5, 5, 5, 5, 5},
                                 {4, 4, 7.5, 7.5, 3, 3},
                                 {0, 6, 2.5, 9, 6, 0},
                                 {3.9, 4.1, 0, 0, 8.9, 9.1},
                                 {0, 0, 0, 0, 0, 0}};
    for (size_t t = 0; t < sizeof margins / sizeof margins[0]; t++) {
        assert_ok(imrt_mask_expand(&g, in, margins[t], a));
        brute_expand(&g, in, margins[t], b);
        assert_memory_equal(a, b, (size_t)n);
        assert_ok(imrt_mask_shrink(&g, a, margins[t], a)); /* in place */
        memcpy(in2, b, (size_t)n);
        brute_shrink(&g, in2, margins[t], b);
        assert_memory_equal(a, b, (size_t)n);
    }
    /* a full grid does not erode at the grid edge */
    memset(in, 1, (size_t)n);
    assert_ok(imrt_mask_shrink(&g, in, margins[0], a));
    assert_int_equal(imrt_mask_count(&g, a), n);
    /* bad margins */
    const double bad[6] = {1, 1, -1, 1, 1, 1};
    assert_int_equal(imrt_mask_expand(&g, in, bad, a), IMRT_ERR_RANGE);
    const double nan6[6] = {1, 1, (double)NAN, 1, 1, 1};
    assert_int_equal(imrt_mask_shrink(&g, in, nan6, a), IMRT_ERR_RANGE);
    free(in);
    free(in2);
    free(a);
    free(b);
}

/* A 5 mm expansion of a sphere of radius 20 mm is the sphere of radius 25.
 * Exactly (triangle inequality): the expansion of the voxelised r=20 sphere
 * lies inside the voxelised sphere of radius 25 + 0.3 h (the margin rule of
 * imrt/phantom.h) and contains the r=20 sphere. In volume, averaged over 8
 * sub-voxel placements: within 2 % of 4/3 pi 25^3 on a 1 mm grid and within
 * 5 % on the 2.5 mm planning grid. The rule's residual error comes from the
 * few distinct voxel offsets a 2-voxel margin can take; measured means are
 * +0.7 % (1 mm) and +2.9 % (2.5 mm), see docs/phantoms.md. */
static void test_sphere_expansion(void **state)
{
    (void)state;
    uint64_t seed = 4242;
    for (int pass = 0; pass < 2; pass++) {
        double h = pass == 0 ? 1.0 : 2.5;
        double sum = 0.0;
        const int K = 8;
        for (int rep = 0; rep < K; rep++) {
            const double shift[3] = {h * lcg(&seed), h * lcg(&seed), h * lcg(&seed)};
            imrt_grid g = cube_grid(h, 34.0, shift);
            int64_t n = imrt_grid_nvox(&g);
            uint8_t *s20 = calloc((size_t)n, 1), *s25 = calloc((size_t)n, 1),
                    *e = calloc((size_t)n, 1);
            imrt_shape s;
            memset(&s, 0, sizeof s);
            s.type = IMRT_SHAPE_SPHERE;
            s.r1 = 20.0;
            imrt_shape_rasterise(&s, &g, s20, 1);
            s.r1 = 25.0 + IMRT_MARGIN_BOUNDARY_OFFSET * h;
            imrt_shape_rasterise(&s, &g, s25, 1);
            const double m[6] = {5, 5, 5, 5, 5, 5};
            assert_ok(imrt_mask_expand(&g, s20, m, e));
            for (int64_t v = 0; v < n; v++) {
                if (e[v])
                    assert_true(s25[v]);
                if (s20[v])
                    assert_true(e[v]);
            }
            sum += (double)imrt_mask_count(&g, e) * h * h * h;
            /* shrinking back by 5 mm keeps the r=20 sphere */
            assert_ok(imrt_mask_shrink(&g, e, m, e));
            for (int64_t v = 0; v < n; v++)
                if (s20[v])
                    assert_true(e[v]);
            free(s20);
            free(s25);
            free(e);
        }
        double vol = sum / K, exact = 4.0 / 3.0 * PI * 25.0 * 25.0 * 25.0;
        print_message("20 mm sphere + 5 mm at %.1f mm: %.1f mm3 vs %.1f (%+.2f %%)\n", h, vol,
                      exact, 100.0 * (vol - exact) / exact);
        assert_close(vol, exact, pass == 0 ? 0.02 : 0.05, 0.0);
    }
}

/* A 5 mm shell outside a 20 mm sphere has about the volume between the
 * 20 and 25 mm spheres (2.5 mm grid, same 5 % tolerance on the outer
 * sphere, i.e. 12 % of the shell). */
static void test_shell_volume(void **state)
{
    (void)state;
    const double shift[3] = {0.4, -0.9, 1.1};
    imrt_grid g = cube_grid(2.5, 34.0, shift);
    int64_t n = imrt_grid_nvox(&g);
    uint8_t *s20 = calloc((size_t)n, 1), *e = calloc((size_t)n, 1);
    imrt_shape s;
    memset(&s, 0, sizeof s);
    s.type = IMRT_SHAPE_SPHERE;
    s.r1 = 20.0;
    imrt_shape_rasterise(&s, &g, s20, 1);
    const double m[6] = {5, 5, 5, 5, 5, 5};
    assert_ok(imrt_mask_expand(&g, s20, m, e));
    int64_t ring = 0;
    for (int64_t v = 0; v < n; v++)
        ring += e[v] && !s20[v];
    double vol = (double)ring * 2.5 * 2.5 * 2.5;
    double exact = 4.0 / 3.0 * PI * (25.0 * 25.0 * 25.0 - 20.0 * 20.0 * 20.0);
    assert_close(vol, exact, 0.12, 0.0);
    free(s20);
    free(e);
}

/* Anisotropic expansion of a single voxel: the lattice points of an
 * ellipsoid with semi-axes (6, 10, 4) mm (+ 0.3 spacing, see phantom.h) on
 * a 2 mm grid, counted by hand. */
static void test_anisotropic_single_voxel(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 21, 21, 21, 2.0, 2.0, 2.0, o));
    int64_t n = imrt_grid_nvox(&g);
    uint8_t *in = calloc((size_t)n, 1), *out = calloc((size_t)n, 1);
    in[imrt_grid_index(&g, 10, 10, 10)] = 1;
    const double m[6] = {6, 6, 10, 10, 4, 4};
    assert_ok(imrt_mask_expand(&g, in, m, out));
    /* semi-axes with the boundary offset: 6.6, 10.6, 4.6 mm */
    const double A = 6.0 + 0.6, B = 10.0 + 0.6, C = 4.0 + 0.6;
    assert_close(IMRT_MARGIN_BOUNDARY_OFFSET, 0.3, 0, 1e-12);
    int64_t expected = 0;
    for (int a = -3; a <= 3; a++)
        for (int b = -5; b <= 5; b++)
            for (int c = -2; c <= 2; c++)
                if ((2.0 * a / A) * (2.0 * a / A) + (2.0 * b / B) * (2.0 * b / B) +
                        (2.0 * c / C) * (2.0 * c / C) <=
                    1.0 + 1e-12)
                    expected++;
    assert_int_equal(imrt_mask_count(&g, out), expected);
    /* the extreme points along each axis are in, one step beyond is not */
    assert_true(out[imrt_grid_index(&g, 13, 10, 10)]);
    assert_false(out[imrt_grid_index(&g, 14, 10, 10)]);
    assert_true(out[imrt_grid_index(&g, 10, 15, 10)]);
    assert_false(out[imrt_grid_index(&g, 10, 16, 10)]);
    assert_true(out[imrt_grid_index(&g, 10, 10, 8)]);
    assert_false(out[imrt_grid_index(&g, 10, 10, 7)]);
    free(in);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_volumes_fine_grid),
        cmocka_unit_test(test_volumes_shift_average),
        cmocka_unit_test(test_sphere_rigorous_bound),
        cmocka_unit_test(test_box_exact_count),
        cmocka_unit_test(test_frames_and_orientation),
        cmocka_unit_test(test_margins_match_brute_force),
        cmocka_unit_test(test_sphere_expansion),
        cmocka_unit_test(test_shell_volume),
        cmocka_unit_test(test_anisotropic_single_voxel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
