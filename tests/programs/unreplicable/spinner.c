/* A program tft cannot replicate: a thread that spins on memory without a system
 * call while the thread that would release it waits to run.  The main thread
 * starts a spinner and sleeps (1 ms at a time) until the spinner has started; the
 * spinner loops until the main thread sets a flag after its sleep.  Natively it prints "released=1" at once; under tft only
 * one thread runs at a time, switched at system calls, so the spinner is never
 * switched out: the supervisor must say so (naming the thread), not hang.
 * Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static volatile int flag, started;

static void *spin(void *arg)
{
    (void)arg;
    started = 1;
    while (!flag)
        ;
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, spin, NULL) != 0)
        return 1;
    struct timespec ts = {0, 1000000};
    do
        nanosleep(&ts, NULL);
    while (!started);
    flag = 1;
    pthread_join(t, NULL);
    printf("released=1\n");
    return 0;
}
