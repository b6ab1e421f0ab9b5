/*
 * tests/test_spmv.c - the dij kernels: every optimised variant against the
 * reference, the adjoint identity <D x, w> = <x, D^T w>, the fused pass
 * against the two-pass form built from the reference kernels, bitwise
 * determinism for a fixed thread count, agreement across thread counts,
 * the pair sections of a dij with scatter maps, the Newton solver's row
 * subsets, the CSR check and the workspace's allocation failures.
 */
#include "imrt/context.h"
#include "imrt/spmv.h"
#include "imrt/status.h"

#include "rowset_impl.h" /* the Newton solver's row subsets */
#include "spmv_impl.h"   /* the workspace layout, to check the row split */
#include "test_dij_util.h"
#include "test_util.h"

#include <math.h>

#define IMRT_TEST_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A random dij with empty rows and rows of very different lengths. */
static void make_dij(imrt_dij *D, int64_t nrows, int32_t ncols, uint64_t seed)
{
    assert_int_equal(tdu_random(D, nrows, ncols, 0.15, 0.01, 1.0, 1, seed), 0);
    assert_ok(imrt_spmv_check(D));
}

static double *random_vec(size_t n, double lo, double hi, uint64_t seed)
{
    double *v = imrt_calloc(n, sizeof *v);
    assert_non_null(v);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * tdu_uniform(&s);
    return v;
}

/* nl row indices drawn uniformly from 0..m-1 (repeats, any order). */
static int64_t *random_rows(int64_t nl, size_t m, uint64_t seed)
{
    int64_t *rows = imrt_calloc((size_t)nl, sizeof *rows);
    assert_non_null(rows);
    uint64_t s = seed;
    for (int64_t i = 0; i < nl; i++)
        rows[i] = (int64_t)(tdu_uniform(&s) * (double)m);
    return rows;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Largest |a - b| relative to the largest |b| (0 when both vanish). */
static double rel_diff(const double *a, const double *b, size_t n)
{
    double dmax = 0.0, bmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        dmax = fmax(dmax, fabs(a[i] - b[i]));
        bmax = fmax(bmax, fabs(b[i]));
    }
    return bmax > 0.0 ? dmax / bmax : dmax;
}

/* Double accumulation of float products in another order: the difference
 * is a few units of double rounding times the row length. */
#define KERNEL_TOL 1e-12

static const int thread_counts[] = {1, 2, 3, 7};
#define NTC ((int)(sizeof thread_counts / sizeof thread_counts[0]))

static void test_variants_match_reference(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 1500, 97, 11);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    double *x = random_vec(n, 0.0, 2.0, 1), *w = random_vec(m, -1.0, 1.0, 2);
    double *d_ref = imrt_calloc(m, sizeof(double)), *d = imrt_calloc(m, sizeof(double));
    double *g_ref = imrt_calloc(n, sizeof(double)), *g = imrt_calloc(n, sizeof(double));
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    assert_string_equal(opt.name_fused, "spmv_csr_fused_omp");
    ref.matvec(&D, x, d_ref, NULL);
    ref.rmatvec(&D, w, g_ref, NULL);
    /* a hand check of the reference on row 0 */
    double s0 = 0.0;
    for (int64_t k = D.rowptr[0]; k < D.rowptr[1]; k++)
        s0 += (double)D.val[k] * x[D.col[k]];
    assert_close(d_ref[0], s0, 1e-15, 0);

    for (int i = 0; i < NTC; i++) {
        imrt_spmv_ws *ws = NULL;
        assert_ok(imrt_spmv_ws_create(&D, thread_counts[i], 1, NULL, &ws));
        assert_int_equal(imrt_spmv_ws_threads(ws), thread_counts[i]);
        opt.matvec(&D, x, d, ws);
        assert_true(rel_diff(d, d_ref, m) < KERNEL_TOL);
        opt.rmatvec(&D, w, g, ws);
        assert_true(rel_diff(g, g_ref, n) < KERNEL_TOL);
        imrt_spmv_ws_destroy(&ws);
        assert_null(ws);
    }
    imrt_free(x), imrt_free(w), imrt_free(d_ref), imrt_free(d), imrt_free(g_ref), imrt_free(g);
    tdu_free(&D);
}

static void test_adjoint_identity(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 2000, 150, 21);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    double *x = random_vec(n, -1.0, 1.0, 3), *w = random_vec(m, -1.0, 1.0, 4);
    double *d = imrt_calloc(m, sizeof(double)), *g = imrt_calloc(n, sizeof(double));
    imrt_spmv_kernels k[2];
    imrt_spmv_kernels_reference(&k[0]);
    imrt_spmv_kernels_optimised(&k[1]);
    for (int v = 0; v < 2; v++) {
        imrt_spmv_ws *ws = NULL;
        assert_ok(imrt_spmv_ws_create(&D, 2, 1, NULL, &ws));
        k[v].matvec(&D, x, d, ws);
        k[v].rmatvec(&D, w, g, ws);
        double lhs = dot(d, w, m), rhs = dot(x, g, n);
        /* scale of the terms summed: sum |d_i w_i| */
        double scale = 0.0;
        for (size_t i = 0; i < m; i++)
            scale += fabs(d[i] * w[i]);
        assert_close(lhs, rhs, 0, 1e-13 * scale);
        imrt_spmv_ws_destroy(&ws);
    }
    imrt_free(x), imrt_free(w), imrt_free(d), imrt_free(g);
    tdu_free(&D);
}

