"""Ray plumbing shared by the cluster modules: joining a cluster, actor environments and
placement, and one actor-group helper (the learner's and the engine's constructor arguments
are rlreason.config.learner_kwargs / engine_kwargs).

`ActorGroup` calls a method on several actors at once and waits for all of them; it is the
driver's side of every multi-actor object here (the learner's FSDP ranks, the rollout pool,
the colocated actor). `gather` is its core: it also replaces an actor that died, when asked.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import ray
from ray.exceptions import RayActorError

from rlreason.config import Config

log = logging.getLogger(__name__)


def connect(cfg: Config) -> bool:
    """Join RAY_ADDRESS (or ray.address) when given, else start a local cluster. Returns whether
    it did either: False when this process is already connected (its owner shuts Ray down)."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": always a fresh local cluster, never a stale one found on disk
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def node_threads(cfg: Config, sharers: int = 1) -> int:
    """Threads for one of `sharers` actors on a node: ray.threads, else the node's cores split
    between them. Learner and engine take turns, so each of them may use every core."""
    return cfg.ray.threads or max(1, (os.cpu_count() or 1) // sharers)


def actor_env(threads: int, extra: dict | None = None) -> dict:
    """The runtime_env of an actor that computes with `threads` threads (Ray's default for a
    num_cpus=1 actor is OMP_NUM_THREADS=1)."""
    return {
        "env_vars": {
            "OMP_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false",
            # keep the console for the progress line; export VLLM_LOGGING_LEVEL=INFO to see vLLM's logs
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
            "HF_HUB_DISABLE_PROGRESS_BARS": os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
            **(extra or {}),
        }
    }


def in_bundle(pg, index: int = 0) -> dict:
    """Actor options that place it in bundle `index` of placement group `pg`."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}


class SyncTimeoutError(TimeoutError):
    pass


def gather(refs: dict, timeout: float | None = None, on_death: Callable | None = None, timeout_message: Callable | None = None) -> dict:
    """{key: result} of one call per key ({key: ObjectRef}), in finish order. An actor that died
    raises, unless `on_death(key, error)` returns a new ref for its call (it replaced the actor);
    the deadline then starts again, so a replacement's start is not counted. Past `timeout`
    seconds, SyncTimeoutError(timeout_message(keys still pending))."""
    pending = {ref: k for k, ref in refs.items()}
    results = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
        if not ready:
            hung = sorted(pending.values())
            raise SyncTimeoutError(timeout_message(hung) if timeout_message else f"calls on {hung} did not finish within {timeout} s")
        k = pending.pop(ready[0])
        try:
            results[k] = ray.get(ready[0])
        except RayActorError as e:
            if on_death is None:
                raise
            pending[on_death(k, e)] = k
            if deadline is not None:
                deadline = time.monotonic() + timeout
    return results


class ActorGroup:
    """Actors called together: `call` sends one method call to each at once and returns every
    result, in actor order (a collective such as an FSDP update needs all ranks in it). `via`:
    route calls through one method of the actor, `via(method, *args)` (the colocated actor's
    learner_call / engine_call)."""

    def __init__(self, actors: list, via: str | None = None):
        self.actors, self.via = actors, via

    def remote(self, k: int, method: str, *args):
        actor = self.actors[k]
        if self.via:
            return getattr(actor, self.via).remote(method, *args)
        return getattr(actor, method).remote(*args)

    def call(self, method: str, *args) -> list:
        return ray.get([self.remote(k, method, *args) for k in range(len(self.actors))])

    def first(self, method: str, *args):
        """`call`, returning the first actor's result (rank 0's)."""
        return self.call(method, *args)[0]
