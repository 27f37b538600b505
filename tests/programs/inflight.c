/* inflight.c -- bytes in flight between two processes of the program when the primary dies.
 * Usage: inflight MODE, MODE one of
 *   pipe        a pipe from a forked child (the writer) to its parent (the reader)
 *   socketpair  a socketpair between them
 *   tcp         a TCP loopback connection (the child connects to its parent's listener)
 *   tcp-thread  the same, but the child's bytes are written by its second thread
 * The writer writes three 8-byte chunks at once; the reader reads one chunk, calls getppid()
 * (where a test cuts the log: the writer's later chunks are in the kernel, not yet read),
 * sleeps 0.2 s (the writer is done by then), reads the other two, each followed by
 * getppid().  Over a socket the reader then answers "k" and the writer waits for it.
 * Prints "got chunk-1" .. "got chunk-3" and "writer status 0"; exit 0, 1 if a step failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 8

static int wfd;   /* the writer's end */
static int two_way;   /* a socket: the writer waits for the reader's "k" */

static int read_full(int fd, char *buf, int n)
{
    int got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += r;
    }
    return 0;
}

static void *writer(void *unused)
{
    (void)unused;
    for (int i = 1; i <= 3; i++) {
        char chunk[CHUNK + 1];
        snprintf(chunk, sizeof chunk, "chunk-%d\n", i);
        if (write(wfd, chunk, CHUNK) != CHUNK)
            return (void *)1;
    }
    char k;
    if (two_way && read(wfd, &k, 1) != 1)
        return (void *)1;
    return NULL;
}

static int connect_to(int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect(c, (struct sockaddr *)&a, sizeof a) < 0 ? -1 : c;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "pipe";
    int ends[2], s = -1, port = 0;
    two_way = strcmp(mode, "pipe") != 0;
    if (!strcmp(mode, "pipe")) {
        if (pipe(ends) < 0)
            return 1;
    } else if (!strcmp(mode, "socketpair")) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends) < 0)
            return 1;
    } else if (!strcmp(mode, "tcp") || !strcmp(mode, "tcp-thread")) {
        s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t n = sizeof a;
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0
            || getsockname(s, (struct sockaddr *)&a, &n) < 0)
            return 1;
        port = ntohs(a.sin_port);
    } else {
        fprintf(stderr, "inflight: unknown mode %s\n", mode);
        return 2;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (s >= 0) {
            close(s);
            wfd = connect_to(port);
        } else {
            close(ends[0]);
            wfd = ends[1];
        }
        if (wfd < 0)
            _exit(1);
        if (!strcmp(mode, "tcp-thread")) {
            pthread_t t;
            void *res;
            if (pthread_create(&t, NULL, writer, NULL) != 0 || pthread_join(t, &res) != 0)
                _exit(1);
            _exit(res != NULL);
        }
        _exit(writer(NULL) != NULL);
    }
    int rfd;
    if (s >= 0) {
        rfd = accept(s, NULL, NULL);
        close(s);
    } else {
        close(ends[1]);
        rfd = ends[0];
    }
    if (rfd < 0)
        return 1;
    for (int i = 1; i <= 3; i++) {
        char chunk[CHUNK + 1] = {0};
        if (read_full(rfd, chunk, CHUNK) < 0)
            return 1;
        printf("got %s", chunk);
        fflush(stdout);
        getppid();
        if (i == 1) {
            struct timespec pause = {0, 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    if (two_way && write(rfd, "k", 1) != 1)
        return 1;
    int st = 0;
    waitpid(pid, &st, 0);
    printf("writer status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}
