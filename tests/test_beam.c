/*
 * tests/test_beam.c - beam geometry: the IEC 61217 convention at the four
 * cardinal gantry angles and under couch rotation, BEV axes and the
 * divergent projection, beamlet selection from a target's projection
 * (counted by hand for a cube), open fields, the conformal aperture, and
 * input validation.
 */
#include "imrt/alloc.h"
#include "imrt/beam.h"

#include "test_util.h"

#define IMRT_TEST_PI 3.14159265358979323846

static void assert_vec(const double *a, double x, double y, double z, double tol)
{
    assert_close(a[0], x, 0, tol);
    assert_close(a[1], y, 0, tol);
    assert_close(a[2], z, 0, tol);
}

static void test_cardinal_gantry_angles(void **state)
{
    (void)state;
    const double iso[3] = {10, -20, 30};
    imrt_beam b;
    /* gantry 0: source anterior (LPS -y), 90: patient's left (+x), 180: posterior, 270: right */
    const double expect[4][3] = {{0, -1, 0}, {1, 0, 0}, {0, 1, 0}, {-1, 0, 0}};
    for (int q = 0; q < 4; q++) {
        assert_ok(imrt_beam_frame(90.0 * q, 0.0, iso, &b));
        assert_vec(b.src, iso[0] + 1000 * expect[q][0], iso[1] + 1000 * expect[q][1],
                   iso[2] + 1000 * expect[q][2], 1e-9);
        assert_vec(b.dir, -expect[q][0], -expect[q][1], -expect[q][2], 1e-12);
        /* v axis towards the gantry (superior) for every gantry angle at couch 0 */
        assert_vec(b.ev, 0, 0, 1, 1e-12);
    }
    /* gantry 0: BEV u = IEC X_b = the patient's left (+x) */
    assert_ok(imrt_beam_frame(0, 0, iso, &b));
    assert_vec(b.eu, 1, 0, 0, 1e-12);
    /* gantry 90: u points anterior... from the left, X_b turns with the gantry to +y */
    assert_ok(imrt_beam_frame(90, 0, iso, &b));
    assert_vec(b.eu, 0, 1, 0, 1e-12);
}

static void test_axes_orthonormal_right_handed(void **state)
{
    (void)state;
    const double iso[3] = {0, 0, 0};
    for (double g = 0; g < 360; g += 37)
        for (double c = -90; c <= 90; c += 30) {
            imrt_beam b;
            assert_ok(imrt_beam_frame(g, c, iso, &b));
            const double *u = b.eu, *v = b.ev, *d = b.dir;
            assert_close(u[0] * u[0] + u[1] * u[1] + u[2] * u[2], 1, 1e-12, 0);
            assert_close(v[0] * v[0] + v[1] * v[1] + v[2] * v[2], 1, 1e-12, 0);
            assert_close(d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1, 1e-12, 0);
            assert_close(u[0] * v[0] + u[1] * v[1] + u[2] * v[2], 0, 0, 1e-12);
            assert_close(u[0] * d[0] + u[1] * d[1] + u[2] * d[2], 0, 0, 1e-12);
            /* u x v = -dir (IEC: Z_b points to the source) */
            const double cr[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                                  u[0] * v[1] - u[1] * v[0]};
            assert_vec(cr, -d[0], -d[1], -d[2], 1e-12);
        }
}

static void test_couch_rotation(void **state)
{
    (void)state;
    const double iso[3] = {0, 0, 0};
    imrt_beam b;
    /* an anterior beam does not move when the couch turns about the vertical */
    assert_ok(imrt_beam_frame(0, 45, iso, &b));
    assert_vec(b.src, 0, -1000, 0, 1e-9);
    /* couch 90 (counter-clockwise from above) turns the head towards the room's
     * left (-X): a gantry-90 beam then comes from the patient's feet */
    assert_ok(imrt_beam_frame(90, 90, iso, &b));
    assert_vec(b.src, 0, 0, -1000, 1e-9);
    assert_ok(imrt_beam_frame(90, -90, iso, &b));
    assert_vec(b.src, 0, 0, 1000, 1e-9);
    assert_ok(imrt_beam_frame(270, 90, iso, &b));
    assert_vec(b.src, 0, 0, 1000, 1e-9);
    /* couch 30, gantry 90: source at (cos 30, 0, -sin 30) * SAD */
    assert_ok(imrt_beam_frame(90, 30, iso, &b));
    assert_vec(b.src, 1000 * cos(30 * IMRT_TEST_PI / 180), 0, -1000 * sin(30 * IMRT_TEST_PI / 180),
               1e-9);
}

