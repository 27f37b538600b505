/* mapfile [FILE [shared]]: map FILE and print what the mapping holds.
 *
 * Without FILE it maps its own binary and prints whether that starts like an ELF file.
 * The file is read only through mmap (never read(2)), twice: two mappings of one
 * content; the second is printed again at the end.  With "shared" it is mapped MAP_SHARED and writable, and the program
 * writes through the mapping (an output no system call carries).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/proc/self/exe";
    int shared = argc > 2 && strcmp(argv[2], "shared") == 0;
    int fd = open(path, shared ? O_RDWR : O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        fprintf(stderr, "mapfile: cannot size %s\n", path);
        return 1;
    }
    size_t n = (size_t)st.st_size;
    int prot = shared ? PROT_READ | PROT_WRITE : PROT_READ;
    char *a = mmap(NULL, n, prot, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    char *b = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    close(fd);
    /* One write per line (flushed): a failover test stops the primary between them. */
    if (argc > 1)
        printf("content=%.*s\n", (int)n, a);
    else
        printf("elf=%s\n", memcmp(a, "\177ELF", 4) == 0 ? "yes" : "no");
    fflush(stdout);
    printf("second_mapping=%s\n", memcmp(a, b, n) == 0 ? "same" : "different");
    fflush(stdout);
    if (argc > 1)
        printf("again=%.*s\n", (int)n, b);
    if (shared) {
        a[0] = '#';
        printf("wrote=%c\n", a[0]);
    }
    return 0;
}
