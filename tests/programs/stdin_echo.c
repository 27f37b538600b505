/* stdin_echo.c -- exercises input from stdin (pipe, terminal or file): reads
 * all of it with a read() loop, then prints its length, its FNV-1a checksum
 * and its first 64 bytes (non-printable bytes escaped as \xNN).
 * Its output depends only on what stdin carries: give it different input to
 * see a difference. Output ends with checksum=<FNV-1a of all lines>. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(void)
{
    size_t cap = 65536, len = 0;
    unsigned char *data = malloc(cap);
    long reads = 0;

    for (;;) {
        if (len == cap)
            data = realloc(data, cap *= 2);
        ssize_t n = read(0, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("read");
            return 1;
        }
        reads++;
        if (n == 0)
            break;
        len += (size_t)n;
    }

    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }

    char head[64 * 4 + 1];
    size_t k = 0;
    for (size_t i = 0; i < len && i < 64; i++) {
        unsigned char c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            head[k++] = (char)c;
        else
            k += (size_t)sprintf(head + k, "\\x%02x", c);
    }
    head[k] = '\0';

    out("length=%zu", len);
    out("data_fnv=%016llx", (unsigned long long)h);
    out("head=%s", head);
    /* reads= depends on how the data arrived (pipe chunks, terminal lines),
     * so it is printed on stderr and kept out of the checksum. */
    fprintf(stderr, "reads=%ld\n", reads);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    free(data);
    return 0;
}
