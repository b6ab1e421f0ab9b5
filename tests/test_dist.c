/*
 * tests/test_dist.c - distributed runs without MPI: the row partition
 * (imrt_dij_partition), the communicator setter's checks, and N "processes"
 * simulated by N threads that share an in-memory communicator (sums added
 * in rank order, row blocks copied). Against the single-process library:
 * each block of the distributed dij holds exactly the single dij's rows and
 * the blocks add up to it; the objective value and gradient (fused and
 * two-pass forms, every objective kind of tests/mpi/cshape*.json) agree to
 * rounding, and every process gets the same bits; the conformal dose is
 * identical. The MPI program itself is tested by tests/mpi/run.sh.
 */
#include "imrt.h"

#include "test_util.h"

#include <pthread.h>

#define MAXP 4

/* ---- partition ------------------------------------------------------------ */

static void test_partition(void **state)
{
    (void)state;
    /* 6 rows with 1, 1, 1, 1, 100, 1 entries */
    const int64_t rowptr[7] = {0, 1, 2, 3, 4, 104, 105};
    int64_t b[MAXP + 1];
    imrt_dij_partition(rowptr, 6, 1, b);
    assert_int_equal(b[0], 0);
    assert_int_equal(b[1], 6);
    imrt_dij_partition(rowptr, 6, 2, b); /* half of 105 lies in row 4 */
    assert_int_equal(b[0], 0);
    assert_int_equal(b[1], 5);
    assert_int_equal(b[2], 6);
    imrt_dij_partition(rowptr, 6, 4, b); /* monotone, may leave blocks empty */
    for (int p = 0; p < 4; p++)
        assert_true(b[p] <= b[p + 1]);
    assert_int_equal(b[4], 6);
    /* equal rows: equal blocks */
    int64_t even[10];
    for (int r = 0; r < 10; r++)
        even[r] = 3 * r;
    imrt_dij_partition(even, 9, 3, b);
    assert_int_equal(b[1], 3);
    assert_int_equal(b[2], 6);
    assert_int_equal(b[3], 9);
    /* no entries: rows split evenly */
    const int64_t zero[5] = {0, 0, 0, 0, 0};
    imrt_dij_partition(zero, 4, 2, b);
    assert_int_equal(b[1], 2);
    assert_int_equal(b[2], 4);
}

/* ---- an in-memory communicator over threads ---------------------------- */

typedef struct {
    int n;
    pthread_barrier_t bar;
    void *slot[MAXP];
    int64_t begin[MAXP], end[MAXP];
} world;

typedef struct {
    world *w;
    int rank;
} member;

/* Sum buf over the members into every member's buf (rank 0 adds the others'
 * in rank order, then everyone copies rank 0's result): one body for both
 * element types, as MPI_Reduce + MPI_Bcast do it. */
#define FAKE_SUM(name, T)                                                    \
    static imrt_status name(void *user, T *buf, int64_t n)                   \
    {                                                                        \
        member *m = user;                                                    \
        world *w = m->w;                                                     \
        w->slot[m->rank] = buf;                                              \
        pthread_barrier_wait(&w->bar);                                       \
        if (m->rank == 0)                                                    \
            for (int p = 1; p < w->n; p++)                                   \
                for (int64_t i = 0; i < n; i++)                              \
                    buf[i] += ((T *)w->slot[p])[i];                          \
        pthread_barrier_wait(&w->bar);                                       \
        if (m->rank != 0)                                                    \
            memcpy(buf, w->slot[0], (size_t)n * sizeof *buf);                \
        pthread_barrier_wait(&w->bar);                                       \
        return IMRT_OK;                                                      \
    }
FAKE_SUM(fake_sum, double)
FAKE_SUM(fake_sum_float, float)

static imrt_status fake_gather(void *user, double *v, int64_t n, int64_t begin, int64_t end)
{
    member *m = user;
    world *w = m->w;
    (void)n;
    w->slot[m->rank] = v;
    w->begin[m->rank] = begin;
    w->end[m->rank] = end;
    pthread_barrier_wait(&w->bar);
    for (int p = 0; p < w->n; p++)
        if (p != m->rank)
            memcpy(v + w->begin[p], (double *)w->slot[p] + w->begin[p],
                   (size_t)(w->end[p] - w->begin[p]) * sizeof *v);
    pthread_barrier_wait(&w->bar);
    return IMRT_OK;
}

