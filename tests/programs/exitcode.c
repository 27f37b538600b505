/* exitcode.c -- exercises the ways a program ends: prints two lines, then
 *   no argument  -> exit(7)
 *   a number N   -> exit(N)
 *   "segv"       -> writes through a NULL pointer (killed by SIGSEGV: 139)
 *   "abort"      -> abort() (killed by SIGABRT: 134)
 * Its output is the same on every run (nothing non-deterministic in it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "7";
    printf("exitcode_mode=%s\n", mode);
    printf("about_to=%s\n", !strcmp(mode, "segv") ? "segfault"
                            : !strcmp(mode, "abort") ? "abort" : "exit");
    fflush(stdout);                 /* the crash paths would lose buffered output */

    if (!strcmp(mode, "segv")) {
        /* both volatile: the compiler can neither see that p is NULL nor
         * drop the store as dead */
        volatile int *volatile p = NULL;
        *p = 1;
        return 99;                  /* not reached */
    }
    if (!strcmp(mode, "abort"))
        abort();
    return atoi(mode);
}