static void test_rows_kernel(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 2000, 60, 31);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    /* a list with repeats and any order, against the dense equivalent */
    const int64_t nl = 300;
    int64_t *rows = imrt_calloc((size_t)nl, sizeof *rows);
    double *wl = random_vec((size_t)nl, -2.0, 2.0, 5);
    double *wfull = imrt_calloc(m, sizeof(double));
    uint64_t s = 77;
    for (int64_t i = 0; i < nl; i++) {
        rows[i] = (int64_t)(tdu_uniform(&s) * (double)m);
        wfull[rows[i]] += wl[i];
    }
    double *g_full = imrt_calloc(n, sizeof(double)), *g = imrt_calloc(n, sizeof(double));
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    ref.rmatvec(&D, wfull, g_full, NULL);
    for (size_t j = 0; j < n; j++)
        g[j] = 0.5; /* rows() accumulates into g */
    ref.rows(&D, nl, rows, wl, g, NULL);
    for (size_t j = 0; j < n; j++)
        assert_close(g[j] - 0.5, g_full[j], 1e-12, 1e-12);
    for (int i = 0; i < NTC; i++) {
        imrt_spmv_ws *ws = NULL;
        assert_ok(imrt_spmv_ws_create(&D, thread_counts[i], 1, NULL, &ws));
        for (size_t j = 0; j < n; j++)
            g[j] = 0.5;
        opt.rows(&D, nl, rows, wl, g, ws);
        for (size_t j = 0; j < n; j++)
            assert_close(g[j] - 0.5, g_full[j], 1e-12, 1e-12);
        opt.rows(&D, 0, rows, wl, g, ws); /* empty list: no change */
        imrt_spmv_ws_destroy(&ws);
    }
    imrt_free(rows), imrt_free(wl), imrt_free(wfull), imrt_free(g_full), imrt_free(g);
    tdu_free(&D);
}

/* A program with three classes and three channels exercising both term
 * types: class 1 = deviation from 1.5 Gy (channel 0); class 2 = overdose
 * above 2 Gy plus underdose below 1 Gy (channel 0) and a power term on
 * channel 2; class 3 = dose only. Rows r % 5 == 4 are skipped. */
typedef struct {
    uint16_t *rc;
    int32_t cs[5];
    imrt_voxel_term term[4];
    imrt_voxel_program p;
} test_program;

static void make_program(test_program *tp, int64_t nrows)
{
    tp->rc = imrt_calloc((size_t)nrows, sizeof *tp->rc);
    assert_non_null(tp->rc);
    for (int64_t r = 0; r < nrows; r++)
        tp->rc[r] = (uint16_t)(r % 5 == 4 ? 0 : 1 + r % 3);
    const imrt_voxel_term t[4] = {
        {IMRT_TERM_WINDOW, 0, 0.7, 1.5, -INFINITY, INFINITY, 0.0},
        {IMRT_TERM_WINDOW, 0, 1.3, 2.0, 2.0, INFINITY, 0.0},
        {IMRT_TERM_WINDOW, 0, 0.9, 1.0, -INFINITY, 1.0, 0.0},
        {IMRT_TERM_POWER, 2, 0.25, 1.8, 0.0, 0.0, 3.5},
    };
    memcpy(tp->term, t, sizeof t);
    tp->cs[0] = 0, tp->cs[1] = 0, tp->cs[2] = 1, tp->cs[3] = 4, tp->cs[4] = 4;
    tp->p.row_class = tp->rc;
    tp->p.class_start = tp->cs;
    tp->p.term = tp->term;
    tp->p.nclasses = 4;
    tp->p.nchannels = 3;
}

/* The derivative of channel ch at dose d for class c, from the formulas. */
static double expected_deriv(int c, int ch, double d)
{
    if (c == 1 && ch == 0)
        return 0.7 * (d - 1.5);
    if (c == 2 && ch == 0)
        return (d > 2.0 ? 1.3 * (d - 2.0) : 0.0) + (d <= 1.0 ? 0.9 * (d - 1.0) : 0.0);
    if (c == 2 && ch == 2)
        return d > 0.0 ? 0.25 * pow(d / 1.8, 3.5) : 0.0;
    return 0.0;
}

