"""Caches in one place (sojourn._cache): keyed by content, bounded, all cleared by one call."""

from __future__ import annotations

import os
import textwrap

import numpy as np

from sojourn import _cache
from sojourn.scenario import scenario_from_dict

WL = {"batch_rate_per_hour": 1.0, "input_tokens": {"dist": "fixed", "value": 100},
      "output_tokens": {"dist": "fixed", "value": 10}}


def priced(k: float) -> dict:
    return {"gpus": {"h100-sxm": {"price_usd_per_gpu_hour": k, "sources": {"price": "a test"}}}}


def test_every_cache_registers_and_clear_caches_empties_them(tmp_path):
    import sojourn.analytic.queueing  # noqa: F401 - each module registers its caches at import
    import sojourn.distributions as dist
    import sojourn.fast.capacity as capacity
    import sojourn.fast.fluid as fluid
    import sojourn.scenario as scenario
    import sojourn.sim.workload as workload

    assert {"catalogue", "node capacity", "trace", "fluid classes", "distribution laws",
            "distribution integer means", "M/D/c numbers"} <= set(_cache.cache_names())
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,20,6\n")
    workload.load_trace(trace, "azure")
    scenario_from_dict({"workload": WL, "catalogue": priced(1.0)}).catalogue_obj()
    assert workload._load_trace_cached.cache_info().currsize and scenario._CATALOGUES
    capacity._CACHE["x"] = object()
    fluid._CLASS_CACHE.append(object())
    dist._cached_law(dist.Fixed(value=3.0))
    assert dist._cached_law.cache_info().currsize
    sojourn.clear_caches()
    assert workload._load_trace_cached.cache_info().currsize == 0
    assert not scenario._CATALOGUES and not capacity._CACHE and not fluid._CLASS_CACHE
    assert dist._cached_law.cache_info().currsize == 0


def test_a_trace_edited_in_place_is_read_again(tmp_path):
    from sojourn.sim.workload import load_trace

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,20,6\n")
    t1, i1, _ = load_trace(trace, "azure")
    assert load_trace(trace, "azure")[1] is i1  # cached
    st = trace.stat()
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,11,5\n1,21,6\n")  # same size
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert list(load_trace(trace, "azure")[1]) == [11, 21]


def test_a_catalogue_file_edited_in_place_is_read_again_and_the_cache_is_bounded(tmp_path):
    import sojourn.scenario as scenario

    cat = tmp_path / "cat.toml"

    def write(price: float) -> None:
        cat.write_text(textwrap.dedent(f"""
            [gpus.h100-sxm]
            price_usd_per_gpu_hour = {price}
            sources = {{ price = "a test" }}
            """))

    write(1.5)
    sc = scenario_from_dict({"workload": WL, "catalogue": {"file": str(cat)}})
    assert sc.catalogue_obj().gpu("h100-sxm").price_usd_per_gpu_hour == 1.5
    assert sc.catalogue_obj() is sc.catalogue_obj()  # one build, not one per call
    write(2.5)
    st = cat.stat()
    os.utime(cat, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sc.catalogue_obj().gpu("h100-sxm").price_usd_per_gpu_hour == 2.5
    for k in range(scenario.CATALOGUE_CACHE + 5):
        scenario_from_dict({"workload": WL, "catalogue": priced(1.0 + k)}).catalogue_obj()
    assert len(scenario._CATALOGUES) == scenario.CATALOGUE_CACHE
    assert sc.catalogue_obj() is not None  # the oldest, evicted, is built again


def test_node_capacity_is_keyed_by_the_trace_file_contents(tmp_path):
    from sojourn.fast.capacity import _cache_key

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,20,6\n")
    sc = scenario_from_dict({"workload": {"trace": str(trace), "format": "azure"}})
    k1 = _cache_key(sc, 1000)
    assert _cache_key(sc, 1000) == k1
    st = trace.stat()
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,20,6\n2,30,7\n")
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _cache_key(sc, 1000) != k1
    assert np.isfinite(len(k1))
