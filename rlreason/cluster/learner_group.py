"""The driver's side of the learner: one Learner actor, or M FSDPLearner ranks, behind the
methods the loop calls.

`start_learner` starts ray.learner_workers actors, one per bundle of a placement group: with
M = 1 a plain `Learner` (rlreason.learner.policy); with M > 1 `FSDPLearner` ranks
(rlreason.learner.fsdp) that form one process group at rank 0's address and a free port found
in rank 0's bundle. `RemoteLearner` sends every call to every actor of its group (each forward,
backward, gather and checkpoint write is a collective) and returns rank 0's answer, so the loop
sees one learner. The colocated placement uses the same class over its one actor.

Weights leave the learner through the sync objects (rlreason.cluster.sync), which call the
ranks themselves; this class has no `weights()`.
"""

from __future__ import annotations

import ray

from rlreason.cluster.actors import ActorGroup, actor_env, in_bundle, node_threads
from rlreason.config import Config, ConfigError, learner_kwargs
from rlreason.types import Batch, UpdateStats


class RemoteLearner:
    """Learner's methods on an ActorGroup: every rank takes part, rank 0 answers."""

    def __init__(self, group: ActorGroup, placement_group=None):
        self.group, self.placement_group = group, placement_group

    @property
    def actors(self) -> list:
        return self.group.actors

    def warm_start(self, pairs, ws_cfg, first: int = 0, last: int | None = None) -> dict:
        pairs = ray.put(pairs) if pairs is not None else None  # put once: every rank reads it
        return self.group.first("warm_start", pairs, ws_cfg, first, last)

    def save_warm_start(self, path: str, summary: dict) -> None:
        return self.group.first("save_warm_start", path, summary)

    def load_warm_start(self, path: str) -> dict | None:
        return self.group.first("load_warm_start", path)

    def update(self, batch: Batch, temperature: float) -> UpdateStats:
        return self.group.first("update", ray.put(batch), temperature)

    def sequence_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.group.first("sequence_logprobs", token_ids)

    def save(self, path: str) -> str:
        return self.group.first("save", path)

    def save_checkpoint(self, path: str) -> None:
        return self.group.first("save_checkpoint", path)

    def load_checkpoint(self, path: str) -> None:
        return self.group.first("load_checkpoint", path)

    def shutdown(self) -> None:
        """Kill the actors and free their placement group."""
        from ray.util.placement_group import remove_placement_group

        for a in self.actors:
            ray.kill(a)
        if self.placement_group is not None:
            remove_placement_group(self.placement_group)


def start_learner(cfg: Config, model_path: str, placement_group) -> RemoteLearner:
    """ray.learner_workers learner actors, one per bundle of `placement_group`."""
    from rlreason.learner.fsdp import FSDPLearner
    from rlreason.learner.policy import Learner
    from rlreason.weight_transfer import free_address

    m = cfg.ray.learner_workers
    threads = node_threads(cfg, m)  # ranks on one node share its cores
    options = dict(runtime_env=actor_env(threads), max_restarts=0)
    kwargs = learner_kwargs(cfg, model_path, threads)
    if m == 1:
        actor_cls = ray.remote(num_cpus=cfg.ray.learner_cpus, num_gpus=cfg.ray.learner_gpus)(Learner)
        actors = [actor_cls.options(**options, **in_bundle(placement_group)).remote(**kwargs)]
    else:
        if cfg.critic.enabled:
            raise ConfigError("key 'critic.enabled': PPO's critic needs one learner process; set ray.learner_workers=1")
        # rank 0's node and a free port there: the rendezvous of the process group
        master = ray.get(ray.remote(num_cpus=0)(free_address).options(**in_bundle(placement_group, 0)).remote())
        actor_cls = ray.remote(num_cpus=cfg.ray.learner_cpus, num_gpus=cfg.ray.learner_gpus)(FSDPLearner)
        actors = [
            actor_cls.options(**options, **in_bundle(placement_group, k)).remote(k, m, master, timeout_s=cfg.ray.sync_timeout_s, **kwargs)
            for k in range(m)
        ]
    return RemoteLearner(ActorGroup(actors), placement_group)
