"""The policy seam: a policy the engine has never heard of, in a dozen lines, keeps its own
typed state per process, and the engine does what its typed answers say (the signal's fate,
the counter an rdtsc reads and the trace's action for it) without asking which replica it is.

The policy runs in a child Python (the engine makes its process a subreaper and traces from
it), on the real test programs."""
import json
import subprocess
import sys

from tft_lab.testing import assert_no_leftovers, build_program, current_pids

POLICY = '''
import json, sys
from dataclasses import dataclass
from tft_lab.engine import Engine, Policy, SignalAction, Tsc

@dataclass
class Counted:
    calls: int = 0

class Counter(Policy):
    replica = "counter"
    def __init__(self):
        self.final = {}
    def new_task_state(self):
        return Counted()
    def on_entry(self, task, call):
        task.policy_state.calls += 1
        task.run(to_exit=not (call.entry is not None and call.entry.noreturn))
    def on_task_exit(self, task, code, sig):
        self.final[task.pid] = task.policy_state.calls
    def on_rdtsc(self, task, rdtscp):
        return Tsc(1000 * (task.policy_state.calls + 1), 7, "counted")
    def on_signal(self, task, signo, siginfo):
        return SignalAction.DROP

policy = Counter()
engine = Engine(policy, cpu=None)
engine.start(sys.argv[2:])
status = engine.run()
with open(sys.argv[1], "w") as f:
    json.dump({"status": status, "final": policy.final, "events": [ev._asdict() for ev in engine.events]}, f)
'''


def run_policy(tmp_path, program: str, *args: str) -> tuple[str, dict]:
    out = tmp_path / "result.json"
    p = subprocess.run([sys.executable, "-c", POLICY, str(out), str(build_program(program)), *args],
                       capture_output=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode(), json.loads(out.read_text())


def test_each_process_gets_the_policys_own_state_and_it_counts_that_process_alone(tmp_path):
    before = current_pids()
    _, res = run_policy(tmp_path, "multiproc")
    assert res["status"] == 0
    calls = {}
    for ev in res["events"]:
        if ev["kind"] == "syscall":
            calls[ev["pid"]] = calls.get(ev["pid"], 0) + 1
    assert len(res["final"]) >= 3, "multiproc forks: several processes, several states"
    # every call the engine counted for a process is one its own state counted (a fork's child
    # starts from zero, not from its parent's count)
    assert {int(pid): n for pid, n in res["final"].items()} == calls
    assert {ev["replica"] for ev in res["events"]} == {"counter"}
    # its children's SIGCHLD reached the parent, and the policy's DROP kept them from it
    arrivals = [ev for ev in res["events"] if ev["kind"] == "signal"]
    assert arrivals and {(ev["syscall"], ev["action"], ev["signal"]) for ev in arrivals} == {
        ("SIGCHLD", "dropped", "arrived")}
    assert_no_leftovers(before)


def test_the_engine_does_what_the_typed_answers_say(tmp_path):
    out, res = run_policy(tmp_path, "rdtsc")
    lines = dict(line.split("=", 1) for line in out.splitlines())
    reads = [ev for ev in res["events"] if ev["kind"] == "rdtsc"]
    assert {ev["action"] for ev in reads} == {"counted"}
    reads = reads[-8:]   # the program's own four rdtsc/rdtscp pairs (the C library reads it too)
    # the program read the policy's counter: a multiple of 1000, and rdtscp's aux is the policy's 7
    assert all(int(lines[f"rdtsc_{i}"]) % 1000 == 0 for i in range(4))
    assert {lines[f"rdtscp_aux_{i}"] for i in range(4)} == {"7"}
    assert [ev["result"] for ev in reads] == [int(lines[f"{k}_{i}"]) for i in range(4) for k in ("rdtsc", "rdtscp")]
