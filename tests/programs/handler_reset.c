/* handler_reset.c -- a signal that arrives while its handler is installed must reach that
 * handler, even when the program removes the handler right after.
 * A child sends SIGUSR1 while the parent computes (no system calls, so tft holds the
 * signal back); the parent then restores SIG_DFL and makes a few calls.  Natively the
 * handler ran during the computation; a supervisor that delivered the held-back signal
 * after the reset would kill the program instead.
 * Output: handled=1, exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig) { (void)sig; handled = 1; }

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t child = fork();
    if (child == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    for (volatile unsigned long i = 0; i < 400000000UL && !handled; i++)
        ;   /* compute: no system call until the signal was taken (natively) or the loop ends */
    signal(SIGUSR1, SIG_DFL);
    for (int i = 0; i < 200; i++)
        getppid();
    waitpid(child, NULL, 0);
    printf("handled=%d\n", (int)handled);
    return 0;
}
