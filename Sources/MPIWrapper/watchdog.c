/*
 * watchdog.c: a thread per rank that turns hangs into messages (docs/interface.md: exit status 2).
 *
 * Every rank's watchdog thread sends a small heartbeat to every other rank once a second, on a
 * communicator of its own, carrying what the rank is doing: the sequence number, operation and
 * element count of the collective it is waiting in (or the last one it finished). So every rank
 * knows, to within about a second, where the others are. While this rank waits in a collective:
 *   - longer than the timeout: it names the operation, its sequence number, and the ranks that
 *     have not arrived (Horovod's stall inspector), then aborts the job;
 *   - a rank waits in the same sequence number with another operation or count: a mismatch;
 *   - a rank has been silent for `silence` seconds (killed, crashed, or hung outside MPI with its
 *     threads stopped) or has left the job: named, and the job aborted.
 * The main thread only stores four numbers per collective (mpiw_watch_enter / mpiw_watch_leave).
 */
#include "mpi_wrapper.h"

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { TAG_HEARTBEAT = 7101, PHASE_IDLE = 0, PHASE_WAITING = 1, PHASE_LEFT = 2 };

/* One heartbeat: what the sender is doing, sent as bytes. */
typedef struct {
    int64_t sequence;  /* the collective waited in, or the last one entered when idle */
    int64_t count;
    int32_t operation;
    int32_t phase;
    double waited;     /* seconds in the current wait */
} heartbeat_t;

static MPI_Comm watch_comm = MPI_COMM_NULL;
static pthread_t watch_thread;
static atomic_int running = 0;
static atomic_int stop_requested = 0;
static int my_rank = 0, world_size = 1;

/* Written by the main thread, read by the watchdog. */
static atomic_llong current_sequence = 0, current_count = 0, entered_ns = 0;
static atomic_int current_operation = 0, current_phase = PHASE_IDLE;

/* Settings (seconds; a timeout of 0 turns the stall report off). */
static _Atomic double timeout_seconds = 300, silence_seconds = 10;

/* A wait this long in one collective is told to the observer once (the --timeline's notice). */
static const double notice_seconds = 1.0;
static _Atomic(mpiw_watchdog_observer) observer = NULL;

void mpiw_watchdog_observe(mpiw_watchdog_observer new_observer) { atomic_store(&observer, new_observer); }

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

const char *mpiw_operation_name(int operation) {
    switch (operation) {
    case MPIW_OP_ALLREDUCE_F32: return "all-reduce (float)";
    case MPIW_OP_ALLREDUCE_F64: return "all-reduce (double)";
    case MPIW_OP_ALLREDUCE_MAX_F64: return "maximum all-reduce (double)";
    case MPIW_OP_IALLREDUCE_F32: return "bucket all-reduce (float)";
    case MPIW_OP_BROADCAST: return "broadcast (bytes)";
    case MPIW_OP_BARRIER: return "barrier";
    case MPIW_OP_ALLGATHER: return "all-gather (bytes)";
    case MPIW_OP_IREDUCE_SCATTER_F32: return "bucket reduce-scatter (float)";
    case MPIW_OP_IALLGATHER_F32: return "bucket all-gather (float)";
    case MPIW_OP_IALLREDUCE_16: return "bucket all-reduce (16-bit)";
    case MPIW_OP_IREDUCE_SCATTER_16: return "bucket reduce-scatter (16-bit)";
    default: return "collective";
    }
}

static atomic_llong sequence_counter = 0;
int64_t mpiw_next_sequence(void) { return atomic_fetch_add(&sequence_counter, 1) + 1; }

void mpiw_watch_enter(int64_t sequence, int operation, int64_t count) {
    atomic_store(&current_sequence, sequence);
    atomic_store(&current_operation, operation);
    atomic_store(&current_count, count);
    atomic_store(&entered_ns, (long long)(now_seconds() * 1e9));
    atomic_store(&current_phase, PHASE_WAITING);
}

void mpiw_watch_leave(void) { atomic_store(&current_phase, PHASE_IDLE); }

void mpiw_watchdog_configure(double timeout, double silence) {
    atomic_store(&timeout_seconds, timeout);
    atomic_store(&silence_seconds, silence > 0 ? silence : 10);
}

static heartbeat_t my_state(double now) {
    heartbeat_t state;
    state.sequence = atomic_load(&current_sequence);
    state.count = atomic_load(&current_count);
    state.operation = atomic_load(&current_operation);
    state.phase = atomic_load(&current_phase);
    state.waited = state.phase == PHASE_WAITING ? now - (double)atomic_load(&entered_ns) * 1e-9 : 0;
    return state;
}