static void test_fused_matches_two_pass(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 2400, 80, 41);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    test_program tp;
    make_program(&tp, D.nrows);
    /* weights so that doses straddle the 1 and 2 Gy thresholds */
    double *x = random_vec(n, 0.0, 0.45, 6);
    double *d2 = imrt_calloc(m, sizeof(double)), *w = imrt_calloc(m, sizeof(double));
    double *g2 = imrt_calloc(3 * n, sizeof(double));
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    /* two-pass form from the reference kernels and the formulas */
    ref.matvec(&D, x, d2, NULL);
    int below = 0, above = 0;
    for (int ch = 0; ch < 3; ch++) {
        for (size_t r = 0; r < m; r++) {
            w[r] = expected_deriv(tp.rc[r], ch, d2[r]);
            below += ch == 0 && tp.rc[r] == 2 && d2[r] < 1.0;
            above += ch == 0 && tp.rc[r] == 2 && d2[r] > 2.0;
        }
        ref.rmatvec(&D, w, g2 + (size_t)ch * n, NULL);
    }
    assert_true(below > 10 && above > 10); /* both windows are exercised */

    imrt_spmv_fused_fn fused[2] = {ref.fused, opt.fused};
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < NTC; i++) {
            imrt_spmv_ws *ws = NULL;
            assert_ok(imrt_spmv_ws_create(&D, thread_counts[i], 3, tp.rc, &ws));
            double *d = imrt_calloc(m, sizeof(double)), *g = imrt_calloc(3 * n, sizeof(double));
            for (size_t r = 0; r < m; r++)
                d[r] = -99.0;
            fused[v](&D, x, &tp.p, d, g, ws);
            for (size_t r = 0; r < m; r++) {
                if (tp.rc[r] == 0)
                    assert_true(d[r] == -99.0); /* skipped rows are not written */
                else
                    assert_close(d[r], d2[r], 1e-13, 1e-300);
            }
            for (int ch = 0; ch < 3; ch++)
                assert_true(rel_diff(g + (size_t)ch * n, g2 + (size_t)ch * n, n) < KERNEL_TOL);
            for (size_t j = 0; j < n; j++)
                assert_true(g[n + j] == 0.0); /* channel 1 has no terms */
            imrt_free(d), imrt_free(g);
            imrt_spmv_ws_destroy(&ws);
        }
    }
    imrt_free(tp.rc), imrt_free(x), imrt_free(d2), imrt_free(w), imrt_free(g2);
    tdu_free(&D);
}

static void test_determinism_and_thread_counts(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 3000, 120, 51);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    test_program tp;
    make_program(&tp, D.nrows);
    double *x = random_vec(n, 0.0, 0.3, 7), *w = random_vec(m, -1.0, 1.0, 8);
    imrt_spmv_kernels opt;
    imrt_spmv_kernels_optimised(&opt);
    double *g_first = NULL, *d_first = NULL;
    for (int i = 0; i < NTC; i++) {
        const int T = thread_counts[i];
        double *d[2], *g[2], *gt[2];
        for (int rep = 0; rep < 2; rep++) {
            imrt_spmv_ws *ws = NULL;
            assert_ok(imrt_spmv_ws_create(&D, T, 3, tp.rc, &ws));
            d[rep] = imrt_calloc(m, sizeof(double));
            g[rep] = imrt_calloc(3 * n, sizeof(double));
            gt[rep] = imrt_calloc(n, sizeof(double));
            opt.fused(&D, x, &tp.p, d[rep], g[rep], ws);
            opt.rmatvec(&D, w, gt[rep], ws);
            imrt_spmv_ws_destroy(&ws);
        }
        /* bitwise equal for the same thread count */
        assert_memory_equal(d[0], d[1], m * sizeof(double));
        assert_memory_equal(g[0], g[1], 3 * n * sizeof(double));
        assert_memory_equal(gt[0], gt[1], n * sizeof(double));
        if (!g_first) {
            g_first = g[0], d_first = d[0];
            g[0] = d[0] = NULL;
        } else {
            /* other thread counts: the dose is computed row by row in the
             * same order (identical); the D^T sums differ only by rounding */
            for (size_t r = 0; r < m; r++)
                if (tp.rc[r])
                    assert_true(d[0][r] == d_first[r]);
            assert_true(rel_diff(g[0], g_first, 3 * n) < KERNEL_TOL);
        }
        for (int rep = 0; rep < 2; rep++)
            imrt_free(d[rep]), imrt_free(g[rep]), imrt_free(gt[rep]);
    }
    imrt_free(g_first), imrt_free(d_first), imrt_free(tp.rc), imrt_free(x), imrt_free(w);
    tdu_free(&D);
}

/* The 16-bit packed column indices: every optimised kernel gives bitwise
 * the same result with and without them (same arithmetic, same order),
 * including rows shorter than the unrolled steps; the pack is refused for
 * too many columns or a workspace of another shape, and its allocation
 * failure leaves the workspace usable. */