static void test_divergent_projection(void **state)
{
    (void)state;
    const double iso[3] = {5, 5, 5};
    imrt_beam b;
    assert_ok(imrt_beam_frame(90, 0, iso, &b));
    double u, v, t;
    assert_int_equal(imrt_beam_project(&b, iso, &u, &v, &t), 1);
    assert_close(u, 0, 0, 1e-12);
    assert_close(v, 0, 0, 1e-12);
    assert_close(t, 1000, 1e-12, 0);
    /* 100 mm beyond the isocentre, 11 mm along eu and -22 mm along ev: the
     * projection shrinks by SAD / t = 1000 / 1100 */
    double p[3];
    for (int a = 0; a < 3; a++)
        p[a] = iso[a] + 100 * b.dir[a] + 11 * b.eu[a] - 22 * b.ev[a];
    assert_int_equal(imrt_beam_project(&b, p, &u, &v, &t), 1);
    assert_close(t, 1100, 1e-12, 0);
    assert_close(u, 10, 1e-12, 0);
    assert_close(v, -20, 1e-12, 0);
    /* behind the source */
    for (int a = 0; a < 3; a++)
        p[a] = b.src[a] - 10 * b.dir[a];
    assert_int_equal(imrt_beam_project(&b, p, &u, &v, &t), 0);
}

/* Water phantom 2 mm voxels, 200 mm cube, with a 40 mm cubic target around (x0, 0, 0). */
static imrt_phantom *cube_phantom(double x0)
{
    imrt_grid g;
    const double o[3] = {-99, -99, -99};
    assert_ok(imrt_grid_init(&g, 100, 100, 100, 2, 2, 2, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "cube", 1.0f, &p));
    int t;
    assert_ok(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &t));
    int e;
    assert_ok(imrt_phantom_add_structure(p, "EMPTY", IMRT_KIND_OAR, 2, &e));
    for (int k = 0; k < 100; k++)
        for (int j = 0; j < 100; j++)
            for (int i = 0; i < 100; i++) {
                double c[3];
                imrt_grid_center(&g, i, j, k, c);
                if (fabs(c[0] - x0) < 20 && fabs(c[1]) < 20 && fabs(c[2]) < 20)
                    p->structures[t].mask[imrt_grid_index(&g, i, j, k)] = 1;
            }
    imrt_structure_recount(p, &p->structures[t]);
    return p;
}

