/* ring.c: the ring all-reduce and reduce-scatter (--allreduce ring) over non-blocking
   point-to-point, progressed by mpiw_test and mpiw_wait like any other request.

   Rank r sends to r + 1 and receives from r − 1. The buffer is cut into one piece per rank.
   Reduce-scatter, round s = 0 … p − 2: rank r sends piece r − s − 1 and receives piece
   r − s − 2 (mod p), which it adds into its own copy; after the last round piece r holds the
   sum of every rank's (it went round the ring from r + 1, each rank adding its share). The
   all-gather, round g = 0 … p − 2: rank r sends piece r − g (summed) and receives piece
   r − g − 1 into place. Each rank sends and receives 2(p − 1)/p of the buffer, the least any
   all-reduce can (Patarasuk and Yuan 2009), against 2⌈log2 p⌉ whole buffers through the root
   of the binomial reduce and broadcast Open MPI's libnbc runs for an in-place MPI_Iallreduce.

   Every ring has its own tag (a counter per communicator that every member advances in the
   same order, as it starts its collectives), so rings in flight at once never take each other's messages; within
   one ring, the messages between two ranks arrive in the order they were sent (MPI's
   non-overtaking rule), round after round. */
#include "mpi_wrapper.h"
#include "schedule_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct ring {
    struct mpiw_schedule base;
    char *buffer;
    int format;
    size_t element;
    MPI_Datatype type;
    MPI_Comm comm;
    int size, rank, left, right, tag;
    int round, rounds, reduce_rounds;
    size_t *counts, *offsets;
    char *scratch;
    MPI_Request requests[2];
};

/* The next tag of each communicator rings have run on (the world's duplicate, the leaders'). */
#define RING_COMMUNICATORS 4
static MPI_Comm tag_comms[RING_COMMUNICATORS];
static int tag_next[RING_COMMUNICATORS];
static int tag_comm_count = 0;

static int next_tag(MPI_Comm comm) {
    int i = 0;
    while (i < tag_comm_count && tag_comms[i] != comm) i++;
    if (i == tag_comm_count) {
        if (tag_comm_count == RING_COMMUNICATORS) return -1;
        tag_comms[tag_comm_count] = comm;
        tag_next[tag_comm_count++] = 0;
    }
    int tag = tag_next[i];
    tag_next[i] = (tag + 1) % 32000;   /* MPI promises tags up to at least 32767 */
    return tag;
}

static int piece(const struct ring *g, int shift) { return ((g->rank - shift) % g->size + g->size) % g->size; }

/* Posts round g->round: the receive first, then the send. */
static int post(struct ring *g) {
    int send, receive;
    char *into;
    if (g->round < g->reduce_rounds) {
        send = piece(g, g->round + 1);
        receive = piece(g, g->round + 2);
        into = g->scratch;
    } else {
        int k = g->round - g->reduce_rounds;
        send = piece(g, k);
        receive = piece(g, k + 1);
        into = g->buffer + g->offsets[receive] * g->element;
    }
    int rc = MPI_Irecv(into, (int)g->counts[receive], g->type, g->left, g->tag, g->comm, &g->requests[1]);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Isend(g->buffer + g->offsets[send] * g->element, (int)g->counts[send], g->type, g->right, g->tag, g->comm,
                     &g->requests[0]);
}

