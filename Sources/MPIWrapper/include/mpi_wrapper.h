/*
 * mpi_wrapper.h: the few MPI calls Replica needs, in plain C types.
 *
 * Why this exists: Open MPI's handles (MPI_COMM_WORLD, MPI_SUM, MPI_FLOAT,
 * MPI_IN_PLACE) are cast macros of global addresses, which Swift cannot
 * import. Everything here speaks float*, size_t and an opaque request, so
 * Swift never touches an MPI type. No training logic lives here.
 *
 * Every function returns 0 or an MPI error code; mpiw_error_string turns a
 * code into MPI's own message.
 */
#ifndef REPLICA_MPI_WRAPPER_H
#define REPLICA_MPI_WRAPPER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An outstanding non-blocking operation (one MPI request per chunk). */
typedef struct mpiw_request_s *mpiw_request;

/* Initialises MPI once per process, asking for MPI_THREAD_MULTIPLE; later
   calls return 0 at once. `provided` receives the thread level MPI gave
   (0 single, 1 funneled, 2 serialized, 3 multiple). Thread-safe. */
int mpiw_init(int *provided);
/* 1 once mpiw_init has succeeded (and finalize has not run). */
int mpiw_is_initialized(void);
/* Finalizes once; later calls (and calls before init) do nothing. */
int mpiw_finalize(void);

int mpiw_rank(int *rank);
int mpiw_size(int *size);
double mpiw_wtime(void);

/* Largest element count one MPI call carries; larger buffers go in chunks.
   INT_MAX by default; tests lower it to exercise the chunking. */
void mpiw_set_max_chunk(size_t elements);
size_t mpiw_max_chunk(void);

/* In-place sums over all ranks. */
int mpiw_allreduce_sum_f32(float *buffer, size_t count);
int mpiw_allreduce_sum_f64(double *buffer, size_t count);
/* In-place maximum over all ranks (for agreeing on flags and timings). */
int mpiw_allreduce_max_f64(double *buffer, size_t count);

/* ---- 16-bit gradient compression (half.c) ---- */
enum { MPIW_FORMAT_F16 = 1, MPIW_FORMAT_BF16 = 2 };
/* output[i] = input[i] × scale rounded to format (nearest, ties to even; overflow to infinity). */
void mpiw_compress16(const float *input, uint16_t *output, size_t count, int format, float scale);
/* output[i] = float(input[i]) × scale. */
void mpiw_decompress16(const uint16_t *input, float *output, size_t count, int format, float scale);
/* inout[i] = round(float(input[i]) + float(inout[i])): the all-reduce's operation. */
void mpiw_sum16(const uint16_t *input, uint16_t *inout, size_t count, int format);
/* 0: the scalar fp16 conversions even where F16C exists (for tests); 1 (default): F16C if present. */
void mpiw_half_use_vector_instructions(int enabled);
/* Starts an in-place sum of 16-bit values, each addition in float32 and rounded back. */
int mpiw_iallreduce_sum16(uint16_t *buffer, size_t count, int format, mpiw_request *request);
/* The same as a reduce-scatter (ZeRO-1 with compression): rank r's sum lands at the buffer's start. */
int mpiw_ireduce_scatter_sum16(uint16_t *buffer, const size_t *counts, int format, mpiw_request *request);

/* Starts an in-place sum; finish it with mpiw_wait (or poll mpiw_test).
   The buffer must stay untouched until then. */
int mpiw_iallreduce_sum_f32(float *buffer, size_t count, mpiw_request *request);
/* Sets *done to 1 when the operation has finished (then the request is freed
   and set to NULL), 0 otherwise. Also drives MPI progress. */
int mpiw_test(mpiw_request *request, int *done);
/* Blocks until the operation finishes; frees the request and sets it to NULL. */
int mpiw_wait(mpiw_request *request);
/* Starts an in-place reduce-scatter sum (ZeRO's gradient reduction): the buffer holds the
   counts[0] + ... + counts[size-1] elements of every rank, in rank order; rank r's sum of its
   counts[r] elements lands at the START of the buffer (MPI's in-place rule), the rest is left
   undefined. Each count must fit an int. */
int mpiw_ireduce_scatter_sum_f32(float *buffer, const size_t *counts, mpiw_request *request);
/* Starts an in-place all-gather: rank r's counts[r] elements at their offset (the sum of the
   counts before r) go to every rank's buffer at that offset. Each count must fit an int. */
int mpiw_iallgather_f32(float *buffer, const size_t *counts, mpiw_request *request);

