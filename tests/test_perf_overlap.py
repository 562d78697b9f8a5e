"""Host overlap and GEMM fill in the step-time model.

- ``Profile.host_overlap``: an engine that prepares step n+1 on the CPU while the GPU runs step
  n (TensorRT-LLM's overlap scheduler) takes max(host, GPU) per step, not their sum.
- ``Profile.gemm_half_tokens`` (T_half): the layer GEMMs of a step of T tokens cost as if it had
  T + T_half, i.e. their efficiency is e·T/(T + T_half).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sojourn import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import HOST_OVERLAP, OVERLAP_SEQ_STARTS, PerfModel, Profile, engine_prior
from sojourn.perf._calibrate import ENGINE_FIT_EXTRA, SiliconRow, StepRow, default_fit_params
from sojourn.perf._profile import _from_dict
from sojourn.sim.calibrate import fit_profile

CAT = default_catalogue()
HOST = {"step_overhead_s": 0.004, "seq_overhead_s": 3e-5}


def _pm(overlap: bool, t_half: float = 0.0, **kw) -> PerfModel:
    prof = Profile(gpu="h100-sxm", eff_compute=0.6, eff_memory=0.8, host_overlap=overlap,
                   gemm_half_tokens=t_half, **{**HOST, **kw})  # fmt: skip
    return PerfModel(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), 1, "bf16", prof)


def _gpu_part(prefill: int, seqs: int, ctx: float, done: int) -> float:
    """The GPU terms alone: the same model with the host overheads at 0."""
    return _pm(False, step_overhead_s=0.0, seq_overhead_s=0.0).step_time(prefill, seqs, ctx, prefill_done=done)


# Shapes where the host dominates (a wide decode batch of short contexts), where the GPU does (a
# long prefill, long contexts) and in between.
SHAPES = [(0, 512, 512 * 64.0, 0), (0, 1, 100.0, 0), (4096, 0, 0.0, 1), (256, 300, 300 * 2000.0, 1),
          (0, 2048, 2048 * 300.0, 0)]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_a_step_takes_the_sum_without_overlap_and_the_max_with_it(shape):
    prefill, seqs, ctx, done = shape
    host = HOST["step_overhead_s"] + HOST["seq_overhead_s"] * (seqs + done)
    gpu = _gpu_part(prefill, seqs, ctx, done)
    assert _pm(False).step_time(prefill, seqs, ctx, prefill_done=done) == pytest.approx(host + gpu, rel=1e-12)
    assert _pm(True).step_time(prefill, seqs, ctx, prefill_done=done) == pytest.approx(max(host, gpu), rel=1e-12)


def test_the_shapes_cover_both_sides_of_the_max():
    sides = set()
    for prefill, seqs, ctx, done in SHAPES:
        host = HOST["step_overhead_s"] + HOST["seq_overhead_s"] * (seqs + done)
        sides.add(host > _gpu_part(prefill, seqs, ctx, done))
    assert sides == {True, False}


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize(("seqs", "context0", "steps"), [
    (2048, 2048 * 20.0, 400),  # host-bound at first, GPU-bound once the contexts have grown
    (2048, 2048 * 5000.0, 50),  # GPU-bound throughout
    (4096, 4096 * 1.0, 3),  # host-bound throughout
    (1, 10.0, 1000),
    (64, 64 * 100.0, 0),
])  # fmt: skip
def test_a_decode_run_is_the_sum_of_its_steps(overlap, seqs, context0, steps):
    pm = _pm(overlap)
    direct = sum(pm.step_time(0, seqs, context0 + seqs * k) for k in range(steps))
    assert pm.decode_run_time(seqs, context0, steps) == pytest.approx(direct, rel=1e-9, abs=1e-15)


def test_the_run_cases_cross_from_host_bound_to_gpu_bound():
    pm = _pm(True)
    host = HOST["step_overhead_s"] + HOST["seq_overhead_s"] * 2048
    first, last = _gpu_part(0, 2048, 2048 * 20.0, 0), _gpu_part(0, 2048, 2048 * 419.0, 0)
    assert first < host < last
    # and overlap only ever shortens a run
    assert pm.decode_run_time(2048, 2048 * 20.0, 400) < _pm(False).decode_run_time(2048, 2048 * 20.0, 400)


def test_decode_step_fixed_with_overlap_bounds_the_first_step():
    pm = _pm(True)
    for seqs in (1, 256, 4096):
        assert pm.decode_step_fixed(seqs) + pm.seconds_per_context_token * seqs * 10 >= pm.step_time(
            0, seqs, seqs * 10.0
        )


def test_gemm_fill_costs_the_half_tokens_of_gemm_work():
    # compute-bound prefill, tp 1, no logits sampled, no attention: the step with T_half is the
    # step of T + T_half tokens without it
    a = _pm(False, t_half=700.0, step_overhead_s=0.0, seq_overhead_s=0.0)
    b = _pm(False, step_overhead_s=0.0, seq_overhead_s=0.0)
    for T in (4096, 10000):
        assert a.step_time(T, 0, 0, prefill_pairs=0.0) == pytest.approx(b.step_time(T + 700, 0, 0, 0.0), rel=1e-12)
    # memory-bound decode of one sequence, T_half below the weights' worth of compute: the
    # weight reads still set the step
    small = _pm(False, t_half=100.0, step_overhead_s=0.0, seq_overhead_s=0.0)
    assert small.step_time(0, 1, 100.0) == pytest.approx(b.step_time(0, 1, 100.0), rel=1e-12)


def test_gemm_efficiency_is_half_at_the_half_tokens():
    # the GEMM time per token at T = T_half is twice that at T -> infinity
    pm = _pm(False, t_half=512.0, step_overhead_s=0.0, seq_overhead_s=0.0)
    t_half = pm.step_time(512, 0, 0, 0.0)
    t_big = pm.step_time(65536, 0, 0, 0.0)
    assert (t_half / 512) / (t_big / 65536) == pytest.approx(2.0 * 65536 / (65536 + 512), rel=1e-9)


def test_negative_half_tokens_are_refused_by_name():
    with pytest.raises(ConfigError) as err:
        Profile(gpu="h100-sxm", gemm_half_tokens=-1.0)
    assert err.value.field == "profile.gemm_half_tokens"


def test_profiles_without_the_new_fields_save_as_before():
    plain = Profile(gpu="h100-sxm")
    d = plain.to_dict()
    assert "host_overlap" not in d and "gemm_half_tokens" not in d
    on = replace(plain, host_overlap=True, gemm_half_tokens=300.0)
    back = _from_dict(json.loads(json.dumps(on.to_dict())), where="test")
    assert back.host_overlap is True and back.gemm_half_tokens == 300.0
    assert _from_dict(json.loads(json.dumps(d)), where="test") == plain


def test_trtllm_fits_start_with_overlap_and_fit_the_gemm_fill():
    assert HOST_OVERLAP == {"trtllm": True}
    assert engine_prior("trtllm").host_overlap and engine_prior("trtllm").gemm_half_tokens > 0
    assert not engine_prior("vllm").host_overlap and engine_prior("vllm").gemm_half_tokens == 0
    row = SiliconRow("x", "trtllm", "llama-3.1-8b", "h100-sxm", "bf16", 1, 1024, 128, 8, 0.1, 0.01)
    assert set(ENGINE_FIT_EXTRA["trtllm"]) <= set(default_fit_params([row]))
    assert "gemm_half_tokens" not in default_fit_params([replace(row, backend="vllm")])


def _steps(profile: Profile) -> list[StepRow]:
    """Step times the model gives with ``profile`` for an 8B bf16 model on H100: prefills from 128 to
    8k tokens, decode batches of 1 to 1024 sequences."""
    pm = PerfModel(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), 1, "bf16", profile)
    shapes = [(p, 0, 0) for p in (128, 512, 2048, 8192)] + [
        (0, b, b * c) for b in (1, 32, 256, 1024, 4096) for c in (64, 256, 4096)]  # fmt: skip
    return [StepRow("llama-3.1-8b", "h100-sxm", 1, "bf16", p, b, float(ctx),
                    pm.step_time(p, b, ctx, prefill_done=1 if p else 0)) for p, b, ctx in shapes]  # fmt: skip


def test_a_fit_recovers_the_gemm_fill_and_the_overheads_under_overlap():
    known = Profile(gpu="h100-sxm", backend="trtllm", eff_compute=0.75, eff_memory=0.85, host_overlap=True,
                    gemm_half_tokens=400.0, step_overhead_s=0.003, seq_overhead_s=4e-5)  # fmt: skip
    params = ("eff_compute", "eff_memory", "step_overhead_s", "seq_overhead_s", "gemm_half_tokens")
    prof = fit_profile(_steps(known), "h100-sxm", "trtllm", params=params, max_nfev=300)
    rows = _steps(known)
    host = [0.003 + 4e-5 * r.decode_seqs for r in rows]
    assert any(h >= r.step_s * (1 - 1e-12) for h, r in zip(host, rows, strict=True))  # some rows host-bound
    assert prof.host_overlap
    # fitted from each of OVERLAP_SEQ_STARTS, the lower cost kept
    assert len(prof.fit["start_costs"]) == len(OVERLAP_SEQ_STARTS) == 2
    assert prof.eff_compute == pytest.approx(0.75, rel=0.02)
    assert prof.gemm_half_tokens == pytest.approx(400.0, rel=0.05)
    assert prof.eff_memory == pytest.approx(0.85, rel=0.02)
    assert prof.seq_overhead_s == pytest.approx(4e-5, rel=0.05)


def test_the_fit_summary_says_when_the_host_overlaps():
    from sojourn.perf._calibrate import summary_lines

    on = Profile(gpu="h100-sxm", backend="trtllm", host_overlap=True, gemm_half_tokens=176.0,
                 fit={"fitted": ["gemm_half_tokens"]})  # fmt: skip
    text = "\n".join(summary_lines(on))
    assert "host_overlap" in text and "176 tokens" in text
    assert "host_overlap" not in "\n".join(summary_lines(replace(on, host_overlap=False)))


def test_the_shipped_trtllm_profiles_overlap_and_were_fitted_so():
    from sojourn.perf._profile import shipped_profiles

    for (gpu, backend), prof in shipped_profiles().items():
        if backend == "trtllm":
            assert prof.host_overlap and "gemm_half_tokens" in prof.fit["fitted"], gpu
        else:
            assert not prof.host_overlap and prof.gemm_half_tokens == 0.0, (gpu, backend)


def test_a_fit_without_overlap_starts_once():
    known = Profile(gpu="h100-sxm", eff_compute=0.7, eff_memory=0.85, step_overhead_s=0.003, seq_overhead_s=4e-5)
    prof = fit_profile(_steps(known), "h100-sxm", "vllm", params=("eff_compute", "eff_memory"), max_nfev=50)
    assert "start_costs" not in prof.fit and not prof.host_overlap
