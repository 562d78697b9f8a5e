"""Mixture-of-experts models run with profiles fitted on MoE rows (``Profile.models == "moe"``).

The selection: the GPU's own MoE profile, else the one of the GPU it is carried over from (marked
carried), else the dense profile, marked as dense factors used for a MoE model; dense models never
see a MoE profile. The file format: ``models`` is saved only for MoE profiles, and a shipped MoE
profile is named ``<gpu>-<backend>-moe``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sojourn._errors import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import Profile, build_perf_model, calibration, default_profile, load_profile, save_profile
from sojourn.perf._profile import shipped_profiles

CAT = default_catalogue()


def test_moe_profiles_ship_for_the_measured_pairs():
    moe = shipped_profiles("moe")
    assert {("b200", "vllm"), ("b200", "sglang"), ("b200", "trtllm"), ("h100-sxm", "trtllm")} <= set(moe)
    assert all(p.models == "moe" and p.fit.get("silicon_rows", 0) >= 10 for p in moe.values())
    assert all(p.models == "dense" for p in shipped_profiles().values())


def test_a_moe_model_runs_with_the_moe_profile_and_a_dense_one_never_does():
    gpt_oss, llama = CAT.model("gpt-oss-120b"), CAT.model("llama-3.1-70b")
    b200 = CAT.gpu("b200")
    moe = build_perf_model(gpt_oss, b200, tp=2, precision="fp8", check=False)
    dense = build_perf_model(llama, b200, tp=2, precision="fp8", check=False)
    assert moe.profile is shipped_profiles("moe")[("b200", "vllm")]
    assert dense.profile is shipped_profiles()[("b200", "vllm")]
    assert moe.step_time(0, 64, 64 * 2000) != build_perf_model(
        gpt_oss, b200, tp=2, precision="fp8", check=False, profile=dense.profile).step_time(0, 64, 64 * 2000)


def test_a_gpu_without_moe_rows_borrows_its_carry_over_gpus():
    prof = default_profile("gb200", "vllm", moe=True)
    assert prof.models == "moe" and prof.carried_from == "b200"
    assert "carried over from b200" in calibration("gb200", "vllm", moe=True).source


def test_without_any_moe_profile_the_dense_one_is_used_and_says_so():
    prof = default_profile("h100-sxm", "sglang", moe=True)  # sglang's MoE rows are on Blackwell only
    assert prof.models == "dense" and prof.fit["models_carried_from"] == "dense"
    cal = calibration("h100-sxm", "sglang", moe=True)
    assert not cal.calibrated and "dense-model factors" in cal.source
    assert calibration("h100-sxm", "sglang").calibrated  # the dense model's own mark is unchanged


def test_the_models_field_round_trips_and_is_left_out_for_dense(tmp_path):
    moe = replace(default_profile("b200", "vllm"), models="moe")
    back = load_profile(str(save_profile(moe, tmp_path / "p.json")))
    assert back.models == "moe"
    assert "models" not in default_profile("b200", "vllm").to_dict()
    assert load_profile("b200-vllm-moe").models == "moe"
    with pytest.raises(ConfigError) as err:
        Profile(gpu="x", models="sparse")
    assert err.value.field == "profile.models"
