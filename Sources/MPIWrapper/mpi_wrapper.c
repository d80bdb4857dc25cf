/* mpi_wrapper.c: see include/mpi_wrapper.h for why this file exists. */
#include "half_internal.h"
#include "mpi_wrapper.h"
#include "schedule_internal.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Init once: MPI_Init twice aborts the process, so guard it with a mutex. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized = 0;
static int finalized = 0;
static int provided_level = 0;

/* A process that initialised MPI and exits without finalising counts as a failure to mpirun,
   so exit finalises (tests, for one, never finalise explicitly). */
static void finalize_at_exit(void) { mpiw_finalize(); }

int mpiw_init(int *provided) {
    int rc = MPI_SUCCESS;
    pthread_mutex_lock(&init_lock);
    if (!initialized && !finalized) {
        int already = 0;
        MPI_Initialized(&already);
        if (already) {
            MPI_Query_thread(&provided_level);
        } else {
            rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided_level);
        }
        if (rc == MPI_SUCCESS) {
            /* Errors come back as codes, so Swift can name them instead of MPI aborting. */
            MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
            initialized = 1;
            atexit(finalize_at_exit);
            rc = mpiw_watchdog_start();
            if (rc == MPI_SUCCESS) rc = mpiw_schedules_init();
        }
    }
    if (provided) {
        switch (provided_level) {
        case MPI_THREAD_SINGLE: *provided = 0; break;
        case MPI_THREAD_FUNNELED: *provided = 1; break;
        case MPI_THREAD_SERIALIZED: *provided = 2; break;
        default: *provided = 3; break;
        }
    }
    pthread_mutex_unlock(&init_lock);
    return rc;
}

int mpiw_is_initialized(void) { return initialized && !finalized; }

int mpiw_finalize(void) {
    int rc = MPI_SUCCESS;
    pthread_mutex_lock(&init_lock);
    if (initialized && !finalized) {
        mpiw_watchdog_stop();
        rc = MPI_Finalize();
        finalized = 1;
    }
    pthread_mutex_unlock(&init_lock);
    return rc;
}

int mpiw_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int mpiw_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
double mpiw_wtime(void) { return MPI_Wtime(); }

/* MPI counts are int: buffers above INT_MAX elements go in chunks. */
static size_t max_chunk = (size_t)INT_MAX;
void mpiw_set_max_chunk(size_t elements) {
    max_chunk = (elements == 0 || elements > (size_t)INT_MAX) ? (size_t)INT_MAX : elements;
}
size_t mpiw_max_chunk(void) { return max_chunk; }

static size_t chunk_count(size_t count) { return count == 0 ? 0 : (count + max_chunk - 1) / max_chunk; }

