"""CPython threads: ``threading`` with a lock, a ``concurrent.futures.ThreadPoolExecutor``
and a ``queue.Queue`` between a producer and a consumer thread.

Prints the sums the threads computed (always the same), which worker thread ran how
many pool tasks and the producer's random items (both differ natively from run to
run; a replay prints the recording's).  Exits 0."""
import concurrent.futures
import os
import queue
import threading

lock = threading.Lock()
total = 0
ran_in: dict[str, int] = {}


def work(i: int) -> int:
    global total
    with lock:
        total += i
        name = threading.current_thread().name
        ran_in[name] = ran_in.get(name, 0) + 1
    return i * i


with concurrent.futures.ThreadPoolExecutor(4) as pool:
    squares = sum(pool.map(work, range(200)))

items: queue.Queue = queue.Queue(maxsize=8)
got = []


def producer() -> None:
    for _ in range(100):
        items.put(int.from_bytes(os.urandom(2), "little"))
    items.put(None)


def consumer() -> None:
    while (x := items.get()) is not None:
        got.append(x)


threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"total={total}")
print(f"squares={squares}")
print(f"pool_threads={len(ran_in)}")
print(f"per_thread={sorted(ran_in.values())}")
print(f"items={len(got)}")
print(f"items_sum={sum(got)}")