/* ---- Replica's own schedules (ring.c, hierarchy.c), finished with mpiw_test / mpiw_wait ----
   format: 0 float32, else MPIW_FORMAT_F16 or MPIW_FORMAT_BF16 (summed in float32 as above). */
/* The ring all-reduce: reduce-scatter then all-gather around the ranks, in place. */
int mpiw_ring_iallreduce(void *buffer, size_t count, int format, mpiw_request *request);
/* The ring reduce-scatter: rank r's sum of its counts[r] elements lands AT ITS OFFSET (the sum of
   the counts before r), not at the start as MPI's; the rest is left undefined. */
int mpiw_ring_ireduce_scatter(void *buffer, const size_t *counts, int format, mpiw_request *request);
/* Node-local reduce to each node's first rank, an all-reduce among those leaders (ring: 1 the
   ring, 0 Open MPI's), and a node-local broadcast. count must fit an int. */
int mpiw_hierarchical_iallreduce(void *buffer, size_t count, int format, int ring, mpiw_request *request);
/* This rank's place in the machine's layout: its rank among the ranks of its node (shared
   memory), their number, and the number of nodes. */
void mpiw_node_layout(int *rank_in_node, int *ranks_in_node, int *nodes);

/* Broadcasts `bytes` bytes from `root` to every rank. */
int mpiw_broadcast(void *buffer, size_t bytes, int root);
int mpiw_barrier(void);
/* Gathers `bytes` bytes from every rank into `output` (size × bytes), rank order. */
int mpiw_allgather(const void *input, size_t bytes, void *output);

/* Ends every rank of the job with `code`. Does not return. */
void mpiw_abort(int code);

/* MPI's message for an error code, into `buffer` (NUL-terminated). */
void mpiw_error_string(int code, char *buffer, size_t capacity);

/* ---- Watchdog (watchdog.c): hangs become messages and exit status 2. ---- */

/* Operations, as heartbeats and reports name them. */
enum {
    MPIW_OP_ALLREDUCE_F32 = 1,
    MPIW_OP_ALLREDUCE_F64 = 2,
    MPIW_OP_ALLREDUCE_MAX_F64 = 3,
    MPIW_OP_IALLREDUCE_F32 = 4,
    MPIW_OP_BROADCAST = 5,
    MPIW_OP_BARRIER = 6,
    MPIW_OP_ALLGATHER = 7,
    MPIW_OP_IREDUCE_SCATTER_F32 = 8,
    MPIW_OP_IALLGATHER_F32 = 9,
    MPIW_OP_IALLREDUCE_16 = 10,
    MPIW_OP_IREDUCE_SCATTER_16 = 11
};
const char *mpiw_operation_name(int operation);
/* The next collective's sequence number in this process (1, 2, ...). */
int64_t mpiw_next_sequence(void);
/* The main thread is about to block in collective `sequence` / has returned from it. */
void mpiw_watch_enter(int64_t sequence, int operation, int64_t count);
void mpiw_watch_leave(void);
/* Seconds a collective may wait before the stall report (0: never), and seconds of silence
   after which a rank counts as dead while this one waits for it. */
void mpiw_watchdog_configure(double timeout, double silence);
/* Started by mpiw_init (collective: duplicates the world communicator), stopped by finalize. */
int mpiw_watchdog_start(void);
/* Called on the watchdog's thread with what it reports (NULL: nobody): `fatal` 0 for a notice
   (this rank has waited over a second in one collective: who has not arrived), 1 for the report
   that ends the job, called just before the abort. `report` is one or more lines. */
typedef void (*mpiw_watchdog_observer)(int fatal, const char *report);
void mpiw_watchdog_observe(mpiw_watchdog_observer observer);
void mpiw_watchdog_stop(void);

/* ---- Supervisor (supervisor.c) ---- */

/* Under a launcher: runs this program again as the worker and waits for it. Returns -1 in the
   worker (go on), else the supervisor's exit status: the worker's, or 2 if a signal killed it
   (after a message naming `rank_label`). */
int mpiw_supervise(char **argv, const char *rank_label);

/* From now on SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 are recorded instead of ending the process
   (stop_signals.c); the training loop asks mpiw_stop_signal after every step. */
void mpiw_catch_stop_signals(void);
/* The first of those signals received since mpiw_catch_stop_signals (0: none). */
int mpiw_stop_signal(void);
/* How many have been received. */
int mpiw_stop_signal_count(void);

#ifdef __cplusplus
}
#endif

#endif
