/* tft_lab._core: the per-stop ptrace mechanism in C (issue 10, lever 2).
 *
 * The stop loop pays, for every recorded call, a waitpid status to decode, a
 * PTRACE_GET_SYSCALL_INFO, a GETREGS/SETREGS pair and a resume.  Through ctypes each
 * request costs argument conversion, errno juggling and a struct unpack; here each is
 * one C call.  This module holds no policy: tft_lab/_backend/ptrace.py keeps the pure
 * Python versions of the same functions, with the same contracts, and picks these when
 * the module is built (and TFT_PURE is not 1).
 *
 * Errors are raised exactly as the pure path raises them: TracingError("ptrace WHAT
 * failed: STRERROR", pid=PID); the exception class and the stop types come from Python
 * through setup(), so this file defines no Python type of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_GET_SYSCALL_INFO
#define PTRACE_GET_SYSCALL_INFO 0x420e
#endif
#define INFO_ENTRY 1
#define INFO_EXIT 2
#define INFO_SECCOMP 3
#define EV_FORK 1
#define EV_VFORK 2
#define EV_CLONE 3
#define EV_EXEC 4
#define EV_SECCOMP 7

/* struct ptrace_syscall_info (linux/ptrace.h), declared here: older libc headers lack it. */
struct info {
    uint8_t op;
    uint8_t pad[3];
    uint32_t arch;
    uint64_t ip;
    uint64_t sp;
    union {
        struct { uint64_t nr; uint64_t args[6]; } entry;
        struct { int64_t rval; uint8_t is_error; } exit;
        struct { uint64_t nr; uint64_t args[6]; uint32_t ret_data; } seccomp;
    } u;
};

/* Set by setup(): TracingError and the stop types of tft_lab._backend.ptrace. */
enum { T_ERROR, T_SECCOMP, T_EXIT, T_SIGNAL, T_FORK, T_EXEC, T_OTHER, T_EXITED, T_COUNT };
static PyObject *types[T_COUNT];

/* Raise TracingError(f"ptrace {what} failed: {strerror(err)}", pid=pid); returns NULL. */
static PyObject *
tracing_error(const char *what, int err, long pid)
{
    PyObject *msg = NULL, *args = NULL, *kw = NULL, *exc = NULL;
    if (types[T_ERROR] == NULL) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    msg = PyUnicode_FromFormat("ptrace %s failed: %s", what, strerror(err));
    if (msg == NULL)
        goto done;
    args = PyTuple_Pack(1, msg);
    kw = Py_BuildValue("{s:l}", "pid", pid);
    if (args == NULL || kw == NULL)
        goto done;
    exc = PyObject_Call(types[T_ERROR], args, kw);
    if (exc != NULL)
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
done:
    Py_XDECREF(msg);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(exc);
    return NULL;
}

/* ptrace() with errno cleared first: -1 with errno 0 is a legal result of some requests. */
static long
request(long req, long pid, void *addr, void *data, int *err)
{
    long rc;
    errno = 0;
    rc = ptrace((enum __ptrace_request)req, (pid_t)pid, addr, data);
    *err = (rc == -1) ? errno : 0;
    return rc;
}

static PyObject *
make(int t, const char *fmt, ...)
{
    va_list va;
    PyObject *args, *obj;
    va_start(va, fmt);
    args = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (args == NULL)
        return NULL;
    obj = PyObject_CallObject(types[t], args);
    Py_DECREF(args);
    return obj;
}

/* The six arguments as a tuple of Python ints. */
static PyObject *
args_tuple(const uint64_t *a)
{
    return Py_BuildValue("(KKKKKK)", (unsigned long long)a[0], (unsigned long long)a[1],
                         (unsigned long long)a[2], (unsigned long long)a[3],
                         (unsigned long long)a[4], (unsigned long long)a[5]);
}

/* GET_SYSCALL_INFO into *si; on failure the TracingError is set and -1 returned. */
static int
get_info(long pid, struct info *si)
{
    int err;
    memset(si, 0, sizeof *si);
    if (request(PTRACE_GET_SYSCALL_INFO, pid, (void *)88, si, &err) == -1 && err) {
        tracing_error("GET_SYSCALL_INFO", err, pid);
        return -1;
    }
    return 0;
}

static PyObject *
core_syscall_info(PyObject *self, PyObject *arg)
{
    struct info si;
    long pid = PyLong_AsLong(arg);
    PyObject *args, *out;
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    if (get_info(pid, &si) < 0)
        return NULL;
    if (si.op == INFO_ENTRY || si.op == INFO_SECCOMP) {
        if ((args = args_tuple(si.u.entry.args)) == NULL)
            return NULL;
        out = Py_BuildValue("(iKN)", si.op, (unsigned long long)si.u.entry.nr, args);
        return out;
    }
    if (si.op == INFO_EXIT)
        return Py_BuildValue("(iL())", si.op, (long long)si.u.exit.rval);
    return Py_BuildValue("(ii())", si.op, 0);
}