static void test_packed_indices_bitwise_equal(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 2600, 300, 81);
    const size_t m = (size_t)D.nrows, n = (size_t)D.ncols;
    test_program tp;
    make_program(&tp, D.nrows);
    double *x = random_vec(n, 0.0, 0.4, 9), *w = random_vec(m, -1.0, 1.0, 10);
    const int64_t nl = 200;
    int64_t *rows = random_rows(nl, m, 5);
    imrt_spmv_kernels opt;
    imrt_spmv_kernels_optimised(&opt);
    double *d[2], *g[2], *gt[2], *gr[2];
    for (int i = 0; i < NTC; i++) {
        for (int v = 0; v < 2; v++) {
            imrt_spmv_ws *ws = NULL;
            assert_ok(imrt_spmv_ws_create(&D, thread_counts[i], 3, tp.rc, &ws));
            assert_int_equal(imrt_spmv_ws_packed(ws, &D), 0);
            if (v) {
                assert_ok(imrt_spmv_ws_pack(ws, &D));
                assert_ok(imrt_spmv_ws_pack(ws, &D)); /* again: nothing to do */
                assert_int_equal(imrt_spmv_ws_packed(ws, &D), 1);
            }
            d[v] = imrt_calloc(m, sizeof(double));
            g[v] = imrt_calloc(3 * n, sizeof(double));
            gt[v] = imrt_calloc(n, sizeof(double));
            gr[v] = imrt_calloc(n, sizeof(double));
            opt.fused(&D, x, &tp.p, d[v], g[v], ws);
            opt.rmatvec(&D, w, gt[v], ws);
            opt.rows(&D, nl, rows, w, gr[v], ws);
            opt.matvec(&D, x, d[v], ws); /* every row, over the fused dose */
            imrt_spmv_ws_destroy(&ws);
        }
        assert_memory_equal(d[0], d[1], m * sizeof(double));
        assert_memory_equal(g[0], g[1], 3 * n * sizeof(double));
        assert_memory_equal(gt[0], gt[1], n * sizeof(double));
        assert_memory_equal(gr[0], gr[1], n * sizeof(double));
        for (int v = 0; v < 2; v++)
            imrt_free(d[v]), imrt_free(g[v]), imrt_free(gt[v]), imrt_free(gr[v]);
    }

    /* a workspace for another dij (other column count) is refused */
    imrt_dij E;
    make_dij(&E, 50, 7, 82);
    imrt_spmv_ws *ws = NULL;
    assert_ok(imrt_spmv_ws_create(&E, 2, 1, NULL, &ws));
    assert_int_equal(imrt_spmv_ws_pack(ws, &D), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "300"));
    assert_int_equal(imrt_spmv_ws_pack(NULL, &D), IMRT_ERR_ARG);
    /* allocation failure: the workspace stays unpacked and usable */
    imrt_alloc_fail_after(1);
    assert_int_equal(imrt_spmv_ws_pack(ws, &E), IMRT_ERR_NOMEM);
    imrt_alloc_fail_after(0);
    assert_int_equal(imrt_spmv_ws_packed(ws, &E), 0);
    imrt_spmv_ws_destroy(&ws);
    tdu_free(&E);

    /* more columns than 16 bits can index */
    const double A[2] = {1.0, 2.0};
    assert_int_equal(tdu_from_dense(&E, 1, 2, A), 0);
    E.ncols = IMRT_SPMV_PACK16_MAX_COLS + 1;
    assert_ok(imrt_spmv_ws_create(&E, 1, 1, NULL, &ws));
    assert_int_equal(imrt_spmv_ws_pack(ws, &E), IMRT_ERR_RANGE);
    assert_non_null(strstr(imrt_last_error(), "65537"));
    imrt_spmv_ws_destroy(&ws);
    E.ncols = 2;
    tdu_free(&E);

    imrt_free(rows), imrt_free(tp.rc), imrt_free(x), imrt_free(w);
    tdu_free(&D);
}

/* A dij shaped like one with scatter maps: each row has entries in the
 * beamlet columns 0..nlead-1 at random (density dl; rows of every length
 * mod 8, some without), then pairs of adjacent map columns (c, c + 1) in
 * nlead..nlead+nmap-1 at random places that never overlap (density dm,
 * some rows without). Rows r % 97 == 5 are empty. */
