/* thr_name.c -- the first thread names a worker thread (pthread_setname_np on another
 * thread: glibc writes /proc/self/task/<its tid>/comm), then every 100 ms, N times
 * (argv[1], default 20), reads the name back (pthread_getname_np: reads that same file)
 * and prints it.  memcached names its threads so.  The worker waits on a pipe nobody
 * writes until the end.  The tid in the path is the one pthread_t holds: under tft, the
 * primary's, so a backup must find its own thread behind it, while replaying (the name is
 * the thread's state) and once live (the read is made for real).  Prints "name=worker-7"
 * N times, then "done"; "name?" with the error if the name cannot be read.
 * Build with -lpthread. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fds[2];

static void *worker(void *arg)
{
    char c;
    (void)arg;
    while (read(fds[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20;
    pthread_t t;
    char name[16];
    struct timespec tick = {0, 100 * 1000 * 1000};

    if (pipe(fds) != 0 || pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    int err = pthread_setname_np(t, "worker-7");
    if (err)
        printf("setname? %s\n", strerror(err));
    for (int i = 0; i < n; i++) {
        nanosleep(&tick, NULL);
        err = pthread_getname_np(t, name, sizeof name);
        if (err)
            printf("name? %s\n", strerror(err));
        else
            printf("name=%s\n", name);
        fflush(stdout);
    }
    if (write(fds[1], "x", 1) != 1)
        return 1;
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
}
