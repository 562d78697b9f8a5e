"""A study's report for a manager: one self-contained HTML page and the same content as Markdown.

The page holds an interactive plot of every evaluated configuration and the front (plotly,
its JavaScript inlined, so the page works offline and loads nothing), with hover labels
(GPU, tp, nodes, $/month and $/hour, P(miss) with its interval, whether the GPU's speed is
measured, carried over or not measured), a log cost axis and labelled front points; the
cheapest configuration per P(miss) target; what-ifs where asked (``sojourn.study.sweep``);
and the assumptions (workload, SLA, prices and their sources, GPU speeds, floors, fidelity,
what is confirmed). The Markdown has the same sections, with the static ``front.png``.
Both are built from one list of sections, so they cannot drift apart. The data the page
plots is embedded as JSON too (``<script type="application/json" id="sojourn-report">``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sojourn._errors import SojournError
from sojourn._io import write_atomic
from sojourn.study.confirm import CONFIRM_PREFIX
from sojourn.study.front import fleet_label, front_trials, is_feasible
from sojourn.study.plot import Y_LABEL
from sojourn.study.runner import DUPLICATE_ATTR, INFEASIBLE_ATTR, StudyRunner
from sojourn.study.sweep import HOURS_PER_MONTH, cheapest_per_target, config_label

__all__ = ["Section", "interactive_figure", "report_points", "report_sections", "to_html", "to_markdown",
           "write_report"]

#: The x-axis label.
X_LABEL = "fleet cost ($/hour, log scale)"


@dataclass
class Section:
    """One part of the report: a title, paragraphs (plain text) and an optional table."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


def _speed(cal: Any) -> tuple[str, str | None]:
    """("calibrated" | "carried" | "uncalibrated" | "unknown", the GPU it is carried from)."""
    if cal is None:
        return "unknown", None
    if cal.calibrated:
        return "calibrated", None
    origin = cal.carried_from
    return ("carried", origin) if origin else ("uncalibrated", None)


def _miss(study: optuna.Study, t: optuna.trial.FrozenTrial, floor: float) -> tuple[float, Any, bool]:
    """The trial's P(miss) as the study reads it (its confirmation's where confirmed), its 95% CI, confirmed."""
    names = study.user_attrs.get("objectives", [])
    conf = study.user_attrs.get(f"{CONFIRM_PREFIX}{t.number}")
    if conf and conf.get("p_miss_used") is not None:
        return max(float(conf["p_miss_used"]), floor), conf.get("p_miss_ci"), True
    if "sla_miss" in names and t.values:
        v = float(t.values[names.index("sla_miss")])
    else:
        v = float(t.user_attrs.get("p_miss_upper", 1.0))
    return max(v, floor), t.user_attrs.get("p_miss_ci"), False


def report_points(runner: StudyRunner, study: optuna.Study) -> list[dict[str, Any]]:
    """Every configuration the study evaluated (repeats once), cheapest first: what the plot shows."""
    from sojourn.perf import scenario_calibration

    floor = runner.cfg.study.p_miss_floor or 0.0
    front = {t.number for t in front_trials(study)}
    space = list(runner.cfg.space)
    cals: dict[tuple, Any] = {}
    out = []
    done = [t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs]
    for t in sorted(done, key=lambda t: (t.user_attrs.get("cost_per_hour", math.inf), t.number)):
        params = {k: t.params[k] for k in space if k in t.params}
        key = tuple(sorted(params.items()))
        if key not in cals:
            try:
                cals[key] = scenario_calibration(runner.trial_scenario(params))
            except Exception:  # noqa: BLE001 - a configuration that does not validate: its speed is unknown
                cals[key] = None
        speed, origin = _speed(cals[key])
        p, ci, confirmed = _miss(study, t, floor)
        cost = float(t.user_attrs.get("cost_per_hour", math.nan))
        fleet = runner.base.fleet
        out.append({
            "trial": t.number, "config": config_label(params, runner.base),
            "short": fleet_label(params, runner.base, short=True), "gpu": params.get("gpu", fleet.gpu),
            "tp": params.get("tp", fleet.tp), "nodes": params.get("nodes", fleet.nodes), "cost_per_hour": cost,
            "cost_per_month": cost * HOURS_PER_MONTH, "p_miss": p,
            "p_miss_ci": list(ci) if ci else None, "load": t.user_attrs.get("load"),
            "status": "front" if t.number in front else "feasible" if is_feasible(t) else "infeasible",
            "reason": t.user_attrs.get(INFEASIBLE_ATTR), "speed": speed, "carried_from": origin,
            "speed_source": cals[key].source if cals[key] is not None else None,
            "confirmed": confirmed, "fragile": bool((study.user_attrs.get(f"{CONFIRM_PREFIX}{t.number}") or {})
                                                    .get("fragile", t.user_attrs.get("fragile"))),
            "params": params,
        })  # fmt: skip
    return out


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3g}"


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "-"
    return f"[{_num(ci[0])}, {_num(ci[1])}]"


