/* thr_main_exit.c -- the first thread ends first: main starts a worker and calls
 * pthread_exit; the worker sleeps 2 ms, prints the process's pid and returns, which
 * ends the process (exit status 0).  The kernel reports the first thread's exit only
 * once the whole process is gone: the schedule must run the worker meanwhile.
 * Main sleeps 1 ms before it ends, so that the worker has started (reported its first
 * stop to the supervisor) by then: without it, whether the worker runs before main ends
 * is a race in the kernel's scheduler, and with no switch to log the test would not test.
 * Prints "main=exits" then "worker=done pid=<pid>" (the pid differs natively from
 * run to run).  Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void *worker(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    printf("worker=done pid=%d\n", getpid());
    fflush(stdout);
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    printf("main=exits\n");
    fflush(stdout);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    pthread_exit(NULL);
}
