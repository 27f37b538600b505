/* sleep_interrupt.c -- exercises signals that interrupt blocking syscalls:
 *  A. SIGALRM handler WITHOUT SA_RESTART, 50 ms one-shot timer, nanosleep(1 s)
 *     returns -1/EINTR with the remaining time in rem (printed in ms, rounded
 *     to 10 ms).
 *  B. SIGALRM handler WITH SA_RESTART, 20 ms one-shot timer, read() on a pipe
 *     whose writer (a child) writes after 100 ms: the read restarts
 *     transparently and returns the child's message (with its pid).
 *  C. SIGCHLD left at its default (ignored) while nanosleep(100 ms) runs and a
 *     child exits at 20 ms: the sleep completes (under ptrace the kernel
 *     restarts it with restart_syscall); prints slept_ok=1.
 * Output: name=value lines, then checksum=<FNV-1a of all lines>. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
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

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void install(int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
}

static void one_shot_ms(long ms)
{
    struct itimerval it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_usec = (ms % 1000) * 1000;
    setitimer(ITIMER_REAL, &it, NULL);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
    /* A: nanosleep interrupted, no SA_RESTART */
    install(0);
    one_shot_ms(50);
    struct timespec req = { 1, 0 }, rem = { 0, 0 };
    int r = nanosleep(&req, &rem);
    int e = errno;
    long rem_ms = (rem.tv_sec * 1000 + rem.tv_nsec / 1000000 + 5) / 10 * 10;
    out("A_nanosleep_ret=%d", r);
    out("A_errno=%d(%s)", e, e == EINTR ? "EINTR" : "other");
    out("A_rem_ms=%ld", rem_ms);
    out("A_alarms=%d", alarms);

    /* B: read() on a pipe restarted transparently with SA_RESTART */
    install(SA_RESTART);
    alarms = 0;
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t writer = fork();
    if (writer == 0) {
        close(p[0]);
        sleep_ms(100);
        char msg[64];
        int n = snprintf(msg, sizeof msg, "late message from pid %ld", syscall(SYS_getpid));
        write(p[1], msg, (size_t)n);
        _exit(0);
    }
    close(p[1]);
    one_shot_ms(20);
    char buf[128];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    e = errno;
    buf[n > 0 ? n : 0] = '\0';
    out("B_read_ret=%zd", n);
    out("B_read_errno=%d", n < 0 ? e : 0);
    out("B_read_msg=%s", buf);
    out("B_alarms=%d", alarms);
    close(p[0]);
    int status = 0;
    waitpid(writer, &status, 0);
    out("B_writer_status=%d", status);

    /* C: SIGCHLD at default while sleeping: the sleep must complete */
    signal(SIGCHLD, SIG_DFL);
    fflush(stdout);
    pid_t quick = fork();
    if (quick == 0) {
        sleep_ms(20);
        _exit(5);
    }
    long long t0 = mono_ns();
    struct timespec c_req = { 0, 100000000L };
    r = nanosleep(&c_req, NULL);
    e = errno;
    long long slept = mono_ns() - t0;
    if (r == 0 && slept >= 100000000LL)
        out("slept_ok=1");
    else
        out("slept_ok=0 ret=%d errno=%d slept_ns=%lld", r, r ? e : 0, slept);
    waitpid(quick, &status, 0);
    out("C_child_exitstatus=%d", WEXITSTATUS(status));

    printf("checksum=%016llx\n", (unsigned long long)fnv);
    return 0;
}