static void make_paired_dij(imrt_dij *D, int64_t nrows, int32_t nlead, int32_t nmap, double dl,
                            double dm, uint64_t seed)
{
    const int64_t cap = nrows * (int64_t)(nlead + nmap);
    assert_int_equal(tdu_alloc(D, nrows, nlead, cap, 16, 16, (int)((nrows + 255) / 256)), 0);
    D->nvirt = nmap;
    uint64_t s = seed;
    int64_t k = 0;
    for (int64_t r = 0; r < nrows; r++) {
        D->rowptr[r] = k;
        if (r % 97 == 5)
            continue;
        for (int32_t j = 0; j < nlead; j++)
            if (tdu_uniform(&s) < dl) {
                D->col[k] = j;
                D->val[k++] = (float)(0.01 + tdu_uniform(&s));
            }
        for (int32_t c = nlead; c + 1 < nlead + nmap; c++)
            if (tdu_uniform(&s) < dm) {
                for (int h = 0; h < 2; h++) {
                    D->col[k] = c + h;
                    D->val[k++] = (float)(0.01 + tdu_uniform(&s));
                }
                c++;
            }
    }
    D->rowptr[nrows] = k;
    D->nnz = k;
    assert_ok(imrt_spmv_check(D));
}

/* Rows that end in pairs of adjacent map columns (a dij with scatter maps):
 * the workspace finds them, and every optimised kernel with them agrees
 * with the reference, bitwise with 16-bit indices, bitwise run to run and
 * to rounding across thread counts. A dij where one row breaks the pattern
 * (a lone map entry, or pairs that are not adjacent) gets no pair table
 * and the same answers; a workspace never applies its table to another
 * dij. */
static void test_pair_sections(void **state)
{
    (void)state;
    imrt_dij D;
    make_paired_dij(&D, 2500, 70, 260, 0.2, 0.06, 91);
    const size_t m = (size_t)D.nrows, n = (size_t)imrt_dij_width(&D);
    test_program tp;
    make_program(&tp, D.nrows);
    double *x = random_vec(n, 0.0, 0.2, 11), *w = random_vec(m, -1.0, 1.0, 12);
    const int64_t nl = 300;
    int64_t *rows = random_rows(nl, m, 13);
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    double *d0 = imrt_calloc(m, sizeof(double)), *g0 = imrt_calloc(3 * n, sizeof(double));
    double *t0 = imrt_calloc(n, sizeof(double)), *r0 = imrt_calloc(n, sizeof(double));
    double *dm = imrt_calloc(m, sizeof(double));
    ref.fused(&D, x, &tp.p, d0, g0, NULL);
    ref.rmatvec(&D, w, t0, NULL);
    ref.rows(&D, nl, rows, w, r0, NULL);
    ref.matvec(&D, x, dm, NULL);

    /* the pattern: pairs after the beamlet columns, in rows of all shapes */
    int64_t pairs = 0, odd_lead = 0;
    for (int64_t r = 0; r < D.nrows; r++) {
        int64_t k = D.rowptr[r];
        while (k < D.rowptr[r + 1] && D.col[k] < D.ncols)
            k++;
        pairs += (D.rowptr[r + 1] - k) / 2;
        odd_lead += (k - D.rowptr[r]) % 2;
    }
    assert_true(pairs > 10000 && odd_lead > 500);

    double *d[2], *g[2], *t[2], *rr[2], *dd[2];
    for (int i = 0; i < NTC; i++) {
        for (int v = 0; v < 2; v++) {
            imrt_spmv_ws *ws = NULL;
            assert_ok(imrt_spmv_ws_create(&D, thread_counts[i], 3, tp.rc, &ws));
            assert_int_equal(imrt_spmv_ws_paired(ws, &D), 1);
            if (v)
                assert_ok(imrt_spmv_ws_pack(ws, &D));
            d[v] = imrt_calloc(m, sizeof(double)), g[v] = imrt_calloc(3 * n, sizeof(double));
            t[v] = imrt_calloc(n, sizeof(double)), rr[v] = imrt_calloc(n, sizeof(double));
            dd[v] = imrt_calloc(m, sizeof(double));
            opt.fused(&D, x, &tp.p, d[v], g[v], ws);
            opt.rmatvec(&D, w, t[v], ws);
            opt.rows(&D, nl, rows, w, rr[v], ws);
            opt.matvec(&D, x, dd[v], ws);
            imrt_spmv_ws_destroy(&ws);
        }
        for (size_t r = 0; r < m; r++)
            if (tp.rc[r])
                assert_close(d[0][r], d0[r], 1e-13, 1e-300);
        assert_true(rel_diff(dd[0], dm, m) < KERNEL_TOL);
        assert_true(rel_diff(g[0], g0, 3 * n) < KERNEL_TOL);
        assert_true(rel_diff(t[0], t0, n) < KERNEL_TOL);
        assert_true(rel_diff(rr[0], r0, n) < KERNEL_TOL);
        assert_memory_equal(d[0], d[1], m * sizeof(double));
        assert_memory_equal(g[0], g[1], 3 * n * sizeof(double));
        assert_memory_equal(t[0], t[1], n * sizeof(double));
        assert_memory_equal(rr[0], rr[1], n * sizeof(double));
        assert_memory_equal(dd[0], dd[1], m * sizeof(double));
        for (int v = 0; v < 2; v++)
            imrt_free(d[v]), imrt_free(g[v]), imrt_free(t[v]), imrt_free(rr[v]),
                imrt_free(dd[v]);
    }

    /* two beamlet and three map columns: row 0 = {0} + pair {2, 3}; row 1
     * as given: pairs may start at any map column, a lone map entry or two
     * map entries that are not adjacent leave the workspace without a
     * table, and the kernels still give the reference's answers */
    static const struct {
        double row1[5];
        int paired;
    } shapes[] = {
        {{0, 0, 0, 1.5, 2.5}, 1}, /* pair {3, 4} */
        {{1, 0, 0, 0, 0}, 1},     /* beamlet column only */
        {{0, 0, 1.5, 0, 0}, 0},   /* lone map entry */
        {{0, 0, 1.5, 0, 2.5}, 0}, /* map entries 2 and 4 */
        {{1, 1, 1, 1, 1}, 0},     /* three map entries */
    };
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        double A[10] = {0.5, 0, 0.25, 0.75, 0};
        memcpy(A + 5, shapes[c].row1, sizeof shapes[c].row1);
        imrt_dij S;
        assert_int_equal(tdu_from_dense(&S, 2, 5, A), 0);
        S.ncols = 2;
        S.nvirt = 3;
        imrt_spmv_ws *ws = NULL;
        assert_ok(imrt_spmv_ws_create(&S, 1, 1, NULL, &ws));
        assert_int_equal(imrt_spmv_ws_paired(ws, &S), shapes[c].paired);
        const double xs[5] = {1.0, 2.0, 3.0, 5.0, 7.0};
        double ds[2], dr[2];
        ref.matvec(&S, xs, dr, NULL);
        opt.matvec(&S, xs, ds, ws);
        assert_close(dr[0], 0.5 + 0.75 + 3.75, 1e-15, 0);
        assert_close(ds[0], dr[0], 1e-15, 0);
        assert_close(ds[1], dr[1], 1e-15, 0);
        imrt_spmv_ws_destroy(&ws);
        tdu_free(&S);
    }

    /* the table of one dij is never applied to another of the same shape */
    imrt_dij E;
    make_paired_dij(&E, 2500, 70, 260, 0.2, 0.06, 92);
    imrt_spmv_ws *ws = NULL;
    assert_ok(imrt_spmv_ws_create(&D, 2, 1, NULL, &ws));
    assert_int_equal(imrt_spmv_ws_paired(ws, &D), 1);
    assert_int_equal(imrt_spmv_ws_paired(ws, &E), 0);
    double *de = imrt_calloc(m, sizeof(double)), *dr = imrt_calloc(m, sizeof(double));
    ref.matvec(&E, x, dr, NULL);
    opt.matvec(&E, x, de, ws);
    assert_true(rel_diff(de, dr, m) < KERNEL_TOL);
    imrt_spmv_ws_destroy(&ws);
    /* the table's allocation (the workspace's fourth) failing fails the
     * workspace, which leaks nothing */
    imrt_alloc_fail_after(4);
    assert_int_equal(imrt_spmv_ws_create(&D, 2, 1, NULL, &ws), IMRT_ERR_NOMEM);
    imrt_alloc_fail_after(0);
    assert_null(ws);
    imrt_free(de), imrt_free(dr);
    tdu_free(&E);

    imrt_free(d0), imrt_free(g0), imrt_free(t0), imrt_free(r0), imrt_free(dm);
    imrt_free(rows), imrt_free(tp.rc), imrt_free(x), imrt_free(w);
    tdu_free(&D);
}

