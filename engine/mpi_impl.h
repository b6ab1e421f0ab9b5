/*
 * engine/mpi_impl.h - the MPI side of a distributed run (built only with
 * `make MPI=1`, never part of libimrt): an imrt_comm (imrt/context.h) whose
 * operations are MPI collectives on a communicator.
 *
 * Bitwise agreement: imrt_comm requires every process to get the same bits
 * from a sum. MPI_Allreduce does not promise that (its algorithms may add in
 * a different order on different processes), so a sum is MPI_Reduce to
 * rank 0 followed by MPI_Bcast: one order, computed once. The gather is
 * MPI_Allgatherv of the contiguous row blocks (each value is copied, never
 * added), after an MPI_Allgather of the block bounds that checks they tile
 * the rows in rank order.
 */
#ifndef IMRT_MPI_IMPL_H
#define IMRT_MPI_IMPL_H

#include "imrt/context.h"

#include <mpi.h>

typedef struct {
    MPI_Comm comm; /* not owned */
    int rank, size;
    int *counts, *displs; /* gather workspace, size entries each */
    int64_t *bounds;      /* 2 * size block bounds of the last gather */
} imrt_mpi_comm;

/* Set up *m for communicator c and fill *out with the operations (out->user
 * = m). Errors: IMRT_ERR_NOMEM. */
imrt_status imrt_mpi_comm_init(imrt_mpi_comm *m, MPI_Comm c, imrt_comm *out);

/* Free the workspace of *m. */
void imrt_mpi_comm_free(imrt_mpi_comm *m);

#endif /* IMRT_MPI_IMPL_H */
