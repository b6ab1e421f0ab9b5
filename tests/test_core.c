/*
 * tests/test_core.c - status codes, the allocator's failure injection, the
 * run context, the phantom container, metric names, and the OpenBLAS
 * threading model actually loaded at run time.
 */
#include "imrt.h"

#include "test_util.h"

#include <cblas.h>

static void test_status_messages(void **state)
{
    (void)state;
    assert_string_equal(imrt_status_str(IMRT_OK), "success");
    assert_string_equal(imrt_status_name(IMRT_ERR_PARSE), "IMRT_ERR_PARSE");
    assert_string_equal(imrt_status_str((imrt_status)-999), "unknown status");
    assert_int_equal(imrt_error(IMRT_ERR_RANGE, "x = %d", 7), IMRT_ERR_RANGE);
    assert_string_equal(imrt_last_error(), "x = 7");
    imrt_clear_error();
    assert_string_equal(imrt_last_error(), "");
}

static void test_alloc_alignment_and_overflow(void **state)
{
    (void)state;
    void *p = imrt_malloc(13);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % IMRT_ALIGN, 0);
    imrt_free(p);
    assert_null(imrt_calloc(SIZE_MAX / 2, 4)); /* overflow refused, not wrapped */
    assert_null(imrt_malloc(0));
    imrt_free(NULL);
}

/* Every allocation of phantom construction fails in turn: each failure is
 * reported as IMRT_ERR_NOMEM and leaves nothing allocated (ASan's leak
 * checker runs this under `make asan`). */
static void test_phantom_survives_every_allocation_failure(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {0, 0, 0};
    assert_ok(imrt_grid_init(&g, 8, 8, 8, 2, 2, 2, o));
    int failures_seen = 0;
    for (long n = 1; n < 50; n++) {
        imrt_alloc_fail_after(n);
        imrt_phantom *p = NULL;
        imrt_status st = imrt_phantom_create(&g, "x", 1.0f, &p);
        int idx = -1;
        for (int s = 0; st == IMRT_OK && s < 12; s++) {
            char name[16];
            snprintf(name, sizeof name, "s%d", s);
            st = imrt_phantom_add_structure(p, name, IMRT_KIND_OAR, 1 + s, &idx);
        }
        imrt_alloc_fail_after(0);
        if (st != IMRT_OK) {
            assert_int_equal(st, IMRT_ERR_NOMEM);
            failures_seen++;
        }
        imrt_phantom_destroy(&p);
        assert_null(p);
        if (st == IMRT_OK)
            break;
    }
    assert_true(failures_seen >= 3);
}

static void test_context(void **state)
{
    (void)state;
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_true(imrt_context_threads(ctx) >= 1);
    /* default budget: 70 % of physical memory */
    uint64_t phys = imrt_physical_memory();
    assert_true(phys > 0);
    assert_close((double)imrt_context_max_memory(ctx), 0.7 * (double)phys, 1e-6, 0);
    assert_int_equal(imrt_context_set_threads(ctx, 0), IMRT_ERR_RANGE);
    assert_ok(imrt_context_set_threads(ctx, 3));
    assert_int_equal(imrt_context_threads(ctx), 3);
    assert_int_equal(imrt_context_set_max_memory(ctx, 1000), IMRT_ERR_RANGE);
    imrt_context_destroy(&ctx);
    assert_null(ctx);
    imrt_context_destroy(&ctx);
}

