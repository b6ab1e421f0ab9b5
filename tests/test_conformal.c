/*
 * tests/test_conformal.c - the NNLS solver against answers worked out by hand
 * (a fit whose unconstrained least-squares solution is negative, a diagonal
 * case, a consistent system, a rank-deficient one) and against brute-force
 * enumeration of every active set; the conformal beam weights on synthetic
 * dij matrices whose answer is known; the normalised conformal plan.
 */
#include "imrt/alloc.h"
#include "imrt/conformal.h"
#include "imrt/metrics.h"

#include "test_util.h"

#include <lapacke.h>

/* ------------------------------------------------------------------------ */
/* NNLS                                                                     */
/* ------------------------------------------------------------------------ */

/* Fit c1 + c2 t to b = (3, 2, 1) at t = 1, 2, 3: least squares gives
 * c = (4, -1); with c >= 0 the slope is 0 and c1 = mean(b) = 2, residual
 * (1, 0, -1), norm sqrt(2). KKT: a2 . r = 1 - 3 = -2 < 0. */
static void test_nnls_negative_ls_component(void **state)
{
    (void)state;
    const double A[6] = {1, 1, 1, 1, 2, 3}; /* column-major 3 x 2 */
    const double b[3] = {3, 2, 1};
    double x[2], rn;
    assert_ok(imrt_nnls(3, 2, A, 3, b, x, &rn));
    assert_close(x[0], 2.0, 1e-12, 0);
    assert_close(x[1], 0.0, 0, 1e-14);
    assert_close(rn, sqrt(2.0), 1e-12, 0);
    /* the unconstrained answer really is (4, -1) */
    double Ac[6], bc[3];
    memcpy(Ac, A, sizeof Ac);
    memcpy(bc, b, sizeof bc);
    assert_int_equal(LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', 3, 2, 1, Ac, 3, bc, 3), 0);
    assert_close(bc[0], 4.0, 1e-12, 0);
    assert_close(bc[1], -1.0, 1e-12, 0);
}

static void test_nnls_diagonal_and_consistent(void **state)
{
    (void)state;
    const double Id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const double b[3] = {1, -2, 3};
    double x[3], rn;
    assert_ok(imrt_nnls(3, 3, Id, 3, b, x, &rn));
    assert_close(x[0], 1.0, 1e-14, 0);
    assert_close(x[1], 0.0, 0, 1e-14);
    assert_close(x[2], 3.0, 1e-14, 0);
    assert_close(rn, 2.0, 1e-14, 0);

    /* a consistent 5 x 3 system with a positive solution: NNLS = LS = x_true */
    const double A[15] = {1, 2, 0, 1, 3, 0, 1, 4, 2, 1, 2, 2, 1, 0, 5};
    const double xt[3] = {1.0, 0.5, 2.0};
    double bb[5] = {0};
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 5; i++)
            bb[i] += A[j * 5 + i] * xt[j];
    assert_ok(imrt_nnls(5, 3, A, 5, bb, x, &rn));
    for (int j = 0; j < 3; j++)
        assert_close(x[j], xt[j], 1e-10, 0);
    assert_close(rn, 0.0, 0, 1e-10);

    /* lda > m: the same system stored with padding rows */
    double Ap[21];
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 7; i++)
            Ap[j * 7 + i] = i < 5 ? A[j * 5 + i] : 1e300;
    assert_ok(imrt_nnls(5, 3, Ap, 7, bb, x, NULL));
    for (int j = 0; j < 3; j++)
        assert_close(x[j], xt[j], 1e-10, 0);
}

/* Two identical columns: any split with x1 + x2 = 2 fits b = 2a exactly. */
static void test_nnls_rank_deficient(void **state)
{
    (void)state;
    const double A[8] = {1, 2, 3, 4, 1, 2, 3, 4};
    const double b[4] = {2, 4, 6, 8};
    double x[2], rn;
    assert_ok(imrt_nnls(4, 2, A, 4, b, x, &rn));
    assert_true(x[0] >= 0.0 && x[1] >= 0.0);
    assert_close(x[0] + x[1], 2.0, 1e-10, 0);
    assert_close(rn, 0.0, 0, 1e-10);
}

/* Deterministic pseudo-random numbers in [-1, 1). */
static double lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / (double)(1ULL << 52) - 1.0;
}

/* Brute force: the NNLS optimum is the best least-squares solution, over all
 * 2^n passive sets, that is non-negative. Compared on random problems, with
 * the KKT conditions (x >= 0, A^T r <= 0 where x = 0, A^T r = 0 where x > 0). */
