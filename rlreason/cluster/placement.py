"""Placement: where the learner and the engines run, and the sync that joins them.

`build_placement(cfg, model_path) -> (engine, learner, sync)` for ray.placement:

- 'split': the learner's ray.learner_workers ranks in one placement group, the rollout pool's
  ray.rollout_workers engines in another; the sync by ray.transport: the object store in
  buckets ('auto', 'object_store'), or a broadcast group ('nccl', 'gloo').
- 'colocated': one actor holds the learner and the engine, in a one-bundle group sized for
  the larger of the two; the sync stays in that process.

A new placement is one more builder here that returns the same three objects.
"""

from __future__ import annotations

import os

import ray

from rlreason.cluster.colocated import build_colocated, colocated_resources
from rlreason.cluster.learner_group import RemoteLearner, start_learner
from rlreason.cluster.pool import COLLECTIVE_BACKENDS, RolloutPool
from rlreason.cluster.sync import CollectiveSync, ObjectStoreSync
from rlreason.config import Config
from rlreason.sync import WeightSync


def bundle(cpus: float, gpus: float) -> dict:
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


def reserve(cfg: Config, bundles: list[dict], name: str):
    """A PACK placement group of `bundles`, ready, or a clear error naming the keys that size it."""
    from ray.util.placement_group import placement_group, remove_placement_group

    hint = ("lower ray.rollout_workers or ray.rollout_cpus / ray.learner_cpus / *_gpus, or give the cluster more "
            "(ray.num_cpus: logical CPUs of a local cluster)")
    local = not (cfg.ray.address or os.environ.get("RAY_ADDRESS"))
    total = ray.cluster_resources()
    needed: dict = {}
    for b in bundles:
        for resource, n in b.items():
            needed[resource] = needed.get(resource, 0) + n
    short = {r: n for r, n in needed.items() if n > total.get(r, 0)}
    if local and short:  # a local cluster never grows: say so now rather than after the timeout
        raise RuntimeError(f"{name} needs {short} but this local Ray cluster has {total}; {hint}")
    pg = placement_group(bundles, strategy="PACK")  # unnamed: names are cluster-wide, groups are not
    ready, _ = ray.wait([pg.ready()], timeout=cfg.ray.placement_timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise RuntimeError(
            f"the Ray cluster could not place {name} ({bundles}) within ray.placement_timeout_s="
            f"{cfg.ray.placement_timeout_s} s; available: {ray.available_resources()}; {hint}"
        )
    return pg


def build_learner(cfg: Config, model_path: str) -> RemoteLearner:
    """The learner's ranks in a placement group of their own."""
    pg = reserve(cfg, [bundle(cfg.ray.learner_cpus, cfg.ray.learner_gpus)] * cfg.ray.learner_workers, "the learner")
    return start_learner(cfg, model_path, pg)


def build_pool(cfg: Config, model_path: str, fault_sync_sleep_s: float = 0.0) -> RolloutPool:
    """The rollout pool in a placement group of its own (`fault_sync_sleep_s`: tests only)."""
    pg = reserve(cfg, [bundle(cfg.ray.rollout_cpus, cfg.ray.rollout_gpus)] * cfg.ray.rollout_workers, "the rollout pool")
    return RolloutPool(cfg, model_path, pg, fault_sync_sleep_s)


def build_sync(cfg: Config, learner: RemoteLearner, pool: RolloutPool) -> WeightSync:
    """The split layout's sync for ray.transport."""
    if cfg.ray.transport in COLLECTIVE_BACKENDS:
        return CollectiveSync(learner.actors, pool, cfg.ray.transport, cfg.ray.sync_timeout_s)
    return ObjectStoreSync(learner.actors, pool, cfg.ray.sync_bucket_mb)


def build_placement(cfg: Config, model_path: str):
    """(engine, learner, sync) for ray.placement; see the module docstring."""
    if cfg.ray.placement == "colocated":
        cpus, gpus = colocated_resources(cfg)
        return build_colocated(cfg, model_path, reserve(cfg, [bundle(cpus, gpus)], "the colocated learner + engine"))
    learner = build_learner(cfg, model_path)
    pool = build_pool(cfg, model_path)
    return pool, learner, build_sync(cfg, learner, pool)


def shutdown_placement(engine, learner) -> None:
    """Kill the actors of build_placement's engine and learner and free their placement groups
    (a colocated engine's actor is the learner's)."""
    for part in (engine, learner):
        if hasattr(part, "shutdown"):
            part.shutdown()