static int ring_progress(struct mpiw_schedule *schedule, int blocking, int *done) {
    struct ring *g = (struct ring *)schedule;
    while (g->round < g->rounds) {
        int complete = 1;
        int rc = blocking ? MPI_Waitall(2, g->requests, MPI_STATUSES_IGNORE)
                          : MPI_Testall(2, g->requests, &complete, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (!complete) { *done = 0; return MPI_SUCCESS; }
        if (g->round < g->reduce_rounds) {
            int received = piece(g, g->round + 2);
            mpiw_sum_elements(g->scratch, g->buffer + g->offsets[received] * g->element, g->counts[received], g->format);
        }
        g->round += 1;
        if (g->round < g->rounds && (rc = post(g)) != MPI_SUCCESS) return rc;
    }
    *done = 1;
    return MPI_SUCCESS;
}

static void ring_destroy(struct mpiw_schedule *schedule) {
    struct ring *g = (struct ring *)schedule;
    for (int i = 0; i < 2; i++) {
        if (g->requests[i] != MPI_REQUEST_NULL) { MPI_Cancel(&g->requests[i]); MPI_Request_free(&g->requests[i]); }
    }
    free(g->counts);
    free(g->scratch);
    free(g);
}

int mpiw_ring_start(void *buffer, const size_t *counts, int format, MPI_Comm comm, int allgather,
                    struct mpiw_schedule **schedule) {
    struct ring *g = calloc(1, sizeof(*g));
    if (!g) return MPI_ERR_NO_MEM;
    g->base.progress = ring_progress;
    g->base.destroy = ring_destroy;
    g->buffer = buffer;
    g->format = format;
    g->element = mpiw_element_size(format);
    g->type = mpiw_element_type(format);
    g->comm = comm;
    g->requests[0] = g->requests[1] = MPI_REQUEST_NULL;
    MPI_Comm_size(comm, &g->size);
    MPI_Comm_rank(comm, &g->rank);
    g->left = (g->rank + g->size - 1) % g->size;
    g->right = (g->rank + 1) % g->size;
    g->tag = next_tag(comm);
    if (g->tag < 0) { ring_destroy(&g->base); return MPI_ERR_COMM; }
    g->reduce_rounds = g->size - 1;
    g->rounds = allgather ? 2 * (g->size - 1) : g->size - 1;
    g->counts = malloc(2 * (size_t)g->size * sizeof(size_t));
    if (!g->counts) { ring_destroy(&g->base); return MPI_ERR_NO_MEM; }
    g->offsets = g->counts + g->size;
    size_t offset = 0, largest = 0;
    for (int i = 0; i < g->size; i++) {
        if (counts[i] > (size_t)INT_MAX) { ring_destroy(&g->base); return MPI_ERR_COUNT; }
        g->counts[i] = counts[i];
        g->offsets[i] = offset;
        offset += counts[i];
        if (counts[i] > largest) largest = counts[i];
    }
    g->scratch = malloc(largest ? largest * g->element : 1);
    if (!g->scratch) { ring_destroy(&g->base); return MPI_ERR_NO_MEM; }
    if (g->rounds > 0) {
        int rc = post(g);
        if (rc != MPI_SUCCESS) { ring_destroy(&g->base); return rc; }
    }
    *schedule = &g->base;
    return MPI_SUCCESS;
}

/* The ring all-reduce's pieces: count / p each, one more for the first count mod p ranks. */
static size_t *even_pieces(size_t count, MPI_Comm comm) {
    int size;
    MPI_Comm_size(comm, &size);
    size_t *counts = malloc((size_t)size * sizeof(size_t));
    if (!counts) return NULL;
    for (int i = 0; i < size; i++) counts[i] = count / (size_t)size + ((size_t)i < count % (size_t)size ? 1 : 0);
    return counts;
}

int mpiw_ring_allreduce_start(void *buffer, size_t count, int format, MPI_Comm comm, struct mpiw_schedule **schedule) {
    size_t *counts = even_pieces(count, comm);
    if (!counts) return MPI_ERR_NO_MEM;
    int rc = mpiw_ring_start(buffer, counts, format, comm, 1, schedule);
    free(counts);
    return rc;
}

int mpiw_ring_iallreduce(void *buffer, size_t count, int format, mpiw_request *request) {
    struct mpiw_schedule *schedule;
    int rc = mpiw_ring_allreduce_start(buffer, count, format, mpiw_ring_comm(), &schedule);
    if (rc != MPI_SUCCESS) return rc;
    return mpiw_schedule_request(schedule, request);
}

int mpiw_ring_ireduce_scatter(void *buffer, const size_t *counts, int format, mpiw_request *request) {
    struct mpiw_schedule *schedule;
    int rc = mpiw_ring_start(buffer, counts, format, mpiw_ring_comm(), 0, &schedule);
    if (rc != MPI_SUCCESS) return rc;
    return mpiw_schedule_request(schedule, request);
}
