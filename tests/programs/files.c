/* files.c -- exercises file-system metadata and /proc as inputs (creates
 * nothing): stat/lstat/fstat of /tmp and /proc/self, statx of /tmp, a
 * directory listing of /proc (getdents64 via readdir), the first 80 bytes of
 * /proc/self/stat and the contents of /proc/uptime.
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static void show(const char *what, int rc, const struct stat *st)
{
    out("%s_rc=%d", what, rc);
    out("%s_ino=%llu", what, (unsigned long long)st->st_ino);
    out("%s_mtime=%lld", what, (long long)st->st_mtime);
    out("%s_size=%lld", what, (long long)st->st_size);
    out("%s_nlink=%llu", what, (unsigned long long)st->st_nlink);
}

/* Read a small file into buf, replacing newlines so it fits on one line. */
static void read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    struct stat st;
    int fd, rc;

    memset(&st, 0, sizeof st);
    rc = stat("/tmp", &st);
    show("stat_tmp", rc, &st);
    memset(&st, 0, sizeof st);
    rc = lstat("/tmp", &st);
    show("lstat_tmp", rc, &st);
    fd = open("/tmp", O_RDONLY | O_DIRECTORY);
    memset(&st, 0, sizeof st);
    rc = fstat(fd, &st);
    show("fstat_tmp", rc, &st);
    close(fd);

    memset(&st, 0, sizeof st);
    rc = stat("/proc/self", &st);
    show("stat_proc_self", rc, &st);
    memset(&st, 0, sizeof st);
    rc = lstat("/proc/self", &st);
    show("lstat_proc_self", rc, &st);
    fd = open("/proc/self", O_RDONLY | O_DIRECTORY);
    memset(&st, 0, sizeof st);
    rc = fstat(fd, &st);
    show("fstat_proc_self", rc, &st);
    close(fd);

    struct statx sx;
    memset(&sx, 0, sizeof sx);
    rc = statx(AT_FDCWD, "/tmp", 0, STATX_BASIC_STATS | STATX_BTIME, &sx);
    out("statx_tmp_rc=%d", rc);
    out("statx_tmp_mask=0x%x", sx.stx_mask);
    out("statx_tmp_ino=%llu", (unsigned long long)sx.stx_ino);
    out("statx_tmp_mtime=%lld.%09u", (long long)sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec);
    out("statx_tmp_atime=%lld.%09u", (long long)sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec);
    out("statx_tmp_nlink=%u", sx.stx_nlink);

    /* List /proc: number of entries and the first five names in sorted order. */
    char *names[4096];
    size_t count = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (count < sizeof names / sizeof names[0])
            names[count++] = strdup(e->d_name);
    if (d)
        closedir(d);
    qsort(names, count, sizeof names[0], cmp);
    out("proc_entries=%zu", count);
    for (size_t i = 0; i < 5 && i < count; i++)
        out("proc_sorted_%zu=%s", i, names[i]);
    for (size_t i = 0; i < count; i++)
        free(names[i]);

    char buf[128];
    read_small("/proc/self/stat", buf, 81);
    out("proc_self_stat=%s", buf);
    read_small("/proc/uptime", buf, sizeof buf);
    out("proc_uptime=%s", buf);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
