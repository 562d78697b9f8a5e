"""Plots of a study: the cost / P(miss) front, and the hardware comparison."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import optuna

from sojourn._errors import ConfigError
from sojourn.study.front import fleet_label, front_trials, is_feasible
from sojourn.study.runner import DUPLICATE_ATTR

__all__ = ["Y_LABEL", "front_figure", "plot_front", "plot_hardware", "save_figure"]

#: P(miss) values below this are drawn at it (a log axis has no zero).
FLOOR = 1e-7
#: The y-axis label, in a capacity planner's words (the report's too).
Y_LABEL = "share of requests that miss the SLA"


def _figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes, drawn without pyplot: no GUI backend, and the process's
    matplotlib backend (a notebook's, say) is left as it was."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def save_figure(fig: Any, out: str | Path, title: str) -> Path:
    """PNG, SVG or a self-contained HTML page (inline SVG); written atomically."""
    p = Path(out)
    ext = p.suffix.lower()
    if p.is_dir():
        raise ConfigError("--out", f"{p} is a folder: give a file name ending in .png, .svg or .html")
    if ext not in (".png", ".svg", ".html"):
        raise ConfigError("--out", f"unsupported plot format {ext or '(none)'}; allowed: .png, .svg, .html")
    from sojourn._io import atomic_path

    with atomic_path(p) as tmp:
        if ext == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg", bbox_inches="tight")
            tmp.write_text(
                f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                f"<body><h1>{title}</h1>{buf.getvalue()}</body></html>\n"
            )
        else:
            fig.savefig(tmp, format=ext[1:], dpi=130, bbox_inches="tight")
    return p


def plot_front(study: optuna.Study, out: str | Path, budget: float | None = None, runner: Any = None) -> Path:
    """``front_figure`` written to ``out`` (PNG, SVG or HTML), atomically."""
    fig = front_figure(study, budget, runner)
    return save_figure(fig, out, f"sojourn study {study.study_name}")


def front_figure(study: optuna.Study, budget: float | None = None, runner: Any = None) -> Any:
    """Cost (log) on x, the share of requests missing the SLA (log) on y; feasible and infeasible trials
    apart, the front joined and each of its points labelled with its fleet, the budget drawn.

    Front points whose GPU's step-time factors are not fitted on its own measurements
    (carried over from another GPU: ``sojourn.perf.scenario_calibration``, needs
    ``runner``) are hollow; fragile ones (2% less capacity moves P(miss) more than 2x) are ringed.
    """
    names = study.user_attrs.get("objectives", [])
    miss_key = "p_miss_upper"
    fig, ax = _figure((7.5, 5))
    # A trial that repeated a configuration is that configuration again: drawn once.
    done = [t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs]
    feas = [t for t in done if is_feasible(t)]
    infeas = [t for t in done if not is_feasible(t)]

    idx = names.index("sla_miss") if "sla_miss" in names else None

    def miss(t):
        # The value the study optimised where sla_miss is an objective, else the upper bound.
        v = t.values[idx] if idx is not None and t.values else t.user_attrs.get(miss_key, 1.0)
        return max(float(v if v is not None else 1.0), FLOOR)

    def xy(ts):
        return ([t.user_attrs.get("cost_per_hour", float("nan")) for t in ts], [miss(t) for t in ts])

    if infeas:
        x, y = xy(infeas)
        ax.scatter(x, y, marker="x", color="0.6", label=f"infeasible ({len(infeas)})")
    if feas:
        x, y = xy(feas)
        ax.scatter(x, y, marker="o", color="tab:blue", alpha=0.6, label=f"feasible ({len(feas)})")
    front = front_trials(study)
    if front:
        x, y = xy(front)
        ax.step(x, y, where="post", color="tab:red", lw=1.5)
        cals = [_calibration(runner, t) for t in front]
        carried = [c is not None and not c.calibrated for c in cals]
        solid = [i for i, c in enumerate(carried) if not c]
        hollow = [i for i, c in enumerate(carried) if c]
        origins = sorted({f"{_gpu_of(runner, front[i])} from {cals[i].carried_from}" for i in hollow
                          if cals[i] is not None and cals[i].carried_from})  # fmt: skip
        if solid:
            ax.scatter([x[i] for i in solid], [y[i] for i in solid], marker="D", color="tab:red", zorder=3,
                       label=f"Pareto front ({len(solid)})")
        if hollow:
            ax.scatter([x[i] for i in hollow], [y[i] for i in hollow], marker="D", facecolors="white",
                       edgecolors="tab:red", zorder=3,
                       label=f"Pareto front, GPU speed carried over: not measured on it ({len(hollow)})"
                       + (f"\n({'; '.join(origins)})" if origins else ""))
        _label_points(ax, front, x, y, runner)
        fragile = [i for i, t in enumerate(front) if _fragile(study, t)]
        if fragile:
            ax.scatter([x[i] for i in fragile], [y[i] for i in fragile], marker="o", s=160, facecolors="none",
                       edgecolors="tab:orange", lw=1.5, zorder=4,
                       label=f"fragile: 2% less capacity moves P(miss) > 2x ({len(fragile)})")
    if budget is not None:
        ax.axvline(budget, color="k", ls="--", lw=1, label=f"budget {budget:g} $/h")
    ax.set_yscale("log")
    # Costs span orders of magnitude (1 node to dozens): on a linear axis the front sits in the left quarter.
    ax.set_xscale("log")
    ax.set_xlabel("fleet cost ($/hour, log scale)")
    ax.set_ylabel(Y_LABEL)
    ax.set_title(f"Sizing study {study.study_name}: cost against the share of requests missing the SLA", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _label_points(ax: Any, front: list[optuna.trial.FrozenTrial], x: list[float], y: list[float], runner: Any) -> None:
    """Each front point labelled with its fleet ("7×h100-sxm tp1"), alternately above and below it, and a point
    that repeats the label of the one before (same fleet, other settings) left unlabelled."""
    last = None
    for i, t in enumerate(front):
        p = t.params
        label = (fleet_label(p, runner.base, short=True) if runner is not None
                 else f"{p.get('nodes', '?')}×{p.get('gpu', '?')} tp{p.get('tp', '?')}")
        if (label, x[i], y[i]) == last:
            continue
        last = (label, x[i], y[i])
        ax.annotate(label, (x[i], y[i]), xytext=(6, 8 if i % 2 == 0 else -12), textcoords="offset points",
                    fontsize=7, color="tab:red")


def _calibration(runner: Any, t: optuna.trial.FrozenTrial) -> Any:
    """The trial's ``Calibration`` (``sojourn.perf.scenario_calibration``); None when unknown: drawn plain."""
    if runner is None:
        return None
    from sojourn.perf import scenario_calibration

    try:
        sc = runner.trial_scenario({k: t.params[k] for k in runner.cfg.space if k in t.params})
        return scenario_calibration(sc)
    except Exception:  # noqa: BLE001 - a plot marks what it can
        return None