static PyObject *
core_decode(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    long pid;
    int status, sig, event, err;
    struct info si;
    unsigned long msg;
    if (argc != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(pid, status)");
        return NULL;
    }
    pid = PyLong_AsLong(argv[0]);
    status = (int)PyLong_AsLong(argv[1]);
    if (PyErr_Occurred())
        return NULL;
    if (WIFEXITED(status))
        return make(T_EXITED, "(liO)", pid, WEXITSTATUS(status), Py_None);
    if (WIFSIGNALED(status))
        return make(T_EXITED, "(lOi)", pid, Py_None, WTERMSIG(status));
    sig = WSTOPSIG(status);
    event = (status >> 16) & 0xffff;
    if (sig == (SIGTRAP | 0x80) || (sig == SIGTRAP && event == EV_SECCOMP)) {
        if (get_info(pid, &si) < 0)
            return NULL;
        if (sig == (SIGTRAP | 0x80) && si.op == INFO_EXIT)
            return make(T_EXIT, "(lL)", pid, (long long)si.u.exit.rval);
        if (si.op == INFO_ENTRY || si.op == INFO_SECCOMP)
            return make(T_SECCOMP, "(lKN)", pid, (unsigned long long)si.u.entry.nr,
                        args_tuple(si.u.entry.args));
        if (si.op == INFO_EXIT)   /* an event stop never reports an exit; decoded as the pure path does */
            return make(T_SECCOMP, "(lL())", pid, (long long)si.u.exit.rval);
        return make(T_SECCOMP, "(li())", pid, 0);
    }
    if (sig == SIGTRAP && event) {
        if (event == EV_FORK || event == EV_VFORK || event == EV_CLONE) {
            if (request(PTRACE_GETEVENTMSG, pid, NULL, &msg, &err) == -1 && err)
                return tracing_error("GETEVENTMSG", err, pid);
            return make(T_FORK, "(lki)", pid, msg, event);
        }
        if (event == EV_EXEC)
            return make(T_EXEC, "(l)", pid);
        return make(T_OTHER, "(li)", pid, event);
    }
    return make(T_SIGNAL, "(li)", pid, sig);
}

static PyObject *
core_resume(PyObject *self, PyObject *const *argv, Py_ssize_t nargs, PyObject *kwnames)
{
    /* resume(pid, sig=0, to_exit=False): positional or keyword, as the pure function. */
    PyObject *vals[3] = {NULL, NULL, NULL};
    static const char *names[3] = {"pid", "sig", "to_exit"};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    long pid, sig = 0;
    int to_exit = 0, err;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "resume(pid, sig=0, to_exit=False)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        vals[i] = argv[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int found = 0;
        for (int i = 0; i < 3; i++) {
            if (PyUnicode_CompareWithASCIIString(name, names[i]) == 0) {
                if (vals[i] != NULL) {
                    PyErr_Format(PyExc_TypeError, "resume() got multiple values for '%s'", names[i]);
                    return NULL;
                }
                vals[i] = argv[nargs + k];
                found = 1;
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "resume() got an unexpected keyword argument '%U'", name);
            return NULL;
        }
    }
    if (vals[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "resume() missing 'pid'");
        return NULL;
    }
    pid = PyLong_AsLong(vals[0]);
    if (vals[1] != NULL)
        sig = PyLong_AsLong(vals[1]);
    if (PyErr_Occurred())
        return NULL;
    if (vals[2] != NULL && (to_exit = PyObject_IsTrue(vals[2])) < 0)
        return NULL;
    if (request(to_exit ? PTRACE_SYSCALL : PTRACE_CONT, pid, NULL, (void *)sig, &err) == -1
        && err && err != ESRCH)   /* ESRCH: killed meanwhile (SIGKILL) */
        return tracing_error("resume", err, pid);
    Py_RETURN_NONE;
}