/* The Newton solver's row subsets (engine/rowset.c) run on the same row
 * loops: S^T diag(w) S v and sum_i w_i S_ij^2 against the reference
 * kernels over the whole dij with w zero outside the subset, with and
 * without the dij's pair table, 16-bit (narrow) and 32-bit (wide) indices, at
 * 1, 2 and 3 threads. */
static void test_rowset_products(void **state)
{
    (void)state;
    imrt_spmv_kernels ref;
    imrt_spmv_kernels_reference(&ref);
    for (int shape = 0; shape < 4; shape++) {
        imrt_dij D;
        if (shape == 0)
            make_dij(&D, 1800, 90, 101); /* no map columns */
        else if (shape == 3)
            make_paired_dij(&D, 40, 70, 65600, 0.3, 0.0005, 104); /* wider than 16 bits */
        else
            make_paired_dij(&D, 1800, 70, 260, 0.2, 0.06, 102);
        const size_t m = (size_t)D.nrows, n = (size_t)imrt_dij_width(&D);
        if (shape == 2) { /* one copied row breaks its pairs: the dij, so the subset, has no
                             table */
            int64_t r = 0; /* a copied row (every third) that ends in a pair */
            while (D.rowptr[r + 1] - D.rowptr[r] < 2 || D.col[D.rowptr[r + 1] - 1] < D.ncols ||
                   D.col[D.rowptr[r + 1] - 1] + 1 >= (int32_t)n)
                r += 3;
            D.col[D.rowptr[r + 1] - 1] += 1;
        }
        /* every third row, and row weights with zeros */
        const int64_t nset = (int64_t)(m + 2) / 3;
        int64_t *rows = imrt_calloc((size_t)nset, sizeof *rows);
        double *ws = random_vec((size_t)nset, -1.0, 2.0, 105);
        double *wfull = imrt_calloc(m, sizeof(double));
        for (int64_t i = 0; i < nset; i++) {
            rows[i] = 3 * i;
            if (i % 7 == 3)
                ws[i] = 0.0;
        }
        double *v = random_vec(n, -1.0, 1.0, 106), *d = imrt_calloc(m, sizeof(double));
        double *want = imrt_calloc(n, sizeof(double)), *wdiag = imrt_calloc(n, sizeof(double));
        ref.matvec(&D, v, d, NULL);
        for (int64_t i = 0; i < nset; i++) {
            wfull[rows[i]] = ws[i] * d[rows[i]];
            for (int64_t k = D.rowptr[rows[i]]; k < D.rowptr[rows[i] + 1]; k++)
                wdiag[D.col[k]] += ws[i] * (double)D.val[k] * (double)D.val[k];
        }
        ref.rmatvec(&D, wfull, want, NULL);
        double *got = imrt_calloc(n, sizeof(double));
        for (int T = 1; T <= 3; T++) {
            imrt_spmv_ws *wsp = NULL; /* the dij's pair table, as the objective set passes it */
            assert_ok(imrt_spmv_ws_create(&D, T, 1, NULL, &wsp));
            imrt_rowset *S = NULL;
            assert_ok(imrt_rowset_create(&D, rows, nset, imrt_spmv_ws_lead(wsp, &D), T, &S));
            imrt_spmv_ws_destroy(&wsp);
            assert_true((S->lead != NULL) == (shape == 1 || shape == 3));
            assert_true((S->col16 != NULL) == (shape != 3));
            imrt_rowset_wtw(S, ws, v, got);
            assert_true(rel_diff(got, want, n) < KERNEL_TOL);
            imrt_rowset_diag(S, ws, got);
            assert_true(rel_diff(got, wdiag, n) < KERNEL_TOL);
            imrt_rowset_destroy(&S);
        }
        imrt_free(rows), imrt_free(ws), imrt_free(wfull), imrt_free(v), imrt_free(d);
        imrt_free(want), imrt_free(wdiag), imrt_free(got);
        tdu_free(&D);
    }
}

