/* signal_then_block.c -- a signal that arrives while the program computes (no
 * system calls), after which the program blocks in read().
 *
 * tft holds such a signal back to a delivery point; it must deliver it before
 * the program blocks, or a waiting program would never see it.  The child
 * signals the parent while the parent computes, then writes to the pipe 300 ms
 * later; the parent prints whether its handler ran before read() returned. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_usr1(int sig) { (void)sig; got++; }

int main(void)
{
    int fds[2];
    signal(SIGUSR1, on_usr1);
    if (pipe(fds) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        volatile long x = 0;
        for (long i = 0; i < 100000000; i++)
            x += i;
        kill(getppid(), SIGUSR1);
        struct timespec ts = {0, 300000000};
        nanosleep(&ts, 0);
        if (write(fds[1], "x", 1) != 1)
            return 1;
        _exit(0);
    }
    volatile long y = 0;
    for (long i = 0; i < 300000000; i++)
        y += i;
    int seen_before_read = got;
    char b;
    int r = (int)read(fds[0], &b, 1);
    printf("read=%d got=%d seen_before_read=%d\n", r, (int)got, seen_before_read);
    return 0;
}
