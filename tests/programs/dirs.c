/* Directories the program makes and enters: mkdir, a directory fd (O_DIRECTORY), fchdir,
 * chdir into a directory it created, a relative open there, openat relative to the directory
 * fd, and AT_FDCWD passed as a 32-bit int (0xffffff9c, upper half zero) to the raw syscall.
 * Everything is made under argv[1] (default "."), and removed at the end. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char cwd[4096];
    if (argc > 1 && chdir(argv[1])) return 2;
    mkdir("made", 0700);
    int d = open("made", O_RDONLY | O_DIRECTORY);
    printf("dirfd=%d\n", d >= 0);
    printf("fchdir=%d\n", fchdir(d));
    printf("mkdir_inner=%d\n", mkdir("inner", 0700));
    printf("chdir_inner=%d\n", chdir("inner"));
    printf("getcwd_tail=%s\n", getcwd(cwd, sizeof cwd) ? strrchr(cwd, '/') : "?");
    int f = open("note", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    printf("note=%d\n", f >= 0 && write(f, "x\n", 2) == 2);
    close(f);
    /* AT_FDCWD as the kernel reads it: 32 bits */
    long r = syscall(SYS_openat, 0xffffff9cUL, "note", O_RDONLY);
    char buf[8] = {0};
    printf("openat_32bit=%d read=%zd\n", r >= 0, r >= 0 ? read((int)r, buf, sizeof buf) : -1);
    int again = openat(d, "inner/note", O_RDONLY);
    printf("openat_dirfd=%d\n", again >= 0);
    printf("chdir_up=%d\n", chdir("../.."));
    printf("chdir_gone=%d\n", chdir("never-made"));
    unlink("made/inner/note");
    rmdir("made/inner");
    rmdir("made");
    return 0;
}