static void test_split_balances_nonzeros(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 4000, 50, 61);
    int64_t longest = 0;
    for (int64_t r = 0; r < D.nrows; r++)
        longest = IMRT_TEST_MAX(longest, D.rowptr[r + 1] - D.rowptr[r]);
    /* chunks (one for one thread; otherwise up to 8 per thread, as many as
     * keep the accumulator traffic 2 C block under nnz / 64, at least one
     * per thread) hold total/C non-zeros, give or take one row */
    for (int T = 1; T <= 5; T++) {
        imrt_spmv_ws *ws = NULL;
        assert_ok(imrt_spmv_ws_create(&D, T, 1, NULL, &ws));
        const int C = ws->nchunks;
        int per = 1;
        while (per < IMRT_SPMV_CHUNKS_PER_THREAD &&
               2.0 * IMRT_SPMV_ACC_SHARE * T * (per + 1) * (double)ws->block <= (double)D.nnz)
            per++;
        assert_int_equal(C, T == 1 ? 1 : T * per);
        /* a narrow dij keeps all 8 per thread; many channels cut them to one */
        if (T == 2) {
            imrt_dij L;
            make_dij(&L, 20000, 50, 63); /* 150 000 non-zeros, blocks of 56 */
            imrt_spmv_ws *w2 = NULL;
            assert_ok(imrt_spmv_ws_create(&L, T, 1, NULL, &w2));
            assert_int_equal(w2->nchunks, 2 * IMRT_SPMV_CHUNKS_PER_THREAD);
            imrt_spmv_ws_destroy(&w2);
            assert_ok(imrt_spmv_ws_create(&L, T, 200, NULL, &w2));
            assert_int_equal(w2->nchunks, 2);
            imrt_spmv_ws_destroy(&w2);
            tdu_free(&L);
        }
        assert_int_equal(ws->split[0], 0);
        assert_int_equal(ws->split[C], D.nrows);
        for (int c = 0; c < C; c++) {
            assert_true(ws->split[c + 1] >= ws->split[c]);
            int64_t nnz = D.rowptr[ws->split[c + 1]] - D.rowptr[ws->split[c]];
            assert_true(llabs(nnz * C - D.nnz) <= C * longest);
        }
        imrt_spmv_ws_destroy(&ws);
    }
    /* far more chunks than rows: empty chunks, still the reference answer */
    imrt_dij S;
    make_dij(&S, 3, 5, 62);
    double x[5] = {1, 2, 3, 4, 5}, d[3], dr[3];
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    imrt_spmv_ws *ws = NULL;
    assert_ok(imrt_spmv_ws_create(&S, 16, 1, NULL, &ws));
    opt.matvec(&S, x, d, ws);
    ref.matvec(&S, x, dr, NULL);
    for (int r = 0; r < 3; r++)
        assert_close(d[r], dr[r], 1e-14, 0);
    double w[3] = {1, -1, 2}, g[5], gr[5];
    opt.rmatvec(&S, w, g, ws);
    ref.rmatvec(&S, w, gr, NULL);
    for (int j = 0; j < 5; j++)
        assert_close(g[j], gr[j], 1e-14, 1e-15);
    imrt_spmv_ws_destroy(&ws);
    tdu_free(&S);
    tdu_free(&D);
}

