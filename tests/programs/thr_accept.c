/* thr_accept.c -- a server whose connection is accepted on its second thread.
 * Usage: thr_accept [PAUSE_MS]
 * Listens on 127.0.0.1, port 0, and forks its client: the client connects, has "before"
 * echoed, sleeps PAUSE_MS (default 3000: a test kills the primary then), has "after"
 * echoed and sends "q".  The server's second thread accepts it and echoes each line until
 * "q"; the main thread joins it and waits for the client.
 * Prints "client: before after" and "served, client status 0"; exit 0, 1 if a step failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int lfd;

static void *serve(void *unused)
{
    (void)unused;
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        return (void *)1;
    char buf[256];
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0)
            return (void *)1;
        if (buf[0] == 'q')
            break;
        if (write(c, buf, n) != n)
            return (void *)1;
    }
    close(c);
    return NULL;
}

static int echo(int fd, const char *line, char *got)
{
    int n = strlen(line), have = 0;
    if (write(fd, line, n) != n)
        return -1;
    while (have < n) {
        ssize_t r = read(fd, got + have, n - have);
        if (r <= 0)
            return -1;
        have += r;
    }
    got[n] = 0;
    return strcmp(got, line) == 0 ? 0 : -1;
}

static int client(const struct sockaddr_in *a, long pause_ms)
{
    char got[64];
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof *a) < 0 || echo(c, "before\n", got) < 0)
        return 1;
    struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    if (echo(c, "after\n", got) < 0)
        return 1;
    if (write(c, "q", 1) != 1)
        return 1;
    printf("client: before after\n");
    return 0;
}

int main(int argc, char **argv)
{
    long pause_ms = argc > 1 ? atol(argv[1]) : 3000;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4) < 0
        || getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        return 1;
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0)
        return client(&a, pause_ms);
    pthread_t t;
    void *ret;
    int status;
    if (pthread_create(&t, NULL, serve, NULL) != 0 || pthread_join(t, &ret) != 0
        || waitpid(child, &status, 0) != child)
        return 1;
    printf("served, client status %d\n", WEXITSTATUS(status));
    return ret != NULL || status != 0;
}