static void test_target_beamlets(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom(0.0);
    imrt_plan *plan = NULL;
    assert_ok(imrt_plan_create(&plan)); /* w = 5 mm, margin 5 mm */
    imrt_beam_def defs[2];
    memset(defs, 0, sizeof defs);
    defs[0].gantry_deg = 0;
    defs[1].gantry_deg = 90;
    imrt_beamset *bs = NULL;
    assert_ok(imrt_beamset_create(p, plan, defs, 2, "PTV", &bs));
    assert_int_equal(imrt_beamset_nbeams(bs), 2);
    /* Voxel centres of the cube reach +-19 mm; the nearest face (t = 981 mm)
     * projects them to a = 19*1000/981 mm and half a voxel diagonal to
     * h = sqrt(2)*1000/981 mm. A beamlet at (5i, 5j) is kept when its
     * distance to the square [-a, a]^2 is at most w/2 + margin + h. */
    const double a = 19.0 * 1000 / 981, h = sqrt(2.0) * 1000 / 981, r = 2.5 + 5 + h;
    int expect = 0;
    for (int i = -10; i <= 10; i++)
        for (int j = -10; j <= 10; j++) {
            double du = fmax(fabs(5.0 * i) - a, 0), dv = fmax(fabs(5.0 * j) - a, 0);
            expect += du * du + dv * dv <= r * r;
        }
    assert_int_equal(expect, 121);
    for (int b = 0; b < 2; b++) {
        const imrt_beam *bm = imrt_beamset_beam(bs, b);
        assert_int_equal(bm->count, expect);
        assert_int_equal(bm->first, b * expect);
        /* isocentre = target centroid */
        assert_vec(bm->iso, 0, 0, 0, 1e-9);
    }
    assert_int_equal(imrt_beamset_nbeamlets(bs), 2 * expect);
    /* columns walk the cells row by row, centres at multiples of w, symmetric set */
    double su = 0, sv = 0;
    for (int32_t j = 0; j < bs->nbeamlets; j++) {
        double uv[2];
        imrt_beamset_beamlet_uv(bs, j, uv);
        assert_close(uv[0] / 5 - round(uv[0] / 5), 0, 0, 1e-12);
        assert_close(uv[1] / 5 - round(uv[1] / 5), 0, 0, 1e-12);
        su += uv[0];
        sv += uv[1];
        const imrt_beam *bm = imrt_beamset_beam(bs, imrt_beamset_beamlet_beam(bs, j));
        const int iu = bs->cell_of[2 * j], iv = bs->cell_of[2 * j + 1];
        assert_int_equal(bm->cell[iu + bm->nu * iv], j);
        if (j > bm->first) {
            const int pu = bs->cell_of[2 * (j - 1)], pv = bs->cell_of[2 * (j - 1) + 1];
            assert_true(iv > pv || (iv == pv && iu > pu));
        }
    }
    assert_close(su, 0, 0, 1e-9);
    assert_close(sv, 0, 0, 1e-9);
    /* conformal aperture with margin 0: centres within h of the projection */
    uint8_t *ap = calloc((size_t)bs->nbeamlets, 1);
    assert_ok(imrt_beamset_aperture(bs, p, "PTV", 0.0, ap));
    int n_ap = 0;
    for (int32_t j = 0; j < expect; j++)
        n_ap += ap[j];
    int expect_ap = 0; /* distance to the square <= h */
    for (int i = -10; i <= 10; i++)
        for (int j = -10; j <= 10; j++) {
            double du = fmax(fabs(5.0 * i) - a, 0), dv = fmax(fabs(5.0 * j) - a, 0);
            expect_ap += du * du + dv * dv <= h * h;
        }
    assert_int_equal(expect_ap, 81);
    assert_int_equal(n_ap, expect_ap);
    /* a margin of 10 mm includes every beamlet of this beam set */
    assert_ok(imrt_beamset_aperture(bs, p, "PTV", 10.0, ap));
    for (int32_t j = 0; j < bs->nbeamlets; j++)
        assert_int_equal(ap[j], 1);
    free(ap);
    imrt_beamset_destroy(&bs);
    assert_null(bs);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

static void test_open_fields(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom(30.0);
    imrt_plan *plan = NULL;
    assert_ok(imrt_plan_create(&plan));
    imrt_beam_def d[2];
    memset(d, 0, sizeof d);
    d[0].open_field = 1;
    d[0].field_mm[0] = d[0].field_mm[1] = 100;
    d[1].open_field = 1;
    d[1].gantry_deg = 180;
    d[1].field_mm[0] = 30;
    d[1].field_mm[1] = 55;
    d[1].has_isocentre = 1;
    imrt_beamset *bs = NULL;
    assert_ok(imrt_beamset_create(p, plan, d, 2, "PTV", &bs));
    const imrt_beam *b0 = imrt_beamset_beam(bs, 0), *b1 = imrt_beamset_beam(bs, 1);
    /* open field centred on the central axis, isocentre at the target centroid */
    assert_vec(b0->iso, 30, 0, 0, 1e-9);
    assert_vec(b1->iso, 0, 0, 0, 1e-12);
    assert_int_equal(b0->count, 400);
    assert_close(b0->u0, -47.5, 0, 1e-12);
    assert_close(b0->v0, -47.5, 0, 1e-12);
    assert_int_equal(b1->nu, 6);
    assert_int_equal(b1->nv, 11);
    assert_close(b1->u0, -12.5, 0, 1e-12);
    assert_close(b1->v0, -25.0, 0, 1e-12);
    /* beamlets tile the field exactly: edges at +-field/2 */
    double umin = 1e9, umax = -1e9;
    for (int32_t j = b1->first; j < b1->first + b1->count; j++) {
        umin = fmin(umin, bs->uv[2 * j] - 2.5);
        umax = fmax(umax, bs->uv[2 * j] + 2.5);
    }
    assert_close(umin, -15, 0, 1e-12);
    assert_close(umax, 15, 0, 1e-12);
    imrt_beamset_destroy(&bs);
    /* not a multiple of the pitch */
    d[1].field_mm[1] = 52;
    assert_int_equal(imrt_beamset_create(p, plan, d, 2, "PTV", &bs), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "not a whole multiple"));
    assert_null(bs);
    /* open fields with their own isocentre need no target */
    d[0].has_isocentre = 1;
    d[1].field_mm[1] = 50;
    assert_ok(imrt_beamset_create(p, plan, d, 2, NULL, &bs));
    imrt_beamset_destroy(&bs);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

static void test_validation(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom(0.0);
    imrt_plan *plan = NULL;
    assert_ok(imrt_plan_create(&plan));
    imrt_beam_def d;
    memset(&d, 0, sizeof d);
    imrt_beamset *bs = NULL;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "GTV", &bs), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "'GTV'"));
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "EMPTY", &bs), IMRT_ERR_RANGE);
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, NULL, &bs), IMRT_ERR_ARG);
    assert_int_equal(imrt_beamset_create(p, plan, &d, 0, "PTV", &bs), IMRT_ERR_RANGE);
    d.gantry_deg = 360;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "gantry angle 360"));
    d.gantry_deg = NAN;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs), IMRT_ERR_RANGE);
    d.gantry_deg = 10;
    d.couch_deg = 95;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs), IMRT_ERR_RANGE);
    d.couch_deg = 0;
    plan->beamlet_mm = 0;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "beamlet_mm"));
    plan->beamlet_mm = 5;
    /* an isocentre so far away that the target lies behind the source */
    d.has_isocentre = 1;
    d.isocentre[1] = -1010; /* source at y = -2010, target at y ~ 0: in front */
    assert_ok(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs));
    imrt_beamset_destroy(&bs);
    d.isocentre[1] = 1010; /* source at y = +10 (gantry 10: nearly), inside the target */
    d.gantry_deg = 0;
    assert_int_equal(imrt_beamset_create(p, plan, &d, 1, "PTV", &bs), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "behind the source"));
    assert_null(bs);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
}

/* Every allocation failure is reported and leaks nothing (ASan checks). */
static void test_allocation_failures(void **state)
{
    (void)state;
    imrt_phantom *p = cube_phantom(0.0);
    imrt_beam_def d[2];
    memset(d, 0, sizeof d);
    d[1].gantry_deg = 120;
    d[1].open_field = 1;
    d[1].field_mm[0] = d[1].field_mm[1] = 20;
    int failures = 0;
    for (long n = 1; n < 200; n++) {
        imrt_beamset *bs = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_beamset_create(p, NULL, d, 2, "PTV", &bs);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            imrt_beamset_destroy(&bs);
            break;
        }
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(bs);
        failures++;
    }
    assert_true(failures > 5);
    imrt_phantom_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cardinal_gantry_angles),
        cmocka_unit_test(test_axes_orthonormal_right_handed),
        cmocka_unit_test(test_couch_rotation),
        cmocka_unit_test(test_divergent_projection),
        cmocka_unit_test(test_target_beamlets),
        cmocka_unit_test(test_open_fields),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
