/* threads.c -- exercises thread creation: pthread_create of one thread that
 * prints a line, then pthread_join. Natively it prints three lines and exits
 * 0 (the output is the same on every run); tft records, replays and
 * replicates it like the other threaded guests. Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>

static void *worker(void *arg)
{
    printf("thread_says=%s\n", (const char *)arg);
    fflush(stdout);
    return NULL;
}

int main(void)
{
    pthread_t t;
    printf("main_before=starting a thread\n");
    fflush(stdout);
    int rc = pthread_create(&t, NULL, worker, "hello from a pthread");
    if (rc != 0) {
        fprintf(stderr, "pthread_create failed: %d\n", rc);
        return 1;
    }
    pthread_join(t, NULL);
    printf("main_after=joined\n");
    return 0;
}
