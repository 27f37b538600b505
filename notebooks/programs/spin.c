/* spin.c -- a course program: a stretch of code with no system calls while a timer runs.
 *
 *   usage: spin [ITERATIONS=100000000]
 *
 * Installs a SIGALRM handler and a 1 ms periodic timer, makes 20 getppid calls,
 * spins ITERATIONS times through a loop that makes no system call, makes 20
 * more getppid calls, stops the timer and prints how many signals the handler
 * had taken before, during and after the spin:
 *
 *   handled_before_spin=<n>
 *   handled_during_spin=<n>
 *   handled_after_spin=<n>
 *
 * Build: cc -O1 -Wall -o spin spin.c */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
    (void)sig;
    handled++;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 100000000L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &every_ms, NULL);
    for (int i = 0; i < 20; i++)
        getppid();
    int before = handled;
    volatile unsigned long x = 1;
    for (long i = 0; i < iterations; i++)   /* no system call in here */
        x = x * 6364136223846793005UL + (unsigned long)i;
    int during = handled - before;
    for (int i = 0; i < 20; i++)
        getppid();
    setitimer(ITIMER_REAL, &off, NULL);
    int after = handled - before - during;
    printf("handled_before_spin=%d\nhandled_during_spin=%d\nhandled_after_spin=%d\n", before, during, after);
    return 0;
}