static void test_nnls_matches_enumeration(void **state)
{
    (void)state;
    enum { M = 20, N = 7 };
    uint64_t seed = 12345;
    for (int trial = 0; trial < 20; trial++) {
        double A[M * N], b[M], x[N], rn;
        for (int i = 0; i < M * N; i++)
            A[i] = lcg(&seed);
        for (int i = 0; i < M; i++)
            b[i] = 2.0 * lcg(&seed);
        assert_ok(imrt_nnls(M, N, A, M, b, x, &rn));
        double best = INFINITY;
        for (unsigned set = 0; set < (1u << N); set++) {
            double Ap[M * N], bp[M], z[N] = {0};
            int k = 0;
            for (int j = 0; j < N; j++)
                if (set & (1u << j))
                    memcpy(Ap + k++ * M, A + j * M, sizeof(double) * M);
            double r2 = 0.0;
            memcpy(bp, b, sizeof bp);
            if (k > 0) {
                assert_int_equal(LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', M, k, 1, Ap, M, bp, M), 0);
                int q = 0, feasible = 1;
                for (int j = 0; j < N; j++)
                    if (set & (1u << j)) {
                        z[j] = bp[q++];
                        feasible &= z[j] >= 0.0;
                    }
                if (!feasible)
                    continue;
            }
            for (int i = 0; i < M; i++) {
                double r = b[i];
                for (int j = 0; j < N; j++)
                    r -= A[j * M + i] * z[j];
                r2 += r * r;
            }
            best = fmin(best, sqrt(r2));
        }
        assert_close(rn, best, 1e-10, 1e-12);
        double r[M];
        for (int i = 0; i < M; i++) {
            r[i] = b[i];
            for (int j = 0; j < N; j++)
                r[i] -= A[j * M + i] * x[j];
        }
        for (int j = 0; j < N; j++) {
            double w = 0.0;
            for (int i = 0; i < M; i++)
                w += A[j * M + i] * r[i];
            assert_true(x[j] >= 0.0);
            if (x[j] > 0.0)
                assert_close(w, 0.0, 0, 1e-10);
            else
                assert_true(w <= 1e-10);
        }
    }
}

static void test_nnls_rejects_bad_input(void **state)
{
    (void)state;
    double A[4] = {1, 0, 0, 1}, b[2] = {1, 1}, x[2];
    assert_int_equal(imrt_nnls(0, 2, A, 2, b, x, NULL), IMRT_ERR_ARG);
    assert_int_equal(imrt_nnls(2, 2, A, 1, b, x, NULL), IMRT_ERR_ARG);
    assert_int_equal(imrt_nnls(2, 2, NULL, 2, b, x, NULL), IMRT_ERR_ARG);
    A[3] = NAN;
    assert_int_equal(imrt_nnls(2, 2, A, 2, b, x, NULL), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "A[1,1]"));
    A[3] = 1.0;
    for (long n = 1; n <= 10; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_nnls(2, 2, A, 2, b, x, NULL);
        imrt_alloc_fail_after(0);
        assert_true(st == IMRT_OK || st == IMRT_ERR_NOMEM);
    }
}

/* ------------------------------------------------------------------------ */
/* Conformal plan on synthetic dij matrices                                 */
/* ------------------------------------------------------------------------ */

/* A dij from a dense nvox x ncols matrix (every voxel a row; zeros dropped). */
static imrt_dij *dense_dij(const imrt_grid *g, int ncols, const double *dense, int nbeams,
                           const int32_t *beam_start)
{
    int64_t n = imrt_grid_nvox(g);
    imrt_dij *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->grid = *g;
    d->nrows = n;
    d->ncols = ncols;
    d->rowptr = calloc((size_t)n + 1, sizeof *d->rowptr);
    d->voxel = calloc((size_t)n, sizeof *d->voxel);
    d->col = calloc((size_t)(n * ncols), sizeof *d->col);
    d->val = calloc((size_t)(n * ncols), sizeof *d->val);
    d->beam_start = calloc((size_t)nbeams + 1, sizeof *d->beam_start);
    assert_true(d->rowptr && d->voxel && d->col && d->val && d->beam_start);
    for (int64_t r = 0; r < n; r++) {
        d->voxel[r] = r;
        for (int j = 0; j < ncols; j++)
            if (dense[r * ncols + j] != 0.0) {
                d->col[d->nnz] = j;
                d->val[d->nnz++] = (float)dense[r * ncols + j];
            }
        d->rowptr[r + 1] = d->nnz;
    }
    d->nbeams = nbeams;
    memcpy(d->beam_start, beam_start, (size_t)(nbeams + 1) * sizeof *beam_start);
    d->beamlet_mm = 5.0;
    return d;
}

static void free_dij(imrt_dij *d)
{
    free(d->rowptr);
    free(d->voxel);
    free(d->col);
    free(d->val);
    free(d->beam_start);
    free(d);
}

/* A line of n voxels (10 mm, 1 cm^3 each); the first ntarget are "PTV", the
 * rest "OAR". */
