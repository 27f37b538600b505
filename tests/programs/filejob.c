/* filejob.c -- a benchmark: a small file-heavy job. In the directory given as
 * argv[1] (it must exist) it creates 200 files, writes 4 KiB to each, stats
 * each, reads each back, checksums what it read, and unlinks each.
 * (Under tft replay nothing is written: that is expected.)
 * The data is the same on every run; elapsed_ns (CLOCK_MONOTONIC) is not.
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv = 0xcbf29ce484222325ULL;

static void out(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (int i = 0; i < n && i < (int)sizeof line - 1; i++) {
        fnv ^= (unsigned char)line[i];
        fnv *= 0x100000001b3ULL;
    }
    printf("%s\n", line);
}

#define FILES 200
#define SIZE 4096

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char path[4096], data[SIZE], back[SIZE];
    long long written = 0, nread = 0, sizes = 0;
    int errors = 0;
    uint64_t h = 0xcbf29ce484222325ULL;

    long long t0 = mono_ns();
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof path, "%s/tft_filejob_%03d.dat", dir, i);
        for (int k = 0; k < SIZE; k++)
            data[k] = (char)('a' + (i + k) % 26);
        int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        ssize_t w = write(fd, data, SIZE);
        written += w > 0 ? w : 0;
        errors += w != SIZE;
        close(fd);
    }
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof path, "%s/tft_filejob_%03d.dat", dir, i);
        struct stat st;
        if (stat(path, &st) == 0)
            sizes += st.st_size;
        else
            errors++;
        int fd = open(path, O_RDONLY);
        ssize_t r = fd >= 0 ? read(fd, back, SIZE) : -1;
        if (fd >= 0)
            close(fd);
        errors += r != SIZE;
        for (ssize_t k = 0; k < r; k++) {
            h ^= (unsigned char)back[k];
            h *= 0x100000001b3ULL;
        }
        nread += r > 0 ? r : 0;
        errors += unlink(path) != 0;
    }
    long long elapsed = mono_ns() - t0;

    out("files=%d", FILES);
    out("bytes_written=%lld", written);
    out("stat_size_sum=%lld", sizes);
    out("bytes_read=%lld", nread);
    out("data_fnv=%016llx", (unsigned long long)h);
    out("errors=%d", errors);
    out("elapsed_ns=%lld", elapsed);
    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return errors ? 1 : 0;
}