static void test_set_comm_checks(void **state)
{
    (void)state;
    imrt_context *ctx = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_null(imrt_context_comm(ctx));
    imrt_comm c = {.rank = 2, .size = 2};
    assert_int_equal(imrt_context_set_comm(ctx, &c), IMRT_ERR_ARG); /* rank out of range */
    c.rank = 1;
    assert_int_equal(imrt_context_set_comm(ctx, &c), IMRT_ERR_ARG); /* no operations */
    c.sum = fake_sum;
    c.sum_float = fake_sum_float;
    c.gather = fake_gather;
    assert_ok(imrt_context_set_comm(ctx, &c));
    assert_non_null(imrt_context_comm(ctx));
    c.size = 1;
    c.rank = 0;
    assert_ok(imrt_context_set_comm(ctx, &c)); /* size 1 = single process */
    assert_null(imrt_context_comm(ctx));
    double v = 3.0;
    assert_ok(imrt_context_sum(ctx, &v, 1)); /* no communicator: unchanged */
    assert_close(v, 3.0, 0, 0);
    imrt_context_destroy(&ctx);
}

/* ---- the distributed evaluation against the single process ------------ */

typedef struct {
    const imrt_run *run;  /* single-process run: phantom, beams, full dij */
    const double *x;      /* weights to evaluate at */
    imrt_eval_mode mode;
    world *w;
    int rank;
    /* results */
    imrt_dij *dij;
    double f, x0_first;
    double *g;            /* ncols */
    float *crt_dose;      /* conformal dose for weights x (nvox) */
    imrt_status st;
    char err[512];
} job;

static void *rank_main(void *arg)
{
    job *J = arg;
    imrt_context *ctx = NULL;
    imrt_objectives *obj = NULL;
    member m = {J->w, J->rank};
    imrt_comm c = {.rank = J->rank, .size = J->w->n, .user = &m, .sum = fake_sum,
                   .sum_float = fake_sum_float, .gather = fake_gather};
    const imrt_run *run = J->run;
    double *x0 = NULL;
    imrt_dose_options dop;
    imrt_dose_options_from_plan(run->plan, &dop);
    imrt_status st = imrt_context_create(&ctx);
    if (st == IMRT_OK)
        st = imrt_context_set_threads(ctx, 1);
    if (st == IMRT_OK)
        st = imrt_context_set_comm(ctx, &c);
    if (st == IMRT_OK)
        st = imrt_dij_build(ctx, run->dose_phantom, run->beams, NULL, &dop, &J->dij);
    if (st == IMRT_OK)
        st = imrt_objectives_create(ctx, J->dij, run->dose_phantom, run->plan->objectives,
                                    run->plan->nobjectives, &obj);
    const int32_t n = run->dij->ncols;
    if (st == IMRT_OK && !(x0 = calloc((size_t)n, sizeof *x0)))
        st = IMRT_ERR_NOMEM;
    if (st == IMRT_OK)
        st = imrt_objectives_default_start(obj, run->plan->rx.dose_gy, x0);
    if (st == IMRT_OK) {
        J->x0_first = x0[0];
        imrt_objectives_set_mode(obj, J->mode);
        st = imrt_objectives_eval(obj, J->x, &J->f, J->g);
    }
    if (st == IMRT_OK)
        st = imrt_conformal_dose(ctx, J->dij, J->x, J->crt_dose);
    J->st = st;
    if (st != IMRT_OK)
        snprintf(J->err, sizeof J->err, "%s", imrt_last_error());
    free(x0);
    imrt_objectives_destroy(&obj);
    imrt_context_destroy(&ctx);
    return NULL;
}

/* lateral > 0: the plan with that lateral cut-off (the maps' interval
 * tables then come from the combined layout on every process). */
