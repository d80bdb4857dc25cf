/* Between half.c and mpi_wrapper.c: the MPI operation that sums 16-bit values in float32. */
#ifndef MPIW_HALF_INTERNAL_H
#define MPIW_HALF_INTERNAL_H
#include <mpi.h>

/* The commutative sum of format's values (MPIW_FORMAT_F16 or MPIW_FORMAT_BF16), created once. */
int mpiw_half_sum_operation(int format, MPI_Op *op);

#endif
