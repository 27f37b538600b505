/* thr_raise.c -- a second thread raise()s a signal (tgkill to itself) whose handler tells the
 * first thread to stop, as memcached's "shutdown" does (its worker raises SIGINT, its main
 * loop sees the flag).  The first thread polls the flag with 10 ms sleeps.
 * Prints "stopped"; exit 0 (2 if the signal never came in 30 s). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void *worker(void *unused)
{
    (void)unused;
    getppid();   /* the worker runs: where a test may cut the log before the raise */
    raise(SIGUSR1);
    getppid();
    return NULL;
}

int main(void)
{
    signal(SIGUSR1, on_signal);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; !stop; i++) {
        if (i > 3000)
            return 2;   /* 30 s without the signal: it was lost */
        nanosleep(&tick, NULL);
    }
    pthread_join(t, NULL);
    printf("stopped\n");
    return 0;
}