static imrt_phantom *line_phantom(int n, int ntarget)
{
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, n, 1, 1, 10.0, 10.0, 10.0, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "line", 1.0f, &p));
    int t, r;
    assert_ok(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &t));
    assert_ok(imrt_phantom_add_structure(p, "OAR", IMRT_KIND_OAR, 2, &r));
    for (int v = 0; v < n; v++)
        (v < ntarget ? p->structures[t].mask : p->structures[r].mask)[v] = 1;
    imrt_structure_recount(p, &p->structures[t]);
    imrt_structure_recount(p, &p->structures[r]);
    return p;
}

/* Two beams, two beamlets each; beamlet 3 lies outside beam 1's aperture and
 * must be ignored. Apertures give A = [2 1; 2 1; 1 2; 1 2] on the target:
 * A^T A = [10 8; 8 10], A^T (60 x 1) = (360, 360), so w = (20, 20) and the
 * target dose is exactly 60 Gy; the OAR voxel gets 2 x 0.2 x 20 + 0.1 x 20. */
static void test_conformal_symmetric_case(void **state)
{
    (void)state;
    imrt_phantom *p = line_phantom(5, 4);
    const double D[5 * 4] = {
        1.0, 1.0, 1.0, 5.0, /* voxel 0 */
        1.0, 1.0, 1.0, 5.0, /* voxel 1 */
        0.5, 0.5, 2.0, 5.0, /* voxel 2 */
        0.5, 0.5, 2.0, 5.0, /* voxel 3 */
        0.2, 0.2, 0.1, 5.0, /* voxel 4: OAR */
    };
    const int32_t bs[3] = {0, 2, 4};
    imrt_dij *dij = dense_dij(&p->grid, 4, D, 2, bs);
    const uint8_t ap[4] = {1, 1, 1, 0};
    double x[4], w[2];
    assert_ok(imrt_conformal_weights(NULL, dij, ap, p, "PTV", 60.0, x, w));
    assert_close(w[0], 20.0, 1e-9, 0);
    assert_close(w[1], 20.0, 1e-9, 0);
    const double xe[4] = {20, 20, 20, 0};
    for (int j = 0; j < 4; j++)
        assert_close(x[j], xe[j], 1e-9, 1e-12);

    imrt_prescription rx = {.dose_gy = 60.0, .fractions = 30, .normalise = 1};
    snprintf(rx.target, sizeof rx.target, "PTV");
    snprintf(rx.metric, sizeof rx.metric, "D95");
    float dose[5];
    double f = 0.0;
    assert_ok(imrt_conformal_plan(NULL, dij, ap, p, &rx, x, dose, &f));
    assert_close(f, 1.0, 1e-6, 0);
    for (int v = 0; v < 4; v++)
        assert_close(dose[v], 60.0, 1e-6, 0);
    assert_close(dose[4], 10.0, 1e-6, 0);
    free_dij(dij);
    imrt_phantom_destroy(&p);
}

/* Beam 0's aperture gives (2, 3, 4) on three target voxels, beam 1's gives
 * (1, 2, 3). Unconstrained w0 (2,3,4) + w1 (1,2,3) = (6,6,6) has the exact
 * solution (6, -6). With w >= 0: w1 = 0 and w0 = 6 (2+3+4)/(4+9+16) = 54/29,
 * whose KKT multiplier (1,2,3).(66,12,-42)/29 = -36/29 < 0 confirms it.
 * Normalised to D95 = 6 Gy: the sorted doses w0 (4, 3, 2) give D95 =
 * w0 (3 + 0.85 (2 - 3)) = 2.15 w0, so the beamlet weight becomes 6/2.15. */
static void test_conformal_drops_a_harmful_beam(void **state)
{
    (void)state;
    imrt_phantom *p = line_phantom(4, 3);
    const double D[4 * 4] = {
        1.0, 1.0, 1.0, 9.0, /* beam 0 beamlets share (2, 3, 4) */
        1.5, 1.5, 2.0, 9.0, /* beamlet 2 (beam 1) gives (1, 2, 3) */
        2.0, 2.0, 3.0, 9.0, /* beamlet 3 is outside the aperture */
        0.3, 0.3, 0.6, 9.0, /* OAR */
    };
    const int32_t bs[3] = {0, 2, 4};
    imrt_dij *dij = dense_dij(&p->grid, 4, D, 2, bs);
    const uint8_t ap[4] = {1, 1, 1, 0};
    double x[4], w[2];
    assert_ok(imrt_conformal_weights(NULL, dij, ap, p, "PTV", 6.0, x, w));
    assert_close(w[0], 54.0 / 29.0, 1e-9, 0);
    assert_close(w[1], 0.0, 0, 1e-12);

    imrt_prescription rx = {.dose_gy = 6.0, .fractions = 1, .normalise = 1};
    float dose[4];
    double f;
    assert_ok(imrt_conformal_plan(NULL, dij, ap, p, &rx, x, dose, &f)); /* first target, D95 */
    assert_close(x[0], 6.0 / 2.15, 1e-6, 0);
    assert_close(x[1], 6.0 / 2.15, 1e-6, 0);
    assert_close(x[2], 0.0, 0, 1e-12);
    assert_close(f, (6.0 / 2.15) / (54.0 / 29.0), 1e-6, 0);
    for (int v = 0; v < 3; v++)
        assert_close(dose[v], 6.0 / 2.15 * (2 + v), 1e-6, 0);
    assert_close(dose[3], 6.0 / 2.15 * 0.6, 1e-6, 0);
    imrt_goal_def g = {.op = IMRT_GOAL_GE, .value = 6.0};
    snprintf(g.structure, sizeof g.structure, "PTV");
    snprintf(g.metric, sizeof g.metric, "D95");
    double d95;
    int pass;
    assert_ok(imrt_goal_eval(&g, p, dose, &d95, &pass));
    assert_close(d95, 6.0, 1e-6, 0);
    assert_int_equal(pass, 1);
    free_dij(dij);
    imrt_phantom_destroy(&p);
}

