/* pingpong.c -- two threads hand a token back and forth N times (argv[1], default
 * 2000) through a mutex and two condition variables: every hand-over is a futex
 * wake by one thread and a futex wait by the other, so under tft every hand-over is
 * a thread switch.  benchmarks/threads.py times it to price a switch.
 * Prints "handovers=N".  Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn[2] = {PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
static int holder, n, done;

static void *player(void *arg)
{
    int me = (int)(long)arg;
    pthread_mutex_lock(&lock);
    while (done < n) {
        while (holder != me && done < n)
            pthread_cond_wait(&turn[me], &lock);
        if (done >= n)
            break;
        done++;
        holder = 1 - me;
        pthread_cond_signal(&turn[1 - me]);
    }
    pthread_cond_signal(&turn[1 - me]);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atoi(argv[1]) : 2000;
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, player, (void *)i) != 0)
            return 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("handovers=%d\n", done);
    return 0;
}
