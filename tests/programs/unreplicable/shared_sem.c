/* A program tft refuses: a process-shared semaphore (sem_init with pshared=1) in a file that a
 * parent and its child each map MAP_SHARED on their own, after the fork.  The child waits on
 * it; the parent posts it after 20 ms.  Which process gets past first is decided by timing
 * no log records, so tft says so in one line at the first futex call on it.  (Mapped before
 * the fork, as multiprocessing's are, it is replicated: the two processes are scheduled as
 * one; see shared_procs.c.)  Uses the file shared_sem.page in its working directory,
 * removed at the end.  Natively: prints "child got it" and "parent done", exits 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static sem_t *map_sem(int fd)
{
    sem_t *sem = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return sem == MAP_FAILED ? NULL : sem;
}

int main(void)
{
    int fd = open("shared_sem.page", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(sem_t)) != 0)
        return 1;
    sem_t *sem = map_sem(fd);
    if (sem == NULL || sem_init(sem, 1, 0) != 0 || munmap(sem, sizeof(sem_t)) != 0)
        return 1;
    pid_t child = fork();
    if ((sem = map_sem(fd)) == NULL)
        return 1;
    if (child == 0) {
        sem_wait(sem);          /* blocks: a futex wait on shared memory */
        printf("child got it\n");
        return 0;
    }
    usleep(20000);
    sem_post(sem);
    waitpid(child, NULL, 0);
    unlink("shared_sem.page");
    printf("parent done\n");
    return 0;
}
