"""Confirmations as resumable, shared work: a queue of jobs in the study's own storage.

Confirming a front point (re-simulating it with more replications, on the request tier
unless the study runs at ``fidelity = "fast"``) can take an hour; a hardware comparison
confirms one candidate per GPU type, and the next where one falls short. Both are jobs
in a queue that Optuna keeps next to the study: a second study, ``<name>:confirm``, in
the same storage, whose enqueued trials are the jobs (``enqueue_trial``). Optuna's own
machinery then gives what long work needs:

* a job is claimed by one worker at a time (a waiting trial is popped atomically), so
  N machines sharing a PostgreSQL study confirm N points at once; a request-tier
  confirmation is itself split into jobs of ``study.confirm_chunk`` replications (parts),
  so N machines also share one point's replications, each on its local processes. The
  worker that stores a confirmation's last replication pools them all (``request.simulate``
  given every replication as stored): replication ``i`` is the same whoever runs it, so the
  confirmation is the same for any split, over machines or processes;
* each result is stored, in the study's attribute ``confirm:<trial>``, the moment it
  finishes, and each of a request-tier job's replications in the job's attribute
  ``replication:<i>`` as it finishes (``sim._stored``): a run stopped by Ctrl-C or a kill
  resumes where it stopped, within a confirmation too;
* a worker that dies mid-job stops beating (the storage's heartbeat), its job is failed
  and enqueued again by the next worker that looks (``RetryHeartbeatStaleTrialCallback``);
* Ctrl-C stops at once: the running job is failed, not waited for, and is queued again
  by the next run.

A job's result is the same whoever runs it (common random numbers), so a job done twice
(a race between two workers' first look) costs time, never correctness.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import optuna

from sojourn._interrupt import (
    check_interrupt,
    in_stoppable,
    interrupt_at_once,
    interruptible_sleep,
    not_stoppable,
    stoppable,
)
from sojourn.sim._stored import replication_to_json

__all__ = ["CONFIRM_PREFIX", "QUEUE_SUFFIX", "REPLICATION_PREFIX", "check_interrupt", "confirm_params", "confirm_parts",
           "in_stoppable", "interrupt_at_once", "interruptible_sleep", "not_stoppable", "part_range", "queue_study",
           "run_jobs", "run_part", "run_waiting", "stoppable", "stored_confirmation", "stored_replications", "wait_for_other_workers"]

#: Study attribute holding a trial's confirmation: ``confirm:<trial number>``.
CONFIRM_PREFIX = "confirm:"
#: The queue's study name: the study's own with this suffix, in the same storage.
QUEUE_SUFFIX = ":confirm"
#: Seconds between looks at the queue while other workers run the last jobs.
POLL_S = 2.0
#: Who ran a job (the queue's trial attribute ``worker``): host and process.
WORKER = f"{socket.gethostname()}:{os.getpid()}"
#: A queue job's attribute holding one finished replication: ``replication:<index>``.
REPLICATION_PREFIX = "replication:"
#: What a confirmation keeps of the simulation's result.
KEEP = ("p_miss", "p_miss_ci", "p_miss_upper", "batch_miss", "sojourn_p99_s", "analytic_p_miss",
        "analytic_p_miss_upper", "analytic_agrees", "p_miss_best", "stable", "steady_state_note", "p_miss_note",
        "p_miss_fragility", "fragile")


def stored_confirmation(study: optuna.Study, number: int, replications: int,
                        attrs: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The stored confirmation of trial ``number`` with at least ``replications``, or None."""
    prev = (study.user_attrs if attrs is None else attrs).get(f"{CONFIRM_PREFIX}{number}")
    if prev and prev.get("replications", 0) >= replications:
        return prev
    return None


