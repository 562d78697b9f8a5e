"""Compute efficiency per precision: fp8 and fp4 GEMMs reach a smaller share of their own
(doubled, quadrupled) peak than bf16 GEMMs do, so a profile carries one factor per precision
(``Profile.compute_efficiency``), and a fit pins down each precision its rows measure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sojourn import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import PerfModel, Profile
from sojourn.perf._calibrate import DEFAULT_FIT, StepRow, default_fit_params
from sojourn.sim.calibrate import fit_profile

CAT = default_catalogue()


def test_each_precision_falls_back_to_the_next_wider_one():
    p = Profile(gpu="b200", eff_compute=0.7)
    assert [p.compute_efficiency(x) for x in ("bf16", "fp8", "fp4")] == [0.7, 0.7, 0.7]
    p8 = replace(p, eff_compute_fp8=0.45)
    assert [p8.compute_efficiency(x) for x in ("bf16", "fp8", "fp4")] == [0.7, 0.45, 0.45]
    p4 = replace(p8, eff_compute_fp4=0.35)
    assert [p4.compute_efficiency(x) for x in ("bf16", "fp8", "fp4")] == [0.7, 0.45, 0.35]
    # an fp4 factor alone leaves fp8 on bf16's
    only4 = replace(p, eff_compute_fp4=0.3)
    assert [only4.compute_efficiency(x) for x in ("bf16", "fp8", "fp4")] == [0.7, 0.7, 0.3]


@pytest.mark.parametrize("name", ["eff_compute_fp8", "eff_compute_fp4"])
@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_a_precision_factor_outside_0_1_is_refused_by_name(name, bad):
    with pytest.raises(ConfigError) as err:
        Profile(gpu="h100-sxm", **{name: bad})
    assert err.value.field == f"profile.{name}"


def _compute_bound_step(pm: PerfModel) -> float:
    """A prefill-only step large enough that the GEMMs, not the weight reads, set its time."""
    return pm.step_time(16384, 0, 0, prefill_done=1)


def test_the_fp8_factor_scales_fp8_models_only():
    base = Profile(gpu="h100-sxm", eff_compute=0.6, step_overhead_s=0.0, seq_overhead_s=0.0)
    slow8 = replace(base, eff_compute_fp8=0.3)
    m, gpu = CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm")
    bf16_a = _compute_bound_step(PerfModel(m, gpu, 1, "bf16", base))
    bf16_b = _compute_bound_step(PerfModel(m, gpu, 1, "bf16", slow8))
    assert bf16_a == bf16_b  # bf16 does not read the fp8 factor
    fp8_a = _compute_bound_step(PerfModel(m, gpu, 1, "fp8", base))
    fp8_b = _compute_bound_step(PerfModel(m, gpu, 1, "fp8", slow8))
    # compute-bound: halving the efficiency nearly doubles the step (the KV write and the
    # sampling of one token are the only other terms)
    assert fp8_b / fp8_a == pytest.approx(2.0, rel=0.02)


def test_default_fit_params_follow_the_precisions_of_the_rows():
    def rows(*precs):
        return [StepRow("llama-3.1-8b", "h100-sxm", 1, p, 1024, 0, 0.0, 0.01) for p in precs]

    assert default_fit_params(rows("bf16")) == DEFAULT_FIT
    assert default_fit_params(rows("bf16", "fp8"))[:2] == ("eff_compute", "eff_compute_fp8")
    fp8_only = default_fit_params(rows("fp8"))
    assert "eff_compute_fp8" in fp8_only and "eff_compute" not in fp8_only
    both_low = default_fit_params(rows("fp8", "fp4"), extra=("eff_interconnect",))
    assert both_low[:2] == ("eff_compute_fp8", "eff_compute_fp4") and both_low[-1] == "eff_interconnect"


def _steps(profile: Profile) -> list[StepRow]:
    """Step times the model gives with ``profile`` for an 8B model in bf16 and fp8 on H100."""
    out = []
    for prec in ("bf16", "fp8"):
        pm = PerfModel(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), 1, prec, profile)
        shapes = [(p, 0, 0) for p in (512, 2048, 8192)] + [(0, b, b * c) for b in (1, 32, 256) for c in (512, 4096)]
        for p, b, ctx in shapes:
            out.append(StepRow("llama-3.1-8b", "h100-sxm", 1, prec, p, b, float(ctx),
                               pm.step_time(p, b, ctx, prefill_done=1 if p else 0)))  # fmt: skip
    return out


def test_a_fit_recovers_a_separate_fp8_efficiency():
    known = Profile(gpu="h100-sxm", eff_compute=0.68, eff_compute_fp8=0.44, eff_memory=0.9,
                    step_overhead_s=0.002, seq_overhead_s=3e-5)  # fmt: skip
    prof = fit_profile(_steps(known), "h100-sxm", "vllm", max_nfev=200)
    assert "eff_compute_fp8" in prof.fit["fitted"]
    assert prof.eff_compute == pytest.approx(0.68, rel=0.02)
    assert prof.eff_compute_fp8 == pytest.approx(0.44, rel=0.02)


def test_fp8_rows_alone_leave_the_bf16_factor_unfitted():
    known = Profile(gpu="h100-sxm", eff_compute=0.68, eff_compute_fp8=0.44, eff_memory=0.9)
    fp8_rows = [r for r in _steps(known) if r.precision == "fp8"]
    start = Profile(gpu="h100-sxm", eff_compute=0.6)
    prof = fit_profile(fp8_rows, "h100-sxm", "vllm", start=start, max_nfev=200)
    assert "eff_compute" not in prof.fit["fitted"]
    assert prof.eff_compute == 0.6  # what the rows cannot see stays as it was
    assert prof.eff_compute_fp8 == pytest.approx(0.44, rel=0.03)