def _speed_words(p: dict[str, Any]) -> str:
    if str(p.get("speed_source") or "").startswith("generic server"):
        return "the scenario's service time"
    if p["speed"] == "carried":
        return f"carried over from {p['carried_from']}"
    return {"calibrated": "measured", "uncalibrated": "not measured"}.get(p["speed"], "unknown")


def hover_text(p: dict[str, Any]) -> str:
    """A point's hover label (plotly's HTML subset)."""
    lines = [
        f"<b>{html.escape(p['config'])}</b> (trial {p['trial']})",
        f"GPU {html.escape(str(p['gpu']))}, tp {p['tp']}, {p['nodes']} nodes",
        f"{p['cost_per_month']:,.0f} $/month ({p['cost_per_hour']:.2f} $/hour)",
        f"misses the SLA: {_num(p['p_miss'])} of requests; sampled 95% CI {_ci(p['p_miss_ci'])}",
        f"GPU speed: {_speed_words(p)}" + (" (calibrated)" if p["speed"] == "calibrated" else ""),
    ]
    if p.get("load") is not None:
        lines.append(f"load {p['load']:.3f}")
    if p["status"] == "infeasible" and p.get("reason"):
        lines.append(f"not feasible: {html.escape(str(p['reason'])[:160])}")
    if p["status"] == "front":
        lines.append("on the front" + (", confirmed" if p["confirmed"] else ", not confirmed")
                     + (", FRAGILE" if p["fragile"] else ""))
    return "<br>".join(lines)


def _targets_section(points: Sequence[dict[str, Any]], targets: Sequence[float]) -> Section:
    """The cheapest front configuration meeting each target, as the study read it."""
    front = [dict(p, what_if="study") for p in points if p["status"] == "front"]
    table = cheapest_per_target(front, targets, ["study"])
    rows = [[f"{r['target']:g}", r["config"], _num(r.get("trial")) if r.get("trial") is not None else "-",
             f"{r['cost_per_month']:,.0f}" if r.get("cost_per_month") is not None else "-",
             f"{r['cost_per_hour']:.2f}" if r.get("cost_per_hour") is not None else "-",
             _num(r.get("p_miss")), _ci(r.get("p_miss_ci")),
             _speed_words(r) if r.get("speed") else "-"] for r in table]  # fmt: skip
    return Section(
        "Cheapest configuration per target",
        ["For each target share of requests missing the SLA, the cheapest configuration of the front that "
         "meets it (none: no configuration the study found does)."],
        ["at most this share misses", "cheapest configuration", "trial", "$/month", "$/hour", "share missing",
         "95% CI (sampled)", "GPU speed"], rows)  # fmt: skip


def _front_section(points: Sequence[dict[str, Any]]) -> Section:
    rows = []
    for p in points:
        if p["status"] != "front":
            continue
        notes = [w for w, on in (("fragile", p["fragile"]), ("not confirmed", not p["confirmed"])) if on]
        rows.append([p["config"], str(p["trial"]), f"{p['cost_per_month']:,.0f}", f"{p['cost_per_hour']:.2f}",
                     _num(p["p_miss"]), _ci(p["p_miss_ci"]), _num(p.get("load")), _speed_words(p),
                     ", ".join(notes) or "-"])
    return Section(
        "The front",
        ["Each row is a configuration no other evaluated one beats on both cost and misses, cheapest first. "
         "Share missing: the share of requests that finish after their SLA, as the study reads it (the upper end "
         "of what the runs support, or the exact queueing value where there is one), never below the floor. "
         "Fragile: 2% less node capacity would move it more than 2x, so buy with margin."],
        ["configuration", "trial", "$/month", "$/hour", "share missing", "95% CI (sampled)", "load", "GPU speed", "notes"],
        rows)


