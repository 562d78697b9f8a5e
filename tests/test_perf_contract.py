"""Contract suite: every performance model a scenario can get, for every GPU and engine.

A replica's step times come from ``PerfModel`` with a ``Profile`` of fitted factors: one
shipped per measured (GPU, engine), carried over from the closest measured one otherwise
(``default_profile``), the uncalibrated prior where nothing is measured. Every one of them,
on every catalogue GPU and every ``serving.backend``, on a few (model, tp, precision)
replicas, is held to what the simulator relies on: step times finite, positive for any
work and zero for none; monotone in every kind of work; the closed forms the engine jumps
with (``decode_run_time``, ``decode_step_fixed``, ``alpha``, ``beta``) equal to the steps
they sum; never faster than the hardware (the layer weights read at peak bandwidth, the
GEMMs at peak FLOP/s); deterministic; its KV cache the largest whole number of blocks that
fits; and where the factors come from stated. A GPU added to the catalogue, an engine added
to ``serving.backend`` or a profile shipped is tested without editing this file.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing

import numpy as np
import pytest

from sojourn.catalogue import default_catalogue
from sojourn.perf import PRIOR, build_perf_model, calibration, default_profile, load_profile, save_profile
from sojourn.perf._model import weight_bytes_per_param
from sojourn.perf._profile import shipped_profiles
from sojourn.scenario import Serving

CAT = default_catalogue()
BACKENDS = typing.get_args(Serving.model_fields["backend"].annotation)
#: (gpu, backend) -> the profile a scenario on that GPU and engine runs with; plus the prior itself.
PROFILES = {f"{g}/{b}": (g, b, default_profile(g, b)) for g in CAT.gpus for b in BACKENDS}
PROFILES["prior on h100-sxm"] = ("h100-sxm", "vllm", dataclasses.replace(PRIOR, gpu="h100-sxm"))
SHIPPED = {f"{g}-{b}": p for (g, b), p in shipped_profiles().items()}


def replicas(gpu: str) -> list[tuple[str, int, str]]:
    """(model, tp, precision): one GPU, tensor parallel, the GPU's lowest precision, and KV heads
    replicated (tp above the model's 8 KV heads)."""
    low = CAT.gpu(gpu).precisions[-1]
    return [("llama-3.1-8b", 1, "bf16"), ("qwen3-32b", 2, "bf16"), ("llama-3.1-70b", 4, low),
            ("llama-3.1-405b", 16, "bf16")]


def models(name: str):
    gpu, _, prof = PROFILES[name]
    for model, tp, precision in replicas(gpu):
        yield (model, tp, precision), build_perf_model(CAT.model(model), CAT.gpu(gpu), tp=tp, precision=precision,
                                                       profile=prof, check=False)


#: Work a step may hold: prefill tokens, decoding sequences, their total context.
PREFILL = [0, 1, 7, 64, 512, 2048, 8192]
SEQS = [0, 1, 2, 16, 128, 256]
CONTEXT_PER_SEQ = [0, 1, 100, 4000, 32000]


def gpu_part(pm):
    """The same replica with the host's part of a step (per-step and per-sequence overheads) taken
    out: the sum of the GPU terms, which is what is linear, convex and strictly monotone."""
    prof = dataclasses.replace(pm.profile, host_overlap=False, step_overhead_s=0.0, seq_overhead_s=0.0)
    return dataclasses.replace(pm, profile=prof)


def host_part(pm, sampled: float) -> float:
    return pm.profile.step_overhead_s + pm.profile.seq_overhead_s * sampled


def grid(pm) -> list[float]:
    return [pm.step_time(p, b, b * c) for p in PREFILL for b in SEQS for c in CONTEXT_PER_SEQ]


def test_every_gpu_and_engine_is_covered():
    assert {"vllm", "sglang", "trtllm"} <= set(BACKENDS)
    assert len(PROFILES) == len(CAT.gpus) * len(BACKENDS) + 1
    # Every shipped profile is the one its own (gpu, engine) gets.
    for (g, b), prof in shipped_profiles().items():
        assert PROFILES[f"{g}/{b}"][2] == prof


@pytest.mark.parametrize("name", PROFILES)
class TestPerfModelContract:
    def test_where_the_factors_come_from_is_stated(self, name):
        gpu, backend, prof = PROFILES[name]
        assert prof.gpu == gpu and prof.backend == backend
        assert isinstance(prof.source, str) and prof.source.strip()
        for _, pm in models(name):
            d = pm.describe()
            assert d["profile_source"] == prof.source and d["gpu"] == gpu
            assert d["profile_carried_from"] == prof.carried_from
            assert pm.calibration.source.strip()
            # What a scenario of this GPU, engine and precision reports is this model's calibration.
            if not name.startswith("prior"):
                assert calibration(gpu, backend, precision=pm.precision).to_dict() == pm.calibration.to_dict()
        if name.startswith("prior"):
            cal = pm.calibration
            assert not cal.calibrated and "no fit" in cal.source
            return
        cal = calibration(gpu, backend)  # the GPU and engine, whatever the precision
        if (gpu, backend) in shipped_profiles():
            assert cal.calibrated and prof.carried_from is None
            assert f"{prof.fit['rows_used']} {gpu}" in cal.source
        else:
            # Borrowed factors say so, and whose they are; never reported as calibrated.
            assert not cal.calibrated
            assert "carried over" in cal.source
            if prof.carried_from:
                assert prof.carried_from != gpu and "carried over" in prof.source
                assert prof.carried_from in cal.source

    def test_step_times_are_finite_positive_for_work_and_zero_without(self, name):
        for cfg, pm in models(name):
            assert pm.step_time(0, 0, 0) == 0.0, cfg
            for p, b, c in itertools.product(PREFILL, SEQS, CONTEXT_PER_SEQ):
                t = pm.step_time(p, b, b * c)
                assert math.isfinite(t) and (t > 0) == (p + b > 0), (cfg, p, b, c, t)
            for chunk in (1, 16, 1000, 8192):
                assert 0 < pm.alpha(chunk) < math.inf
            assert 0 < pm.beta(1, 0) <= pm.beta(256, 32000) < math.inf
            # Sane magnitudes for any GPU: a decode step between 0.1 ms and 10 s.
            assert 1e-4 < pm.beta(64, 2000) < 10.0, cfg

    def test_more_work_never_takes_less_time(self, name):
        # Never less time for more work; strictly more for more context or attention, except where an
        # engine that overlaps the host with the GPU is host-bound (then the GPU's part grows unseen).
        for cfg, pm in models(name):
            strict = gpu_part(pm) if pm.profile.host_overlap else pm
            for p, b, c in itertools.product(PREFILL, SEQS, CONTEXT_PER_SEQ):
                t = pm.step_time(p, b, b * c)
                assert pm.step_time(p + 1, b, b * c) >= t, (cfg, "prefill", p, b, c)
                assert pm.step_time(p, b + 1, (b + 1) * c) >= t, (cfg, "sequences", p, b, c)
                if b:
                    assert pm.step_time(p, b, b * c + 1) >= t, (cfg, "context", p, b, c)
                    assert strict.step_time(p, b, b * c + 1) > strict.step_time(p, b, b * c), (cfg, "context", p, b)
                if p:
                    pairs = 0.5 * p * p
                    assert pm.step_time(p, b, b * c, pairs + 1) >= pm.step_time(p, b, b * c, pairs), cfg
                    assert strict.step_time(p, b, b * c, pairs + 1) > strict.step_time(p, b, b * c, pairs), cfg
                    assert pm.step_time(p, b, b * c, None, 1) >= t, (cfg, "a prefill finishing", p)
            for b in SEQS[1:]:
                assert pm.beta(b, 1000) <= pm.beta(b, 1001) and pm.beta(b, 1000) <= pm.beta(b + 1, 1000)
                assert strict.beta(b, 1000) < strict.beta(b, 1001)

    def test_a_step_is_its_host_and_gpu_parts_summed_or_overlapped(self, name):
        # Profile.host_overlap: max(host, GPU); otherwise host + GPU.
        for cfg, pm in models(name):
            gpu = gpu_part(pm)
            for p, b, c in itertools.product(PREFILL, SEQS, CONTEXT_PER_SEQ):
                if p + b == 0:
                    continue
                done = 1 if p else 0
                host, g = host_part(pm, b + done), gpu.step_time(p, b, b * c, prefill_done=done)
                want = max(host, g) if pm.profile.host_overlap else host + g
                assert pm.step_time(p, b, b * c, prefill_done=done) == pytest.approx(want, rel=1e-12), (cfg, p, b, c)

    def test_prefill_is_linear_in_its_tokens_and_attention_pairs(self, name):
        # The linear GEMMs run at the larger of their compute time and the weight reads: with the
        # attention pairs held, a step is convex in its prefill tokens, with one knee, and affine
        # past it (every further token costs the same); the attention is linear in its pairs.
        # (Of the GPU's part: with host overlap the host may set a step, flat in the work.)
        tokens = [1, 16, 64, 256, 1024, 4096, 8192, 16384, 32768, 49152, 65536]
        for cfg, pm in models(name):
            pm = gpu_part(pm) if pm.profile.host_overlap else pm
            for b, c in ((0, 0), (16, 1000)):
                t = [pm.step_time(p, b, b * c, 0.0) for p in tokens]
                slopes = [(t[i + 1] - t[i]) / (tokens[i + 1] - tokens[i]) for i in range(len(t) - 1)]
                assert all(s >= 0 for s in slopes), (cfg, b, slopes)
                assert all(s1 >= s0 * (1 - 1e-9) for s0, s1 in zip(slopes, slopes[1:])), (cfg, b, slopes)
                assert slopes[-3:] == pytest.approx([slopes[-1]] * 3, rel=1e-9), (cfg, b, slopes)
                assert slopes[-1] > 0, cfg
            for p in (1, 512, 8192):
                base, one, two = (pm.step_time(p, 8, 8000, q) for q in (0.0, 1e5, 2e5))
                assert two - one == pytest.approx(one - base, rel=1e-9) and one > base, (cfg, p)
                # A fresh prompt's attention is its chunk squared over two, unless said otherwise.
                assert pm.step_time(p, 8, 8000) == pm.step_time(p, 8, 8000, 0.5 * p * p), (cfg, p)

    def test_it_is_what_the_engine_asks_for(self, name):
        import inspect

        from sojourn.sim import EnginePerf

        for cfg, pm in models(name):
            assert isinstance(pm, EnginePerf), cfg
            for meth in ("step_time", "decode_run_time", "decode_step_fixed"):
                want = inspect.signature(getattr(EnginePerf, meth))
                assert inspect.signature(getattr(type(pm), meth)).parameters.keys() == want.parameters.keys(), meth

    def test_the_closed_forms_the_engine_jumps_with_are_the_steps_they_sum(self, name):
        for cfg, pm in models(name):
            c = pm.seconds_per_context_token
            for b, x0 in ((1, 0), (1, 500), (7, 7 * 3000), (64, 64 * 1500), (256, 256 * 40), (4096, 4096 * 20)):
                fixed, step = pm.decode_step_fixed(b) + c * x0, pm.step_time(0, b, x0)
                if not pm.profile.host_overlap:
                    assert fixed == pytest.approx(step, rel=1e-12)
                else:  # max(host, GPU): an upper bound, exact when the GPU sets even a context-free step
                    assert fixed >= step * (1 - 1e-12), (cfg, b, x0)
                    if gpu_part(pm).step_time(0, b, 0) >= host_part(pm, b):
                        assert fixed == pytest.approx(step, rel=1e-12), (cfg, b, x0)
                for k in (1, 2, 13, 250):
                    by_step = math.fsum(pm.step_time(0, b, x0 + b * j) for j in range(k))
                    assert pm.decode_run_time(b, x0, k) == pytest.approx(by_step, rel=1e-12), (cfg, b, x0, k)
            assert pm.decode_run_time(0, 100, 5) == pm.decode_run_time(4, 100, 0) == 0.0
            for chunk in (1, 333, 8192):
                assert pm.alpha(chunk) * chunk == pytest.approx(pm.step_time(chunk, 0, 0, prefill_done=1), rel=1e-12)
            assert pm.beta(32, 700) == pm.step_time(0, 32, 32 * 700)

    def test_no_step_is_faster_than_the_hardware(self, name):
        gpu, _, _ = PROFILES[name]
        g = CAT.gpu(gpu)
        for (model, tp, precision), pm in models(name):
            m = CAT.model(model)
            layer_params = m.matmul_parameters - m.vocab_size * m.hidden_size  # lm_head aside
            # Every step reads each GPU's share of the layer weights, at best at the peak HBM bandwidth.
            weights_read = layer_params * weight_bytes_per_param(precision) / tp / g.bandwidth_bytes_per_s
            # And a token through the layers is 2 FLOPs a parameter, at best at every GPU's peak rate.
            flops_per_token = 2.0 * layer_params / (tp * g.peak_flops(precision))
            assert pm.seconds_per_context_token >= pm.kv_bytes_per_token_per_gpu / g.bandwidth_bytes_per_s
            for p, b, c in itertools.product(PREFILL, SEQS, CONTEXT_PER_SEQ):
                if p + b == 0:
                    continue
                kv_read = b * c * pm.kv_bytes_per_token_per_gpu / g.bandwidth_bytes_per_s
                floor = max(weights_read + kv_read, flops_per_token * (p + b))
                assert pm.step_time(p, b, b * c) >= floor * (1 - 1e-12), (model, tp, precision, p, b, c)

    def test_deterministic_and_without_state(self, name):
        first = [(cfg, grid(pm)) for cfg, pm in models(name)]
        again = [(cfg, grid(pm)) for cfg, pm in models(name)]  # built again
        assert first == again
        for (cfg, values), (_, pm) in zip(first, models(name), strict=True):
            backwards = [pm.step_time(p, b, b * c) for p in reversed(PREFILL) for b in reversed(SEQS)
                         for c in reversed(CONTEXT_PER_SEQ)]
            assert backwards[::-1] == values, cfg  # the order of calls changes nothing

    def test_the_kv_cache_is_every_whole_block_that_fits(self, name):
        gpu, _, prof = PROFILES[name]
        for (model, tp, precision), pm in models(name):
            assert pm.weights_bytes_per_gpu * tp == pytest.approx(pm.weights_bytes, rel=1e-12)
            block = pm.block_size * pm.kv_bytes_per_token_per_gpu
            blocks, free = pm.kv_capacity_blocks, pm.kv_free_bytes_per_gpu
            assert pm.kv_capacity_tokens == blocks * pm.block_size
            if free > 0:
                assert blocks * block <= free < (blocks + 1) * block, (model, tp)
            else:
                assert blocks == 0
            # More GPUs per replica never shrink its cache (weights and KV heads spread further).
            heads = CAT.model(model).num_attention_heads
            tps = [t for t in (1, 2, 4, 8, 16) if heads % t == 0]
            caps = [build_perf_model(CAT.model(model), CAT.gpu(gpu), tp=t, precision=precision, profile=prof,
                                     check=False).kv_capacity_tokens for t in tps]
            assert caps == sorted(caps), (model, precision, dict(zip(tps, caps)))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_profile_loads_by_name_and_round_trips(name, tmp_path):
    prof = SHIPPED[name]
    assert load_profile(name) == prof
    assert 0 < prof.eff_compute <= 1 and 0 < prof.eff_memory <= 1 and 0 < prof.eff_interconnect <= 1
    assert prof.fit.get("rows_used", 0) > 0 and prof.gpu in prof.source  # fitted, on its own GPU
    path = save_profile(prof, tmp_path / f"{name}.json")
    back = load_profile(str(path))
    assert back == prof
    pm_a = build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu(prof.gpu), profile=prof, backend=prof.backend)
    pm_b = build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu(prof.gpu), profile=str(path))
    assert np.array_equal(grid(pm_a), grid(pm_b))