/* regs(pid, buffer, set): GETREGS into / SETREGS from a writable user_regs_struct buffer. */
static PyObject *
core_regs(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    long pid;
    int set, err;
    Py_buffer view;
    long rc;
    if (argc != 3) {
        PyErr_SetString(PyExc_TypeError, "regs(pid, buffer, set)");
        return NULL;
    }
    pid = PyLong_AsLong(argv[0]);
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    if ((set = PyObject_IsTrue(argv[2])) < 0)
        return NULL;
    if (PyObject_GetBuffer(argv[1], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (view.len != (Py_ssize_t)sizeof(struct user_regs_struct)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "not a user_regs_struct");
        return NULL;
    }
    rc = request(set ? PTRACE_SETREGS : PTRACE_GETREGS, pid, NULL, view.buf, &err);
    PyBuffer_Release(&view);
    if (rc == -1 && err)
        return tracing_error(set ? "SETREGS" : "GETREGS", err, pid);
    Py_RETURN_NONE;
}

/* --- the log's sys record (tft_lab/log.py: encode, _encode_sys) ----------------------------- */

static PyObject *crc32_func;   /* zlib.crc32, from setup_log(): the frame's checksum */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }   /* x86-64: little-endian */
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* An exact int in [lo, hi] into *out; 0 when it is not one (no exception left set). */
static int
int_in(PyObject *o, long long lo, long long hi, long long *out)
{
    int overflow;
    long long v;
    if (o == NULL || !PyLong_CheckExact(o))
        return 0;
    v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* An exact int in [0, 2**64) into *out; 0 when it is not one. */
static int
u64(PyObject *o, uint64_t *out)
{
    unsigned long long v;
    if (o == NULL || !PyLong_CheckExact(o))
        return 0;
    v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* The framed sys record (log.py: _FRAME header, then "S", _SYS, [oseq], args, (addr, len) per
 * out-buffer, the out-buffers), its checksum from zlib.crc32; NULL with an exception set. */
static PyObject *
sys_frame(int32_t pid, int64_t seq, int32_t nr, int64_t res, int has_oseq, uint64_t oseq,
          Py_ssize_t nargs, const uint64_t *args, Py_ssize_t nouts, const uint64_t *addrs,
          const char *const *blobs, const Py_ssize_t *lens)
{
    PyObject *frame, *view, *crc;
    Py_ssize_t size = 1 + 27 + (has_oseq ? 8 : 0) + 8 * nargs + 12 * nouts, i;
    unsigned char *p, *start;
    unsigned long c;
    for (i = 0; i < nouts; i++)
        size += lens[i];
    if (size > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a sys record larger than 4 GiB");
        return NULL;
    }
    if ((frame = PyBytes_FromStringAndSize(NULL, 8 + size)) == NULL)
        return NULL;
    start = (unsigned char *)PyBytes_AS_STRING(frame);
    p = start + 8;
    *p++ = 'S';
    put32(p, (uint32_t)pid);
    put64(p + 4, (uint64_t)seq);
    put32(p + 12, (uint32_t)nr);
    put64(p + 16, (uint64_t)res);
    p[24] = (unsigned char)nargs;
    p[25] = (unsigned char)nouts;
    p[26] = has_oseq != 0;
    p += 27;
    if (has_oseq) {
        put64(p, oseq);
        p += 8;
    }
    for (i = 0; i < nargs; i++, p += 8)
        put64(p, args[i]);
    for (i = 0; i < nouts; i++, p += 12) {
        put64(p, addrs[i]);
        put32(p + 8, (uint32_t)lens[i]);
    }
    for (i = 0; i < nouts; i++) {
        memcpy(p, blobs[i], lens[i]);
        p += lens[i];
    }
    if ((view = PyMemoryView_FromMemory((char *)start + 8, size, PyBUF_READ)) == NULL)
        goto fail;
    crc = PyObject_CallOneArg(crc32_func, view);
    Py_DECREF(view);
    if (crc == NULL)
        goto fail;
    c = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (c == (unsigned long)-1 && PyErr_Occurred())
        goto fail;
    put32(start, (uint32_t)size);
    put32(start + 4, (uint32_t)c);
    return frame;
fail:
    Py_DECREF(frame);
    return NULL;
}

/* encode_sys(fields, blobs) -> the framed record, byte for byte what log.encode gives, or None
 * for anything but the common well-formed case (log.encode then does it in Python). */
static PyObject *
core_encode_sys(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    PyObject *f, *blobs, *args, *addrs, *oseq_o;
    long long pid, seq, nr, res;
    uint64_t oseq = 0, av[255], adv[255];
    const char *bp[255];
    Py_ssize_t lens[255], nargs, nouts, i, total = 0;
    if (argc != 2 || crc32_func == NULL) {
        PyErr_SetString(PyExc_TypeError, "encode_sys(fields, blobs), after setup_log");
        return NULL;
    }
    f = argv[0];
    blobs = argv[1];
    if (!PyDict_Check(f) || !(PyList_CheckExact(blobs) || PyTuple_CheckExact(blobs)))
        Py_RETURN_NONE;
    args = PyDict_GetItemString(f, "args");
    addrs = PyDict_GetItemString(f, "addrs");
    oseq_o = PyDict_GetItemString(f, "oseq");
    if (!int_in(PyDict_GetItemString(f, "pid"), INT32_MIN, INT32_MAX, &pid)
        || !int_in(PyDict_GetItemString(f, "seq"), INT64_MIN, INT64_MAX, &seq)
        || !int_in(PyDict_GetItemString(f, "nr"), INT32_MIN, INT32_MAX, &nr)
        || !int_in(PyDict_GetItemString(f, "res"), INT64_MIN, INT64_MAX, &res)
        || args == NULL || addrs == NULL || !PyList_CheckExact(args) || !PyList_CheckExact(addrs))
        Py_RETURN_NONE;
    if (oseq_o == Py_None)
        oseq_o = NULL;
    if (oseq_o != NULL && !u64(oseq_o, &oseq))
        Py_RETURN_NONE;
    nargs = PyList_GET_SIZE(args);
    nouts = PyList_GET_SIZE(addrs);
    if (nargs > 255 || nouts > 255 || PySequence_Fast_GET_SIZE(blobs) != nouts)
        Py_RETURN_NONE;
    for (i = 0; i < nargs; i++) {
        PyObject *a = PyList_GET_ITEM(args, i);
        if (!PyLong_CheckExact(a))
            Py_RETURN_NONE;
        av[i] = PyLong_AsUnsignedLongLongMask(a);   /* a & 0xFFFFFFFFFFFFFFFF */
        if (av[i] == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }
    for (i = 0; i < nouts; i++) {
        PyObject *b = PySequence_Fast_GET_ITEM(blobs, i);
        if (!u64(PyList_GET_ITEM(addrs, i), &adv[i]) || !PyBytes_CheckExact(b)
            || PyBytes_GET_SIZE(b) > (Py_ssize_t)UINT32_MAX)
            Py_RETURN_NONE;
        bp[i] = PyBytes_AS_STRING(b);
        lens[i] = PyBytes_GET_SIZE(b);
        total += lens[i];
    }
    if (total > (Py_ssize_t)UINT32_MAX - 4096)
        Py_RETURN_NONE;
    return sys_frame((int32_t)pid, (int64_t)seq, (int32_t)nr, (int64_t)res, oseq_o != NULL, oseq,
                     nargs, av, nouts, adv, bp, lens);
}

/* --- the lane: answered calls handled whole in C (issue 10) ---------------------------------
 *
 * A recorder's most frequent calls are those it answers itself at their seccomp stop
 * (tft_lab/answers.py: the pid family, system-wide clocks, gettimeofday, time, getrandom).
 * lane() waits for stops and, for as long as they are such calls of the one traced task,
 * answers them here -- the same answer, written the same way, logged as the same record
 * -- without going back to Python; the first stop that is anything else (another call, a
 * signal, another process, the call that ends an epoch, an answer it declines) goes back to
 * Python undecoded, which handles it as if lane() had never looked.  Python decides when the
 * lane may run at all (Engine._lane_args): never while a signal is held back, a trace is
 * watched, or the program has more than one task. */

enum { K_NONE, K_PID, K_STAT, K_STAT_OF, K_CLOCK, K_TOD, K_TIME, K_RANDOM };
#define LANE_NR 512
#define LANE_PID_OK 1    /* the task is in the supervisor's pid namespace */
#define LANE_TIME_OK 2   /* ... and its time namespace */
#define LANE_STAT_OK 4   /* its ids (ppid, pgrp, sid) are known */
#define MAX_RANDOM 4096
#define LANE_BATCH 256   /* records handed over at least this often */
static struct { unsigned char kind, nargs, field; } lane_table[LANE_NR];

static PyObject *
core_lane_setup(PyObject *self, PyObject *rows)
{
    /* rows: (nr, kind, nargs, field) per answered call, from the syscall table. */
    PyObject *seq = PySequence_Fast(rows, "lane_setup(rows)");
    if (seq == NULL)
        return NULL;
    memset(lane_table, 0, sizeof lane_table);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        int nr, kind, nargs, field;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iiii", &nr, &kind, &nargs, &field)) {
            Py_DECREF(seq);
            return NULL;
        }
        if (nr < 0 || nr >= LANE_NR || kind < 0 || kind > K_RANDOM || nargs < 0 || nargs > 6) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "lane_setup: bad row for syscall %d", nr);
            return NULL;
        }
        lane_table[nr].kind = (unsigned char)kind;
        lane_table[nr].nargs = (unsigned char)nargs;
        lane_table[nr].field = (unsigned char)field;
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static int
put_mem(int mem_fd, uint64_t addr, const void *data, size_t len)
{
    return addr != 0 && pwrite(mem_fd, data, len, (off_t)addr) == (ssize_t)len;
}

/* The answer to call nr(a) as answers.Answerer.answer gives it (ids: the task's ppid, pgrp and
 * sid, /proc/PID/stat's fields 1-3 after comm, as Answerer reads them): 1 with *res and at most one
 * out-buffer (*out_addr, out[*out_len]) written into the task, or 0: declined, it runs as
 * before (through Python).  Only what Answerer answers is answered, the same way. */
static int
answer(long pid, int flags, const long long *ids, int mem_fd, int nr, const uint64_t *a, int64_t *res,
       uint64_t *out_addr, unsigned char *out, Py_ssize_t *out_len)
{
    static const int clocks[] = {0, 1, 4, 5, 6, 7, 11}, ns_clocks[] = {1, 4, 6, 7};
    struct timespec ts;
    int kind = lane_table[nr].kind, clock, ok = 0;
    *out_len = 0;
    switch (kind) {
    case K_PID:   /* getpid, gettid: one thread, whose pid is its process's */
        if (!(flags & LANE_PID_OK))
            return 0;
        *res = pid;
        return 1;
    case K_STAT_OF:   /* getpgid, getsid: of the task itself only */
        if ((uint32_t)a[0] != 0 && (uint32_t)a[0] != (uint32_t)pid)
            return 0;
        /* fall through */
    case K_STAT:
        if (!(flags & LANE_PID_OK) || !(flags & LANE_STAT_OK) || lane_table[nr].field < 1 || lane_table[nr].field > 3)
            return 0;
        *res = ids[lane_table[nr].field - 1];
        return 1;
    case K_CLOCK:
        clock = (int)(uint32_t)a[0];
        for (size_t i = 0; i < sizeof clocks / sizeof *clocks; i++)
            ok |= clocks[i] == clock;
        for (size_t i = 0; i < sizeof ns_clocks / sizeof *ns_clocks; i++)
            if (ns_clocks[i] == clock && !(flags & LANE_TIME_OK))
                return 0;
        if (!ok || clock_gettime(clock, &ts) != 0)
            return 0;
        put64(out, (uint64_t)(int64_t)ts.tv_sec);
        put64(out + 8, (uint64_t)(int64_t)ts.tv_nsec);
        *out_addr = a[1];
        *out_len = 16;
        *res = 0;
        return put_mem(mem_fd, a[1], out, 16);
    case K_TOD:
        if (a[1] != 0 || clock_gettime(CLOCK_REALTIME, &ts) != 0)   /* a timezone: not ours to know */
            return 0;
        put64(out, (uint64_t)(int64_t)ts.tv_sec);
        put64(out + 8, (uint64_t)(int64_t)(ts.tv_nsec / 1000));
        *out_addr = a[0];
        *out_len = 16;
        *res = 0;
        return put_mem(mem_fd, a[0], out, 16);
    case K_TIME:
        if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0)
            return 0;
        *res = ts.tv_sec;
        if (a[0] == 0)
            return 1;
        put64(out, (uint64_t)(int64_t)ts.tv_sec);
        *out_addr = a[0];
        *out_len = 8;
        return put_mem(mem_fd, a[0], out, 8);
    case K_RANDOM: {
        ssize_t n;
        unsigned int gflags = (unsigned int)(uint32_t)a[2];
        if (a[1] > MAX_RANDOM)
            return 0;
        n = getrandom(out, (size_t)a[1], gflags | GRND_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN && (gflags & GRND_NONBLOCK)) {
                *res = -EAGAIN;   /* no out-buffer for a failed call */
                return 1;
            }
            return 0;   /* it would wait, or flags the kernel refuses: the program's call says */
        }
        *res = n;
        if (n == 0)
            return 1;
        *out_addr = a[0];
        *out_len = n;
        return put_mem(mem_fd, a[0], out, (size_t)n);
    }
    }
    return 0;
}

