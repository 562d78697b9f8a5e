"""The tiny base scenario the study tests share: generic servers, so each trial takes milliseconds."""

TINY_SCENARIO = """
sla_hours = 2.0
[workload]
batch_rate_per_hour = 20.0
batch_size = { dist = "geometric", mean = 5 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 100 }
[fleet]
gpu = "h100-sxm"
nodes = 1
server = { kind = "generic", service_time = { dist = "exponential", mean = 900.0 }, concurrency = 4 }
[simulation]
horizon_hours = 40
warmup_hours = 4
replications = 3
seed = 3
"""
