/* shared_procs.c -- processes that share memory: a page mapped MAP_SHARED before fork(), with a
 * process-shared semaphore in it, as multiprocessing's locks and queues are.
 * Usage: shared_procs [CHILDREN=3] [ROUNDS=20]
 * The parent forks CHILDREN children; each takes the lock ROUNDS times, appends its number
 * to a log in the page, lets the lock go and sleeps 200 us.  The parent waits for them all
 * and prints who got the lock in which order (which differs from run to run natively), how
 * many turns were logged, and the checksum.  Exit 0; 1 if a step failed. */
#define _GNU_SOURCE
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TURNS 4096

struct page {
    sem_t lock;
    int turns;
    char order[MAX_TURNS];
};

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

int main(int argc, char **argv)
{
    int children = argc > 1 ? atoi(argv[1]) : 3, rounds = argc > 2 ? atoi(argv[2]) : 20;
    if (children < 1 || children > 9 || rounds < 1 || children * rounds > MAX_TURNS)
        return 1;
    struct page *p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || sem_init(&p->lock, 1, 1) != 0)
        return 1;
    for (int c = 0; c < children; c++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            for (int r = 0; r < rounds; r++) {
                if (sem_wait(&p->lock) != 0)
                    _exit(1);
                p->order[p->turns++] = (char)('1' + c);
                sem_post(&p->lock);
                usleep(200);
            }
            _exit(0);
        }
    }
    int failed = 0, st;
    while (wait(&st) > 0)
        failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    char line[MAX_TURNS + 64];
    uint64_t h = 0xcbf29ce484222325ULL;
    snprintf(line, sizeof line, "order=%.*s", p->turns, p->order);
    printf("%s\n", line);
    h = fnv(h, line);
    snprintf(line, sizeof line, "turns=%d", p->turns);
    printf("%s\n", line);
    h = fnv(h, line);
    printf("checksum=%016llx\n", (unsigned long long)h);
    return failed;
}
