/* thr_signal.c -- a thread-directed signal: the main thread sends SIGUSR1 with
 * pthread_kill to a worker that waits for it in sigsuspend (SIGUSR1 blocked
 * otherwise); the worker's handler records the thread it ran in (gettid) and the
 * worker prints whether that is itself.  The main thread also prints its own
 * getpid/gettid and the worker's tid as glibc knows it (pthread_t's tid, which the
 * kernel wrote at clone: the replay must show the primary's).  Prints
 * handled_in_worker=1; the ids differ natively from run to run.  Build with -lpthread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t handled_tid;
static volatile int worker_tid, ready;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void on_usr1(int sig)
{
    (void)sig;
    handled_tid = (sig_atomic_t)syscall(SYS_gettid);
}

static void *worker(void *arg)
{
    (void)arg;
    sigset_t none;
    sigemptyset(&none);
    worker_tid = (int)syscall(SYS_gettid);
    pthread_mutex_lock(&lock);
    ready = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    while (!handled_tid)
        sigsuspend(&none);
    printf("handled_in_worker=%d\n", handled_tid == worker_tid);
    fflush(stdout);
    return NULL;
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);   /* the worker inherits the mask */
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    if (pthread_kill(t, SIGUSR1) != 0)
        return 1;
    pthread_join(t, NULL);
    printf("pid=%d\nmain_tid=%ld\nworker_tid=%d\nsame_process=%d\n", getpid(), syscall(SYS_gettid), worker_tid,
           (int)syscall(SYS_gettid) == getpid());
    return 0;
}