static void compare_with_single(const char *spec, int nprocs, double lateral)
{
    imrt_run *run = NULL;
    imrt_context *ctx = NULL;
    imrt_objectives *obj = NULL;
    assert_ok(imrt_context_create(&ctx));
    assert_ok(imrt_context_set_threads(ctx, 1));
    assert_ok(imrt_run_load(spec, NULL, &run));
    if (lateral > 0.0)
        run->plan->lateral_cutoff_mm = lateral;
    assert_ok(imrt_run_dij(ctx, run));
    if (lateral > 0.0)
        assert_true(run->dij->nvirt > 0 && run->dij->smap[0].cutoff == lateral);
    const imrt_dij *D = run->dij;
    const int32_t n = D->ncols;
    const int64_t nvox = imrt_grid_nvox(&D->grid);
    assert_ok(imrt_objectives_create(ctx, D, run->dose_phantom, run->plan->objectives,
                                     run->plan->nobjectives, &obj));
    double *x0 = calloc((size_t)n, sizeof *x0), *x = calloc((size_t)n, sizeof *x);
    double *g1 = calloc((size_t)n, sizeof *g1);
    float *crt1 = calloc((size_t)nvox, sizeof *crt1);
    assert_non_null(x0);
    assert_non_null(x);
    assert_non_null(g1);
    assert_non_null(crt1);
    assert_ok(imrt_objectives_default_start(obj, run->plan->rx.dose_gy, x0));
    /* a point away from the uniform start, so that every objective is active */
    uint64_t s = 12345;
    for (int32_t j = 0; j < n; j++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[j] = x0[j] * (0.2 + 1.6 * (double)(s >> 11) * 0x1.0p-53);
    }
    assert_ok(imrt_conformal_dose(ctx, D, x, crt1));

    for (int mode = 0; mode < 2; mode++) {
        double f1;
        imrt_objectives_set_mode(obj, (imrt_eval_mode)mode);
        assert_ok(imrt_objectives_eval(obj, x, &f1, g1));
        double gmax = 0.0;
        for (int32_t j = 0; j < n; j++)
            gmax = fmax(gmax, fabs(g1[j]));

        world w = {.n = nprocs};
        assert_int_equal(pthread_barrier_init(&w.bar, NULL, (unsigned)nprocs), 0);
        job jobs[MAXP];
        pthread_t th[MAXP];
        for (int p = 0; p < nprocs; p++) {
            memset(&jobs[p], 0, sizeof jobs[p]);
            jobs[p] = (job){.run = run, .x = x, .mode = (imrt_eval_mode)mode, .w = &w, .rank = p};
            jobs[p].g = calloc((size_t)n, sizeof(double));
            jobs[p].crt_dose = calloc((size_t)nvox, sizeof(float));
            assert_non_null(jobs[p].g);
            assert_non_null(jobs[p].crt_dose);
            assert_int_equal(pthread_create(&th[p], NULL, rank_main, &jobs[p]), 0);
        }
        for (int p = 0; p < nprocs; p++)
            pthread_join(th[p], NULL);
        pthread_barrier_destroy(&w.bar);

        int64_t nnz = 0, next = 0;
        for (int p = 0; p < nprocs; p++) {
            job *J = &jobs[p];
            if (J->st != IMRT_OK)
                fail_msg("rank %d of %d: %s", p, nprocs, J->err);
            const imrt_dij *d = J->dij;
            /* a contiguous block of the single dij's rows, entry for entry */
            assert_int_equal(d->nrows, D->nrows);
            assert_int_equal(d->row_begin, next);
            next = d->row_end;
            nnz += d->nnz;
            const int64_t off = D->rowptr[d->row_begin];
            for (int64_t r = 0; r < D->nrows; r++) {
                const int64_t len = d->rowptr[r + 1] - d->rowptr[r];
                const int mine = r >= d->row_begin && r < d->row_end;
                assert_int_equal(len, mine ? D->rowptr[r + 1] - D->rowptr[r] : 0);
                assert_int_equal(d->voxel[r], D->voxel[r]);
            }
            assert_memory_equal(d->col, D->col + off, (size_t)d->nnz * sizeof *d->col);
            assert_memory_equal(d->val, D->val + off, (size_t)d->nnz * sizeof *d->val);
            /* every process has the same results, close to the single process */
            assert_close(J->x0_first, x0[0], 1e-13, 0);
            assert_close(J->f, f1, 1e-12, 0);
            for (int32_t j = 0; j < n; j++)
                assert_close(J->g[j], g1[j], 0, 1e-12 * gmax);
            assert_memory_equal(J->g, jobs[0].g, (size_t)n * sizeof *J->g);
            assert_memory_equal(J->crt_dose, crt1, (size_t)nvox * sizeof *crt1);
        }
        assert_int_equal(next, D->nrows);
        assert_int_equal(nnz, D->nnz);
        for (int p = 0; p < nprocs; p++) {
            imrt_dij_destroy(&jobs[p].dij);
            free(jobs[p].g);
            free(jobs[p].crt_dose);
        }
    }
    free(x0);
    free(x);
    free(g1);
    free(crt1);
    imrt_objectives_destroy(&obj);
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
}

static void test_two_processes(void **state)
{
    (void)state;
    compare_with_single("tests/mpi/cshape_constraint.json", 2, 0.0);
}

static void test_three_processes(void **state)
{
    (void)state;
    compare_with_single("tests/mpi/cshape.json", 3, 0.0);
}

static void test_three_processes_lateral_cutoff(void **state)
{
    (void)state;
    compare_with_single("tests/mpi/cshape.json", 3, 40.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_set_comm_checks),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_three_processes),
        cmocka_unit_test(test_three_processes_lateral_cutoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
