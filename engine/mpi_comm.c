/*
 * engine/mpi_comm.c - imrt_comm over MPI: sums (reduce to rank 0, then
 * broadcast, so every process has the same bits) and the gather of row
 * blocks (MPI_Allgatherv). Built only with `make MPI=1`.
 */
#include "mpi_impl.h"

#include "util_impl.h"

#include <limits.h>
#include <string.h>

/* Elements per MPI call: counts are C ints. */
#define CHUNK ((int64_t)1 << 28)

static imrt_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    return imrt_error(IMRT_ERR_INTERNAL, "MPI %s failed: %s", what, msg);
}

static imrt_status reduce_bcast(imrt_mpi_comm *m, void *buf, int64_t n, MPI_Datatype type,
                                size_t elem)
{
    char *p = buf;
    for (int64_t off = 0; off < n; off += CHUNK) {
        const int cnt = (int)IMRT_MIN(CHUNK, n - off);
        void *at = p + (size_t)off * elem;
        int rc = m->rank == 0 ? MPI_Reduce(MPI_IN_PLACE, at, cnt, type, MPI_SUM, 0, m->comm)
                              : MPI_Reduce(at, NULL, cnt, type, MPI_SUM, 0, m->comm);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Reduce");
        rc = MPI_Bcast(at, cnt, type, 0, m->comm);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Bcast");
    }
    return IMRT_OK;
}

static imrt_status op_sum(void *user, double *buf, int64_t n)
{
    return reduce_bcast(user, buf, n, MPI_DOUBLE, sizeof *buf);
}

static imrt_status op_sum_float(void *user, float *buf, int64_t n)
{
    return reduce_bcast(user, buf, n, MPI_FLOAT, sizeof *buf);
}

static imrt_status op_gather(void *user, double *v, int64_t n, int64_t begin, int64_t end)
{
    imrt_mpi_comm *m = user;
    int64_t mine[2] = {begin, end};
    int rc = MPI_Allgather(mine, 2, MPI_INT64_T, m->bounds, 2, MPI_INT64_T, m->comm);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Allgather");
    if (n > INT_MAX)
        return imrt_error(IMRT_ERR_RANGE, "distributed run: %lld rows exceed the MPI count "
                          "limit %d of one gather", (long long)n, INT_MAX);
    int64_t next = 0;
    for (int p = 0; p < m->size; p++) {
        const int64_t b = m->bounds[2 * p], e = m->bounds[2 * p + 1];
        if (b != next || e < b || e > n)
            return imrt_error(IMRT_ERR_ARG,
                              "distributed run: rank %d holds rows %lld..%lld, expected a block "
                              "starting at %lld (the blocks must tile 0..%lld in rank order)",
                              p, (long long)b, (long long)e - 1, (long long)next,
                              (long long)n - 1);
        m->displs[p] = (int)b;
        m->counts[p] = (int)(e - b);
        next = e;
    }
    if (next != n)
        return imrt_error(IMRT_ERR_ARG, "distributed run: the row blocks end at %lld of %lld rows",
                          (long long)next, (long long)n);
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, m->counts, m->displs, MPI_DOUBLE,
                        m->comm);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Allgatherv");
    return IMRT_OK;
}

imrt_status imrt_mpi_comm_init(imrt_mpi_comm *m, MPI_Comm c, imrt_comm *out)
{
    imrt_status status = IMRT_OK;
    memset(m, 0, sizeof *m);
    m->comm = c;
    MPI_Comm_rank(c, &m->rank);
    MPI_Comm_size(c, &m->size);
    IMRT_ALLOC(m->counts, m->size);
    IMRT_ALLOC(m->displs, m->size);
    IMRT_ALLOC(m->bounds, 2 * m->size);
    memset(out, 0, sizeof *out);
    out->rank = m->rank;
    out->size = m->size;
    out->user = m;
    out->sum = op_sum;
    out->sum_float = op_sum_float;
    out->gather = op_gather;
cleanup:
    if (status != IMRT_OK)
        imrt_mpi_comm_free(m);
    return status;
}

void imrt_mpi_comm_free(imrt_mpi_comm *m)
{
    imrt_free(m->counts);
    imrt_free(m->displs);
    imrt_free(m->bounds);
    m->counts = m->displs = NULL;
    m->bounds = NULL;
}