def miss_used(runner: Any, result: Mapping[str, Any], scenario: Any) -> float:
    """P(miss) as the study's sla_miss objective reads a result (the upper bound without one)."""
    obj = next((o for o in runner.objectives if o.name == "sla_miss"), None)
    if obj is not None:
        return float(obj(dict(result), scenario, runner.cfg.study))
    v = result.get("p_miss_upper")
    return float(v) if v is not None else 1.0


def confirm_params(runner: Any, params: Mapping[str, Any], replications: int,
                   progress: Callable[[float, int], None] | None = None, resume: Any = None,
                   on_replication: Any = None) -> dict[str, Any]:
    """Re-simulate one configuration with ``replications``: what a confirmation stores.

    ``progress`` is called with (replications done, replications) as the request tier goes;
    ``resume`` and ``on_replication``: ``request.simulate``'s (replications stored as they finish).
    """
    from sojourn.study.front import sampled_fragility
    from sojourn.study.runner import evaluate

    tier = runner.confirm_fidelity
    sc = runner.trial_scenario({k: params[k] for k in runner.cfg.space if k in params})
    res = evaluate(sc, tier, replications=replications, n_jobs=runner.n_jobs, progress=progress, resume=resume,
                   on_replication=on_replication)
    keep = {k: res[k] for k in KEEP if k in res}
    keep["replications"] = replications
    keep["fidelity"] = res.get("fidelity", tier)
    if "fragile" not in res or (res.get("p_miss_fragility") is None and not res.get("fragile")):
        keep.update(sampled_fragility(sc, replications=replications))
    keep["p_miss_used"] = miss_used(runner, res, sc)
    from sojourn.study.runner import _jsonable

    return {k: _jsonable(v) for k, v in keep.items()}


def stored_replications(queue: optuna.Study, number: int, tier: str) -> dict[int, Any]:
    """The replications the queue's jobs confirming trial ``number`` stored, by index.

    Every job stores each replication as it finishes (its attribute ``replication:<i>``): the
    parts of a split confirmation, and a job stopped by Ctrl-C or a kill (failed at once, or by
    the heartbeat), which the job that takes it up again starts from. The request tier's only:
    the fast tier runs in minutes.
    """
    if tier != "request":
        return {}
    from sojourn.sim._stored import replication_from_json

    found: dict[int, Any] = {}
    for t in _jobs_of(queue, number):
        for k, v in t.user_attrs.items():
            if k.startswith(REPLICATION_PREFIX):
                i = int(k[len(REPLICATION_PREFIX):])
                if i not in found:
                    found[i] = replication_from_json(v)
    return found


def _jobs_of(queue: optuna.Study, number: int | None = None) -> list[optuna.trial.FrozenTrial]:
    """The queue's jobs (confirming trial ``number``, or all), in any state."""
    return [t for t in queue.get_trials(deepcopy=False)
            if number is None or (t.system_attrs.get("fixed_params") or t.params).get("trial") == number]


def _stored_indices(queue: optuna.Study) -> dict[int, set[int]]:
    """Per confirmed trial, the indices of the replications stored for it (nothing parsed)."""
    out: dict[int, set[int]] = {}
    for t in _jobs_of(queue):
        number = (t.system_attrs.get("fixed_params") or t.params).get("trial")
        got = {int(k[len(REPLICATION_PREFIX):]) for k in t.user_attrs if k.startswith(REPLICATION_PREFIX)}
        if number is not None and got:
            out.setdefault(int(number), set()).update(got)
    return out


