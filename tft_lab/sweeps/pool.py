"""Where a sweep's points run: a local pool, or an existing Dask cluster.

Both take the same :class:`~tft_lab.sweeps.point.Plan`, reference and points,
call ``on_row`` with each finished row (in completion order) and return the
rows.  Both stop every running point and leave nothing behind on Ctrl-C (the
KeyboardInterrupt goes on to the caller once they are stopped).

- :class:`LocalPool`: ``workers`` threads, each waiting on one ``tft run``
  child process at a time (the work is in the children, so threads suffice
  and nothing has to be pickled).
- :class:`DaskPool`: the points go to the workers of a running ``distributed``
  scheduler (``pip install 'tft_lab[sweep]'``).  Before the first point it checks,
  on every worker, that the program and the files named in its arguments are there
  with the sha256 they have here.
"""
from __future__ import annotations

import os
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from ..errors import TftError
from .point import Interrupted, Plan, Reference, file_digests, run_point, stop

OnRow = Callable[[dict], None]


class LocalPool:
    """Points run ``workers`` at a time on this machine."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)

    def describe(self) -> str:
        return f"a local pool of {self.workers} worker{'s' if self.workers > 1 else ''}"

    def run(self, plan: Plan, ref: Reference, points: list[int], on_row: OnRow) -> list[dict]:
        rows = []
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tft-sweep")
        try:
            pending = {pool.submit(run_point, plan, ref, n) for n in points}
            while pending:
                # a timeout, so that Ctrl-C reaches this thread while points run
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    rows.append(f.result())
                    on_row(rows[-1])
        except BaseException:
            stop(plan.sweep_id)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return rows


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise TftError("--cluster needs the distributed package: pip install 'tft_lab[sweep]'") from None
    return distributed


def _run_point_or_skip(plan: Plan, ref: Reference, point: int) -> dict | None:
    """On a worker: the point's row, None if the sweep was stopped before it ran."""
    from distributed import get_worker

    try:
        row = run_point(plan, ref, point)
    except Interrupted:
        return None
    row["worker"] = get_worker().address
    return row


class DaskPool:
    """Points run on the workers of the Dask scheduler at ``address`` (``tcp://HOST:PORT``)."""

    def __init__(self, address: str, *, connect_timeout: float = 10.0):
        distributed = _import_distributed()
        try:
            self.client = distributed.Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise TftError(f"no Dask scheduler at {address}: {e}") from None
        self.address = address
        self.workers = sorted(self.client.scheduler_info()["workers"])
        if not self.workers:
            self.client.close()
            raise TftError(f"the Dask scheduler at {address} has no workers")

    def describe(self) -> str:
        return f"the Dask cluster at {self.address} ({len(self.workers)} workers)"

    def close(self) -> None:
        self.client.close()

    def check_files(self, digests: dict[str, str | None]) -> None:
        """Every worker must hold each file of ``digests`` (path -> sha256) with that content."""
        theirs = self.client.run(file_digests, list(digests))
        for worker, found in sorted(theirs.items()):
            for path, want in digests.items():
                got = found.get(path)
                if got is None:
                    raise TftError(f"Dask worker {worker} lacks {path}: copy the program and its files "
                                   "to the same paths on every worker")
                if got != want:
                    raise TftError(f"Dask worker {worker} has a different {path} (sha256 {got[:12]}..., "
                                   f"here {want[:12]}...): copy the same program to every worker")

    def run(self, plan: Plan, ref: Reference, points: list[int], on_row: OnRow) -> list[dict]:
        distributed = _import_distributed()
        rows = []
        # pure=False: the same point twice (another sweep) is another run, not a cached result
        futures = self.client.map(_run_point_or_skip, [plan] * len(points), [ref] * len(points), points,
                                  pure=False, key=[f"tft-sweep-{plan.sweep_id}-{n}-{uuid.uuid4().hex[:6]}"
                                                   for n in points])
        try:
            for f in distributed.as_completed(futures, loop=self.client.loop):
                row = f.result()
                if row is not None:
                    rows.append(row)
                    on_row(row)
        except BaseException:
            # a cancelled task that is already running goes on: stop its ``tft run`` on every worker
            self.client.cancel(futures)
            try:
                self.client.run(stop, plan.sweep_id)
            except Exception:  # noqa: BLE001 - a worker gone is one with nothing left running
                pass
            raise
        return rows
