"""The compiled priority kernel returns what the reference loop returns, piece for piece."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sojourn.fast import _priority_kernel
from sojourn.fast.batches import Batches
from sojourn.fast.fluid import FluidFleet, Segments, priority_runs, priority_runs_reference


def test_numba_kernel_is_in_use():
    # numba is a dependency: without it the fast tier would silently run the slow loop.
    assert _priority_kernel.available()


def _case(seed: int, n: int, classes: int, mixed_sla: bool) -> tuple[Batches, Segments]:
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.exponential(1.0, n))
    x = rng.geometric(0.25, n)
    x[rng.random(n) < 0.05] = 0  # batches with nothing accepted
    w = np.where(x > 0, rng.gamma(np.maximum(x, 1), 0.3), 0.0)
    sla = rng.choice([3.0, 8.0], n) if mixed_sla else np.full(n, 5.0)
    b = Batches(a, x, x, w, sla)
    if classes == 1:
        return b, Segments.whole(b)
    # Each batch split into up to `classes` segments by a random multinomial draw.
    counts = rng.multinomial(x, np.full(classes, 1.0 / classes))
    seg_b = np.repeat(np.arange(n), classes)
    key = np.tile(np.arange(classes, dtype=float), n)
    cnt = counts.ravel()
    work = np.repeat(np.where(x > 0, w / np.maximum(x, 1), 0.0), classes) * cnt
    keep = cnt > 0
    return b, Segments(seg_b[keep], key[keep], cnt[keep], work[keep])


@pytest.mark.parametrize("order", ["fifo", "lifo", "edf", "key"])
@pytest.mark.parametrize("cancel", [False, True])
@pytest.mark.parametrize("max_queue", [None, 0, 15])
def test_kernel_equals_reference(order, cancel, max_queue):
    for seed, (slots, d, load_scale, t_stop) in enumerate([(1.0, 0.0, 1.0, math.inf), (6.0, 1.3, 1.2, math.inf),
                                                          (3.0, 0.4, 0.7, 900.0)]):
        b, seg = _case(seed, 3000, 4 if order == "key" else 1, mixed_sla=(order == "edf"))
        fl = FluidFleet(load_scale * 1.0, slots, 0.3, d, cancel, max_queue, 0.2)
        r1, f1 = priority_runs(b, seg, fl, order, t_stop)
        r2, f2 = priority_runs_reference(b, seg, fl, order, t_stop)
        if max_queue == 0:
            assert len(r1.batch) == 0 and f1.sum() > 0  # no room to wait: every request refused
        else:
            assert len(r1.batch) > 100
        np.testing.assert_array_equal(r1.batch, r2.batch)
        np.testing.assert_array_equal(r1.count, r2.count)
        np.testing.assert_array_equal(r1.start, r2.start)
        np.testing.assert_array_equal(r1.step, r2.step)
        np.testing.assert_array_equal(f1, f2)
        if max_queue is not None:
            assert f1.sum() > 0  # the admission cap was exercised


def test_kernel_rejects_an_unknown_order():
    b, seg = _case(0, 10, 1, False)
    with pytest.raises(ValueError, match="allowed"):
        priority_runs(b, seg, FluidFleet(1.0, 1.0, 0.3, 0.0, False), "random")
