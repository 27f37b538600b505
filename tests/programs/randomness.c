/* randomness.c -- exercises sources of randomness: getrandom(2), reading
 * /dev/urandom, the 16 AT_RANDOM bytes the kernel puts on the initial stack,
 * and addresses that ASLR randomizes natively (stack, heap, mmap, PIE text).
 * Under tft ASLR is off and AT_RANDOM is overwritten, so all of it replays.
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

static void hex(char *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(dst + 2 * i, "%02x", src[i]);
    dst[2 * n] = '\0';
}

int main(void)
{
    unsigned char buf[16];
    char h[33];

    long r = syscall(SYS_getrandom, buf, sizeof buf, 0);
    hex(h, buf, sizeof buf);
    out("getrandom_ret=%ld", r);
    out("getrandom=%s", h);

    int fd = open("/dev/urandom", O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    hex(h, buf, sizeof buf);
    out("urandom_read=%zd", n);
    out("urandom=%s", h);

    const unsigned char *at_random = (const unsigned char *)getauxval(AT_RANDOM);
    hex(h, at_random, 16);
    out("at_random=%s", h);

    int on_stack = 0;
    void *heap = malloc(64);
    void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    out("stack_addr=%p", (void *)&on_stack);
    out("malloc_addr=%p", heap);
    out("mmap_addr=%p", map);
    out("main_addr=%p", (void *)main);
    munmap(map, 4096);
    free(heap);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
