/* thr_exit.c -- the process ends (exit_group, returning from main) while its other
 * threads are still busy: two workers loop on short sleeps and sched_yield, counting
 * rounds, until the kernel kills them.  The main thread reads the clock a few times,
 * prints the rounds it saw and returns.  Natively the counts differ from run to run;
 * a replay prints the recording's (the workers die where the log says, their last
 * completed calls unmade).  Build with -lpthread. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

static volatile long rounds[2];

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    for (;;) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
        sched_yield();
        rounds[me]++;
    }
    return NULL;
}

int main(void)
{
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 1;
    for (int i = 0; i < 20; i++) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    printf("rounds=%ld,%ld\n", rounds[0], rounds[1]);
    return 0;
}
