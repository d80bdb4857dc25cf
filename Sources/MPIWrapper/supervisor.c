/*
 * supervisor.c: under mpirun, the process mpirun starts watches the rank that does the work.
 *
 * Why: a rank killed by a signal makes mpirun exit with 128 + signal (137 for SIGKILL) and a
 * message of its own. docs/interface.md promises exit status 2 and a message naming the rank
 * for every distributed failure. So the launched process spawns itself once more as the worker
 * and waits; if the worker dies by a signal it says which rank died and how, and exits 2, which
 * mpirun reports as the job's status while it ends the other ranks. Signals mpirun (or a user)
 * sends to the launched process are passed on to the worker; the worker dies with its supervisor
 * (PR_SET_PDEATHSIG), so no rank is ever left behind.
 */
#include "mpi_wrapper.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t worker_pid = 0;
static volatile sig_atomic_t forwarded_signal = 0;

static void forward(int signal_number) {
    forwarded_signal = signal_number;
    if (worker_pid > 0) kill((pid_t)worker_pid, signal_number);
}

int mpiw_supervise(char **argv, const char *rank_label) {
    const char *parent = getenv("REPLICA_SUPERVISOR_PID");
    if (parent != NULL) {
        /* The worker: die with the supervisor; if it is already gone, go too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if ((long)getppid() != atol(parent)) _exit(2);
        return -1;
    }
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "%ld", (long)getpid());
    setenv("REPLICA_SUPERVISOR_PID", pid_text, 1);

    int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &action, NULL);

    pid_t child = 0;
    int rc = posix_spawn(&child, "/proc/self/exe", NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "[%s] cannot start the worker process: %s\n", rank_label, strerror(rc));
        return 2;
    }
    worker_pid = child;
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "[%s] lost the worker process: %s\n", rank_label, strerror(errno));
            return 2;
        }
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    int signal_number = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (forwarded_signal != 0) {
        /* Stopped from outside (mpirun ending the job, Ctrl-C): end the same way, quietly. */
        return 128 + signal_number;
    }
    fprintf(stderr, "[%s] %s died: killed by signal %d (%s)%s; ending the job (exit status 2)\n", rank_label, rank_label,
            signal_number, strsignal(signal_number), WCOREDUMP(status) ? ", core dumped" : "");
    fflush(stderr);
    return 2;
}