/* What lane_stop() found. */
enum { STOP_LANE, STOP_PYTHON, STOP_NONE_READY, STOP_NO_CHILD, STOP_ERROR };

/* Wait for the next stop and say whether it is the lane's to handle: a seccomp stop of task
 * ``pid`` whose call does not end an epoch (STOP_LANE: *regs holds its registers and args its
 * arguments; at a seccomp stop orig_rax is the call's number and the arguments are where the
 * x86-64 ABI puts them: GET_SYSCALL_INFO would cost one more request per call, and the pure
 * path reads the same values).  STOP_PYTHON: any other stop, for Python to handle as if the
 * lane had never looked (not decoded, not resumed).  ``has_work``: the caller has results to
 * hand over, so an interrupted wait returns STOP_NONE_READY (else it runs Python's signal
 * handlers: Ctrl-C gives STOP_ERROR with KeyboardInterrupt set, as os.waitpid raises it);
 * ``short``: wait only for a task about to stop (it usually shares our CPU: it is let run
 * once), else STOP_NONE_READY.  Waits with the GIL released. */
static int
lane_stop(long pid, long long seq, long long epoch, int has_work, int short_wait, pid_t *w, int *status,
          struct user_regs_struct *regs, uint64_t *args)
{
    int err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        *w = waitpid(-1, status, __WALL | (short_wait ? WNOHANG : 0));
        if (*w == 0) {
            sched_yield();
            *w = waitpid(-1, status, __WALL | WNOHANG);
        }
        err = errno;
        Py_END_ALLOW_THREADS
        if (*w != -1 || err != EINTR)
            break;
        if (has_work)
            return STOP_NONE_READY;
        if (PyErr_CheckSignals() < 0)
            return STOP_ERROR;
    }
    if (*w == -1 && err == ECHILD)
        return STOP_NO_CHILD;
    if (*w == -1) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return STOP_ERROR;
    }
    if (*w == 0)
        return STOP_NONE_READY;
    if (*w != pid || !WIFSTOPPED(*status) || WSTOPSIG(*status) != SIGTRAP
        || ((*status >> 16) & 0xffff) != EV_SECCOMP || (seq + 1) % epoch == 0)
        return STOP_PYTHON;
    if (request(PTRACE_GETREGS, pid, NULL, regs, &err) == -1 && err)
        return STOP_PYTHON;
    args[0] = regs->rdi;
    args[1] = regs->rsi;
    args[2] = regs->rdx;
    args[3] = regs->r10;
    args[4] = regs->r8;
    args[5] = regs->r9;
    /* a call the lane answers at all (lane_table); the caller checks the rest */
    return regs->orig_rax < LANE_NR && lane_table[regs->orig_rax].kind != K_NONE ? STOP_LANE : STOP_PYTHON;
}

