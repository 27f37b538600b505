"""The corpus: everyday programs run unmodified, each declared by one :func:`workload` call.

Categories follow issue 7: shell idioms, coreutils and findutils over trees,
archivers and compressors, git, make with gcc, sqlite3, perl/awk/lua/tcl/jq,
CPython (tempfile, sqlite3, subprocess, multiprocessing with processes, json,
hashlib), a single-process web server with a client, and threaded programs
(refused cleanly until threads land).  Python workloads use Debian's
``/usr/bin/python3`` so the corpus does not depend on the test venv.
"""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from .workload import digits, digits_and_hex, workload

PY = "/usr/bin/python3"

WORDS = "\n".join(("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 3).split()) + "\n"
BIG = "".join(f"line {i:05d} {'x' * (i % 50)}\n" for i in range(4000))
CSV = "".join(f"row{i},{i * 7 % 101},{'abc'[i % 3]}\n" for i in range(60))
TREE = {
    "tree/a.txt": "alpha\nbeta\ngamma\n",
    "tree/b.txt": "beta\nbeta\ndelta\n",
    "tree/sub/c.txt": "gamma beta\n",
    "tree/sub/deep/d.md": "# deep\nalpha\n",
    "tree/sub/deep/e.bin": bytes(range(256)) * 4,
    "tree/empty/.keep": "",
}


def _with(**extra):
    return {**TREE, **extra}


def _tarball(folder: Path) -> None:
    buf = io.BytesIO()
    # gzip's header holds a time too: fixed, so every fresh folder gets the same bytes
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as z, tarfile.open(fileobj=z, mode="w") as t:
        for name, data in (("x/one.txt", b"one\n"), ("x/sub/two.txt", b"two\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_000_000_000
            t.addfile(info, io.BytesIO(data))
    (folder / "in.tgz").write_bytes(buf.getvalue())


# --- shell idioms --------------------------------------------------------------------------------

workload("sh-redirects", "echo a > f; echo b >> f; cat f; wc -l < f; echo to-stderr >&2; cat f nofile 2>&1",
         kind="shell", note="> >> < 2>&1 and a failing cat")
workload("sh-cat-written-file", ["/bin/sh", "-c", "echo data > out.txt; cat out.txt"], kind="shell",
         note="dash; cat copies with copy_file_range")
workload("sh-exec-fd", "exec 3> log.txt; echo one >&3; echo two >&3; exec 3>&-; cat log.txt; exec 4< log.txt; "
         "read -u 4 first; echo first=$first", kind="shell", note="exec 3> / 4< and read -u")
workload("sh-heredoc", "cat <<EOF > doc.txt\nvalue $((6*7))\nhome ${HOME##*/}\nEOF\ncat doc.txt; "
         "cat <<'RAW'\n$not_expanded\nRAW\nwc -c doc.txt", kind="shell", note="here-docs, quoted and not")
workload("sh-pipeline", "seq 1 3000 | grep 7 | sort -r | head -25 | tr '\\n' ' '; echo; "
         "set -o pipefail; false | true; echo pipefail=$?", kind="shell", note="five-stage pipeline, pipefail")
workload("sh-background-wait", "(sleep 0.2; echo bg1) & (echo bg2 > f2) & wait; cat f2; "
         "sleep 0.1 & p=$!; wait $p; echo waited=$?", kind="shell", note="& and wait, wait PID")
# The child is killed before the traps are set: a subshell killed before it execs sleep would
# otherwise run the EXIT trap too, or not, depending on timing.
workload("sh-trap", "sleep 5 & p=$!; kill $p; wait $p; echo killed-status=$?; "
         "trap 'echo caught USR1' USR1; trap 'echo bye' EXIT; kill -USR1 $$; echo after", kind="shell",
         note="traps on a signal to self and EXIT; kill a child")
workload("sh-fd-restore", "{ echo in-group; echo err-group >&2; } > g.txt 2>&1; echo hello >/dev/null; "
         "/bin/echo one; /bin/echo two; cat g.txt", kind="shell",
         note="redirect saved and restored around a group (issue 7 class 5 pattern)")
workload("sh-loops-vars", "x=0; for i in $(seq 50); do x=$((x+i)); done; echo $x; printf '%05d|%-4s|\\n' 42 ab; "
         "a=(z y x); echo ${#a[@]} ${a[1]}; s=hello; echo ${s^^} ${s:1:3}", kind="shell",
         note="arithmetic, arrays, expansions")
workload("sh-read-loop", "printf 'a 1\\nb 2\\nc 3\\n' > kv; while read k v; do echo \"$v:$k\"; done < kv; "
         "IFS=, read -r p q <<< 'left,right'; echo $q", kind="shell", note="while read < file, here-string")
workload("sh-process-subst", "diff <(seq 3) <(seq 4); echo rc=$?; paste <(seq 3) <(seq 3 -1 1)",
         kind="shell", note="<( ) process substitution")
workload("sh-subshell-cd", "mkdir -p w/x; (cd w/x && pwd | sed 's|.*/w/|w/|'); cd w; echo ${PWD##*/}; cd -; "
         "pushd x >/dev/null; echo ${PWD##*/}; popd > /dev/null", kind="shell",
         note="cd into directories the shell just made")
workload("sh-nondet", "echo pid=$$ random=$RANDOM; date +%s; sleep 0.05; echo done", kind="shell",
         normalise=digits, note="pids, $RANDOM and the time: compared by structure")
workload("dash-script", ["/bin/sh", "script.sh", "arg1", "arg 2"], kind="shell",
         files={"script.sh": "set -e\necho \"$# args: $1 / $2\"\nfor f in *.sh; do echo file $f; done\n"
                             "n=0; while [ $n -lt 5 ]; do n=$((n+1)); done; echo n=$n\n"
                             "case $1 in arg*) echo matched;; esac\necho $(basename $(pwd)) > /dev/null\n"},
         note="a POSIX sh script with arguments")

# --- coreutils and findutils over trees ---------------------------------------------------------

workload("ls-l", "ls -l --time-style=+%F tree; ls -laR tree | grep -c txt; ls -1 tree/sub", kind="coreutils",
         files=TREE, note="ls -l, ls -R")
workload("find-tree", "find . -maxdepth 0; find tree | sort; find tree -type f -name '*.txt' | sort; "
         "find tree -type d -empty", kind="coreutils", files=TREE, note="find walks with fchdir")
workload("find-exec", "find tree -type f -exec wc -c {} + | sort; find tree -name '*.md' -exec cat {} \\;",
         kind="coreutils", files=TREE, note="find -exec (forks)")
workload("mkdir-p", "mkdir -p a/b/c/d && touch a/b/c/d/e && find a | sort && rmdir a/b/c/d 2>&1; echo rc=$?",
         kind="coreutils", compare_files="names", note="mkdir -p, touch, rmdir failing")
workload("cp-r", "cp -r tree copy && diff -r tree copy && echo same; cp -a tree copy2 && ls copy2",
         kind="coreutils", files=TREE, compare_files="names", note="cp -r, cp -a, diff -r")
workload("mv-rm", "mkdir d; touch d/x d/y d/z; mv d/x d/w; rm d/y; ls d; rm -r d; ls", kind="coreutils",
         note="rename, unlink, rm -r")
workload("stat-tree", "stat -c '%n %s %F %a' tree/* tree/sub/* | sort", kind="coreutils", files=TREE,
         note="stat")
workload("sort-uniq-wc", "sort words.txt | uniq -c | sort -k1,1nr -k2 | head -5; wc words.txt; sort -u words.txt | wc -l",
         kind="coreutils", files={"words.txt": WORDS}, note="sort, uniq -c, wc")
workload("sed-i", "sed -i 's/alpha/ALPHA/g; s/beta/B/' tree/a.txt tree/b.txt; cat tree/a.txt tree/b.txt",
         kind="coreutils", files=TREE, compare_files="names", note="sed -i (temp file + rename)")
workload("grep-r", "grep -rn beta tree | sort; grep -rlc alpha tree | sort; grep -c x nothing 2>&1; echo rc=$?",
         kind="coreutils", files=TREE, note="grep -r over a tree")
workload("du-tree", "du -a tree | sort -k2; du -sh tree | cut -f2", kind="coreutils", files=TREE, note="du")
workload("xargs", "find tree -name '*.txt' | sort | xargs cat | sort | uniq -c; echo a b c | xargs -n1 echo item",
         kind="coreutils", files=TREE, note="xargs")
workload("cut-paste-join", "cut -d, -f2 data.csv | sort -n | tail -3; cut -d, -f1,3 data.csv | head -3; "
         "join -t, <(sort data.csv | head -5) <(sort data.csv | head -3)", kind="coreutils",
         files={"data.csv": CSV}, note="cut, paste, join")
workload("split-cat", "split -l 700 big.txt part_; ls part_*; cat part_* | cmp - big.txt && echo same; "
         "tail -c 20 part_af", kind="coreutils", files={"big.txt": BIG}, note="split into files")
workload("links", "ln -s tree/a.txt link; readlink link; cat link; ln tree/b.txt hard; stat -c %h hard; "
         "realpath --relative-to=. link", kind="coreutils", files=TREE, note="symlink, hard link")
workload("tee-head-tail", "seq 200 | tee s.txt | tail -5; head -3 s.txt; tail -n +198 s.txt; wc -l s.txt",
         kind="coreutils", note="tee to a file")
workload("checksums", "sha256sum tree/*.txt; md5sum big.txt; cksum words.txt", kind="coreutils",
         files=_with(**{"big.txt": BIG, "words.txt": WORDS}), note="hashing large files")
workload("chmod-touch", "touch f; chmod 640 f; stat -c %a f; chmod -R go-rwx tree; stat -c '%a %n' tree/a.txt",
         kind="coreutils", files=TREE, note="chmod, touch")
workload("file-magic", ["/usr/bin/file", "tree/a.txt", "tree/sub/deep/e.bin", "in.tgz", "/bin/ls"],
         kind="coreutils", files=TREE, setup=_tarball, note="libmagic (mmaps its database)")
workload("dd-truncate", "dd if=big.txt of=copy.bin bs=1k count=10 status=none; truncate -s 5000 copy.bin; "
         "stat -c %s copy.bin; od -c copy.bin | tail -2", kind="coreutils", files={"big.txt": BIG},
         note="dd, truncate")

# --- archivers and compressors --------------------------------------------------------------------

workload("tar-czf", "tar czf t.tgz tree && tar tzf t.tgz | sort", kind="archive", files=TREE,
         compare_files="names", note="tar forks gzip")
workload("tar-xzf", "tar xzf in.tgz && find x | sort && cat x/one.txt x/sub/two.txt", kind="archive",
         setup=_tarball, note="extract a .tgz")
workload("tar-xz-pipe", "tar cf - tree | xz -c > t.txz && xz -dc t.txz | tar tf - | sort", kind="archive",
         files=TREE, compare_files="names", note="tar | xz pipeline")
workload("gzip", "gzip -k -9 big.txt && gunzip -c big.txt.gz | md5sum && gzip -l big.txt.gz | tail -1",
         kind="archive", files={"big.txt": BIG}, note="gzip, gunzip")
workload("xz", "xz -k big.txt && xz -dc big.txt.xz | wc -l && xz -t big.txt.xz && echo ok", kind="archive",
         files={"big.txt": BIG}, note="xz")
workload("bzip2", "bzip2 -k big.txt && bzip2 -t big.txt.bz2 && bzcat big.txt.bz2 | tail -1", kind="archive",
         files={"big.txt": BIG}, note="bzip2")
# Debian's zstd 1.5 starts an I/O thread by default, even with --single-thread: --no-asyncio stops that.
workload("zstd", "zstd -q -T1 --no-asyncio -k big.txt && zstd -q -d --no-asyncio -c big.txt.zst | md5sum && "
         "zstd -q -t --no-asyncio big.txt.zst && echo ok", kind="archive", files={"big.txt": BIG},
         note="zstd without its I/O thread")

# --- git ---------------------------------------------------------------------------------------------

workload("git-init", "git init -q repo && ls -A repo && git -C repo status --short", kind="git",
         compare_files="names", note="git init into a new directory")
workload("git-commit-log", "git init -q r && cd r && echo x > f && git add f && git commit -q -m first && "
         "echo y >> f && git commit -qam second && git log --format='%h %an %s' && git show --stat HEAD | tail -2",
         kind="git", compare_files="names", note="init, add, commit, log (fixed dates: same hashes)")
workload("git-branch-diff", "git init -q r && cd r && printf 'a\\nb\\n' > f && git add f && git commit -qm base && "
         "git checkout -qb topic && echo c >> f && git commit -qam topic && git checkout -q - && git diff topic && "
         "git merge -q topic && git log --oneline | wc -l && git status --porcelain", kind="git",
         compare_files="names", note="branch, checkout, diff, merge")

# --- make and gcc ---------------------------------------------------------------------------------

HELLO_C = "#include <stdio.h>\n#include \"msg.h\"\nint main(void){ for(int i=0;i<3;i++) printf(\"%s %d\\n\", MSG, i); return 0; }\n"
workload("make-gcc", ["/usr/bin/make", "-s", "run"], kind="build", compare_files="names",
         files={"Makefile": "hello: hello.c msg.h\n\tgcc -O1 -o hello hello.c\nrun: hello\n\t./hello\n",
                "hello.c": HELLO_C, "msg.h": "#define MSG \"hi\"\n"}, timeout=120, note="make runs gcc (cc1, as, ld)")
workload("gcc-direct", "gcc -O1 -o p hello.c && ./p && gcc -c hello.c -o h.o && ls *.o", kind="build",
         compare_files="names", files={"hello.c": HELLO_C, "msg.h": "#define MSG \"direct\"\n"}, timeout=120,
         note="gcc driver: fork/exec/wait of cc1, as, collect2")
workload("mmap-relative", "gcc -O1 -o mm mm.c && ./mm", kind="build", compare_files="names", timeout=120,
         files={"data.txt": "mapped bytes\n", "mm.c":
                "#include <fcntl.h>\n#include <stdio.h>\n#include <sys/mman.h>\n#include <unistd.h>\n"
                "int main(void){int fd=open(\"data.txt\",O_RDONLY); char*p=mmap(0,13,PROT_READ,MAP_PRIVATE,fd,0);"
                " close(fd); write(1,p,13); return 0;}\n"},
         note="mmap of a file opened by relative path (class 8)")

# --- databases ----------------------------------------------------------------------------------------

workload("sqlite3-cli", ["/usr/bin/sqlite3", "db.sqlite",
                         "create table t(a int, b text); insert into t values (1,'x'),(2,'y'),(3,'z'); "
                         "select sum(a), group_concat(b) from t; pragma integrity_check;"],
         kind="db", note="sqlite3 writes a database and its journal")
workload("sqlite3-script", "sqlite3 db.sqlite < q.sql; sqlite3 -csv db.sqlite 'select * from kv order by k'",
         kind="db", files={"q.sql": "create table kv(k text primary key, v int);\nbegin;\n"
                           + "".join(f"insert into kv values('k{i:03d}', {i * i});\n" for i in range(200))
                           + "commit;\nselect count(*), sum(v) from kv;\ndelete from kv where v % 3;\nvacuum;\n"},
         note="transactions, vacuum")

# --- scripting languages --------------------------------------------------------------------------

workload("perl", "perl -ne 'print uc if /a/' words.txt | sort -u; perl -e 'print join(\",\", map {$_*$_} 1..10), \"\\n\"; "
         "opendir D, \"tree\"; print join(\" \", sort grep !/^\\./, readdir D), \"\\n\"; "
         "open F, \">\", \"p.out\"; print F \"written\\n\"; close F'; cat p.out",
         kind="script", files=_with(**{"words.txt": WORDS}), note="perl -ne, readdir, open for write")
workload("awk", "awk -F, '{s+=$2; c[$3]++} END {print s; for (k in c) print k, c[k] | \"sort\"}' data.csv; "
         "awk 'NR%2' words.txt > odd.txt; wc -l odd.txt", kind="script", files={"data.csv": CSV, "words.txt": WORDS},
         note="awk with a pipe to sort and a redirect")
workload("lua", ["/usr/bin/lua5.4", "s.lua"], kind="script", files={"s.lua":
         "local t = {} for w in io.lines('words.txt') do t[w] = (t[w] or 0) + 1 end\n"
         "local ks = {} for k in pairs(t) do ks[#ks+1] = k end table.sort(ks)\n"
         "local f = assert(io.open('counts.txt', 'w')) for _, k in ipairs(ks) do f:write(k, ' ', t[k], '\\n') end f:close()\n"
         "for l in io.lines('counts.txt') do print(l) end\nprint(string.format('%.3f', math.pi), os.getenv('HOME') ~= nil)\n",
         "words.txt": WORDS}, note="lua io")
workload("jq", "jq '.items | map(.v) | add' data.json; jq -c '.items[] | select(.v > 2)' data.json; "
         "jq -r '.name' data.json", kind="script",
         files={"data.json": '{"name": "corpus", "items": [{"k": "a", "v": 1}, {"k": "b", "v": 3}, {"k": "c", "v": 5}]}'},
         note="jq")
workload("tcl", ["/usr/bin/tclsh", "s.tcl"], kind="script", files={"s.tcl":
         "set f [open out.txt w]\nforeach i {1 2 3} { puts $f \"line $i\" }\nclose $f\n"
         "set f [open out.txt]\nputs [string toupper [read $f]]\nclose $f\nputs [lsort [glob *.t*]]\n"
         "puts [expr {6 * 7}]\n"}, note="tclsh files and glob")
workload("busybox", ["/bin/busybox", "sh", "-c",
                     "busybox ls tree; busybox find tree | busybox sort; busybox wc -l tree/a.txt; "
                     "busybox sed 's/a/A/g' tree/a.txt; busybox tar czf t.tgz tree; busybox tar tzf t.tgz | busybox sort"],
         kind="script", files=TREE, compare_files="names", note="busybox applets")

# --- CPython ---------------------------------------------------------------------------------------

def _py(name: str, source: str, **kw):
    kw.setdefault("kind", "python")
    return workload(name, [PY, "prog.py"], files={"prog.py": source, **kw.pop("files", {})}, **kw)


_py("py-tempfile", "import tempfile, os\nwith tempfile.TemporaryDirectory() as d:\n"
    "    p = os.path.join(d, 'x')\n    open(p, 'w').write('hello')\n    print(open(p).read(), len(os.listdir(d)))\n"
    "with tempfile.NamedTemporaryFile('w+', suffix='.txt') as f:\n    f.write('abc'); f.seek(0); print(f.read())\n"
    "print(os.path.exists(d))\n", note="tempfile dirs and files (random names)")
_py("py-sqlite3", "import sqlite3\nc = sqlite3.connect('x.db')\nc.execute('create table t(a)')\n"
    "c.executemany('insert into t values (?)', [(i,) for i in range(100)])\nc.commit()\n"
    "print(c.execute('select sum(a), count(*) from t').fetchone())\nc.close()\n", note="sqlite3 module")
_py("py-subprocess", "import subprocess, sys\nr = subprocess.run(['sh', '-c', 'echo child; exit 5'], capture_output=True)\n"
    "print(r.returncode, r.stdout)\nprint(subprocess.check_output(['ls', '-1']).decode().split())\n"
    "print(subprocess.call(['true']), subprocess.call(['false']))\n", note="subprocess.run status and pipes (class 6)")
_py("py-subprocess-pipe", "import subprocess\np = subprocess.Popen(['sort', '-r'], stdin=subprocess.PIPE, "
    "stdout=subprocess.PIPE)\nout, _ = p.communicate(b'b\\na\\nc\\n')\nprint(out.decode().split(), p.returncode)\n"
    "q = subprocess.Popen('seq 5 | tail -2', shell=True, stdout=subprocess.PIPE)\nprint(q.stdout.read(), q.wait())\n",
    note="Popen.communicate through pipes (class 7)")
_py("py-multiprocessing-fork", "import multiprocessing as mp\n"
    "def work(conn, n):\n    conn.send(sum(range(n)))\n    conn.close()\n"
    "if __name__ == '__main__':\n    ctx = mp.get_context('fork')\n    out = []\n    for n in (10, 100, 1000):\n"
    "        a, b = ctx.Pipe()\n        p = ctx.Process(target=work, args=(b, n))\n        p.start()\n"
    "        out.append(a.recv())\n        p.join()\n        out.append(p.exitcode)\n    print(out)\n",
    note="fork-context Process and Pipe, no threads")
_py("py-multiprocessing-lock", "import multiprocessing as m\nl = m.get_context('fork').Lock()\nwith l:\n"
    "    print('ok')\n", note="a named POSIX semaphore (class 4)")
_py("py-json-hashlib", "import json, hashlib, os\nd = {'b': [1, 2, {'c': None}], 'a': 'é'}\n"
    "s = json.dumps(d, sort_keys=True)\nprint(s)\njson.dump(d, open('d.json', 'w'), indent=1)\n"
    "print(json.load(open('d.json')) == d)\nh = hashlib.sha256()\nfor r, ds, fs in sorted(os.walk('tree')):\n"
    "    for f in sorted(fs):\n        h.update(open(os.path.join(r, f), 'rb').read())\nprint(h.hexdigest())\n"
    "print(hashlib.md5(b'x').hexdigest(), hashlib.blake2b(b'y', digest_size=8).hexdigest())\n",
    files=TREE, note="json, hashlib over a tree")
_py("py-shutil-zip", "import shutil, os, zipfile\nshutil.copytree('tree', 'copy')\n"
    "shutil.make_archive('arch', 'zip', 'copy')\nprint(sorted(zipfile.ZipFile('arch.zip').namelist()))\n"
    "shutil.rmtree('copy')\nprint(sorted(os.listdir('.')))\n", files=TREE, compare_files="names",
    note="shutil.copytree, make_archive, rmtree")
_py("py-nondet", "import os, random, time, uuid\nprint(os.getpid(), random.random(), time.time())\n"
    "print(uuid.uuid4(), os.urandom(4).hex())\nprint(sorted(set(str(i) for i in range(5))))\n",
    normalise=digits_and_hex, note="pid, random, time, uuid: compared by structure")
_py("py-signals", "import signal, os, time\nhits = []\nsignal.signal(signal.SIGALRM, lambda s, f: hits.append(s))\n"
    "signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\nwhile len(hits) < 5:\n    time.sleep(0.005)\n"
    "signal.setitimer(signal.ITIMER_REAL, 0)\nos.kill(os.getpid(), signal.SIGUSR1) if False else None\n"
    "print('alarms', len(hits))\n", note="interval timer signals")
_py("py-os-fork-wait", "import os\npids = []\nfor i in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
    "        os._exit(10 + i)\n    pids.append(pid)\nprint(sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids))\n",
    note="os.fork and waitpid statuses")

# --- servers ---------------------------------------------------------------------------------------

SERVER_PY = ("import socketserver, sys\nclass H(socketserver.StreamRequestHandler):\n    def handle(self):\n"
             "        line = self.rfile.readline().decode()\n        path = line.split()[1]\n"
             "        body = ('you asked for ' + path + '\\n').encode()\n"
             "        self.wfile.write(b'HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body) + body)\n"
             "with socketserver.TCPServer(('127.0.0.1', 0), H) as s:\n"
             "    open('port.tmp', 'w').write(str(s.server_address[1]))\n    __import__('os').rename('port.tmp', 'port')\n"
             "    for _ in range(int(sys.argv[1])):\n        s.handle_request()\nprint('server done', file=sys.stderr)\n")
workload("py-socketserver-curl", f"{PY} server.py 3 & s=$!; while [ ! -e port ]; do sleep 0.02; done; "
         "for p in a b c; do curl -s http://127.0.0.1:$(cat port)/$p; done; wait $s; echo server-status=$?; rm port",
         kind="server", files={"server.py": SERVER_PY}, note="single-process socketserver and curl")
_py("py-fork-server", "import os, socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "port = s.getsockname()[1]\nif os.fork() == 0:\n    c = socket.create_connection(('127.0.0.1', port))\n"
    "    print('child got', c.recv(10), flush=True)\n    os._exit(0)\nconn, _ = s.accept()\n"
    "for i in range(200):\n    os.getppid()\nconn.sendall(b'hello')\nos.wait()\nprint('parent done')\n",
    kind="server", note="a forked client of its parent's listening socket: both ends inside the program")
workload("busybox-httpd", "mkdir www; echo hello-web > www/index.html; "
         "busybox httpd -f -p 127.0.0.1:$CORPUS_PORT -h www & s=$!; "
         "for i in $(seq 100); do busybox wget -qO- http://127.0.0.1:$CORPUS_PORT/ 2>/dev/null && break; sleep 0.05; done; "
         "kill $s; wait $s; echo stopped", kind="server", compare_files="names",
         note="busybox httpd -f (forks per request) and busybox wget")
workload("memcached-t2", "memcached -t 2 -U 0 -l 127.0.0.1 -p $CORPUS_PORT -A $([ $EUID = 0 ] && echo -u root) & s=$!; "
         "for i in $(seq 200); do { exec 3<>/dev/tcp/127.0.0.1/$CORPUS_PORT; } 2>/dev/null && break; sleep 0.05; done; "
         "printf 'set greeting 0 0 5\\r\\nhello\\r\\nget greeting\\r\\nget absent\\r\\n' >&3; "
         "n=0; while read -r line <&3; do echo \"$line\"; [ \"$line\" = $'END\\r' ] && n=$((n+1)); [ $n = 2 ] && break; done; "
         "printf 'shutdown\\r\\n' >&3; cat <&3; wait $s; echo status=$?", kind="server", threaded=True,
         note="memcached with 2 worker threads (and its maintenance threads); a client on bash's /dev/tcp")

# --- namespaces -------------------------------------------------------------------------------------

workload("unshare-r", ["/usr/bin/unshare", "-r", "/usr/bin/id", "-u"], kind="shell",
         note="user namespace uid/gid maps (class 10)")

# --- threaded: refused cleanly until threads land ----------------------------------------------

_py("py-threading", "import threading\nout = []\nt = threading.Thread(target=out.append, args=(1,))\n"
    "t.start(); t.join(); print(out)\n", threaded=True, note="threading.Thread")
_py("py-concurrent-futures", "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(2) as ex:\n    print(list(ex.map(abs, [-1, -2, 3])))\n", threaded=True,
    note="ThreadPoolExecutor")
_py("py-mp-pool", "import multiprocessing as mp\nif __name__ == '__main__':\n"
    "    with mp.get_context('fork').Pool(2) as p:\n        print(p.map(abs, [-1, -2]))\n", threaded=True,
    note="multiprocessing.Pool: helper threads, and locks in memory its processes share (one schedule)")
_py("py-mp-shared", "import multiprocessing as mp\n"
    "def inc(v):\n    for _ in range(50):\n        with v.get_lock(): v.value += 1\n"
    "if __name__ == '__main__':\n    ctx = mp.get_context('fork')\n"
    "    with ctx.Pool(3) as p:\n        print(len(p.apply(str.__mul__, ('x', 300000))), sum(p.map(abs, range(-20, 0))))\n"
    "    q = ctx.Queue()\n    ps = [ctx.Process(target=q.put, args=(i,)) for i in range(3)]\n"
    "    [x.start() for x in ps]\n    print(sorted(q.get() for _ in ps))\n    [x.join() for x in ps]\n"
    "    v = ctx.Value('i', 0)\n    ps = [ctx.Process(target=inc, args=(v,)) for _ in range(3)]\n"
    "    [x.start() for x in ps]\n    [x.join() for x in ps]\n    print(v.value)\n", threaded=True,
    note="multiprocessing Queue, Process, a Value's lock, a Pool result bigger than a pipe holds")
_py("py-http-server", "import http.server, threading, urllib.request\n"
    "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n"
    "threading.Thread(target=s.serve_forever, daemon=True).start()\n"
    "print(urllib.request.urlopen('http://127.0.0.1:%d/' % s.server_address[1]).status)\ns.shutdown()\n",
    threaded=True, normalise=digits, note="python3 -m http.server's ThreadingHTTPServer (its log line has the time)")
_py("py-http-server-clients", "import http.server, threading, urllib.request\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n"
    "threading.Thread(target=s.serve_forever, daemon=True).start()\n"
    "url = 'http://127.0.0.1:%d/prog.py' % s.server_address[1]\n"
    "with ThreadPoolExecutor(4) as ex:\n"
    "    print(sorted(set(ex.map(lambda _: len(urllib.request.urlopen(url).read()), range(12)))))\n"
    "s.shutdown()\n", threaded=True, normalise=digits,
    note="ThreadingHTTPServer, 4 clients at once: its threads open files while an accept is pending (class 27)")
workload("zstd-T2", "zstd -q -T2 -k big.txt -o big.zst && zstd -q -d -c big.zst | wc -l", kind="archive",
         files={"big.txt": BIG * 8}, threaded=True, compare_files="names", note="zstd worker threads")

# --- more everyday programs (2026-11-30 evening: classes 20-22) ----------------------------------

workload("gpg", "mkdir -m 700 g && gpg --homedir g --batch --quiet --pinentry-mode loopback --passphrase x "
         "--symmetric -o f.gpg f.txt && gpg --homedir g --batch --quiet --pinentry-mode loopback --passphrase x "
         "-d f.gpg | cmp - f.txt && echo same; gpgconf --homedir g --kill all", kind="server", threaded=True,
         files={"f.txt": WORDS}, compare_files="none",
         note="gpg starts gpg-agent, a threaded daemon, and talks to it over a Unix socket (classes 20, 21)")
workload("bc", "echo 'scale=200; 4*a(1)' | bc -l; echo '2^1000 % 97' | bc", kind="script", note="bc -l")
workload("ssh-keygen", "ssh-keygen -q -t ed25519 -N '' -C me -f k && wc -c < k.pub && ssh-keygen -lf k.pub | cut -d' ' -f1,3,4",
         kind="coreutils", compare_files="names", note="a new key from getrandom, its fingerprint")
workload("node", ["node", "-e", "const fs = require('fs'); fs.writeFileSync('o.txt', 'hi\\n');"
                  "console.log([1, 2, 3].map(x => x * 2).join(','), fs.readFileSync('o.txt', 'utf8').trim())"],
         kind="script", threaded=True, note="Node.js: V8's worker threads, libuv (capget, pkey_alloc)")
workload("vim-ex", "vim -es -u NONE -i NONE -c '%s/alpha/omega/g' -c wq tree/a.txt; cat tree/a.txt", kind="coreutils",
         files=TREE, note="vim in ex mode edits a file in place")
workload("man", "man -P cat ls 2>/dev/null | head -3", kind="coreutils",
         note="man-db: its helpers install their own seccomp filter (seccomp, run natively)")
workload("zip-unzip", "zip -qr t.zip tree && unzip -l t.zip | tail -1 && mkdir u && cd u && unzip -q ../t.zip && find . | sort",
         kind="archive", files=TREE, compare_files="names", note="zip, unzip")
workload("lz4", "lz4 -q big.txt big.lz4 && lz4 -dc big.lz4 | cmp - big.txt && echo same", kind="archive",
         files={"big.txt": BIG}, note="lz4 refuses to overwrite: its create without O_EXCL is committed (class 25)")
workload("git-clone", "git init -q a && git -C a commit -q --allow-empty -m one && git clone -q a b 2>&1 && "
         "git -C b log --format=%s && git clone -q --no-local a c 2>&1 && git -C c log --format=%s", kind="git",
         compare_files="none", note="git clone, local and through upload-pack's pipes")
workload("ps-self", "test -e /proc/$$/stat && echo stat-ok; readlink /proc/$$/exe; ps -o comm= -p 1 > /dev/null; "
         "echo ps=$?", kind="coreutils",
         note="paths under /proc/$$ looked up (stat, readlink) take this replica's entry live (class 22)")
workload("valgrind", ["valgrind", "-q", "/bin/echo", "hi"], kind="coreutils", timeout=120,
         note="valgrind runs the program on its own CPU emulator; its vgdb FIFO is reopened at go-live (class 23)")
