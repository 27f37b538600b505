/* sockets.c -- exercises network inputs: a TCP listener on 127.0.0.1 port 0
 * (getsockname gives a different port each run), a forked child that connects
 * and sends a message with its pid and the time, accept (peer port), poll,
 * select and epoll_wait on the connection, recv of the message, and a
 * socketpair exchange (the child sends the time back over an AF_UNIX pair).
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static long long now_ns(void)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

int main(void)
{
    /* --- TCP --- */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0)
        die("socket");
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 4) < 0)
        die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    int port = ntohs(addr.sin_port);
    out("listen_port=%d", port);

    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        char msg[128];
        int n = snprintf(msg, sizeof msg, "hello from pid %ld at %lld",
                         syscall(SYS_getpid), now_ns());
        send(c, msg, (size_t)n, 0);
        char ack[8];
        recv(c, ack, sizeof ack, 0);        /* wait for the parent's ack */
        close(c);
        _exit(0);
    }

    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int cfd = accept(lfd, (struct sockaddr *)&peer, &plen);
    if (cfd < 0)
        die("accept");
    out("accept_peer=%s:%d", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));

    struct pollfd pfd = { .fd = cfd, .events = POLLIN };
    int pr = poll(&pfd, 1, 2000);
    out("poll_ret=%d", pr);
    out("poll_revents=0x%x", pfd.revents);

    fd_set rfds;
    FD_ZERO(&rfds);
    FD_SET(cfd, &rfds);
    struct timeval tv = { .tv_sec = 2, .tv_usec = 0 };
    int sr = select(cfd + 1, &rfds, NULL, NULL, &tv);
    out("select_ret=%d", sr);
    out("select_isset=%d", FD_ISSET(cfd, &rfds) ? 1 : 0);

    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x7f7f };
    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
    struct epoll_event got[4];
    memset(got, 0, sizeof got);
    int er = epoll_wait(ep, got, 4, 2000);
    out("epoll_ret=%d", er);
    out("epoll_events=0x%x", got[0].events);
    out("epoll_data=0x%llx", (unsigned long long)got[0].data.u64);
    close(ep);

    char buf[256];
    ssize_t n = recv(cfd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    out("recv_len=%zd", n);
    out("recv_msg=%s", buf);
    send(cfd, "ack", 3, 0);

    int status = 0;
    pid_t w = waitpid(child, &status, 0);
    out("tcp_child_is_waited=%d", w == child);
    out("tcp_child_status=%d", status);
    close(cfd);
    close(lfd);

    /* --- socketpair --- */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair");
    fflush(stdout);
    child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(sv[0]);
        char req[64];
        ssize_t r = read(sv[1], req, sizeof req - 1);
        req[r > 0 ? r : 0] = '\0';
        char rep[160];
        int k = snprintf(rep, sizeof rep, "reply to '%s' at %lld", req, now_ns());
        write(sv[1], rep, (size_t)k);
        _exit(0);
    }
    close(sv[1]);
    write(sv[0], "ping", 4);
    n = read(sv[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    out("socketpair_len=%zd", n);
    out("socketpair_msg=%s", buf);
    waitpid(child, &status, 0);
    out("socketpair_child_status=%d", status);
    close(sv[0]);

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
