/* Between mpi_wrapper.c, ring.c and hierarchy.c: collectives Replica runs itself, as rounds of
   MPI requests that test and wait move on (MPI progresses them only inside its calls, so each
   round is posted by the call that sees the previous one complete). */
#ifndef MPIW_SCHEDULE_INTERNAL_H
#define MPIW_SCHEDULE_INTERNAL_H
#include <mpi.h>
#include <stddef.h>

struct mpiw_request_s;

struct mpiw_schedule {
    /* Tests the current round and posts the next while rounds complete; with `blocking`, waits
       until every round is done. *done = 1 once the result is in the buffer. */
    int (*progress)(struct mpiw_schedule *schedule, int blocking, int *done);
    /* Frees the schedule (after it is done, or after an error). */
    void (*destroy)(struct mpiw_schedule *schedule);
};

/* The element type and sum of a schedule's buffer: float32 (format 0) or a 16-bit format
   (MPIW_FORMAT_F16, MPIW_FORMAT_BF16) summed in float32 addition by addition. */
size_t mpiw_element_size(int format);
MPI_Datatype mpiw_element_type(int format);
/* inout[i] += input[i] in `format`. */
void mpiw_sum_elements(const void *input, void *inout, size_t count, int format);

/* A ring over `comm` (each rank sends to rank + 1, receives from rank − 1), in place on
   `buffer` split into the communicator's size of pieces of `counts` elements: p − 1 rounds of
   reduce-scatter, after which rank r's piece (at its offset) holds the sum, then, with
   `allgather`, p − 1 rounds that pass every summed piece on. Each count must fit an int. */
int mpiw_ring_start(void *buffer, const size_t *counts, int format, MPI_Comm comm, int allgather,
                    struct mpiw_schedule **schedule);
/* The ring all-reduce over `comm` with pieces of count / p (one more for the first count mod p). */
int mpiw_ring_allreduce_start(void *buffer, size_t count, int format, MPI_Comm comm, struct mpiw_schedule **schedule);
/* Hands a started schedule over as a request (mpi_wrapper.c). */
int mpiw_schedule_request(struct mpiw_schedule *schedule, struct mpiw_request_s **request);

/* The communicators the ring and the hierarchy run on, made by mpiw_init (hierarchy.c):
   duplicates and splits of the world, so that their messages never match anything else. */
int mpiw_schedules_init(void);
/* The world, for the flat ring. */
MPI_Comm mpiw_ring_comm(void);
#endif
