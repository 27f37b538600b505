/* thr_barrier.c -- 3 threads meet at a pthread barrier 10 times; between two
 * barriers each thread reads the clock and adds its nanoseconds to its own slot,
 * and the thread the barrier elects (PTHREAD_BARRIER_SERIAL_THREAD) records its
 * number.  Prints the rounds (10), which thread was elected each round and a sum
 * of the clock readings (which differs natively from run to run; a replay prints
 * the recording's).  Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define N 3
#define ROUNDS 10

static pthread_barrier_t barrier;
static unsigned long long slots[N];
static char elected[ROUNDS + 1];

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    for (int r = 0; r < ROUNDS; r++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        slots[me] += ts.tv_nsec % 1000;
        if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
            elected[r] = '0' + me;
    }
    return NULL;
}

int main(void)
{
    pthread_t t[N];
    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(long)i) != 0)
            return 1;
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int elections = 0;
    for (int r = 0; r < ROUNDS; r++)
        elections += elected[r] != 0;
    printf("rounds=%d\nelections=%d\nelected=%s\nclock_sum=%llu\n", ROUNDS, elections, elected,
           slots[0] + slots[1] + slots[2]);
    return elections == ROUNDS ? 0 : 1;
}
