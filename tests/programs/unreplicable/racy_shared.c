/* A program tft cannot replicate: memory shared between processes that each mapped it on
 * their own (a file both map MAP_SHARED after the fork), read without a system call in
 * between.  A child counts in the page; the parent, 40 times, reads the count and makes
 * getppid() or getuid() depending on its parity.  (Memory mapped shared *before* a fork is
 * replicated: the processes are scheduled as one.  Mapped after, each replica's process
 * gets its own copy.)  On a backup the parent never sees the child's counts, so its calls
 * differ from the primary's log: the backup diverges (the test of "redundancy lost",
 * loudly).  Uses the file racy.page in its working directory, removed at the end.
 * Prints "decisions=<40 bits>" and exits 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int fd = open("racy.page", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return 1;
    pid_t child = fork();
    volatile unsigned long *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (count == MAP_FAILED)
        return 1;
    if (child == 0) {
        for (;;) {
            for (int i = 0; i < 999; i++)
                (*count)++;
            getppid();
        }
    }
    char bits[41];
    for (int i = 0; i < 40; i++) {
        usleep(2000);
        if (*count & 1) {
            bits[i] = '1';
            getppid();
        } else {
            bits[i] = '0';
            getuid();
        }
    }
    bits[40] = 0;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    unlink("racy.page");
    printf("decisions=%s\n", bits);
    return 0;
}