static void test_phantom_structures(void **state)
{
    (void)state;
    imrt_grid g;
    const double o[3] = {-5, -5, -5};
    assert_ok(imrt_grid_init(&g, 11, 11, 11, 1, 1, 1, o));
    imrt_phantom *p = NULL;
    assert_ok(imrt_phantom_create(&g, "cube", 1.0f, &p));
    int body, ptv;
    assert_ok(imrt_phantom_add_structure(p, "BODY", IMRT_KIND_BODY, 3, &body));
    assert_ok(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &ptv));
    assert_int_equal(imrt_phantom_add_structure(p, "PTV", IMRT_KIND_OAR, 2, NULL),
                     IMRT_ERR_EXISTS);
    assert_int_equal(imrt_phantom_add_structure(p, "", IMRT_KIND_OAR, 2, NULL), IMRT_ERR_ARG);
    assert_int_equal(imrt_phantom_add_structure(p, "X", IMRT_KIND_OAR, 0, NULL), IMRT_ERR_RANGE);
    memset(p->structures[body].mask, 1, (size_t)imrt_grid_nvox(&g));
    /* PTV: the 3x3x3 block of voxels centred on (2, -1, 0) mm */
    for (int k = 4; k <= 6; k++)
        for (int j = 3; j <= 5; j++)
            for (int i = 6; i <= 8; i++)
                p->structures[ptv].mask[imrt_grid_index(&g, i, j, k)] = 1;
    imrt_structure_recount(p, &p->structures[body]);
    imrt_structure_recount(p, &p->structures[ptv]);
    assert_int_equal(p->structures[ptv].count, 27);
    assert_close(imrt_structure_volume_cc(p, &p->structures[body]), 1.331, 1e-12, 0);
    double c[3], lo[3], hi[3];
    assert_ok(imrt_structure_geometry(p, &p->structures[ptv], c, lo, hi));
    assert_close(c[0], 2.0, 0, 1e-12);
    assert_close(c[1], -1.0, 0, 1e-12);
    assert_close(c[2], 0.0, 0, 1e-12);
    assert_close(lo[0], 1.0, 0, 1e-12);
    assert_close(hi[0], 3.0, 0, 1e-12);
    uint8_t *labels = calloc((size_t)imrt_grid_nvox(&g), 1);
    imrt_phantom_label_map(p, labels);
    assert_int_equal(labels[imrt_grid_index(&g, 7, 4, 5)], ptv + 1); /* PTV beats BODY */
    assert_int_equal(labels[0], body + 1);
    free(labels);
    assert_int_equal(imrt_phantom_find(p, "PTV"), ptv);
    assert_int_equal(imrt_phantom_find(p, "nope"), -1);
    imrt_phantom_destroy(&p);
}

static void test_metric_names(void **state)
{
    (void)state;
    char k;
    double x;
    assert_ok(imrt_metric_parse("D95", &k, &x));
    assert_int_equal(k, 'D');
    assert_close(x, 95, 0, 0);
    assert_ok(imrt_metric_parse("D0.03cc", &k, &x));
    assert_int_equal(k, 'C');
    assert_close(x, 0.03, 1e-12, 0);
    assert_ok(imrt_metric_parse("V45_cm3", &k, &x));
    assert_int_equal(k, 'W');
    assert_close(x, 45, 0, 0);
    assert_ok(imrt_metric_parse("V20", &k, &x));
    assert_int_equal(k, 'V');
    assert_ok(imrt_metric_parse("Dmean", &k, &x));
    assert_int_equal(k, 'M');
    assert_int_equal(imrt_metric_parse("D101", &k, &x), IMRT_ERR_PARSE);
    assert_int_equal(imrt_metric_parse("Dfoo", &k, &x), IMRT_ERR_PARSE);
    assert_int_equal(imrt_metric_parse("V-5", &k, &x), IMRT_ERR_PARSE);
    assert_int_equal(imrt_metric_parse("", &k, &x), IMRT_ERR_PARSE);
    assert_non_null(strstr(imrt_last_error(), "allowed"));
}

/* Debian can load the pthread OpenBLAS even when the program was linked
 * against the OpenMP one; two thread pools would fight over the cores.
 * openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP. */
extern int openblas_get_parallel(void);
extern char *openblas_get_config(void);
static void test_openblas_is_openmp_build(void **state)
{
    (void)state;
    print_message("OpenBLAS: %s\n", openblas_get_config());
    assert_int_equal(openblas_get_parallel(), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_messages),
        cmocka_unit_test(test_alloc_alignment_and_overflow),
        cmocka_unit_test(test_phantom_survives_every_allocation_failure),
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_phantom_structures),
        cmocka_unit_test(test_metric_names),
        cmocka_unit_test(test_openblas_is_openmp_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
