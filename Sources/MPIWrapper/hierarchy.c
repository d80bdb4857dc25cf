/* hierarchy.c: the communicators of the machine's layout, and the hierarchical all-reduce
   (--hierarchical): the ranks of a node (MPI_Comm_split_type, shared memory) reduce to their
   node's first rank, the leader; the leaders all-reduce across nodes (libnbc's binomial or
   ring.c's ring); each leader broadcasts the sum to its node. Only the leaders' bytes cross
   between nodes: one buffer's worth a node, where a flat all-reduce over every rank sends
   each node's share of every rank's.

   Three stages on three communicators (the node's reduce, the leaders', the node's broadcast).
   MPI requires every member of a communicator to start its collectives in the same order, but
   stage 1 and 2 start when the stage before completes, which differs from rank to rank; so a
   hierarchical all-reduce starts its stage 1 and stage 2 only in the order the all-reduces
   were started (a counter per stage), and every test moves all of those in flight on, oldest
   first, so that none waits on one nobody tests. */
#include "half_internal.h"
#include "mpi_wrapper.h"
#include "schedule_internal.h"

#include <limits.h>
#include <stdlib.h>

static MPI_Comm world_copy = MPI_COMM_NULL;   /* the flat ring's */
static MPI_Comm node_reduce = MPI_COMM_NULL, node_broadcast = MPI_COMM_NULL, leaders = MPI_COMM_NULL;
static int node_rank = 0, node_size = 1, node_count = 1;

MPI_Comm mpiw_ring_comm(void) { return world_copy; }

int mpiw_schedules_init(void) {
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &world_copy);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_reduce);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(node_reduce, &node_broadcast);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(node_reduce, &node_rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node_reduce, &node_size);
    int world_rank = 0;
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split(MPI_COMM_WORLD, node_rank == 0 ? 0 : MPI_UNDEFINED, world_rank, &leaders);
    int leader = node_rank == 0;
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(&leader, &node_count, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    return rc;
}

void mpiw_node_layout(int *rank_in_node, int *ranks_in_node, int *nodes) {
    *rank_in_node = node_rank;
    *ranks_in_node = node_size;
    *nodes = node_count;
}

struct hierarchy {
    struct mpiw_schedule base;
    struct hierarchy *next;        /* in flight, oldest first */
    void *buffer;
    int count, format, ring;
    MPI_Datatype type;
    MPI_Op op;
    long sequence;
    int stage;                     /* 0 node reduce, 1 leaders, 2 node broadcast, 3 done */
    MPI_Request request;
    struct mpiw_schedule *inner;   /* stage 1 as a ring */
};

static struct hierarchy *in_flight = NULL;
static long started = 0, next_leaders = 0, next_broadcast = 0;

/* Starts stage `stage` of h, if it is its turn; h->request is then the stage's. */
static int start_stage(struct hierarchy *h) {
    if (h->stage == 1) {
        if (leaders == MPI_COMM_NULL || node_count == 1) { h->stage = 2; return start_stage(h); }
        if (h->sequence != next_leaders) return MPI_SUCCESS;
        next_leaders += 1;
        if (h->ring) return mpiw_ring_allreduce_start(h->buffer, (size_t)h->count, h->format, leaders, &h->inner);
        return MPI_Iallreduce(MPI_IN_PLACE, h->buffer, h->count, h->type, h->op, leaders, &h->request);
    }
    if (h->stage == 2) {
        if (node_size == 1) { h->stage = 3; return MPI_SUCCESS; }
        if (h->sequence != next_broadcast) return MPI_SUCCESS;
        next_broadcast += 1;
        return MPI_Ibcast(h->buffer, h->count, h->type, 0, node_broadcast, &h->request);
    }
    return MPI_SUCCESS;
}

/* Whether stage h->stage has been started (and so has a request or ring to test). */
static int stage_started(const struct hierarchy *h) {
    return h->request != MPI_REQUEST_NULL || h->inner != NULL;
}

/* Moves h on as far as it goes without blocking. */
static int step(struct hierarchy *h) {
    while (h->stage < 3) {
        if (!stage_started(h)) {
            int rc = start_stage(h);
            if (rc != MPI_SUCCESS) return rc;
            if (h->stage == 3) break;
            if (!stage_started(h)) return MPI_SUCCESS;   /* not its turn yet */
        }
        int complete = 0, rc;
        if (h->inner) {
            rc = h->inner->progress(h->inner, 0, &complete);
            if (rc == MPI_SUCCESS && complete) { h->inner->destroy(h->inner); h->inner = NULL; }
        } else {
            rc = MPI_Test(&h->request, &complete, MPI_STATUS_IGNORE);
        }
        if (rc != MPI_SUCCESS) return rc;
        if (!complete) return MPI_SUCCESS;
        h->stage += 1;
    }
    return MPI_SUCCESS;
}

static int hierarchy_progress(struct mpiw_schedule *schedule, int blocking, int *done) {
    struct hierarchy *self = (struct hierarchy *)schedule;
    for (;;) {
        for (struct hierarchy *h = in_flight; h; h = h->next) {
            int rc = step(h);
            if (rc != MPI_SUCCESS) return rc;
        }
        if (self->stage == 3 || !blocking) break;
    }
    *done = self->stage == 3;
    return MPI_SUCCESS;
}

static void hierarchy_destroy(struct mpiw_schedule *schedule) {
    struct hierarchy *h = (struct hierarchy *)schedule;
    for (struct hierarchy **link = &in_flight; *link; link = &(*link)->next) {
        if (*link == h) { *link = h->next; break; }
    }
    if (h->inner) h->inner->destroy(h->inner);
    if (h->request != MPI_REQUEST_NULL) MPI_Request_free(&h->request);
    free(h);
}

int mpiw_hierarchical_iallreduce(void *buffer, size_t count, int format, int ring, mpiw_request *request) {
    if (count > (size_t)INT_MAX) return MPI_ERR_COUNT;
    struct hierarchy *h = calloc(1, sizeof(*h));
    if (!h) return MPI_ERR_NO_MEM;
    h->base.progress = hierarchy_progress;
    h->base.destroy = hierarchy_destroy;
    h->buffer = buffer;
    h->count = (int)count;
    h->format = format;
    h->ring = ring;
    h->type = mpiw_element_type(format);
    h->request = MPI_REQUEST_NULL;
    int rc = format ? mpiw_half_sum_operation(format, &h->op) : MPI_SUCCESS;
    if (!format) h->op = MPI_SUM;
    if (rc != MPI_SUCCESS) { free(h); return rc; }
    h->sequence = started++;
    struct hierarchy **tail = &in_flight;
    while (*tail) tail = &(*tail)->next;
    *tail = h;
    if (node_size > 1) {
        rc = MPI_Ireduce(node_rank == 0 ? MPI_IN_PLACE : buffer, node_rank == 0 ? buffer : NULL, h->count, h->type, h->op, 0,
                         node_reduce, &h->request);
        if (rc != MPI_SUCCESS) { hierarchy_destroy(&h->base); return rc; }
    } else {
        h->stage = 1;
    }
    return mpiw_schedule_request(&h->base, request);
}
