/* A program tft refuses: a process-shared semaphore (sem_init with pshared=1 in a MAP_SHARED
 * page) between a parent and its child, as multiprocessing's locks and queues are.  The child
 * waits on it; the parent posts it after 20 ms.  Which process gets past first is decided by
 * timing no log records, so tft says so in one line at the first futex call on it.
 * Natively: prints "child got it" and "parent done", exits 0. */
#define _GNU_SOURCE
#include <semaphore.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    sem_t *sem = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sem == MAP_FAILED || sem_init(sem, 1, 0) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        sem_wait(sem);          /* blocks: a futex wait on shared memory */
        printf("child got it\n");
        return 0;
    }
    usleep(20000);
    sem_post(sem);
    waitpid(child, NULL, 0);
    printf("parent done\n");
    return 0;
}
