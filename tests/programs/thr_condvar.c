/* thr_condvar.c -- a producer/consumer pair of threads over a bounded queue of 4
 * slots guarded by a mutex and two condition variables.  The producer reads 8
 * random bytes (getrandom) per item and queues 200 items; the consumer sums them.
 * Prints the number of items consumed (200), the sum and how often each side
 * found the queue full/empty and waited.  The sum differs natively from run to run
 * (random items); a replay prints the recording's.  Build with -lpthread. */
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>

#define ITEMS 200
#define SLOTS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static unsigned long long queue[SLOTS];
static int head, count, full_waits, empty_waits;

static void *producer(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITEMS; i++) {
        unsigned long long item = 0;
        if (getrandom(&item, sizeof item, 0) != sizeof item)
            item = i;
        pthread_mutex_lock(&lock);
        while (count == SLOTS) {
            full_waits++;
            pthread_cond_wait(&not_full, &lock);
        }
        queue[(head + count) % SLOTS] = item % 1000;
        count++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    unsigned long long *sum = arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&lock);
        while (count == 0) {
            empty_waits++;
            pthread_cond_wait(&not_empty, &lock);
        }
        *sum += queue[head];
        head = (head + 1) % SLOTS;
        count--;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void)
{
    unsigned long long sum = 0;
    pthread_t p, c;
    if (pthread_create(&c, NULL, consumer, &sum) != 0 || pthread_create(&p, NULL, producer, NULL) != 0)
        return 1;
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    printf("items=%d\nsum=%llu\nleft=%d\nwaits=%d,%d\n", ITEMS, sum, count, full_waits, empty_waits);
    return count == 0 ? 0 : 1;
}
