/* A program tft refuses: it prints a line, then makes a call tft_lab cannot replicate
 * (process_vm_readv: reading another process's memory behind the supervisor's back).
 * Natively the call fails (EFAULT/ESRCH: its arguments are empty) and it prints
 * "after=..."; under tft the run stops at the call with a one-line "tft:" error,
 * and a backup must stop too rather than take the refusal for a crash and go live. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    printf("before=a refused call next\n");
    fflush(stdout);
    long r = syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
    printf("after=%ld\n", r);
    return 0;
}