static void test_conformal_dose_and_threads(void **state)
{
    (void)state;
    imrt_phantom *p = line_phantom(5, 4);
    double D[5 * 6];
    for (int i = 0; i < 30; i++)
        D[i] = (double)((i * 7) % 5);
    const int32_t bs[4] = {0, 2, 4, 6};
    imrt_dij *dij = dense_dij(&p->grid, 6, D, 3, bs);
    const double x[6] = {1, 2, 3, 4, 5, 6};
    float d1[5], d2[5];
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_ok(imrt_context_set_threads(ctx, 1));
    assert_ok(imrt_conformal_dose(ctx, dij, x, d1));
    assert_ok(imrt_context_set_threads(ctx, 2));
    assert_ok(imrt_conformal_dose(ctx, dij, x, d2));
    for (int v = 0; v < 5; v++) {
        double s = 0.0;
        for (int j = 0; j < 6; j++)
            s += D[v * 6 + j] * x[j];
        assert_close(d1[v], s, 1e-6, 0);
        assert_true(d1[v] == d2[v]);
    }
    imrt_context_destroy(&ctx);
    free_dij(dij);
    imrt_phantom_destroy(&p);
}

static void test_conformal_rejects_bad_input(void **state)
{
    (void)state;
    imrt_phantom *p = line_phantom(5, 4);
    double D[5 * 4];
    for (int i = 0; i < 20; i++)
        D[i] = 1.0;
    const int32_t bs[3] = {0, 2, 4};
    imrt_dij *dij = dense_dij(&p->grid, 4, D, 2, bs);
    uint8_t ap[4] = {1, 1, 1, 1};
    double x[4];
    assert_int_equal(imrt_conformal_weights(NULL, dij, ap, p, "CTV", 60, x, NULL), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "CTV"));
    assert_int_equal(imrt_conformal_weights(NULL, dij, ap, p, "PTV", 0.0, x, NULL),
                     IMRT_ERR_RANGE);
    uint8_t none[4] = {0};
    assert_int_equal(imrt_conformal_weights(NULL, dij, none, p, "PTV", 60, x, NULL),
                     IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "aperture"));
    imrt_phantom *q = line_phantom(6, 4); /* another grid */
    assert_int_equal(imrt_conformal_weights(NULL, dij, ap, q, "PTV", 60, x, NULL), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "grid"));
    imrt_phantom_destroy(&q);
    dij->beam_start[2] = 3; /* does not end at ncols */
    assert_int_equal(imrt_conformal_weights(NULL, dij, ap, p, "PTV", 60, x, NULL), IMRT_ERR_ARG);
    dij->beam_start[2] = 4;

    imrt_prescription rx = {.dose_gy = 60.0, .fractions = 30, .normalise = 1};
    float dose[5];
    for (long n = 1; n <= 30; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_conformal_plan(NULL, dij, ap, p, &rx, x, dose, NULL);
        imrt_alloc_fail_after(0);
        assert_true(st == IMRT_OK || st == IMRT_ERR_NOMEM);
    }
    free_dij(dij);
    imrt_phantom_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nnls_negative_ls_component),
        cmocka_unit_test(test_nnls_diagonal_and_consistent),
        cmocka_unit_test(test_nnls_rank_deficient),
        cmocka_unit_test(test_nnls_matches_enumeration),
        cmocka_unit_test(test_nnls_rejects_bad_input),
        cmocka_unit_test(test_conformal_symmetric_case),
        cmocka_unit_test(test_conformal_drops_a_harmful_beam),
        cmocka_unit_test(test_conformal_dose_and_threads),
        cmocka_unit_test(test_conformal_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
