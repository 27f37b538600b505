/* thr_mutex.c -- N threads (argv[1], default 4) each take a pthread mutex ROUNDS
 * times; under the lock a thread adds to a shared counter and appends its number
 * to the order in which the lock was taken, then sleeps a little outside it.
 * Prints the counter (always N*ROUNDS), the order's FNV-1a hash and its first
 * entries.  Natively the order differs from run to run (the kernel wakes the
 * sleepers in whatever order); under tft the log holds the schedule, so a replay
 * prints the recording's order.  Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 20
#define MAXT 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static int order[MAXT * ROUNDS];
static int taken;

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        counter += me + 1;
        order[taken++] = me;
        pthread_mutex_unlock(&lock);
        struct timespec ts = {0, 20000 + 10000 * me};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (n < 1 || n > MAXT)
        return 2;
    pthread_t t[MAXT];
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(long)i) != 0)
            return 1;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    unsigned long long h = 1469598103934665603ULL;
    for (int i = 0; i < taken; i++) {
        h ^= (unsigned char)order[i];
        h *= 1099511628211ULL;
    }
    printf("threads=%d\ncounter=%ld\nexpected=%ld\n", n, counter, (long)ROUNDS * n * (n + 1) / 2);
    printf("order_hash=%016llx\norder_head=", h);
    for (int i = 0; i < taken && i < 24; i++)
        printf("%d", order[i]);
    printf("\n");
    return counter == (long)ROUNDS * n * (n + 1) / 2 ? 0 : 1;
}
