"""benchmarks/mlperf_offline.py: its data table is consistent and one row's prediction is in range."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from sojourn.catalogue import default_catalogue

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "mlperf_offline.py"


@pytest.fixture(scope="module")
def mlperf():
    spec = importlib.util.spec_from_file_location("mlperf_offline", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mlperf_offline"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_rows_are_the_issue_figures(mlperf):
    got = {(r.benchmark, r.system.split(",")[0]): r.published_tokens_per_s for r in mlperf.ROWS}
    assert got == {
        ("llama2-70b", "8xH100-SXM-80GB"): 31_306.8,
        ("llama2-70b", "8xH200-SXM-141GB"): 34_988.2,
        ("llama2-70b", "8xB200-SXM-180GB"): 98_858.0,
        ("llama2-70b", "1xB200-SXM-180GB"): 12_269.3,
        ("llama3.1-405b", "8xH200-SXM-141GB"): 560.651,
        ("llama3.1-405b", "8xB200-SXM-180GB"): 1_526.29,
    }


def test_every_row_is_in_the_catalogue_and_splits_its_gpus(mlperf):
    cat = default_catalogue()
    for row in mlperf.ROWS:
        assert row.model in cat.models, row
        assert cat.gpu(row.gpu).id == row.gpu
        assert row.dataset in mlperf.DATASETS
        assert row.replicas * row.tp == row.gpus
        assert row.precision in ("fp8", "fp4")
        assert row.setting


def test_every_dataset_names_its_sources(mlperf):
    for ds in mlperf.DATASETS.values():
        assert ds.sources and ds.samples > 0 and mlperf.LENGTHS_SOURCE in ds.sources
        assert len(ds.input_quantiles) == len(ds.output_quantiles) == 100
        assert list(ds.input_quantiles) == sorted(ds.input_quantiles)  # percentiles: non-decreasing
        assert list(ds.output_quantiles) == sorted(ds.output_quantiles)
        assert 0 < ds.output_mean < max(ds.output_values) <= ds.output_max and 0 < ds.input_mean < ds.input_max


def test_the_length_laws_hold_the_sourced_means(mlperf):
    # The tables' means are the datasets' (MLPerf's tokens per sample for the outputs: 294.45 generated on
    # OpenOrca, 684.68 on the 405B set), within the percentile tables' rounding.
    orca, big = mlperf.DATASETS["llama2-70b-openorca"], mlperf.DATASETS["llama3.1-405b"]
    assert math.isclose(orca.output_mean, 294.45, rel_tol=2e-3)
    assert math.isclose(orca.input_mean, 222.33, rel_tol=2e-3)
    assert math.isclose(big.output_mean, 684.68, rel_tol=2e-3)
    assert math.isclose(big.input_mean, 9428.6, rel_tol=2e-3)
    # The scenario samples exactly those laws.
    sc = mlperf.scenario_for(mlperf.ROWS[0])
    assert math.isclose(sc.workload.input_tokens.mean, orca.input_mean, rel_tol=1e-9)
    assert math.isclose(sc.workload.output_tokens.mean, orca.output_mean, rel_tol=1e-9)


def test_one_row_predicted_within_a_factor_of_three(mlperf):
    row = next(r for r in mlperf.ROWS if r.system.startswith("1xB200"))
    r = mlperf.predict(row, measure=2_000)
    assert r["predicted"] > 0
    assert row.published_tokens_per_s / 3 < r["predicted"] < 3 * row.published_tokens_per_s
    assert math.isclose(r["error_pct"], 100 * (r["predicted"] / row.published_tokens_per_s - 1), rel_tol=1e-9)


def test_the_kv_cache_gets_trtllms_share_of_the_free_memory(mlperf):
    # TRT-LLM's kvcache_free_gpu_mem_frac is a share of what the weights and activations leave;
    # the utilisation the benchmark sets gives the KV cache exactly that share, pipeline stages too
    for row in mlperf.ROWS:
        pm = mlperf.scenario_for(row).perf_model()
        assert (pm.tp * pm.pp, pm.pp) == (row.tp, row.pp)
        left = pm.gpu.memory_bytes - pm.weights_bytes_per_gpu - pm.activation_reserve_bytes_per_gpu
        assert pm.kv_free_bytes_per_gpu == pytest.approx(row.kv_free_fraction * left, rel=1e-5), row.system
        assert 0 < pm.gpu_memory_utilization <= 1


def test_rows_run_the_submitters_pipeline_stages(mlperf):
    staged = {(r.benchmark, r.system.split(",")[0]): r.pp for r in mlperf.ROWS if r.pp > 1}
    assert staged == {("llama2-70b", "8xH100-SXM-80GB"): 2, ("llama3.1-405b", "8xH200-SXM-141GB"): 2,
                      ("llama3.1-405b", "8xB200-SXM-180GB"): 2}
    assert all(f"PP{r.pp}" in r.setting for r in mlperf.ROWS if r.pp > 1)


def test_a_step_never_runs_more_sequences_than_its_token_budget(mlperf):
    for row in mlperf.ROWS:
        assert row.batch == min(row.max_num_seqs, row.max_num_batched_tokens)
        assert mlperf.scenario_for(row).serving.max_num_seqs <= row.max_num_batched_tokens


def test_the_profiles_table_reads_what_each_profile_is_fitted_on(mlperf):
    fits = {f["gpu"]: f for f in mlperf.profile_fits()}
    assert fits["h200"]["closed"] == 0 and fits["h200"]["offline"] == 30
    assert fits["h100-sxm"]["closed"] > 0 and fits["h100-sxm"]["offline"] == 30 and fits["h100-sxm"]["weight"] > 1
    assert fits["b200"]["offline"] == 20
