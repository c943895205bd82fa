"""The weight syncs of a Ray run, one class per transport (the interface: rlreason.sync).

- `ColocatedSync`: the learner and the engine live in one actor; the engine loads the
  learner's state dict there, and nothing crosses a process boundary.
- `ObjectStoreSync`: learner rank 0 streams its weights as buckets of about ray.sync_bucket_mb
  (one ObjectRef each; the other FSDP ranks take part in each gather); every rollout worker
  fetches them one at a time while vLLM loads, so none holds a second full copy.
- `CollectiveSync`: learner rank 0 broadcasts to every engine with vLLM's weight-transfer API:
  NCCL on GPU clusters, gloo on CPU nodes (rlreason.weight_transfer). The group is opened
  once, here; each push is one round, within ray.sync_timeout_s, after which every worker
  serves the new version.

rlreason.cluster.placement picks one by ray.placement and ray.transport. A new transport is
one more subclass of WeightSync here, and one more branch there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import ray
import torch

from rlreason.cluster.actors import SyncTimeoutError
from rlreason.sync import WeightSync

GROUP_FORM_TIMEOUT_S = 300.0  # the least time CollectiveSync gives its group to form


class ColocatedSync(WeightSync):
    """`actor`: the colocated actor (rlreason.cluster.colocated.ColocatedWorker)."""

    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def _push(self, version: int) -> int:
        return ray.get(self.actor.sync.remote(version))


@dataclass
class Buckets:
    """A published set of weights in the object store: one ObjectRef per bucket of (name, tensor)
    pairs, in state-dict order. Iterating it (on an engine) fetches one bucket at a time.
    The refs are nested in a list, so Ray passes them to an actor as refs, not values."""

    refs: list = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for ref in self.refs:
            bucket = ray.get(ref)
            yield from bucket
            del bucket  # let this bucket go before the next one arrives

    def __len__(self) -> int:
        return len(self.refs)


class ObjectStoreSync(WeightSync):
    """`learner_ranks`: the learner's actors (rank 0 first); `pool`: the RolloutPool."""

    def __init__(self, learner_ranks: list, pool, bucket_mb: float):
        super().__init__()
        self.ranks, self.pool, self.bucket_mb = learner_ranks, pool, bucket_mb

    def publish(self) -> Buckets:
        """The learner's current weights as Buckets. A streaming generator: the refs come back as
        rank 0 yields buckets; the driver never fetches the tensors. The refs live as long as the
        handle (the pool keeps the last one, for a replaced worker)."""
        others = [r.gather_weights.remote(self.bucket_mb) for r in self.ranks[1:]]  # their share of each gather
        buckets = Buckets(list(self.ranks[0].weight_buckets.options(num_returns="streaming").remote(self.bucket_mb)))
        ray.get(others)
        return buckets

    def _push(self, version: int) -> int:
        return self.pool.load_weights(self.publish(), version)


class CollectiveSync(WeightSync):
    """Opens the broadcast group of the learner ranks and every worker of `pool` ('nccl' or 'gloo')."""

    def __init__(self, learner_ranks: list, pool, backend: str, timeout_s: float):
        super().__init__()
        self.ranks, self.pool, self.backend, self.timeout_s = learner_ranks, pool, backend, timeout_s
        ray.get([a.__ray_ready__.remote() for a in [*self.ranks, *pool.workers]])  # started: their start is not the group's time
        # The group's own timeout is twice the driver's deadline, so that a hung round surfaces
        # here as SyncTimeoutError rather than as a gloo/NCCL error inside an actor. Forming the
        # group is not a sync: the learner's first import of vLLM's weight-transfer modules alone
        # can take longer than a short ray.sync_timeout_s on a loaded machine.
        ray.get([r.open_weight_sender.remote(backend, pool.workers, rank, 2 * timeout_s) for rank, r in enumerate(self.ranks)],
                timeout=max(timeout_s, GROUP_FORM_TIMEOUT_S))

    def _push(self, version: int) -> int:
        from ray.exceptions import GetTimeoutError

        try:
            ray.get([r.send_weights.remote() for r in self.ranks], timeout=self.timeout_s)  # every rank gathers, rank 0 sends
        except GetTimeoutError as e:
            raise SyncTimeoutError(
                f"the {self.backend} weight broadcast did not finish within ray.sync_timeout_s={self.timeout_s} s; "
                "a rollout worker is hung or gone (raise ray.sync_timeout_s if a sync of this model is that slow)"
            ) from e
        return self.pool.serve_version(version)
