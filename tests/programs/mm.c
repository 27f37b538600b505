/* A file mapped after an open by relative path, with AT_FDCWD passed as a 32-bit int
 * (0xffffff9c) to the raw openat, then dup'ed: the open must be the real file on every
 * replica.  argv[1]: the file to map (relative; default "mm.txt"). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "mm.txt";
    long fd = syscall(SYS_openat, 0xffffff9cUL, name, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat((int)fd, &st)) { printf("open failed\n"); return 2; }
    char *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, (int)fd, 0);
    if (p == MAP_FAILED) { printf("mmap failed\n"); return 3; }
    int d = dup((int)fd);
    printf("mapped=%.*s", (int)st.st_size, p);
    printf("dup=%d\n", d > (int)fd);
    return 0;
}