static int allreduce(void *buffer, size_t count, size_t element_size, MPI_Datatype type, MPI_Op op) {
    char *bytes = (char *)buffer;
    for (size_t offset = 0; offset < count; offset += max_chunk) {
        size_t n = count - offset < max_chunk ? count - offset : max_chunk;
        int rc = MPI_Allreduce(MPI_IN_PLACE, bytes + offset * element_size, (int)n, type, op, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int mpiw_allreduce_sum_f32(float *buffer, size_t count) {
    return allreduce(buffer, count, sizeof(float), MPI_FLOAT, MPI_SUM);
}
int mpiw_allreduce_sum_f64(double *buffer, size_t count) {
    return allreduce(buffer, count, sizeof(double), MPI_DOUBLE, MPI_SUM);
}
int mpiw_allreduce_max_f64(double *buffer, size_t count) {
    return allreduce(buffer, count, sizeof(double), MPI_DOUBLE, MPI_MAX);
}

/* A non-blocking operation on a chunked buffer is one request per chunk; one Replica runs
   itself (ring.c, hierarchy.c) is a schedule instead, with no MPI requests of its own here. */
struct mpiw_request_s {
    size_t count;
    /* Counts and displacements a vector collective reads until it completes (or NULL). */
    int *arrays;
    struct mpiw_schedule *schedule;
    MPI_Request requests[];
};

/* A request of one MPI request with room for `arrays` ints that live as long as it does. */
static struct mpiw_request_s *single_request(size_t arrays) {
    struct mpiw_request_s *r = malloc(sizeof(*r) + sizeof(MPI_Request));
    if (!r) return NULL;
    r->count = 1;
    r->schedule = NULL;
    r->arrays = arrays ? malloc(arrays * sizeof(int)) : NULL;
    if (arrays && !r->arrays) { free(r); return NULL; }
    return r;
}

static void free_request(struct mpiw_request_s *r) {
    if (r->schedule) r->schedule->destroy(r->schedule);
    free(r->arrays);
    free(r);
}

int mpiw_schedule_request(struct mpiw_schedule *schedule, struct mpiw_request_s **request) {
    struct mpiw_request_s *r = single_request(0);
    if (!r) { schedule->destroy(schedule); return MPI_ERR_NO_MEM; }
    r->count = 0;
    r->schedule = schedule;
    *request = r;
    return MPI_SUCCESS;
}

size_t mpiw_element_size(int format) { return format ? sizeof(uint16_t) : sizeof(float); }
MPI_Datatype mpiw_element_type(int format) { return format ? MPI_UINT16_T : MPI_FLOAT; }

void mpiw_sum_elements(const void *input, void *inout, size_t count, int format) {
    if (format) { mpiw_sum16(input, inout, count, format); return; }
    const float *x = input;
    float *y = inout;
    for (size_t i = 0; i < count; i++) y[i] += x[i];
}


/* Starts an in-place all-reduce of `count` elements of `type`, one request per chunk. */
static int iallreduce(void *buffer, size_t count, size_t element, MPI_Datatype type, MPI_Op op, mpiw_request *request) {
    size_t chunks = chunk_count(count);
    struct mpiw_request_s *r = malloc(sizeof(*r) + (chunks ? chunks : 1) * sizeof(MPI_Request));
    if (!r) return MPI_ERR_NO_MEM;
    r->count = chunks;
    r->arrays = NULL;
    r->schedule = NULL;
    for (size_t i = 0; i < chunks; i++) {
        size_t offset = i * max_chunk;
        size_t n = count - offset < max_chunk ? count - offset : max_chunk;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buffer + offset * element, (int)n, type, op, MPI_COMM_WORLD,
                                &r->requests[i]);
        if (rc != MPI_SUCCESS) {
            r->count = i;
            mpiw_wait(&r);
            return rc;
        }
    }
    *request = r;
    return MPI_SUCCESS;
}

int mpiw_iallreduce_sum_f32(float *buffer, size_t count, mpiw_request *request) {
    return iallreduce(buffer, count, sizeof(float), MPI_FLOAT, MPI_SUM, request);
}

int mpiw_iallreduce_sum16(uint16_t *buffer, size_t count, int format, mpiw_request *request) {
    MPI_Op op;
    int rc = mpiw_half_sum_operation(format, &op);
    if (rc != MPI_SUCCESS) return rc;
    return iallreduce(buffer, count, sizeof(uint16_t), MPI_UINT16_T, op, request);
}

int mpiw_test(mpiw_request *request, int *done) {
    struct mpiw_request_s *r = *request;
    *done = 1;
    if (!r) return MPI_SUCCESS;
    int all = 1;
    if (r->schedule) {
        int rc = r->schedule->progress(r->schedule, 0, &all);
        if (rc != MPI_SUCCESS) return rc;
    } else if (r->count > 0) {
        int rc = MPI_Testall((int)r->count, r->requests, &all, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
    }
    if (all) {
        free_request(r);
        *request = NULL;
    }
    *done = all;
    return MPI_SUCCESS;
}

int mpiw_wait(mpiw_request *request) {
    struct mpiw_request_s *r = *request;
    if (!r) return MPI_SUCCESS;
    int rc = MPI_SUCCESS, done = 1;
    if (r->schedule) {
        rc = r->schedule->progress(r->schedule, 1, &done);
    } else if (r->count > 0) {
        rc = MPI_Waitall((int)r->count, r->requests, MPI_STATUSES_IGNORE);
    }
    free_request(r);
    *request = NULL;
    return rc;
}

/* A request for a vector collective over every rank: its counts (as ints) and displacements
   in r->arrays, [0, size) and [size, 2·size); MPI_ERR_COUNT when one does not fit an int. */
static int vector_request(const size_t *counts, struct mpiw_request_s **out, int *size) {
    MPI_Comm_size(MPI_COMM_WORLD, size);
    struct mpiw_request_s *r = single_request(2 * (size_t)*size);
    if (!r) return MPI_ERR_NO_MEM;
    size_t offset = 0;
    for (int i = 0; i < *size; i++) {
        if (counts[i] > (size_t)INT_MAX || offset > (size_t)INT_MAX) { free_request(r); return MPI_ERR_COUNT; }
        r->arrays[i] = (int)counts[i];
        r->arrays[*size + i] = (int)offset;
        offset += counts[i];
    }
    *out = r;
    return MPI_SUCCESS;
}

/* Hands over a started request, or frees it when the start failed. */
static int started(struct mpiw_request_s *r, int rc, mpiw_request *request) {
    if (rc != MPI_SUCCESS) { free_request(r); return rc; }
    *request = r;
    return MPI_SUCCESS;
}

static int ireduce_scatter(void *buffer, const size_t *counts, MPI_Datatype type, MPI_Op op, mpiw_request *request) {
    struct mpiw_request_s *r;
    int size, rc = vector_request(counts, &r, &size);
    if (rc != MPI_SUCCESS) return rc;
    return started(r, MPI_Ireduce_scatter(MPI_IN_PLACE, buffer, r->arrays, type, op, MPI_COMM_WORLD, &r->requests[0]), request);
}

int mpiw_ireduce_scatter_sum_f32(float *buffer, const size_t *counts, mpiw_request *request) {
    return ireduce_scatter(buffer, counts, MPI_FLOAT, MPI_SUM, request);
}

int mpiw_ireduce_scatter_sum16(uint16_t *buffer, const size_t *counts, int format, mpiw_request *request) {
    MPI_Op op;
    int rc = mpiw_half_sum_operation(format, &op);
    if (rc != MPI_SUCCESS) return rc;
    return ireduce_scatter(buffer, counts, MPI_UINT16_T, op, request);
}

int mpiw_iallgather_f32(float *buffer, const size_t *counts, mpiw_request *request) {
    struct mpiw_request_s *r;
    int size, rc = vector_request(counts, &r, &size);
    if (rc != MPI_SUCCESS) return rc;
    return started(r, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, r->arrays, r->arrays + size,
                                      MPI_FLOAT, MPI_COMM_WORLD, &r->requests[0]), request);
}

int mpiw_broadcast(void *buffer, size_t bytes, int root) {
    char *p = (char *)buffer;
    for (size_t offset = 0; offset < bytes; offset += (size_t)INT_MAX) {
        size_t n = bytes - offset < (size_t)INT_MAX ? bytes - offset : (size_t)INT_MAX;
        int rc = MPI_Bcast(p + offset, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int mpiw_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

int mpiw_allgather(const void *input, size_t bytes, void *output) {
    if (bytes > (size_t)INT_MAX) return MPI_ERR_COUNT;
    return MPI_Allgather(input, (int)bytes, MPI_BYTE, output, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

void mpiw_abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    abort();
}

void mpiw_error_string(int code, char *buffer, size_t capacity) {
    if (capacity == 0) return;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, message, &length) != MPI_SUCCESS) {
        length = 0;
    }
    message[length < MPI_MAX_ERROR_STRING ? length : MPI_MAX_ERROR_STRING - 1] = 0;
    strncpy(buffer, message, capacity - 1);
    buffer[capacity - 1] = 0;
}
