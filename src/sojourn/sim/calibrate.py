"""Calibration: fit a ``Profile``'s efficiency factors and overheads to measurements.

A silicon row (a closed-loop engine benchmark) is predicted by ``closed_loop``, the
same engine scheduler the simulator runs, so TPOT includes the stalls from other
requests' prefills, exactly what the benchmark measures; a step row by
``PerfModel.step_time``. That is why the fit lives here, with the engine: the
records, their loaders and the error summaries are the perf package's
(``sojourn.perf._calibrate``), which never runs the simulator.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sojourn._errors import ConfigError
from sojourn.perf import OVERLAP_SEQ_STARTS, Profile, engine_prior
from sojourn.perf._calibrate import (
    BENCH_DEFAULTS,
    FIT_PARAMS,
    Prediction,
    Record,
    SiliconRow,
    ThroughputRow,
    default_fit_params,
    fits,
    group_mape,
    overall_mape,
    perf_model_for,
)
from sojourn.sim.closed_loop import closed_loop, offline_batch

__all__ = ["evaluate", "fit_profile"]


def _catalogue(catalogue: Any = None) -> Any:
    if catalogue is None:
        from sojourn.catalogue import default_catalogue

        return default_catalogue()
    return catalogue


def _predict(rec: Record, profile: Profile, cat: Any, specs: dict[tuple[str, str], Any]) -> Prediction:
    pm = perf_model_for(rec, profile, cat, specs)
    if isinstance(rec, SiliconRow):
        res = closed_loop(pm, rec.isl, rec.osl, rec.concurrency)
        return Prediction(rec, tpot_s=res.tpot_s, ttft_s=res.ttft_s, preemptions=res.preemptions)
    if isinstance(rec, ThroughputRow):
        off = offline_batch(pm, rec.isl, rec.osl, rec.requests)
        return Prediction(rec, output_tokens_per_s=off.output_tokens_per_s, preemptions=off.preemptions)
    done = 1 if rec.prefill_tokens > 0 else 0
    step = pm.step_time(rec.prefill_tokens, rec.decode_seqs, rec.context_tokens, prefill_done=done)
    return Prediction(rec, step_s=step)


def evaluate(records: Iterable[Record], profile: Profile, catalogue: Any = None) -> list[Prediction]:
    """Predict every record with ``profile`` (silicon rows as ``sojourn perf --concurrency`` does)."""
    cat = _catalogue(catalogue)
    specs: dict[tuple[str, str], Any] = {}
    return [_predict(r, profile, cat, specs) for r in records]


def _log_ratio(pred: float, meas: float) -> float:
    """log(pred/meas), with a non-positive or NaN prediction counted as 1000x too small (a
    large but finite residual, so that one failed prediction cannot stop the fit)."""
    if not pred > 0:
        return math.log(1e-3)
    return math.log(max(pred / meas, 1e-3))


def fit_profile(
    records: Sequence[Record],
    gpu: str,
    backend: str = "vllm",
    *,
    params: Sequence[str] | None = None,
    start: Profile | None = None,
    ttft_weight: float = 0.1,
    throughput_weight: float | None = None,
    loss: str = "soft_l1",
    f_scale: float = 0.25,
    source: str = "",
    skipped_on_load: dict[str, int] | None = None,
    max_nfev: int = 60,
    catalogue: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Profile:
    """Fit a profile for (``gpu``, ``backend``) to silicon and/or step records.

    Minimises, with ``scipy.optimize.least_squares`` within the bounds of
    ``FIT_PARAMS``, the residuals log(pred/measured): for a silicon row the TPOT of
    ``closed_loop`` (weight 1) and its TTFT (weight ``ttft_weight``); for a step row
    ``PerfModel.step_time``. TTFT weighs little because it depends on things outside
    the step-time model: the clients' relative phases (measured TTFT grows with
    concurrency far faster than staggered clients predict) and a per-request
    front-end cost (~50-90 ms in the public vLLM rows). The front-end cost has its
    own parameter, ``request_overhead_s`` (it touches TTFT only); before it existed,
    only ``eff_compute`` could absorb the bias (at weight 0.3 it fell from ~0.6 to ~0.4
    on H100 and the held-out H100 vLLM TPOT error doubled). The loss is robust
    (``soft_l1``, scale ``f_scale`` in log units) so that a few rows with effects
    outside the model (KV-cache exhaustion queueing, a slow run) do not drag the fit.

    A throughput row (``ThroughputRow``, an offline run) is predicted by ``offline_batch``,
    weighted ``throughput_weight`` (None: ``_throughput_weight``).

    Silicon rows run with the benchmark engine's assumed settings where the row does not say
    (``BENCH_DEFAULTS``, ``BENCH_KV_CACHE``: ``perf_model_for``).

    ``params`` None: ``_fit_names``. Records for another GPU or engine are an error; rows that cannot run (weights or one
    request do not fit) are dropped and counted in ``fit["skipped"]``, with the
    loader's ``skipped_on_load`` counts (rows filtered out as another backend or GPU
    are not worth recording and are left out).
    """
    from scipy.optimize import least_squares

    cat = _catalogue(catalogue)
    usable, skipped = _usable(records, gpu, backend, params, skipped_on_load, cat)
    base = replace(start or engine_prior(backend), gpu=gpu, backend=backend, carried_from=None, fit={})
    names = _fit_names(usable, params)
    throughput_weight = _throughput_weight(usable, ttft_weight) if throughput_weight is None else throughput_weight
    lo = np.array([FIT_PARAMS[n][0] / FIT_PARAMS[n][2] for n in names])
    hi = np.array([FIT_PARAMS[n][1] / FIT_PARAMS[n][2] for n in names])
    x0 = np.clip([_start_value(base, n) / FIT_PARAMS[n][2] for n in names], lo + 1e-6, hi - 1e-6)

    def profile_at(x: np.ndarray) -> Profile:
        vals: dict[str, Any] = {n: float(v) * FIT_PARAMS[n][2] for n, v in zip(names, x, strict=True)}
        return replace(base, **vals)

    def residuals(x: np.ndarray) -> np.ndarray:
        return _residuals(evaluate(usable, profile_at(np.clip(x, lo, hi)), cat), ttft_weight, throughput_weight)

    calls = [0]

    def traced(x: np.ndarray) -> np.ndarray:
        calls[0] += 1
        out = residuals(x)
        if progress is not None and calls[0] % 10 == 1:
            progress(f"  eval {calls[0]}: cost {0.5 * float(out @ out):.4f}")
        return out

    # Closed-loop predictions are piecewise smooth (event orders change with the
    # parameters), so the Jacobian uses steps of 1% of each scaled parameter.
    sols = [least_squares(traced, x, bounds=(lo, hi), method="trf", loss=loss, f_scale=f_scale, diff_step=1e-2,
                          x_scale=1.0, max_nfev=max_nfev) for x in _starts(x0, names, base, lo, hi)]  # fmt: skip
    sol = min(sols, key=lambda r: float(r.cost))
    fitted = profile_at(sol.x)
    fit_info = _fit_info(evaluate(usable, fitted, cat), fitted, names, skipped, sol, loss, f_scale, ttft_weight,
                         throughput_weight)
    fit_info.update({"start_costs": [round(float(r.cost), 6) for r in sols]} if len(sols) > 1 else {})
    return replace(fitted, source=source or f"fitted to {len(usable)} rows", fit=fit_info)


def _starts(x0: np.ndarray, names: list[str], base: Profile, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Where the fit starts: ``x0``, or with host overlap one start per ``OVERLAP_SEQ_STARTS`` value of
    the per-sequence overhead (a step is then max(host, GPU), whose flat sides make the fit depend on
    where it starts; ``fit_profile`` keeps the lowest cost on the fit rows)."""
    if not base.host_overlap or "seq_overhead_s" not in names:
        return [x0]
    i = names.index("seq_overhead_s")
    out = []
    for seq in OVERLAP_SEQ_STARTS:
        x = x0.copy()
        x[i] = np.clip(seq / FIT_PARAMS["seq_overhead_s"][2], lo[i] + 1e-6, hi[i] - 1e-6)
        out.append(x)
    return out