def _gpu_of(runner: Any, t: optuna.trial.FrozenTrial) -> str:
    """The trial's GPU id: its parameter, else the study scenario's."""
    return str(t.params.get("gpu") or runner.base.fleet.gpu)


def _fragile(study: optuna.Study, t: optuna.trial.FrozenTrial) -> bool:
    from sojourn.study.front import CONFIRM_PREFIX

    conf = study.user_attrs.get(f"{CONFIRM_PREFIX}{t.number}") or {}
    return bool(conf.get("fragile", t.user_attrs.get("fragile")))


def plot_hardware(rows: list[dict[str, Any]], out: str | Path, target: float) -> Path:
    """Rent against own-and-operate $/hour of the cheapest configuration per GPU type.

    A GPU whose speed is carried over from another GPU (``calibrated`` False) has hatched
    bars and a ``(carried from <gpu>)`` label.
    """
    from sojourn.perf._profile import carried_origin

    ok = [r for r in rows if r.get("rent_usd_per_hour") is not None]
    fig, ax = _figure((7.5, 4.5))

    def mark(r: dict[str, Any]) -> str:
        if r.get("calibrated") is not False:
            return ""
        origin = carried_origin(r.get("calibration"))
        return f" (carried from {origin})" if origin else " (carried)"

    labels = [f"{r['gpu']}{mark(r)}\n{r['nodes']}x tp{r['tp']}" for r in ok]
    xs = range(len(ok))
    carried = [r.get("calibrated") is False for r in ok]
    from matplotlib.patches import Patch

    handles = []
    for shift, key, name, color in ((-0.2, "rent_usd_per_hour", "rent", "tab:blue"),
                                    (0.2, "own_usd_per_hour", "own and operate", "tab:orange")):
        bars = ax.bar([x + shift for x in xs], [r[key] for r in ok], width=0.4, color=color)
        for bar, c in zip(bars, carried):
            bar.set_hatch("//" if c else "")
        handles.append(Patch(facecolor=color, label=name))
    if any(carried):
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//",
                             label="hatched: GPU speed carried over from another GPU, not measured"))
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("$/hour")
    ax.set_title(f"cheapest configuration per GPU with P(miss) <= {target:g}")
    ax.margins(y=0.3)  # room above the bars for the legend
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    path = save_figure(fig, out, "sojourn hardware comparison")
    return path
