"""Checks of notebook 04 Output commit."""
from __future__ import annotations

import pandas as pd

from ._core import _exercise, _wrong, _expect, _is_number, _close


def primary_outputs(run) -> pd.DataFrame:
    t = run.trace
    return t[(t["replica"] == "primary") & (t["cls"] == "output")]


@_exercise("4.1")
def ex_4_1(wait_per_output_us, runs: dict) -> None:
    """``wait_per_output_us``: mean ``wait_ns`` of the primary's outputs under ``output``, in µs."""
    _expect(_is_number(wait_per_output_us), "wait_per_output_us should be a number")
    right = primary_outputs(runs["output"])["wait_ns"].mean() / 1e3
    _expect(_close(wait_per_output_us, right), f"{wait_per_output_us:.3f} µs: the mean over the primary's output "
                                               "rows of the `output` run, ns -> µs")


_wrong("4.1", "placeholder None")(lambda c: None)
_wrong("4.1", "milliseconds")(lambda c: c.answer / 1e3)
_wrong("4.1", "the total")(lambda c: primary_outputs(c.data[0]["output"])["wait_ns"].sum() / 1e3)
_wrong("4.1", "the none run")(lambda c: primary_outputs(c.data[0]["none"])["wait_ns"].mean() / 1e3)
_wrong("4.1", "both replicas' rows")(
    lambda c: (lambda t: t.loc[t["cls"] == "output", "wait_ns"].mean() / 1e3)(c.data[0]["output"].trace))


def _best(bench, how="min"):
    return bench[bench["mode"] == "run"].groupby("commit")["seconds"].agg(how)


@_exercise("4.2")
def ex_4_2(slowest, bench: pd.DataFrame) -> None:
    """``slowest``: the commit policy whose fastest replicated run is slowest."""
    best = _best(bench)
    _expect(slowest in set(best.index), f"slowest should be one of {sorted(best.index)}")
    _expect(slowest == best.idxmax(), f"{slowest!r}: its fastest run took {best[slowest]:.4f} s; compare each "
                                      "policy's minimum over all its runs")


_wrong("4.2", "placeholder None")(lambda c: None)
_wrong("4.2", "the fastest")(lambda c: _best(c.data[0]).idxmin())
_wrong("4.2", "by the median")(lambda c: _best(c.data[0], "median").idxmax())
_wrong("4.2", "by the slowest run")(lambda c: _best(c.data[0], "max").idxmax())
for _p in ("output", "epoch", "none"):
    _wrong("4.2", f"hard-coded {_p!r}")(lambda c, _p=_p: _p)


def _epoch_ratio(bench, commit="epoch", how="median"):
    e = bench[(bench["mode"] == "run") & (bench["commit"] == commit)].groupby("epoch")["seconds"].agg(how)
    return float(e[16] / e[256])


@_exercise("4.3")
def ex_4_3(epoch_ratio, bench: pd.DataFrame) -> None:
    """``epoch_ratio``: median time at epoch 16 / median at epoch 256, ``commit == 'epoch'``."""
    _expect(_is_number(epoch_ratio), "epoch_ratio should be a number")
    _expect(_close(epoch_ratio, _epoch_ratio(bench)), f"{epoch_ratio:.3f}: the median of epoch 16 over the median of "
                                                      "epoch 256, of the epoch policy's replicated runs")


_wrong("4.3", "placeholder None")(lambda c: None)
_wrong("4.3", "upside down")(lambda c: 1 / c.answer)
_wrong("4.3", "the output policy")(lambda c: _epoch_ratio(c.data[0], "output"))
_wrong("4.3", "the fastest runs")(lambda c: _epoch_ratio(c.data[0], how="min"))
_wrong("4.3", "the means")(lambda c: _epoch_ratio(c.data[0], how="mean"))