static void test_dose_entry_point_and_kernel_choice(void **state)
{
    (void)state;
    /* 2 x 3 matrix by hand: d = D x */
    const double A[6] = {1.0, 0.5, 0.0, 0.0, 2.0, 0.25};
    imrt_dij D;
    assert_int_equal(tdu_from_dense(&D, 2, 3, A), 0);
    const double x[3] = {2.0, 4.0, 8.0};
    double d[2];
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_ok(imrt_spmv_dose(ctx, &D, x, d));
    assert_close(d[0], 4.0, 1e-15, 0);  /* 1*2 + 0.5*4 */
    assert_close(d[1], 10.0, 1e-15, 0); /* 2*4 + 0.25*8 */
    imrt_spmv_kernels k;
    imrt_context_set_kernels(ctx, IMRT_KERNELS_REFERENCE);
    imrt_spmv_kernels_select(&k, ctx);
    assert_string_equal(k.name_fused, "spmv_csr_fused_ref");
    imrt_context_set_kernels(ctx, IMRT_KERNELS_OPTIMISED);
    imrt_spmv_kernels_select(&k, ctx);
    assert_string_equal(k.name_fused, "spmv_csr_fused_omp");
    assert_int_equal(imrt_spmv_dose(ctx, NULL, x, d), IMRT_ERR_ARG);
    imrt_context_destroy(&ctx);
    tdu_free(&D);
}

static void test_check_rejects_bad_csr(void **state)
{
    (void)state;
    const double A[6] = {1.0, 0.5, 0.0, 0.0, 2.0, 0.25};
    imrt_dij D;
    assert_int_equal(tdu_from_dense(&D, 2, 3, A), 0);
    assert_ok(imrt_spmv_check(&D));
    D.col[1] = 3;
    assert_int_equal(imrt_spmv_check(&D), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "col[1] = 3"));
    D.col[1] = 1;
    D.val[2] = -1.0f;
    assert_int_equal(imrt_spmv_check(&D), IMRT_ERR_ARG);
    D.val[2] = 2.0f;
    D.rowptr[1] = 3, D.rowptr[2] = 2;
    assert_int_equal(imrt_spmv_check(&D), IMRT_ERR_ARG);
    D.rowptr[1] = 2, D.rowptr[2] = 4;
    assert_ok(imrt_spmv_check(&D));
    D.nnz = 5;
    assert_int_equal(imrt_spmv_check(&D), IMRT_ERR_ARG);
    D.nnz = 4;
    assert_int_equal(imrt_spmv_check(NULL), IMRT_ERR_ARG);
    tdu_free(&D);
}

static void test_ws_allocation_failures(void **state)
{
    (void)state;
    imrt_dij D;
    make_dij(&D, 100, 10, 71);
    for (long n = 1; n <= 3; n++) {
        imrt_spmv_ws *ws = NULL;
        imrt_alloc_fail_after(n);
        assert_int_equal(imrt_spmv_ws_create(&D, 2, 2, NULL, &ws), IMRT_ERR_NOMEM);
        assert_null(ws);
    }
    imrt_alloc_fail_after(0);
    imrt_spmv_ws *ws = NULL;
    assert_int_equal(imrt_spmv_ws_create(&D, 0, 1, NULL, &ws), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "threads = 0"));
    imrt_spmv_ws_destroy(&ws);
    imrt_spmv_ws_destroy(NULL);
    tdu_free(&D);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_match_reference),
        cmocka_unit_test(test_adjoint_identity),
        cmocka_unit_test(test_rows_kernel),
        cmocka_unit_test(test_fused_matches_two_pass),
        cmocka_unit_test(test_determinism_and_thread_counts),
        cmocka_unit_test(test_packed_indices_bitwise_equal),
        cmocka_unit_test(test_pair_sections),
        cmocka_unit_test(test_rowset_products),
        cmocka_unit_test(test_split_balances_nonzeros),
        cmocka_unit_test(test_dose_entry_point_and_kernel_choice),
        cmocka_unit_test(test_check_rejects_bad_csr),
        cmocka_unit_test(test_ws_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