/* At the seccomp stop lane_stop() read *regs at: skip the call (orig_rax -1) and make it
 * return ``res``.  0, or -1: SETREGS failed (the stop is then Python's). */
static int
skip_call(long pid, struct user_regs_struct *regs, int64_t res)
{
    int err;
    regs->orig_rax = (unsigned long long)-1;
    regs->rax = (unsigned long long)res;
    return request(PTRACE_SETREGS, pid, NULL, regs, &err) == -1 && err ? -1 : 0;
}

/* Resume the task after a call the lane handled; -1 with TracingError set. */
static int
lane_resume(long pid)
{
    int err;
    if (request(PTRACE_CONT, pid, NULL, NULL, &err) == -1 && err && err != ESRCH) {   /* ESRCH: killed meanwhile */
        tracing_error("resume", err, pid);
        return -1;
    }
    return 0;
}

/* A lane's return value (done, wpid, status) for the stop lane_stop() found and does not
 * handle (STOP_PYTHON: w and status; STOP_NONE_READY: 0; STOP_NO_CHILD: -1).  Steals done. */
static PyObject *
lane_result(PyObject *done, int found, pid_t w, int status)
{
    if (found == STOP_NO_CHILD)
        return Py_BuildValue("(Nii)", done, -1, 0);
    if (found == STOP_NONE_READY)
        return Py_BuildValue("(Nii)", done, 0, 0);
    return Py_BuildValue("(Nii)", done, (int)w, status);
}