def _start_value(base: Profile, name: str) -> float:
    """Where the fit of ``name`` starts: its value, or for an unset precision factor the factor
    that precision uses now (``Profile.compute_efficiency``), for an unset all-to-all latency the all-reduce's."""
    v = getattr(base, name)
    if v is None and name == "a2a_latency_s":  # unset: the all-reduce's
        return float(base.comm_latency_s)
    if v is None:
        return base.compute_efficiency(name.removeprefix("eff_compute_"))
    return float(v)


def _usable(records: Sequence[Record], gpu: str, backend: str, params: Sequence[str] | None,
            skipped_on_load: dict[str, int] | None, cat: Any) -> tuple[list[Record], Counter[str]]:
    """The records a fit can use, and why the others were dropped; ConfigError for a bad request."""
    unknown = [p for p in params or () if p not in FIT_PARAMS]
    if unknown or (params is not None and not params):
        raise ConfigError("calibrate.params", f"cannot fit {unknown or 'nothing'}; allowed: {', '.join(FIT_PARAMS)}")
    other = sorted({r.gpu for r in records} - {gpu})
    if other:
        raise ConfigError("calibrate.gpu", f"records for {', '.join(other)} given to a fit for {gpu}")
    engines = sorted({r.backend for r in records if isinstance(r, SiliconRow)} - {backend})
    if engines:
        raise ConfigError("calibrate.backend", f"rows of {', '.join(engines)} given to a fit for {backend}")
    skipped: Counter[str] = Counter(
        {k: v for k, v in (skipped_on_load or {}).items() if not k.startswith(("other backend", "other GPU"))}
    )
    usable = []
    for r in records:
        why = fits(r, cat)
        if why:
            skipped[why] += 1
        else:
            usable.append(r)
    if not usable:
        raise ConfigError("calibrate", f"no usable rows for {gpu}/{backend}")
    return usable, skipped


