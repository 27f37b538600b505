/* thr_chain.c -- the hash chain of chain.c, produced by several threads under a lock,
 * for crash-point sweeps of a threaded program.
 *
 *   usage: thr_chain [K=12] [THREADS=3]
 *
 * THREADS threads share one counter behind a pthread mutex.  Holding the lock, a
 * thread reads the time (raw clock_gettime REALTIME) and 8 bytes of getrandom and
 * prints line i of the chain with ONE write(2) to stdout:
 *
 *   i=<i> v=<ns>.<random hex>.t<thread number> chain=<16 hex>
 *
 * chain being a 64-bit FNV-1a over "<previous chain as 16 hex> i=<i> v=<value>"
 * (tests/chain_check.py checks it); then it sleeps 100 us outside the lock, so the
 * kernel decides which thread takes the next line.  Natively the values and which
 * thread printed each line differ from run to run.  Exit status 0.
 * Build with -lpthread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int next_line, k;
static uint64_t chain;

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        if (next_line >= k) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        struct timespec ts;
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
            rnd = 0;
        char value[96], text[160], line[200];
        snprintf(value, sizeof value, "%lld%09ld.%016llx.t%d", (long long)ts.tv_sec, ts.tv_nsec,
                 (unsigned long long)rnd, me);
        snprintf(text, sizeof text, "%016llx i=%d v=%s", (unsigned long long)chain, next_line, value);
        chain = fnv1a(text, 0xcbf29ce484222325ULL);
        int n = snprintf(line, sizeof line, "i=%d v=%s chain=%016llx\n", next_line, value,
                         (unsigned long long)chain);
        if (write(1, line, n) != n)
            exit(1);
        next_line++;
        pthread_mutex_unlock(&lock);
        struct timespec nap = {0, 100000};
        nanosleep(&nap, NULL);
    }
}

int main(int argc, char **argv)
{
    k = argc > 1 ? atoi(argv[1]) : 12;
    int n = argc > 2 ? atoi(argv[2]) : 3;
    if (n < 1 || n > 16)
        return 2;
    pthread_t t[16];
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 1;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}