/* lane(pid, vpid, seq, epoch, flags, ppid, pgrp, sid, mem_fd) -> (frames, wpid, status).
 *
 * frames: the sys records (framed) of the calls answered here, in order: seq, seq+1...
 * wpid, status: the stop that ended the lane, for Python to handle (not decoded, not
 * resumed); wpid 0: nothing is ready and frames is not empty (handed over before waiting
 * for longer); wpid -1: no child is left.  Waits with the GIL released. */
static PyObject *
core_lane(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    long pid, vpid, flags, mem_fd;
    long long seq, epoch, ids[3];
    PyObject *frames;
    unsigned char out[MAX_RANDOM];
    if (argc != 9 || crc32_func == NULL) {
        PyErr_SetString(PyExc_TypeError, "lane(pid, vpid, seq, epoch, flags, ppid, pgrp, sid, mem_fd), after setup_log");
        return NULL;
    }
    pid = PyLong_AsLong(argv[0]);
    vpid = PyLong_AsLong(argv[1]);
    seq = PyLong_AsLongLong(argv[2]);
    epoch = PyLong_AsLongLong(argv[3]);
    flags = PyLong_AsLong(argv[4]);
    for (int i = 0; i < 3; i++)
        ids[i] = PyLong_AsLongLong(argv[5 + i]);
    mem_fd = PyLong_AsLong(argv[8]);
    if (PyErr_Occurred())
        return NULL;
    if (epoch < 1) {
        PyErr_SetString(PyExc_ValueError, "lane: epoch must be at least 1");
        return NULL;
    }
    if ((frames = PyList_New(0)) == NULL)
        return NULL;
    for (;;) {
        int status = 0, nr, has, found;
        pid_t w;
        struct user_regs_struct regs;
        uint64_t addr = 0, args[6];
        int64_t res = 0;
        Py_ssize_t len = 0;
        const char *blob = (const char *)out;
        PyObject *frame;
        if (PyList_GET_SIZE(frames) >= LANE_BATCH)
            return lane_result(frames, STOP_NONE_READY, 0, 0);
        /* records waiting: hand them over rather than wait long (a log flushes as time passes) */
        has = PyList_GET_SIZE(frames) > 0;
        found = lane_stop(pid, seq, epoch, has, has, &w, &status, &regs, args);
        if (found == STOP_ERROR)
            goto fail;
        if (found != STOP_LANE)
            return lane_result(frames, found, w, status);
        nr = (int)regs.orig_rax;
        if (!answer(pid, (int)flags, ids, (int)mem_fd, nr, args, &res, &addr, out, &len)
            || skip_call(pid, &regs, res) < 0)
            return lane_result(frames, STOP_PYTHON, w, status);
        frame = sys_frame((int32_t)vpid, (int64_t)seq, (int32_t)nr, res, 0, 0, lane_table[nr].nargs,
                          args, len ? 1 : 0, &addr, &blob, &len);
        if (frame == NULL || PyList_Append(frames, frame) < 0) {
            Py_XDECREF(frame);
            goto fail;
        }
        Py_DECREF(frame);
        seq++;
        if (lane_resume(pid) < 0)
            goto fail;
    }
fail:
    Py_DECREF(frames);
    return NULL;
}

/* The argument a call of this kind writes its answer at (its one out-buffer), or -1: none. */
static int
out_arg(int kind)
{
    switch (kind) {
    case K_CLOCK:
        return 1;
    case K_TOD:
    case K_TIME:
    case K_RANDOM:
        return 0;
    }
    return -1;
}

/* replay_lane(pid, seq, epoch, mem_fd, records) -> (taken, wpid, status).
 *
 * The replay's side of the lane: records[i] = (nr, args, res, addr, blob) is the logged
 * answered call seq+i (args: the logged ones, as many as the table compares; addr 0 and blob
 * None: no out-buffer).  Each seccomp stop of the task that is that very call -- the same
 * number, the same arguments, its out-buffer where the call writes it -- is answered from its
 * record, as Replayer.on_entry answers it (the blob written, the call skipped, its result
 * set), until a stop that is anything else, which goes back to Python undecoded (a call that
 * differs from its record is Python's to call a divergence).  taken: the records used. */
