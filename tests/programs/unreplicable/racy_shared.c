/* A program tft cannot replicate: memory shared between processes, read without a
 * system call in between.  A child counts in a MAP_SHARED page; the parent, 40 times,
 * reads the count and makes getppid() or getuid() depending on its parity.  On a
 * backup the child runs at another pace, so the parent's calls differ from the
 * primary's log: the backup diverges (the test of "redundancy lost", loudly).
 * Prints "decisions=<40 bits>" and exits 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    volatile unsigned long *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (count == MAP_FAILED)
        return 1;
    pid_t child = fork();
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
    printf("decisions=%s\n", bits);
    return 0;
}
