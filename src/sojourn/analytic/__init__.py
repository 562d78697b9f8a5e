"""Exact results of classical queues (M/M/c, M/G/1, M^X/G/1, M/D/c) that the simulator is checked against."""

from sojourn.analytic.queueing import (
    erlang_b,
    erlang_c,
    md1_mean_wait,
    mdc_mean_wait,
    mdc_number_distribution,
    mdc_wait_sf,
    mg1_mean_wait,
    mg1_sjf_mean_wait,
    mmc_mean_sojourn,
    mmc_mean_wait,
    mmc_sojourn_sf,
    mmc_wait_sf,
    mxg1_mean_wait,
    mxm1_geometric_mean_wait,
)

__all__ = [
    "erlang_b",
    "erlang_c",
    "md1_mean_wait",
    "mdc_mean_wait",
    "mdc_number_distribution",
    "mdc_wait_sf",
    "mg1_mean_wait",
    "mg1_sjf_mean_wait",
    "mmc_mean_sojourn",
    "mmc_mean_wait",
    "mmc_sojourn_sf",
    "mmc_wait_sf",
    "mxg1_mean_wait",
    "mxm1_geometric_mean_wait",
]