static PyObject *
core_replay_lane(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    long pid, mem_fd;
    long long seq, epoch;
    Py_ssize_t taken = 0, n;
    PyObject *recs;
    if (argc != 5 || !PyList_CheckExact(argv[4])) {
        PyErr_SetString(PyExc_TypeError, "replay_lane(pid, seq, epoch, mem_fd, records: list)");
        return NULL;
    }
    pid = PyLong_AsLong(argv[0]);
    seq = PyLong_AsLongLong(argv[1]);
    epoch = PyLong_AsLongLong(argv[2]);
    mem_fd = PyLong_AsLong(argv[3]);
    if (PyErr_Occurred())
        return NULL;
    if (epoch < 1) {
        PyErr_SetString(PyExc_ValueError, "replay_lane: epoch must be at least 1");
        return NULL;
    }
    recs = argv[4];
    n = PyList_GET_SIZE(recs);
    for (;;) {
        int status = 0, kind, oa, found;
        pid_t w;
        struct user_regs_struct regs;
        uint64_t args[6], addr;
        long long lnr, res;
        PyObject *rec, *rargs, *blob;
        Py_ssize_t nargs;
        if (taken >= n)   /* no record left to answer from: the next stop is Python's */
            return lane_result(PyLong_FromSsize_t(taken), STOP_NONE_READY, 0, 0);
        found = lane_stop(pid, seq, epoch, taken > 0, 0, &w, &status, &regs, args);
        if (found == STOP_ERROR)
            return NULL;
        if (found != STOP_LANE)
            return lane_result(PyLong_FromSsize_t(taken), found, w, status);
#define HAND_BACK() return lane_result(PyLong_FromSsize_t(taken), STOP_PYTHON, w, status)
        rec = PyList_GET_ITEM(recs, taken);
        if (!PyArg_ParseTuple(rec, "LO!LKO", &lnr, &PyTuple_Type, &rargs, &res, &addr, &blob))
            return NULL;
        if (regs.orig_rax != (unsigned long long)lnr)
            HAND_BACK();
        kind = lane_table[lnr].kind;
        nargs = PyTuple_GET_SIZE(rargs);
        if (nargs > 6)
            HAND_BACK();
        for (Py_ssize_t i = 0; i < nargs; i++) {
            uint64_t v = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(rargs, i));
            if (v == (uint64_t)-1 && PyErr_Occurred())
                return NULL;
            if (v != args[i])
                HAND_BACK();
        }
        oa = out_arg(kind);
        if (blob != Py_None) {
            if (!PyBytes_Check(blob) || oa < 0 || addr == 0 || addr != args[oa]
                || !put_mem((int)mem_fd, addr, PyBytes_AS_STRING(blob), (size_t)PyBytes_GET_SIZE(blob)))
                HAND_BACK();
        } else if (addr != 0) {
            HAND_BACK();
        }
        if (skip_call(pid, &regs, res) < 0)
            HAND_BACK();
#undef HAND_BACK
        taken++;
        seq++;
        if (lane_resume(pid) < 0)
            return NULL;
    }
}

/* decode_sys(payload) -> Record, what log._decode_sys gives for a well-formed sys record, or
 * None for anything else (log._decode_sys then decodes it, or says what is wrong with it). */