def _sweep_section(sweep: dict[str, Any]) -> Section:
    rows = [[r["what_if"], f"{r['target']:g}", r["config"],
             f"{r['cost_per_month']:,.0f}" if r.get("cost_per_month") is not None else "-",
             f"{r['cost_per_hour']:.2f}" if r.get("cost_per_hour") is not None else "-", _num(r.get("p_miss"))]
            for r in sweep["table"]]  # fmt: skip
    words = "; ".join(f"{k}: {v}" for k, v in sweep["what_ifs"].items())
    return Section(
        "What-ifs",
        [f"The front's {sweep['configs']} configurations rerun on the {sweep['fidelity']} tier under each what-if "
         f"({words}); the cheapest meeting each target, or none."],
        ["what-if", "at most this share misses", "cheapest configuration", "$/month", "$/hour", "share missing"],
        rows)


def report_sections(runner: StudyRunner, study: optuna.Study, points: Sequence[dict[str, Any]],
                    targets: Sequence[float], sweep: dict[str, Any] | None = None) -> list[Section]:
    """The report's sections, in order (the plot goes after the first)."""
    front = [p for p in points if p["status"] == "front"]
    cheapest = front[0] if front else None
    summary = Section(f"Sizing study {study.study_name}", [
        f"{len(points)} configurations evaluated, {sum(p['status'] != 'infeasible' for p in points)} feasible, "
        f"{len(front)} on the front."
        + (f" The cheapest configuration on the front is {cheapest['config']} at {cheapest['cost_per_month']:,.0f} "
           f"$/month ({cheapest['cost_per_hour']:.2f} $/hour), with {_num(cheapest['p_miss'])} of requests missing "
           "the SLA." if cheapest else " No feasible configuration yet: widen the space or raise the budget.")])
    sections = [summary, _targets_section(points, targets), _front_section(points)]
    if sweep:
        sections.append(_sweep_section(sweep))
    sections.append(assumptions_section(runner, study, points))
    return sections


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(sections: Sequence[Section], image: str | None = None) -> str:
    """The sections as Markdown; ``image``: the static plot's file name, shown after the first section."""
    out: list[str] = []
    for i, s in enumerate(sections):
        out.append(("# " if i == 0 else "## ") + s.title + "\n")
        out += [p + "\n" for p in s.paragraphs]
        if s.header:
            out.append("| " + " | ".join(_md_cell(h) for h in s.header) + " |")
            out.append("|" + "|".join("---" for _ in s.header) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
            out.append("")
        out += [f"- {b}" for b in s.bullets]
        if s.bullets:
            out.append("")
        if i == 0 and image:
            out.append(f"![cost against the share of requests that miss the SLA]({image})\n")
    return "\n".join(out).rstrip() + "\n"


def _html_section(s: Section, level: int) -> str:
    h = f"<h{level}>{html.escape(s.title)}</h{level}>"
    body = "".join(f"<p>{html.escape(p)}</p>" for p in s.paragraphs)
    if s.header:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in s.header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in s.rows)
        body += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if s.bullets:
        body += "<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in s.bullets) + "</ul>"
    return f"<section>{h}{body}</section>\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}#front{width:100%;height:560px}"""


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no "</" to end it early)."""
    return json.dumps(obj, allow_nan=False).replace("</", "<\\/")


def to_html(sections: Sequence[Section], figure_json: str, data: dict[str, Any]) -> str:
    """The page: the sections, the plot after the first, plotly.js inlined; nothing loaded from elsewhere."""
    from plotly.offline import get_plotlyjs

    parts = [_html_section(s, 1 if i == 0 else 2) for i, s in enumerate(sections)]
    plot = ('<section><div id="front"></div><p>Hover a point for its configuration, cost and share of requests '
            "missing the SLA; drag to zoom, double-click to reset.</p></section>\n")
    parts.insert(1, plot)
    title = html.escape(sections[0].title if sections else "sojourn report")
    safe_figure = figure_json.replace("</", "<\\/")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_STYLE}</style>\n<script>{get_plotlyjs()}</script>\n</head><body>\n{''.join(parts)}"
            f'<script type="application/json" id="front-figure">{safe_figure}</script>\n'
            f'<script type="application/json" id="sojourn-report">{_script_json(data)}</script>\n'
            "<script>var fig = JSON.parse(document.getElementById('front-figure').textContent);\n"
            "Plotly.newPlot('front', fig.data, fig.layout, {responsive: true, displaylogo: false});</script>\n"
            "</body></html>\n")


def write_report(runner: StudyRunner, study: optuna.Study, out: str | Path, targets: Sequence[float],
                 sweep: dict[str, Any] | None = None) -> list[Path]:
    """report.html, report.md and front.png (the Markdown's plot) in ``out``'s folder, each atomically."""
    from sojourn.study.plot import plot_front

    try:
        import plotly  # noqa: F401
    except ImportError:  # a dependency of sojourn's: an install that lacks it is broken, not the study
        raise SojournError("the report's plot needs plotly, a dependency of sojourn: pip install -e . "
                           "(or pip install plotly)") from None
    out = Path(out)
    points = report_points(runner, study)
    sections = report_sections(runner, study, points, targets, sweep)
    budget = runner.cfg.study.budget_per_hour
    fig = interactive_figure(points, study.study_name, budget)
    data = {"study": study.study_name, "points": [{k: v for k, v in p.items() if k != "params"} | p["params"]
                                                  for p in points],
            "targets": list(targets), "x_axis": "log", "y_label": Y_LABEL}
    png = plot_front(study, out.with_name("front.png"), budget=budget, runner=runner)
    md = write_atomic(out.with_suffix(".md"), to_markdown(sections, image=png.name))
    page = write_atomic(out, to_html(sections, fig.to_json(), _clean(data)))
    return [page, md, png]


def _clean(v: Any) -> Any:
    """Strict-JSON form: a non-finite number is None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _short(p: dict[str, Any]) -> str:
    """A front point's label on the plot: "7×h100-sxm tp1" (``front.fleet_label``)."""
    return str(p["short"])


def interactive_figure(points: Sequence[dict[str, Any]], name: str, budget: float | None = None) -> Any:
    """The plotly figure: every evaluated configuration, the front joined and labelled, log axes."""
    import plotly.graph_objects as go

    fig = go.Figure()

    def add(ps: Sequence[dict[str, Any]], label: str, **kw: Any) -> None:
        if ps:
            fig.add_trace(go.Scatter(x=[p["cost_per_hour"] for p in ps], y=[p["p_miss"] for p in ps],
                                     hovertext=[hover_text(p) for p in ps], hoverinfo="text", name=label,
                                     customdata=[p["trial"] for p in ps], **kw))

    infeasible = [p for p in points if p["status"] == "infeasible"]
    feasible = [p for p in points if p["status"] == "feasible"]
    front = [p for p in points if p["status"] == "front"]
    add(infeasible, f"not feasible ({len(infeasible)}; drawn at 1)", mode="markers",
        marker={"symbol": "x", "color": "#999999", "size": 7})
    add(feasible, f"feasible, beaten by the front ({len(feasible)})", mode="markers",
        marker={"color": "#1f77b4", "opacity": 0.55, "size": 8})
    if front:
        fig.add_trace(go.Scatter(x=[p["cost_per_hour"] for p in front], y=[p["p_miss"] for p in front],
                                 mode="lines", line={"shape": "hv", "color": "#d62728"}, hoverinfo="skip",
                                 showlegend=False, name="front line"))
    for group, label, face in (("measured", "front: GPU speed measured", "#d62728"),
                               ("other", "front: GPU speed carried over or not measured (less certain)", "white")):
        ps = [p for p in front if (p["speed"] in ("calibrated", "unknown")) == (group == "measured")]
        positions = ["top right" if i % 2 == 0 else "bottom right" for i in range(len(ps))]
        # A point at the same place with the same fleet as the one before (other engine settings) is not
        # labelled twice: its hover label tells them apart.
        texts = [_short(p) if i == 0 or (_short(p), p["cost_per_hour"], p["p_miss"]) != (
            _short(ps[i - 1]), ps[i - 1]["cost_per_hour"], ps[i - 1]["p_miss"]) else "" for i, p in enumerate(ps)]
        add(ps, f"{label} ({len(ps)})", mode="markers+text", text=texts,
            textposition=positions, textfont={"size": 11},
            marker={"symbol": "diamond", "size": 11, "color": face, "line": {"color": "#d62728", "width": 2}})
    if budget is not None:
        ys = [p["p_miss"] for p in points] or [1.0]
        fig.add_trace(go.Scatter(x=[budget, budget], y=[min(ys), 1.0], mode="lines", hoverinfo="skip",
                                 line={"dash": "dash", "color": "black", "width": 1}, name=f"budget {budget:g} $/hour"))
    fig.update_layout(title=f"Sizing study {name}: cost against the share of requests that miss the SLA",
                      xaxis={"type": "log", "title": {"text": X_LABEL}},
                      yaxis={"type": "log", "title": {"text": Y_LABEL}, "exponentformat": "power"},
                      legend={"orientation": "h", "y": -0.2}, template="plotly_white", hovermode="closest")
    return fig


def _workload_words(sc: Any) -> str:
    wl = sc.workload
    if wl.trace is not None:
        return (f"a replayed {wl.format} trace ({wl.trace})" + (f", its arrival times compressed {wl.rate_scale:g}x"
                                                               if wl.rate_scale != 1.0 else ""))
    profile = "" if wl.rate_profile is None else ", varying over the day by its rate_profile"
    return (f"batches arrive at random (Poisson) at {wl.batch_rate_per_hour:g} an hour{profile}; requests per batch: "
            f"{wl.batch_size.describe()}; prompt tokens: {wl.input_tokens.describe()}; output tokens: "
            f"{wl.output_tokens.describe()}; about {wl.mean_requests_per_hour / 3600:.3g} requests a second on average")


def _price_words(runner: StudyRunner, gpus: Sequence[str]) -> list[str]:
    fleet = runner.base.fleet
    if fleet.price_usd_per_gpu_hour is not None:
        return [f"Price: {fleet.price_usd_per_gpu_hour:g} $/GPU-hour for every GPU (the study scenario's own)."]
    cat = runner.base.catalogue_obj()
    out = []
    for g in gpus:
        spec = cat.gpu(g)
        est = " (an estimate)" if spec.price_estimated else ""
        out.append(f"Price of {g}: {spec.price_usd_per_gpu_hour:g} $/GPU-hour{est}, {spec.price_date}; source: "
                   f"{spec.sources.get('price', 'not given')}.")
    return out


def assumptions_section(runner: StudyRunner, study: optuna.Study, points: Sequence[dict[str, Any]]) -> Section:
    """What the numbers rest on: workload, SLA, model, prices and sources, GPU speeds, floors, fidelity."""
    sc, st = runner.base, runner.cfg.study
    wl = sc.workload
    sla = (f"{sc.sla_hours:g} hours for every batch" if not wl.sla_classes else "mixed: " + ", ".join(
        f"{c.hours:g} h (weight {c.weight:g})" for c in wl.sla_classes))
    gpus = list(dict.fromkeys(str(p["gpu"]) for p in points)) or [sc.fleet.gpu]
    speeds: dict[str, str] = {}
    for p in points:
        speeds.setdefault(str(p["gpu"]), _speed_words(p))
    front = [p for p in points if p["status"] == "front"]
    reps = st.replications or sc.simulation.replications
    horizon = st.horizon_hours or sc.simulation.horizon_hours
    bullets = [
        f"Workload: {_workload_words(sc)}.",
        f"SLA: {sla}. A request misses it when it finishes after its batch's deadline, is cancelled at it, or "
        "is refused.",
        f"Model: {sc.model.name} ({sc.model.precision}), engine {sc.serving.backend}." if sc.fleet.server is None
        else f"Servers: generic ({sc.fleet.server.kind}), no LLM engine modelled.",
        *_price_words(runner, gpus),
        "GPU speed (step times): " + "; ".join(f"{g}: {w}" for g, w in speeds.items())
        + ". Carried over: no measurements of that GPU, its speed is taken from another one (less certain; "
          "`sojourn calibrate` on your own measurements fixes it).",
        f"Floor: shares below {st.p_miss_floor:g} are reported as {st.p_miss_floor:g}; nothing further out is "
        "trusted. A configuration loaded at or above "
        f"{runner.max_load:.3g} of its capacity ({runner.max_load_reason}) counts as not feasible, unsimulated.",
        f"Budget: {st.budget_per_hour:g} $/hour." if st.budget_per_hour else "Budget: none.",
        f"Fidelity: each configuration ran on the {runner.trial_fidelity} tier, {reps} replications of "
        f"{horizon:g} hours, on the same traffic (common random numbers); front points are confirmed on the "
        f"{runner.confirm_fidelity} tier with more replications: {sum(p['confirmed'] for p in front)} of "
        f"{len(front)} confirmed.",
        f"Search: {len(points)} configurations evaluated by {st.sampler} (seed {st.seed}); $/month = $/hour x "
        f"{HOURS_PER_MONTH:g}.",
    ]
    return Section("Assumptions", bullets=bullets)
