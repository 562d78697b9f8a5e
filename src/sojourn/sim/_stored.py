"""A replication's statistics as compact JSON, so a long run can be resumed replication by replication.

Replication ``i`` of a run is a function of the scenario and ``SeedSequence(seed).spawn(R)[i]``,
whose stream does not depend on ``R``: a replication stored by an interrupted run is the one
a rerun would compute, and ``simulate(..., resume=...)`` takes it as it is. Arrays travel as
base64 of zlib-compressed little-endian bytes (a sojourn histogram's bin indices as
differences, mostly 1); non-finite floats as strings, so any JSON store accepts them.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import zlib
from typing import Any

import numpy as np

from sojourn.sim._sojourns import LogHistogram
from sojourn.sim.fleet import ReplicationStats

__all__ = ["replication_from_json", "replication_to_json"]

_FORMAT = 1


def _pack(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "z": base64.b64encode(zlib.compress(a.tobytes(), 6)).decode("ascii")}


def _unpack(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(d["z"])), dtype=np.dtype(d["dtype"])).copy()


def _num(x: float) -> float | str:
    return float(x) if math.isfinite(x) else repr(float(x))


def replication_to_json(st: ReplicationStats) -> dict[str, Any]:
    """``st`` as JSON-ready values (its exact sojourns, if any, kept exact)."""
    out: dict[str, Any] = {"format": _FORMAT}
    for f in dataclasses.fields(st):
        v = getattr(st, f.name)
        if isinstance(v, np.ndarray):
            v = _pack(v)
        elif isinstance(v, LogHistogram):
            v = {"index0": int(v.index[0]) if len(v.index) else 0, "diff": _pack(np.diff(v.index)),
                 "count": _pack(v.count)}
        elif f.name == "by_sla":
            v = [[_num(k), list(c)] for k, c in v.items()]
        elif isinstance(v, float):
            v = _num(v)
        elif isinstance(v, tuple):
            v = [_num(x) for x in v]
        out[f.name] = v
    return out


def replication_from_json(d: dict[str, Any]) -> ReplicationStats:
    """The ReplicationStats ``replication_to_json`` wrote."""
    if d.get("format") != _FORMAT:
        raise ValueError(f"stored replication of format {d.get('format')!r}, this version reads {_FORMAT}")
    st = ReplicationStats()
    for f in dataclasses.fields(st):
        if f.name not in d:
            continue
        v, cur = d[f.name], getattr(st, f.name)
        if f.name.endswith("_hist"):  # sojourn_hist, ttft_hist, tpot_hist
            if v is not None:
                diff = _unpack(v["diff"])
                index = np.concatenate([[v["index0"]], v["index0"] + np.cumsum(diff)]).astype(np.int64)
                v = LogHistogram(index[: len(_unpack(v["count"]))], _unpack(v["count"]))
        elif isinstance(cur, np.ndarray):
            v = _unpack(v)
        elif f.name == "by_sla":
            v = {float(k): list(c) for k, c in v}
        elif isinstance(cur, float):
            v = float(v)
        elif isinstance(cur, tuple):
            v = tuple(float(x) for x in v)
        setattr(st, f.name, v)
    return st