/* Describes what rank `rank` was last heard doing, for reports. */
static void describe(char *out, size_t capacity, int rank, const heartbeat_t *state, double heard_ago, int heard) {
    if (!heard) {
        snprintf(out, capacity, "rank %d: never heard from", rank);
    } else if (state->phase == PHASE_LEFT) {
        snprintf(out, capacity, "rank %d: has left the job (finished or stopping)", rank);
    } else if (state->phase == PHASE_WAITING) {
        snprintf(out, capacity, "rank %d: waiting %.1f s in #%lld %s of %lld (heard %.1f s ago)", rank, state->waited,
                 (long long)state->sequence, mpiw_operation_name(state->operation), (long long)state->count, heard_ago);
    } else {
        snprintf(out, capacity, "rank %d: computing, not in a collective; last entered #%lld %s (heard %.1f s ago)", rank,
                 (long long)state->sequence, mpiw_operation_name(state->operation), heard_ago);
    }
}

/* `headline` and one line per rank in `ranks` (what each was last heard doing), into `out`. */
static void compose_report(char *out, size_t capacity, const char *headline, const int *ranks, int count,
                           const heartbeat_t *states, const double *heard_at, const int *heard, double now) {
    size_t used = (size_t)snprintf(out, capacity, "%s", headline);
    for (int i = 0; i < count && used < capacity; i++) {
        char line[512];
        int r = ranks[i];
        describe(line, sizeof line, r, &states[r], now - heard_at[r], heard[r]);
        used += (size_t)snprintf(out + used, capacity - used, "\n  %s", line);
    }
}

/* Prints `headline` and one line per rank in `ranks`, then ends the job with exit status 2. */
static void report_and_abort(const char *headline, const int *ranks, int count, const heartbeat_t *states,
                             const double *heard_at, const int *heard, double now) {
    static char report[16384];
    compose_report(report, sizeof report, headline, ranks, count, states, heard_at, heard, now);
    mpiw_watchdog_observer observe = atomic_load(&observer);
    if (observe) observe(1, report);
    char *position = NULL;
    for (char *line = strtok_r(report, "\n", &position); line; line = strtok_r(NULL, "\n", &position)) {
        fprintf(stderr, "[rank %d/%d] %s\n", my_rank, world_size, line);
    }
    fprintf(stderr, "[rank %d/%d] ending the job (exit status 2); --timeout S changes the stall limit\n", my_rank, world_size);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
    _exit(2);
}

/* The ranks that have not arrived at the collective this rank waits in (`mine`), into `listed`. */
static int not_arrived(const heartbeat_t *mine, const heartbeat_t *states, const int *heard, int *listed) {
    int n = 0;
    for (int r = 0; r < world_size; r++) {
        if (r == my_rank) continue;
        int arrived = heard[r] && states[r].phase == PHASE_WAITING && states[r].sequence == mine->sequence;
        if (!arrived) listed[n++] = r;
    }
    return n;
}

