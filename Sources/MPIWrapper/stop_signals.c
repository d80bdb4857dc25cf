/*
 * stop_signals.c: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 ask a training run to stop.
 *
 * Why: on a cluster a job is preempted, or reaches its time limit, with one of these signals and
 * is killed a grace period later. Instead of dying at once, a training process records the
 * request here; the trainer carries it in the all-reduce that every step already makes, so every
 * rank stops after the same step, rank 0 writes a checkpoint of it, and every process exits with
 * status 3 (docs/interface.md). Further signals are counted and otherwise change nothing: the
 * checkpoint being written is finished (it is atomic in any case: a kill midway through leaves
 * the previous one as the newest).
 */
#include "mpi_wrapper.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t first_signal = 0;
static volatile sig_atomic_t signal_count = 0;

static void record(int signal_number) {
    if (first_signal == 0) first_signal = signal_number;
    signal_count += 1;
}

void mpiw_catch_stop_signals(void) {
    int signals[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = record;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) sigaction(signals[i], &action, NULL);
}

int mpiw_stop_signal(void) { return first_signal; }

int mpiw_stop_signal_count(void) { return signal_count; }