def _fit_names(usable: Sequence[Record], params: Sequence[str] | None) -> list[str]:
    """The parameters to fit: ``params``, or ``default_fit_params``; never the client's front-end cost
    without silicon rows (only a client's TTFT sees it: step and throughput rows cannot fit it)."""
    names = list(default_fit_params(usable) if params is None else params)
    if not any(isinstance(r, SiliconRow) for r in usable) and "request_overhead_s" in names:
        names.remove("request_overhead_s")
    return names


def _throughput_weight(records: Sequence[Record], ttft_weight: float) -> float:
    """The weight that gives the throughput rows, in total, the squared weight of the closed-loop rows
    (each a TPOT residual of weight 1 and a TTFT one of ``ttft_weight``); 1 without either kind:
    w = sqrt(n_closed·(1 + ttft_weight²) / n_offline).

    Each throughput row is one figure of what a node's capacity, the number P(miss) depends on
    most, is at batches in the hundreds to thousands, which closed-loop rows at concurrency <= 256
    do not reach; weighing both kinds the same keeps thirty figures from being drowned by hundreds
    of closed-loop rows, or the other way round. Fitted on TensorRT-LLM's H100 closed-loop rows
    alone, the fp8 factor (0.44) predicted the engine's own offline figures 15-35% low."""
    n_sil = sum(isinstance(r, SiliconRow) for r in records)
    n_thr = sum(isinstance(r, ThroughputRow) for r in records)
    if not (n_sil and n_thr):
        return 1.0
    return math.sqrt(n_sil * (1.0 + ttft_weight**2) / n_thr)


def _residuals(preds: Iterable[Prediction], ttft_weight: float, throughput_weight: float = 1.0) -> np.ndarray:
    """log(pred/measured) of every measured quantity (a silicon row's TTFT and a throughput row weighted)."""
    res = []
    for p in preds:
        r = p.record
        if isinstance(r, SiliconRow):
            res.append(_log_ratio(p.tpot_s, r.tpot_s))
            res.append(ttft_weight * _log_ratio(p.ttft_s, r.ttft_s))
        elif isinstance(r, ThroughputRow):
            res.append(throughput_weight * _log_ratio(p.output_tokens_per_s, r.output_tokens_per_s))
        else:
            res.append(_log_ratio(p.step_s, r.step_s))
    return np.asarray(res)


def _fit_info(preds: list[Prediction], fitted: Profile, names: list[str], skipped: Counter[str], sol: Any,
              loss: str, f_scale: float, ttft_weight: float, throughput_weight: float = 1.0) -> dict[str, Any]:
    """What a fitted profile records of its fit (``Profile.fit``)."""
    usable = [p.record for p in preds]
    by = ("model", "precision", "tp")
    groups = {
        "/".join(str(k) for k in key): {m: round(v, 2) if isinstance(v, float) else v for m, v in row.items()}
        for key, row in group_mape(preds, by).items()
    }
    n_sil = sum(isinstance(r, SiliconRow) for r in usable)
    n_thr = sum(isinstance(r, ThroughputRow) for r in usable)
    fit_info: dict[str, Any] = {
        "method": f"scipy.optimize.least_squares (trf, {loss} loss, f_scale {f_scale}) on log(pred/measured)",
        "fitted": names,
        "parameters": {n: getattr(fitted, n) for n in names},
        "rows_used": len(usable),
        "silicon_rows": n_sil,
        "throughput_rows": n_thr or None,
        "throughput_weight": round(throughput_weight, 4) if n_thr else None,
        "step_rows": len(usable) - n_sil - n_thr,
        "skipped": dict(skipped),
        "ttft_weight": ttft_weight if n_sil else None,
        "assumptions": dict(BENCH_DEFAULTS, max_num_seqs="max(256, concurrency)", block_size=16) if n_sil else None,
        "overall": overall_mape(preds),
        "groups": groups,
        "evaluations": int(sol.nfev),
        "converged": bool(sol.status > 0),
        "stop": str(sol.message),
    }
    n_res = 2 * n_sil + (len(usable) - n_sil)
    if n_res < 2 * len(names):
        fit_info["warning"] = (
            f"{len(usable)} rows for {len(names)} parameters: too few to pin them down; "
            "measure more step shapes (prefill-only, decode at several batches and contexts)"
        )
    return {k: v for k, v in fit_info.items() if v is not None}


