"""Every output that shows a GPU's numbers says whether its speed is measured on it or carried over, and from which GPU.

The study front, its CSV/JSON, its plot and compare-hardware are checked on a real study in
test_calibration_marks.py; here: ``sojourn catalogue`` (text, JSON, Markdown) and the README table
it prints, ``sojourn perf``, ``sojourn simulate``, the hardware plot's labels, and the judgement on
the GPUs added with issue 14 (B300, GB200, GB300, MI325X, MI355X).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from sojourn.catalogue import default_catalogue
from sojourn.cli import main
from sojourn.perf import calibration, default_profile
from sojourn.perf._profile import CARRY_OVER, Calibration, carried_origin, shipped_profiles

ROOT = Path(__file__).resolve().parents[1]
CAT = default_catalogue()
NEW_GPUS = ["b300", "gb200", "gb300", "mi325x", "mi355x"]


# -- the judgement on the new GPUs ------------------------------------------------------------------


@pytest.mark.parametrize(("gpu", "origin", "first_hop"), [
    ("b300", "b200", "b200"), ("gb200", "b200", "b200"), ("gb300", "b200", "b300"),
    ("mi325x", "h100-sxm", "mi300x"), ("mi355x", "h100-sxm", "mi300x"),
])  # fmt: skip
def test_new_gpus_are_carried_over_from_the_closest_measured_gpu(gpu, origin, first_hop):
    assert CARRY_OVER[gpu][0] == first_hop
    cal = calibration(gpu, "vllm")
    assert not cal.calibrated and cal.carried_from == origin
    assert cal.source.startswith(f"carried over from {origin} (vllm, ") and f"no {gpu} measurements" in cal.source
    prof = default_profile(gpu, "vllm")
    # the profile's source names every hop and why
    assert prof.carried_from == origin and f"{gpu} <- {first_hop} (" in prof.source
    assert all((g, b) != (gpu, "vllm") for g, b in shipped_profiles())


def test_carried_origin_reads_the_gpu_from_the_text():
    assert carried_origin("carried over from h100-sxm (vllm, fitted on 135 end-to-end measurements): no h200 ...") \
        == "h100-sxm"
    assert carried_origin("carried over from h100-sxm vllm (fitted on 135 ...): no h100-sxm sglang measurements") \
        == "h100-sxm vllm"
    for text in ("fitted on 135 h100-sxm end-to-end measurements (vllm)", "uncalibrated prior: ...", None, 3):
        assert carried_origin(text) is None
    assert Calibration(False, "carried over from b200 (vllm, ...)").carried_from == "b200"
    assert Calibration(True, "fitted on 1 b200 step times (vllm)").carried_from is None


# -- sojourn catalogue and the README ------------------------------------------------------------------


def _table_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    return {line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in lines[1:] if line.split()
            and line.split()[0] in CAT.gpus}  # fmt: skip


def test_catalogue_table_marks_each_gpu_and_engine(capsys):
    assert main(["catalogue"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert list(rows) == list(CAT.gpus)  # every catalogue GPU, new ones included
    for gpu, cells in rows.items():
        for backend, cell in zip(("vllm", "sglang", "trtllm"), cells[-3:]):
            cal = calibration(gpu, backend)
            if cal.calibrated:
                assert cell.startswith("measured"), (gpu, backend, cell)
            else:
                assert cell == f"from {cal.carried_from}", (gpu, backend, cell)
    # a carried-over GPU carries the mark, a measured one does not
    assert rows["b300"][-3] == "from b200" and rows["h100-sxm"][-3] == "measured"
    assert rows["a100-80gb"][-3] == "measured (steps)"  # fitted on kernel-level step times only
    assert rows["gb200"][8].endswith("*") and not rows["b300"][8].endswith("*")  # estimated rent marked
    assert "from X = there" in out and "carried over from GPU X" in out


def test_catalogue_json_gives_the_judgement_and_the_sources(capsys):
    assert main(["catalogue", "--json", "--backend", "vllm,trtllm"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    for gpu in NEW_GPUS:
        r = rows[gpu]
        assert set(r["speed"]) == {"vllm", "trtllm"}
        assert r["speed"]["vllm"]["calibrated"] is False and r["speed"]["vllm"]["carried_from"]
        assert all(r["sources"][g].strip() for g in ("specs", "price", "purchase"))
    assert rows["h100-sxm"]["speed"]["vllm"] == {**rows["h100-sxm"]["speed"]["vllm"], "calibrated": True,
                                                 "carried_from": None, "mark": "measured"}  # fmt: skip
    assert rows["gb300"]["speed"]["trtllm"]["carried_from"] == "b200"


def test_catalogue_bad_backend_is_one_line(capsys):
    assert main(["catalogue", "--backend", "vllm,tgi"]) == 2
    assert "--backend" in capsys.readouterr().err


def test_catalogue_reads_a_users_catalogue_file(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[gpus.b300]\nprice_usd_per_gpu_hour = 4.2\nsources = { price = "our quote" }\n')
    assert main(["catalogue", "--json", "--catalogue", str(tmp_path / "c.toml")]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["b300"]["price_usd_per_gpu_hour"] == 4.2 and rows["b300"]["speed"]["vllm"]["carried_from"] == "b200"


def test_readme_gpu_table_is_what_sojourn_catalogue_prints(capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- gpu-table:begin[^>]*-->\n(.*?)\n<!-- gpu-table:end -->", readme, re.S)
    assert block, "README lacks the GPU table markers"
    assert main(["catalogue", "--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    assert block.group(1).strip() == printed, "README GPU table is stale: paste `sojourn catalogue --markdown`"
    assert "| b300 |" in printed and "from b200" in printed


# -- sojourn perf ------------------------------------------------------------------------------------


def _perf(capsys, *args):
    assert main(["perf", "--model", "llama-3.1-8b", "--batch", "1", "--context", "1024", *args]) == 0
    return capsys.readouterr().out


def test_perf_says_measured_or_carried_over_and_from_which_gpu(capsys):
    carried = json.loads(_perf(capsys, "--gpu", "b300", "--json"))
    assert carried["calibrated"] is False and carried["calibration"].startswith("carried over from b200 ")
    measured = json.loads(_perf(capsys, "--gpu", "h100-sxm", "--json"))
    assert measured["calibrated"] is True and measured["calibration"].startswith("fitted on ")
    assert "warning" not in measured
    line = next(ln for ln in _perf(capsys, "--gpu", "gb300").splitlines() if "GPU speed" in ln)
    assert line.split("GPU speed", 1)[1].strip().startswith("carried over from b200 (")
    line = next(ln for ln in _perf(capsys, "--gpu", "h100-sxm").splitlines() if "GPU speed" in ln)
    assert line.split("GPU speed", 1)[1].strip().startswith("measured: fitted on ")


def test_perf_warns_when_a_named_profile_of_another_gpu_or_engine_runs(capsys):
    # h100-sxm factors named for an H200 (no carried_from on the profile itself): still marked and warned
    out = json.loads(_perf(capsys, "--gpu", "h200", "--profile", "h100-sxm-vllm", "--json"))
    assert out["calibrated"] is False and out["calibration"].startswith("carried over from h100-sxm ")
    assert out["warning"].startswith("carried over from h100-sxm ")
    out = json.loads(_perf(capsys, "--gpu", "h100-sxm", "--backend", "sglang", "--profile", "h100-sxm-vllm", "--json"))
    assert out["calibrated"] is False and "no h100-sxm sglang measurements" in out["warning"]


# -- sojourn simulate -----------------------------------------------------------------------------


def _scenario(tmp_path: Path, gpu: str) -> Path:
    d = tomllib.loads((ROOT / "examples" / "llama8b-h100.toml").read_text())
    lines = (ROOT / "examples" / "llama8b-h100.toml").read_text().replace('gpu = "h100-sxm"', f'gpu = "{gpu}"')
    assert d["fleet"]["gpu"] == "h100-sxm" and f'gpu = "{gpu}"' in lines
    p = tmp_path / f"{gpu}.toml"
    p.write_text(lines)
    return p


@pytest.mark.parametrize("gpu", ["h100-sxm", "mi325x"])
def test_simulate_says_where_the_fleets_speed_comes_from(tmp_path, capsys, gpu):
    path = str(_scenario(tmp_path, gpu))
    fast = ["--fidelity", "fast", "--replications", "2", "--horizon-hours", "48", "-q"]
    assert main(["simulate", path, *fast, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["calibrated"] is (gpu == "h100-sxm")
    assert d["calibration"].startswith("fitted on " if gpu == "h100-sxm" else "carried over from h100-sxm ")
    assert main(["simulate", path, *fast]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("GPU speed"))
    assert ("measured: fitted on " in line) is (gpu == "h100-sxm")
    assert ("carried over from h100-sxm (" in line) is (gpu != "h100-sxm")


# -- the hardware plot's labels ----------------------------------------------------------------------


def test_hardware_plot_labels_carried_over_gpus_with_their_origin(tmp_path):
    from sojourn.study.plot import plot_hardware

    base = {"nodes": 1, "tp": 1, "rent_usd_per_hour": 3.0, "own_usd_per_hour": 2.0}
    rows = [
        {**base, "gpu": "h100-sxm", "calibrated": True, "calibration": "fitted on 135 h100-sxm end-to-end ..."},
        {**base, "gpu": "b300", "calibrated": False,
         "calibration": "carried over from b200 (vllm, fitted on 120 end-to-end measurements): no b300 measurements"},
    ]  # fmt: skip
    svg = plot_hardware(rows, tmp_path / "hw.svg", 0.001).read_text()
    assert "b300 (carried from b200)" in svg and "h100-sxm (carried" not in svg
    assert "hatched: GPU speed carried over" in svg
