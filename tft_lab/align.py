"""Align the primary's and the backup's traces and flag every divergence.

On a correct replication the program on the backup makes the same system
calls, with the same arguments, and sees the same results as on the primary
(the replicas may *act* differently: the primary ``logged`` a read that the
backup ``emulated``). :func:`compare` lines the two traces up by
``(pid, seq)`` and says, row by row, whether and how they differ.
"""
from __future__ import annotations

import pandas as pd

#: The ``kind`` values that :func:`compare` aligns. A signal row takes part
#: only as a delivery: arrivals are seen by the primary alone.
COMPARED_KINDS = ("syscall", "signal")

#: Values of the ``reason`` column, from the most to the least fundamental:
#: the first that applies is reported.
REASONS = (
    "",
    "missing on backup",
    "missing on primary",
    "syscall differs",
    "signal differs",
    "args differ",
    "result differs",
)

_KEY = ["pid", "seq", "_kind_rank", "_nth"]
_SIDE = ["syscall", "args", "result", "action"]

#: Order of events that share a seq: the call, then a signal delivered after it.
_KIND_RANK = {"syscall": 0, "signal": 1}


def _events(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of one replica that compare() aligns, with a unique key."""
    is_call = df["kind"] == "syscall"
    is_delivery = (df["kind"] == "signal") & (df["signal"] == "delivered")
    ev = df.loc[is_call | is_delivery, ["pid", "seq", "epoch", "kind", "cls", *_SIDE]].copy()
    # Categorical columns of two DataFrames have different category sets:
    # compare them as plain strings.
    for col in ("kind", "cls", "syscall", "args", "action"):
        ev[col] = ev[col].astype(object)
    ev["_kind_rank"] = ev["kind"].map(_KIND_RANK).astype("int64")
    # Several signals can be delivered at one boundary: number them.
    ev["_nth"] = ev.groupby(["pid", "seq", "_kind_rank"]).cumcount()
    return ev


def _split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    replicas = set(df["replica"].astype(object).unique())
    if "primary" not in replicas and "backup" not in replicas:
        raise ValueError(
            f"compare(df) needs rows with replica 'primary' and 'backup'; this trace has {sorted(replicas)}. "
            "Pass two traces instead: compare(primary_df, backup_df)."
        )
    return df[df["replica"] == "primary"], df[df["replica"] == "backup"]


def compare(primary: pd.DataFrame, backup: pd.DataFrame | None = None) -> pd.DataFrame:
    """Align two replicas' traces by ``(pid, seq)`` and flag every divergence.

    ``compare(primary, backup)`` takes one trace per replica (the ``replica``
    column is ignored); ``compare(df)`` takes one trace holding both and splits
    it by its ``replica`` column.

    Aligned are the ``syscall`` rows and the signal *delivery* rows (a
    delivery shares the seq of the call it follows and is listed after it).
    Returns one row per aligned event, ordered by pid, seq, with columns
    ``pid, seq, epoch, kind, cls, syscall_primary, syscall_backup,
    args_primary, args_backup, result_primary, result_backup, action_primary,
    action_backup, diverged, reason``. A side that lacks the event has
    missing values (``<NA>``) in its columns. ``reason`` is one of
    :data:`REASONS` ("" when the replicas agree); ``action`` is not compared,
    since the replicas legitimately act differently.
    """
    if backup is None:
        primary, backup = _split(primary)
    p, b = _events(primary), _events(backup)
    m = p.merge(b, on=_KEY, how="outer", suffixes=("_primary", "_backup"), indicator=True)
    m = m.sort_values(_KEY, kind="stable").reset_index(drop=True)

    out = pd.DataFrame(
        {
            "pid": m["pid"].astype("int64"),
            "seq": m["seq"].astype("int64"),
            "epoch": m["epoch_primary"].fillna(m["epoch_backup"]).astype("int64"),
            "kind": m["kind_primary"].fillna(m["kind_backup"]).astype("string"),
            "cls": m["cls_primary"].fillna(m["cls_backup"]).astype("string"),
        }
    )
    for col in _SIDE:
        dtype = "Int64" if col == "result" else "string"
        for side in ("primary", "backup"):
            out[f"{col}_{side}"] = m[f"{col}_{side}"].astype(dtype)

    def differs(col: str) -> pd.Series:
        # Both sides present (checked before) so no missing values here.
        return (out[f"{col}_primary"] != out[f"{col}_backup"]).fillna(False).astype(bool)

    is_signal = out["kind"] == "signal"
    reason = pd.Series("", index=out.index, dtype=object)
    # Assign from the least to the most fundamental so the latter wins.
    reason[differs("result")] = "result differs"
    reason[differs("args")] = "args differ"
    name_differs = differs("syscall")
    reason[name_differs & ~is_signal] = "syscall differs"
    reason[name_differs & is_signal] = "signal differs"
    reason[m["_merge"] == "right_only"] = "missing on primary"
    reason[m["_merge"] == "left_only"] = "missing on backup"
    out["diverged"] = reason != ""
    out["reason"] = reason.astype(str)
    return out
