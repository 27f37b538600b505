/* strerror: print a message that lives in libc's read-only data (mapped by ld.so). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    printf("enoent=%s\n", strerror(ENOENT));
    return 0;
}