static void *watch(void *unused) {
    (void)unused;
    heartbeat_t *states = calloc((size_t)world_size, sizeof(heartbeat_t));
    double *heard_at = calloc((size_t)world_size, sizeof(double));
    int *heard = calloc((size_t)world_size, sizeof(int));
    int *listed = calloc((size_t)world_size, sizeof(int));
    MPI_Request *sends = calloc((size_t)world_size, sizeof(MPI_Request));
    heartbeat_t *outgoing = calloc((size_t)world_size, sizeof(heartbeat_t));
    for (int r = 0; r < world_size; r++) sends[r] = MPI_REQUEST_NULL;
    const double started = now_seconds();
    double last_sent = 0;
    int64_t noticed_sequence = -1;
    while (!atomic_load(&stop_requested)) {
        double now = now_seconds();
        /* Everything that arrived. */
        for (;;) {
            int flag = 0;
            MPI_Status status;
            if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_HEARTBEAT, watch_comm, &flag, &status) != MPI_SUCCESS || !flag) break;
            heartbeat_t incoming;
            MPI_Recv(&incoming, sizeof incoming, MPI_BYTE, status.MPI_SOURCE, TAG_HEARTBEAT, watch_comm, MPI_STATUS_IGNORE);
            states[status.MPI_SOURCE] = incoming;
            heard_at[status.MPI_SOURCE] = now;
            heard[status.MPI_SOURCE] = 1;
        }
        heartbeat_t mine = my_state(now);
        /* A heartbeat a second to every rank whose previous one has gone out. */
        if (now - last_sent >= 1.0) {
            for (int r = 0; r < world_size; r++) {
                if (r == my_rank) continue;
                int done = 1;
                if (sends[r] != MPI_REQUEST_NULL) MPI_Test(&sends[r], &done, MPI_STATUS_IGNORE);
                if (!done) continue;
                outgoing[r] = mine;
                MPI_Isend(&outgoing[r], sizeof(heartbeat_t), MPI_BYTE, r, TAG_HEARTBEAT, watch_comm, &sends[r]);
            }
            last_sent = now;
        }
        if (mine.phase == PHASE_WAITING) {
            double timeout = atomic_load(&timeout_seconds), silence = atomic_load(&silence_seconds);
            char headline[512];
            int n = 0;
            /* A rank in the same collective number with another operation or size. */
            for (int r = 0; r < world_size; r++) {
                if (r == my_rank || !heard[r] || states[r].phase != PHASE_WAITING) continue;
                if (states[r].sequence == mine.sequence &&
                    (states[r].operation != mine.operation || states[r].count != mine.count)) {
                    listed[n++] = r;
                }
            }
            if (n > 0) {
                snprintf(headline, sizeof headline,
                         "collective mismatch: this rank waits in #%lld %s of %lld, other ranks in the same collective call another:",
                         (long long)mine.sequence, mpiw_operation_name(mine.operation), (long long)mine.count);
                report_and_abort(headline, listed, n, states, heard_at, heard, now);
            }
            /* Ranks gone silent, or gone. */
            if (mine.waited > silence) {
                for (int r = 0; r < world_size; r++) {
                    if (r == my_rank) continue;
                    double silent_for = now - (heard[r] ? heard_at[r] : started);
                    if ((heard[r] && states[r].phase == PHASE_LEFT) || silent_for > silence) listed[n++] = r;
                }
                if (n > 0) {
                    snprintf(headline, sizeof headline,
                             "waiting %.1f s in #%lld %s of %lld, but %d rank(s) died, hang with all threads stopped, or left (silent > %.0f s):",
                             mine.waited, (long long)mine.sequence, mpiw_operation_name(mine.operation),
                             (long long)mine.count, n, silence);
                    report_and_abort(headline, listed, n, states, heard_at, heard, now);
                }
            }
            /* The notice: a long wait, told once per collective to the observer (nothing printed). */
            mpiw_watchdog_observer observe = atomic_load(&observer);
            if (observe && mine.waited > notice_seconds && mine.sequence != noticed_sequence) {
                noticed_sequence = mine.sequence;
                int waiting_for = not_arrived(&mine, states, heard, listed);
                char report[8192];
                snprintf(headline, sizeof headline, "waiting %.1f s in #%lld %s of %lld; %d rank(s) have not arrived:",
                         mine.waited, (long long)mine.sequence, mpiw_operation_name(mine.operation),
                         (long long)mine.count, waiting_for);
                compose_report(report, sizeof report, headline, listed, waiting_for, states, heard_at, heard, now);
                observe(0, report);
            }
            /* The stall report: who has not arrived at this collective. */
            if (timeout > 0 && mine.waited > timeout) {
                n = not_arrived(&mine, states, heard, listed);
                snprintf(headline, sizeof headline,
                         "collective timeout: #%lld %s of %lld has waited %.1f s (limit %.0f s); %d rank(s) have not arrived:",
                         (long long)mine.sequence, mpiw_operation_name(mine.operation), (long long)mine.count,
                         mine.waited, timeout, n);
                report_and_abort(headline, listed, n, states, heard_at, heard, now);
            }
        }
        usleep(100 * 1000);
    }
    /* Leaving: tell the others, so a rank still waiting knows this one is gone, not dead. */
    heartbeat_t last = my_state(now_seconds());
    last.phase = PHASE_LEFT;
    for (int r = 0; r < world_size; r++) {
        if (r == my_rank) continue;
        if (sends[r] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&sends[r], &done, MPI_STATUS_IGNORE);
            if (!done) {
                MPI_Cancel(&sends[r]);
                MPI_Request_free(&sends[r]);
            }
        }
        outgoing[r] = last;
        MPI_Isend(&outgoing[r], sizeof(heartbeat_t), MPI_BYTE, r, TAG_HEARTBEAT, watch_comm, &sends[r]);
        MPI_Request_free(&sends[r]);
    }
    free(states);
    free(heard_at);
    free(heard);
    free(listed);
    free(sends);
    /* `outgoing` may still be read by sends in flight; it is small and the process is ending. */
    return NULL;
}

int mpiw_watchdog_start(void) {
    if (atomic_load(&running)) return MPI_SUCCESS;
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &watch_comm);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(watch_comm, MPI_ERRORS_RETURN);
    if (world_size < 2) return MPI_SUCCESS;
    atomic_store(&stop_requested, 0);
    if (pthread_create(&watch_thread, NULL, watch, NULL) != 0) return MPI_ERR_INTERN;
    atomic_store(&running, 1);
    return MPI_SUCCESS;
}

void mpiw_watchdog_stop(void) {
    if (!atomic_load(&running)) return;
    atomic_store(&stop_requested, 1);
    pthread_join(watch_thread, NULL);
    atomic_store(&running, 0);
}
