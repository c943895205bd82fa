"""M learner ranks behind RayLearner's methods: the driver's side of the FSDP2 learner.

`LearnerGroup` starts ray.learner_workers `FSDPLearner` actors (rlreason.learner.fsdp), one per
bundle of a placement group, with rank 0's address and a free port found in rank 0's bundle.
Every call goes to every rank (each forward, backward, gather and checkpoint write is a
collective) and returns rank 0's answer, so the loop sees one learner:

- update: the batch is put in the object store once; each rank takes its own rows of it.
- weights: rank 0 streams the full tensors through the transport (buckets in the object store)
  while the other ranks take part in each gather (gather_weights); without a transport, one
  ObjectRef of rank 0's full state dict.

M=1 never comes here: pool.build_split keeps the single-process RayLearner then.
"""

from __future__ import annotations

import ray

from rlreason.cluster.ray_workers import _actor_env
from rlreason.cluster.transport import Collective
from rlreason.config import Config
from rlreason.types import Batch, UpdateStats


class LearnerGroup:
    def __init__(self, cfg: Config, model_path: str, transport=None, placement_group=None):
        """`placement_group`: one with ray.learner_workers bundles (pool.build_split makes it);
        None = make one here."""
        import os

        from rlreason.cluster.pool import _bundle, _in_bundle, _placement_group
        from rlreason.learner.fsdp import FSDPLearner, free_address

        from rlreason.config import ConfigError

        m = cfg.ray.learner_workers
        if cfg.critic.enabled:
            raise ConfigError("key 'critic.enabled': PPO's critic needs one learner process; set ray.learner_workers=1")
        self.transport, self.world = transport, m
        if placement_group is None:
            placement_group = _placement_group(cfg, [_bundle(cfg.ray.learner_cpus, cfg.ray.learner_gpus)] * m, "the learner ranks")
        self.placement_group = placement_group
        # rank 0's node and a free port there: the rendezvous of the process group
        master = ray.get(ray.remote(num_cpus=0)(free_address).options(**_in_bundle(placement_group, 0)).remote())
        threads = cfg.ray.threads or max(1, (os.cpu_count() or 1) // m)  # ranks on one node share its cores
        env = _actor_env(cfg)
        env["env_vars"]["OMP_NUM_THREADS"] = str(threads)
        actor_cls = ray.remote(num_cpus=cfg.ray.learner_cpus, num_gpus=cfg.ray.learner_gpus)(FSDPLearner)
        learner_args = (model_path, cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, threads, cfg.steps, cfg.critic)
        self.actors = [
            actor_cls.options(runtime_env=env, max_restarts=0, **_in_bundle(placement_group, k)).remote(
                k, m, master, *learner_args, timeout_s=cfg.ray.sync_timeout_s
            )
            for k in range(m)
        ]
        self.actor = self.actors[0]  # RayLearner's attribute: rank 0
        ray.get([a.__ray_ready__.remote() for a in self.actors])  # the group formed, the model sharded

    def _all(self, method: str, *args):
        """Call `method` on every rank at once; rank 0's result."""
        return ray.get([getattr(a, method).remote(*args) for a in self.actors])[0]

    def warm_start(self, pairs, ws_cfg) -> dict:
        return self._all("warm_start", ray.put(pairs), ws_cfg)

    def update(self, batch: Batch, temperature: float) -> UpdateStats:
        return self._all("update", ray.put(batch), temperature)

    def weights(self):
        if isinstance(self.transport, Collective):  # a broadcast: every rank takes part
            return self.transport.publish(self.actors)
        bucket_mb = getattr(self.transport, "bucket_mb", None)
        if self.transport is not None and bucket_mb is not None:
            others = [a.gather_weights.remote(bucket_mb) for a in self.actors[1:]]
            handle = self.transport.publish(self.actors[0])  # rank 0 streams the buckets
            ray.get(others)
            return handle
        refs = [a.weights.remote() for a in self.actors]
        ray.get(refs[1:])  # the other ranks return None once their part of the gathers is done
        return refs[0]

    def sequence_logprobs(self, token_ids: list[int]) -> list[float]:
        return self._all("sequence_logprobs", token_ids)

    def save(self, path: str) -> str:
        return self._all("save", path)

    def save_checkpoint(self, path: str) -> None:
        return self._all("save_checkpoint", path)

    def load_checkpoint(self, path: str) -> None:
        return self._all("load_checkpoint", path)

    def shutdown(self) -> None:
        """Kill the ranks and free their placement group."""
        from ray.util.placement_group import remove_placement_group

        for a in self.actors:
            ray.kill(a)
        remove_placement_group(self.placement_group)
