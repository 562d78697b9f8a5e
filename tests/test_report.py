"""``sojourn study report``: one self-contained HTML page and the same content as Markdown.

The page is checked as a browser would see it where one is installed (headless Chromium,
Debian's ``chromium`` package: the plot's points are drawn), and always by parsing it: no
external resource, the embedded figure equal to the study's front (costs, shares, labels, log
axes), the Markdown holding the same sections and table cells.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from _tiny_study import TINY_SCENARIO
from sojourn.cli import main
from sojourn.study import StudyRunner, front_trials, load_study
from sojourn.study.confirm import CONFIRM_PREFIX
from sojourn.study.plot import Y_LABEL

pytest.importorskip("plotly")

ROOT = Path(__file__).resolve().parents[1]


class Page(HTMLParser):
    """Every tag with its attributes, the JSON of the two data scripts, and the text of each section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self.cells: list[str] = []
        self.headings: list[str] = []
        self._script: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._script = a.get("id") or ""
            self.scripts.setdefault(self._script, "")
        if tag in ("td", "th", "h1", "h2"):
            self._text = []

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None
        if tag in ("td", "th", "h1", "h2") and self._text is not None:
            (self.headings if tag in ("h1", "h2") else self.cells).append("".join(self._text))
            self._text = None

    def handle_data(self, data):
        if self._script is not None:
            self.scripts[self._script] += data
        if self._text is not None:
            self._text.append(data)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    (d / "scenario.toml").write_text(TINY_SCENARIO)
    path = d / "rep.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "rep"
        scenario = "scenario.toml"
        n_trials = 12
        budget_per_hour = 40.0
        seed = 5
        fidelity = "fast"
        objectives_dir = "{ROOT / 'objectives'}"
        confirm_replications = 4
        [space]
        gpu = ["h100-sxm", "a100-80gb", "h200"]
        nodes = {{ low = 5, high = 16 }}
        discipline = ["fifo", "edf"]
        """))
    assert main(["study", "run", str(path), "--no-polish", "--quiet"]) == 0
    assert main(["study", "report", str(path), "--what-if", "rate=1.2", "--quiet"]) == 0
    out = d / "rep-out"
    page = Page()
    page.feed((out / "report.html").read_text())
    return path, out, page


def test_the_page_loads_nothing_from_elsewhere(reported):
    _, _, page = reported
    assert page.tags
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
        for name in ("src", "href", "data"):
            value = attrs.get(name)
            assert not value or not re.match(r"^(https?:)?//", value), (tag, name, value)
        if tag == "script":
            assert "src" not in attrs
    assert len(page.scripts[""]) > 1_000_000  # plotly.js itself, inlined


def test_the_embedded_figure_is_the_studys_front(reported):
    path, _, page = reported
    runner = StudyRunner(load_study(path))
    study = runner.load(create=False)
    fig = json.loads(page.scripts["front-figure"])
    layout = fig["layout"]
    assert layout["xaxis"]["type"] == "log" and layout["yaxis"]["type"] == "log"
    assert layout["yaxis"]["title"]["text"] == Y_LABEL == "share of requests that miss the SLA"
    front = front_trials(study)
    assert len(front) >= 2
    traces = [t for t in fig["data"] if t["name"].startswith("front:")]
    drawn = sorted((cd, x, y, text, hover) for t in traces
                   for cd, x, y, text, hover in zip(t["customdata"], t["x"], t["y"], t["text"], t["hovertext"]))
    assert [d[0] for d in drawn] == sorted(t.number for t in front)
    floor = runner.cfg.study.p_miss_floor
    for (number, x, y, text, hover), t in zip(drawn, sorted(front, key=lambda t: t.number)):
        assert number == t.number
        conf = study.user_attrs[f"{CONFIRM_PREFIX}{t.number}"]  # every front point was confirmed
        assert x == pytest.approx(t.user_attrs["cost_per_hour"])
        assert y == pytest.approx(max(conf["p_miss_used"], floor))
        assert text in (f"{t.params['nodes']}×{t.params['gpu']} tp1", "")  # "": the same fleet at the same place
        assert text or any(d[3] == f"{t.params['nodes']}×{t.params['gpu']} tp1" and d[1:3] == (x, y) for d in drawn)
        for word in (f"GPU {t.params['gpu']}", "tp 1", f"{t.params['nodes']} nodes", "$/month", "$/hour",
                     "95% CI", "GPU speed:", "confirmed"):
            assert word in hover, (word, hover)
    # Every evaluated configuration is on the plot once.
    evaluated = [t for t in study.trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    assert sum(len(t["x"]) for t in fig["data"] if "customdata" in t) == len(evaluated)
    data = json.loads(page.scripts["sojourn-report"])
    assert {p["trial"] for p in data["points"]} == {t.number for t in evaluated}
    assert data["x_axis"] == "log"


def test_generic_servers_are_their_own_speed(reported):
    _, _, page = reported
    data = json.loads(page.scripts["sojourn-report"])
    assert {p["speed"] for p in data["points"]} == {"calibrated"}  # the service time is the scenario's own
    assert all(p["speed_source"].startswith("generic server") for p in data["points"])


def test_a_gpu_whose_speed_is_carried_over_is_marked_so(tmp_path):
    """A study of the quickstart's LLM workload, its trials written by hand (no simulation): H200 has no
    measurements of its own (its speed is H100's), and the page, the plot and the assumptions say so."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from sojourn.study.report import write_report

    (tmp_path / "scenario.toml").write_text((ROOT / "studies" / "quickstart-scenario.toml").read_text())
    path = tmp_path / "llm.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "llm"
        scenario = "scenario.toml"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "h200"]
        nodes = {{ low = 1, high = 16 }}
        """))
    runner = StudyRunner(load_study(path))
    study = runner.load()
    dists = {"gpu": CategoricalDistribution(["h100-sxm", "h200"]), "nodes": IntDistribution(1, 16)}
    for gpu, nodes, miss, feasible in (("h100-sxm", 7, 1e-6, True), ("h200", 4, 1e-3, True),
                                       ("h100-sxm", 3, 1.0, False)):
        cost = runner._cost_of({"gpu": gpu, "nodes": nodes})
        study.add_trial(optuna.trial.create_trial(
            params={"gpu": gpu, "nodes": nodes}, distributions=dists, values=[miss, cost],
            user_attrs={"cost_per_hour": cost, "load": 0.9, "constraints": [0.0, 0.0 if feasible else 1.0],
                        **({} if feasible else {"infeasible_reason": "offered load 2.1 >= max_load 0.98"})}))
    html_path, md_path, _ = write_report(runner, study, tmp_path / "out" / "report.html", targets=[1e-2, 1e-4])
    page = Page()
    page.feed(html_path.read_text())
    fig = json.loads(page.scripts["front-figure"])
    hollow = next(t for t in fig["data"] if t["name"].startswith("front: GPU speed carried over"))
    assert hollow["text"] == ["4×h200 tp1"] and hollow["marker"]["color"] == "white"
    assert "GPU speed: carried over from h100-sxm" in hollow["hovertext"][0]
    solid = next(t for t in fig["data"] if t["name"].startswith("front: GPU speed measured"))
    assert solid["text"] == ["7×h100-sxm tp1"] and "(calibrated)" in solid["hovertext"][0]
    infeasible = next(t for t in fig["data"] if t["name"].startswith("not feasible"))
    assert infeasible["y"] == [1.0] and "offered load 2.1" in infeasible["hovertext"][0]
    md = md_path.read_text()
    assert "h200: carried over from h100-sxm" in md and "h100-sxm: measured" in md
    assert "| 0.01 | 4 x h200 tp1 | 1 |" in md and "| 0.0001 | 7 x h100-sxm tp1 | 0 |" in md
    assert "Price of h200: 3.59 $/GPU-hour" in md and "llama-3.1-8b" in md


def test_the_targets_table_is_the_cheapest_front_point_meeting_each(reported):
    path, out, page = reported
    data = json.loads(page.scripts["sojourn-report"])
    front = [p for p in data["points"] if p["status"] == "front"]
    for target in data["targets"]:
        ok = [p for p in front if p["p_miss"] <= target]
        best = min(ok, key=lambda p: (p["cost_per_hour"], p["p_miss"], p["trial"]), default=None)
        row = f"| {target:g} | {best['config'] if best else 'none'} |"
        assert row in (out / "report.md").read_text(), row


def test_the_markdown_has_the_same_content(reported):
    _, out, page = reported
    md = (out / "report.md").read_text()
    assert [h for h in re.findall(r"^#+ (.*)$", md, re.M)] == page.headings
    assert "What-ifs" in page.headings and "Assumptions" in page.headings
    for cell in page.cells:
        assert cell.replace("|", "\\|") in md, cell
    for word in ("Price of h100-sxm: 2.49 $/GPU-hour", "source:", "h200: the scenario's service time", "Floor:",
                 "Fidelity:", "SLA: 2 hours"):
        assert word in md, word
        assert word in (out / "report.html").read_text().replace("&#x27;", "'"), word
    assert "(front.png)" in md and (out / "front.png").stat().st_size > 1000


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium here (apt-get install chromium)")
def test_a_headless_browser_draws_every_point(reported):
    _, out, page = reported
    fig = json.loads(page.scripts["front-figure"])
    n = sum(len(t["x"]) for t in fig["data"] if "customdata" in t)
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (out / "report.html").resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="point plotly-customdata"') == n
    labels = re.findall(r'class="textpoint".*?<text[^>]*>([^<]*)</text>', dom)
    assert sorted(lb for lb in labels if lb) == sorted(t for tr in fig["data"] if tr.get("text") for t in tr["text"] if t)
    assert "share of requests that miss the SLA" in dom


def test_the_report_refuses_bad_options(reported, capsys):
    path, _, _ = reported
    for args, flag in ((["--out", "r.pdf"], "--out"), (["--targets", "0"], "--targets"),
                       (["--what-if", "sla=-1"], "--what-if sla")):
        assert main(["study", "report", str(path), "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {flag}:" in err