static PyObject *record_type;   /* log.Record, from setup_log() */
static long long max_pid, user_top, max_blobs;

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int
set_item(PyObject *d, const char *key, PyObject *v)
{
    int rc;
    if (v == NULL)
        return -1;
    rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

static PyObject *
core_decode_sys(PyObject *self, PyObject *arg)
{
    const unsigned char *p, *end;
    Py_ssize_t len, nargs, nouts, i, total;
    int32_t pid, nr;
    int64_t seq, res;
    uint64_t oseq = 1;
    int has_oseq;
    PyObject *rec, *list;
    if (!PyBytes_Check(arg) || record_type == NULL)
        Py_RETURN_NONE;
    p = (const unsigned char *)PyBytes_AS_STRING(arg);
    len = PyBytes_GET_SIZE(arg);
    end = p + len;
    if (len < 28 || p[0] != 'S')
        Py_RETURN_NONE;
    pid = (int32_t)get32(p + 1);
    seq = (int64_t)get64(p + 5);
    nr = (int32_t)get32(p + 13);
    res = (int64_t)get64(p + 17);
    nargs = p[25];
    nouts = p[26];
    has_oseq = p[27];
    p += 28;
    if (has_oseq > 1 || nargs > 6 || nouts > max_blobs || pid <= 0 || pid >= max_pid || seq < 0 || nr < 0 || nr >= 1024)
        Py_RETURN_NONE;
    if (has_oseq) {
        if (end - p < 8)
            Py_RETURN_NONE;
        oseq = get64(p);
        p += 8;
        if (oseq < 1 || oseq >= ((uint64_t)1 << 62))
            Py_RETURN_NONE;
    }
    if (end - p < 8 * nargs + 12 * nouts)
        Py_RETURN_NONE;
    total = 8 * nargs + 12 * nouts;
    for (i = 0; i < nouts; i++) {
        const unsigned char *o = p + 8 * nargs + 12 * i;
        if (get64(o) >= (uint64_t)user_top)
            Py_RETURN_NONE;
        total += get32(o + 8);
    }
    if (total != end - p)
        Py_RETURN_NONE;
    if ((rec = PyObject_CallNoArgs(record_type)) == NULL)
        return NULL;
    if (set_item(rec, "t", PyUnicode_InternFromString("sys")) < 0
        || set_item(rec, "pid", PyLong_FromLong(pid)) < 0
        || set_item(rec, "seq", PyLong_FromLongLong(seq)) < 0
        || set_item(rec, "nr", PyLong_FromLong(nr)) < 0
        || set_item(rec, "res", PyLong_FromLongLong(res)) < 0
        || (has_oseq && set_item(rec, "oseq", PyLong_FromUnsignedLongLong(oseq)) < 0))
        goto fail;
    if ((list = PyList_New(nargs)) == NULL || set_item(rec, "args", list) < 0)
        goto fail;
    for (i = 0; i < nargs; i++, p += 8) {
        PyObject *v = PyLong_FromUnsignedLongLong(get64(p));
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(list, i, v);
    }
    if ((list = PyList_New(nouts)) == NULL || set_item(rec, "addrs", list) < 0)
        goto fail;
    for (i = 0; i < nouts; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(get64(p + 12 * i));
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(list, i, v);
    }
    if ((list = PyList_New(nouts)) == NULL || set_item(rec, "blobs", list) < 0)
        goto fail;
    {
        const unsigned char *b = p + 12 * nouts;
        for (i = 0; i < nouts; i++) {
            Py_ssize_t n = get32(p + 12 * i + 8);
            PyObject *v = PyBytes_FromStringAndSize((const char *)b, n);
            if (v == NULL)
                goto fail;
            PyList_SET_ITEM(list, i, v);
            b += n;
        }
    }
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

static PyObject *
core_setup_log(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    /* setup_log(crc32, Record, MAX_PID, USER_TOP, MAX_BLOBS) */
    if (argc != 5) {
        PyErr_SetString(PyExc_TypeError, "setup_log(crc32, Record, MAX_PID, USER_TOP, MAX_BLOBS)");
        return NULL;
    }
    max_pid = PyLong_AsLongLong(argv[2]);
    user_top = PyLong_AsLongLong(argv[3]);
    max_blobs = PyLong_AsLongLong(argv[4]);
    if (PyErr_Occurred())
        return NULL;
    Py_INCREF(argv[0]);
    Py_XSETREF(crc32_func, argv[0]);
    Py_INCREF(argv[1]);
    Py_XSETREF(record_type, argv[1]);
    Py_RETURN_NONE;
}

static PyObject *
core_setup(PyObject *self, PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != T_COUNT) {
        PyErr_Format(PyExc_TypeError, "setup takes %d types", T_COUNT);
        return NULL;
    }
    for (int i = 0; i < T_COUNT; i++) {
        Py_INCREF(argv[i]);
        Py_XSETREF(types[i], argv[i]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))core_setup, METH_FASTCALL,
     "setup(TracingError, SeccompStop, SyscallExitStop, SignalStop, ForkStop, ExecStop, "
     "OtherEventStop, Exited): the classes decode builds and errors raise."},
    {"decode", (PyCFunction)(void (*)(void))core_decode, METH_FASTCALL,
     "decode(pid, status) -> stop value (reads what the stop needs)."},
    {"syscall_info", core_syscall_info, METH_O,
     "syscall_info(pid) -> (op, nr-or-result, args) via PTRACE_GET_SYSCALL_INFO."},
    {"resume", (PyCFunction)(void (*)(void))core_resume, METH_FASTCALL | METH_KEYWORDS,
     "resume(pid, sig=0, to_exit=False): PTRACE_CONT, or PTRACE_SYSCALL with to_exit."},
    {"regs", (PyCFunction)(void (*)(void))core_regs, METH_FASTCALL,
     "regs(pid, buffer, set): GETREGS into (set false) or SETREGS from the buffer."},
    {"setup_log", (PyCFunction)(void (*)(void))core_setup_log, METH_FASTCALL,
     "setup_log(zlib.crc32, Record, MAX_PID, USER_TOP, MAX_BLOBS): what encode_sys and decode_sys use."},
    {"decode_sys", core_decode_sys, METH_O,
     "decode_sys(payload) -> the Record log._decode_sys gives, or None: not a well-formed sys record."},
    {"encode_sys", (PyCFunction)(void (*)(void))core_encode_sys, METH_FASTCALL,
     "encode_sys(fields, blobs) -> the framed sys record log.encode gives, or None: not the common case."},
    {"lane_setup", core_lane_setup, METH_O,
     "lane_setup(rows): (nr, kind, nargs, field) of each call lane() answers, from the syscall table."},
    {"lane", (PyCFunction)(void (*)(void))core_lane, METH_FASTCALL,
     "lane(pid, vpid, seq, epoch, flags, stat_fd, mem_fd) -> (frames, wpid, status): answer the "
     "task's answered calls here until a stop Python must see."},
    {"replay_lane", (PyCFunction)(void (*)(void))core_replay_lane, METH_FASTCALL,
     "replay_lane(pid, seq, epoch, mem_fd, records) -> (taken, wpid, status): answer the task's "
     "answered calls from their records until a stop Python must see."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tft_lab._core",
    "The per-stop ptrace mechanism in C; tft_lab._backend.ptrace selects it.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModule_Create(&module);
}