def part_range(replications: int, part: int, parts: int) -> range:
    """The replication indices of part ``part`` of ``parts`` (contiguous, sizes differing by one at most)."""
    return range(part * replications // parts, (part + 1) * replications // parts)


def confirm_parts(runner: Any, replications: int) -> int:
    """How many jobs a confirmation of ``replications`` is split into (one for the fast tier)."""
    if runner.confirm_fidelity != "request":
        return 1
    chunk = runner.cfg.study.confirm_chunk or max(1, runner.n_jobs)
    return max(1, -(-replications // chunk))


def queue_study(runner: Any, study: optuna.Study) -> optuna.Study:
    """The study's queue of confirmation jobs, created on first use, in the study's storage."""
    storage = runner.storage()
    if isinstance(storage, str) and storage.startswith("memory"):
        storage = study._storage  # an in-memory study: its queue lives beside it
    return optuna.create_study(study_name=study.study_name + QUEUE_SUFFIX, storage=storage,
                               sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)


def _fail_stale(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials`` (experimental): a dead worker's trials are failed, and retried."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _heartbeat(queue: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(queue._storage)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's log of a failed trial off while a job runs (its error propagates all the same)."""
    log = logging.getLogger("optuna.study._optimize")
    level = log.level
    log.setLevel(logging.ERROR + 1)
    try:
        yield
    finally:
        log.setLevel(level)


def _claimed_elsewhere(queue: optuna.Study, job: int, number: int, part: int) -> bool:
    """Another running job confirms part ``part`` of trial ``number`` (two workers enqueued it at once): leave
    it to that one.

    Both look after claiming their own job, so at least one of them sees the other; if
    both do, both step back and the job is enqueued again.
    """
    for t in queue.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        p = t.system_attrs.get("fixed_params") or t.params
        if t.number != job and p.get("trial") == number and t.user_attrs.get("part", 0) == part:
            return True
    return False


def run_jobs(runner: Any, study: optuna.Study, jobs: Mapping[int, Mapping[str, Any]], replications: int,
             bar: Any = None) -> dict[int, dict[str, Any]]:
    """Confirm every trial of ``jobs`` (trial number -> its parameters): stored ones are reused.

    Works with the other workers of a shared storage: jobs (each a part of a trial's
    replications, ``confirm_parts``) are enqueued once, each is run by the worker that
    claims it, and this worker waits for those others are running. ``bar`` (a tqdm bar)
    advances by one a confirmation, by replications within one. KeyboardInterrupt
    propagates at once; everything finished is stored.
    """
    queue = queue_study(runner, study)
    beat = _heartbeat(queue)
    parts = confirm_parts(runner, replications)
    start = int(bar.n) if bar is not None else 0
    shown = [0]

    def tick(done: float, total: int) -> None:  # within a job: the bar moves by replications
        if bar is not None:
            with not_stoppable():
                bar.n = round(start + shown[0] + min(done / max(total, 1), 0.99), 2)
                bar.refresh()

    job = _job(runner, study, queue, beat, tick)
    while True:
        check_interrupt()
        attrs = study.user_attrs
        left = [n for n in jobs if stored_confirmation(study, n, replications, attrs) is None]
        shown[0] = len(jobs) - len(left)
        if bar is not None:
            bar.n = start + shown[0]
            bar.refresh()
        if not left:
            break
        if beat:
            _fail_stale(queue)  # a dead worker's job goes back to the queue
        add, whole = _to_enqueue(queue, left, jobs, replications, parts, beat)
        for n in whole:  # every replication stored, the pooling not (its worker was stopped first): pool here
            _pool_stored(runner, study, queue, n, replications, jobs[n])
        for n, k in add:
            queue.enqueue_trial({"trial": n, "replications": replications},
                                user_attrs={"params": dict(jobs[n]), "part": k, "parts": parts})
        if whole:
            continue
        waiting, running = _queued(queue, jobs, replications, parts)
        if waiting:
            _run_next(queue, job)
            continue
        if bar is not None:
            bar.set_postfix_str(f"waiting for {len(running)} running on other workers", refresh=True)
        interruptible_sleep(POLL_S)
    return {n: stored_confirmation(study, n, replications) for n in jobs}  # type: ignore[misc]


def _to_enqueue(queue: optuna.Study, left: list[int], jobs: Mapping[int, Mapping[str, Any]], replications: int,
                parts: int, beat: bool) -> tuple[list[tuple[int, int]], list[int]]:
    """The jobs (trial, part) to enqueue for the trials ``left`` (neither waiting, nor running on a live worker,
    nor stored in full), and the trials whose replications are all stored but not pooled."""
    waiting, running = _queued(queue, jobs, replications, parts)
    stored = _stored_indices(queue) if parts > 1 else {}
    add: list[tuple[int, int]] = []
    whole: list[int] = []
    for n in left:
        have = stored.get(n, set())
        if parts > 1 and all(i in have for i in range(replications)):
            whole.append(n)
            continue
        for k in range(parts):
            if parts > 1 and all(i in have for i in part_range(replications, k, parts)):
                continue  # this part is stored; the others' workers pool when they finish
            # Without a heartbeat a RUNNING job may belong to a dead worker: do not wait for it.
            if (n, k) not in waiting and ((n, k) not in running or not beat):
                add.append((n, k))
    return add, whole


def _pool_stored(runner: Any, study: optuna.Study, queue: optuna.Study, number: int, replications: int,
                 params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Pool trial ``number``'s stored replications into its confirmation and store it; None while some are missing."""
    stored = stored_replications(queue, number, runner.confirm_fidelity)
    if any(i not in stored for i in range(replications)):
        return None
    with stoppable():
        done = confirm_params(runner, params, replications, resume={i: stored[i] for i in range(replications)})
    with not_stoppable():
        study.set_user_attr(f"{CONFIRM_PREFIX}{number}", done)
    return done


def run_part(runner: Any, params: Mapping[str, Any], replications: int, indices: range,
             progress: Callable[[float, int], None] | None = None, resume: Any = None,
             on_replication: Any = None) -> None:
    """Simulate replications ``indices`` of one configuration's confirmation (``request.simulate_part``)."""
    from sojourn.evaluate import workers
    from sojourn.request import simulate_part

    sc = runner.trial_scenario({k: params[k] for k in runner.cfg.space if k in params})
    simulate_part(sc, indices, replications=replications, n_jobs=runner.n_jobs, progress=progress or False,
                  resume=resume, on_replication=on_replication, executor=workers(runner.n_jobs))


def _job(runner: Any, study: optuna.Study, queue: optuna.Study, beat: bool,
         tick: Callable[[float, int], None]) -> Callable[[optuna.Trial], float]:
    """The queue's objective: confirm the part of a trial a job names (or reuse the trial's stored confirmation),
    storing each replication as it finishes, and the confirmation once every part's are stored.

    Only the simulation can be stopped at once (``stoppable``); storing a finished
    replication cannot (``not_stoppable``).
    """

    def job(trial: optuna.Trial) -> float:
        if "params" not in trial.user_attrs:  # every enqueued job carries its configuration
            raise optuna.TrialPruned("not a queued job: another worker took the last one")
        number = trial.suggest_int("trial", 0, 2**31 - 1)
        reps = trial.suggest_int("replications", 1, 2**31 - 1)
        part, parts = int(trial.user_attrs.get("part", 0)), int(trial.user_attrs.get("parts", 1))
        done = stored_confirmation(study, number, reps)
        if done is None and beat and _claimed_elsewhere(queue, trial.number, number, part):
            raise optuna.TrialPruned("another worker is confirming it")
        if done is None:
            trial.set_user_attr("worker", WORKER)
            done = _run_job(runner, study, queue, trial, number, reps, part, parts, tick)
        v = None if done is None else done.get("p_miss_used", done.get("p_miss_upper"))
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 1.0

    return job


def _run_job(runner: Any, study: optuna.Study, queue: optuna.Study, trial: optuna.Trial, number: int, reps: int,
             part: int, parts: int, tick: Callable[[float, int], None]) -> dict[str, Any] | None:
    """Simulate the job's replications (resumed from those stored); pool when they were the last ones."""
    t0 = time.perf_counter()
    resume = stored_replications(queue, number, runner.confirm_fidelity)
    params = trial.user_attrs["params"]

    def store(i: int, st: Any) -> None:  # each replication as it finishes: a rerun resumes from it
        with not_stoppable():
            trial.set_user_attr(f"{REPLICATION_PREFIX}{i}", replication_to_json(st))

    if parts == 1:
        trial.set_user_attr("resumed_replications", len(resume))
        trial.set_user_attr("simulated", [i for i in range(reps) if i not in resume])
        with stoppable():
            done = confirm_params(runner, params, reps, progress=tick, resume=resume, on_replication=store)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        study.set_user_attr(f"{CONFIRM_PREFIX}{number}", done)
        return done
    idx = part_range(reps, part, parts)
    trial.set_user_attr("resumed_replications", sum(i in resume for i in idx))
    trial.set_user_attr("simulated", [i for i in idx if i not in resume])  # (Optuna's retry copies attributes)
    others = sum(1 for i in resume if i < reps and i not in idx)  # the other parts' progress, for the bar
    with stoppable():
        run_part(runner, params, reps, idx, progress=lambda d, n: tick(others + d * len(idx) / max(n, 1), reps),
                 resume=resume, on_replication=store)
    trial.set_user_attr("seconds", time.perf_counter() - t0)
    return _pool_stored(runner, study, queue, number, reps, params)


def _queued(queue: optuna.Study, jobs: Mapping[int, Mapping[str, Any]], replications: int,
            parts: int = 1) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The jobs (trial, part) of ``jobs`` the queue holds waiting, and running, for at least ``replications``
    split in ``parts``."""
    S = optuna.trial.TrialState
    waiting: set[tuple[int, int]] = set()
    running: set[tuple[int, int]] = set()
    for t in queue.get_trials(deepcopy=False, states=(S.WAITING, S.RUNNING)):
        p = t.system_attrs.get("fixed_params") or t.params
        if (p.get("replications", 0) >= replications and p.get("trial") in jobs
                and int(t.user_attrs.get("parts", 1)) == parts):
            key = (int(p["trial"]), int(t.user_attrs.get("part", 0)))
            (waiting if t.state == S.WAITING else running).add(key)
    return waiting, running


def run_waiting(study: optuna.Study, func: Callable[[optuna.Trial], Any], callbacks: Any = None,
                catch: tuple[type[Exception], ...] = ()) -> None:
    """``study.optimize`` of one trial, the next waiting one (enqueued), shared with other workers: one that
    another worker popped at the same time and told first is left to it (``runner.told_elsewhere``)."""
    from sojourn.study.runner import told_elsewhere

    try:
        study.optimize(func, n_trials=1, callbacks=callbacks, catch=catch)
    except ValueError as err:
        if not told_elsewhere(err):
            raise


def _run_next(queue: optuna.Study, job: Callable[[optuna.Trial], float]) -> None:
    """Run the queue's next waiting job here (KeyboardInterrupt propagates)."""
    with _quiet_optuna():  # an interrupted job is reported by the caller, not as Optuna's traceback
        run_waiting(queue, job)


def wait_for_other_workers(runner: Any, study: optuna.Study, bar: Any = None) -> int:
    """Wait while other workers sharing the study still run trials; return how many were running.

    Workers stop their search once the study's total is reached, some before the last
    trials of others finish: each waits here, so every worker polishes and confirms the same,
    final front. A dead worker's trial is failed by the heartbeat meanwhile.
    """
    S = optuna.trial.TrialState
    storage = runner.storage()
    beat = not isinstance(storage, str) and _heartbeat(study)
    first = None
    while True:
        if beat:
            _fail_stale(study)
        running = len(study.get_trials(deepcopy=False, states=(S.RUNNING,)))
        if first is None:
            first = running
            if running:
                print(f"study {study.study_name}: waiting for the {running} trial(s) other workers are running, so "
                      "every worker goes on with the same front", file=sys.stderr, flush=True)
        if running == 0 or not beat:
            return first
        interruptible_sleep(POLL_S / 2)
