"""Weight-sync transports: how the learner's weights reach the rollout engines.

One interface, one small class per way of moving bytes. `publish(learner)` runs on the
driver after an update and returns a *handle*; the handle is what the loop passes to
`engine.load_weights`, and on the engine side it is simply an iterable of (name, tensor)
that `VLLMEngine.load_weights` feeds to vLLM's `reload_weights`. So an engine never needs
to know which transport it is fed by, and a lazy handle streams bucket by bucket:

- `InProcess`: colocated placement, the learner and the engine in one process; the handle
  is the state dict itself.
- `ObjectStore`: the Ray object store, for CPU and small models. The learner streams its
  weights as buckets of about `bucket_mb` (one ObjectRef each); every engine fetches them
  one at a time while vLLM loads, so it never holds a second full copy.
- `Collective`: learner rank 0 broadcasts to every engine with vLLM's weight-transfer API:
  NCCL on GPU clusters, gloo on CPU nodes (rlreason.cluster.collective). It delivers during
  `publish`; its handle, `Delivered`, only tells each engine to move its version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

import torch



GROUP_FORM_TIMEOUT_S = 300.0  # the least time Collective.connect gives the group to form

class Transport(Protocol):
    name: str

    def publish(self, learner: Any) -> Iterable[tuple[str, torch.Tensor]]:
        """Send the learner's current weights; return the handle each engine's load_weights iterates."""


@dataclass
class InProcess:
    """Colocated: the engine loads the learner's state dict directly (no copy leaves the process)."""

    name: str = "in_process"

    def publish(self, learner) -> dict[str, torch.Tensor]:
        return learner.weights()


@dataclass
class Buckets:
    """A published set of weights in the object store: one ObjectRef per bucket of (name, tensor)
    pairs, in state-dict order. Iterating it (on an engine) fetches one bucket at a time.
    The refs are nested in a list, so Ray passes them to an actor as refs, not values."""

    refs: list = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        import ray

        for ref in self.refs:
            bucket = ray.get(ref)
            yield from bucket
            del bucket  # let this bucket go before the next one arrives

    def __len__(self) -> int:
        return len(self.refs)


@dataclass
class ObjectStore:
    """The Ray object store, bucket by bucket. `learner` is the Learner actor handle."""

    bucket_mb: float = 64.0
    name: str = "object_store"

    def publish(self, learner) -> Buckets:
        # A streaming generator: the refs come back as the learner yields buckets; the driver
        # never fetches the tensors. The caller owns the refs: they live as long as the handle.
        gen = learner.weight_buckets.options(num_returns="streaming").remote(self.bucket_mb)
        return Buckets(list(gen))


COLLECTIVE_BACKENDS = ("nccl", "gloo")  # the ray.transport values that mean a Collective


@dataclass(frozen=True)
class Delivered:
    """The handle of a transport that has already put the weights into every engine (a
    collective broadcast): an engine's load_weights only moves its version."""


@dataclass
class Collective:
    """Broadcast from learner rank 0 to every engine through vLLM's weight-transfer API
    (rlreason.cluster.collective): 'nccl' on GPU clusters, 'gloo' on CPU nodes. `connect` opens
    the group once (learner ranks and engines); each `publish` is one round, within `timeout_s`."""

    backend: str = "nccl"
    timeout_s: float = 600.0
    name: str = "collective"

    def connect(self, learner_ranks: list, engines: list) -> None:
        import ray

        ray.get([a.__ray_ready__.remote() for a in [*learner_ranks, *engines]])  # started: their start is not the sync's time
        # the group's own timeout is twice the driver's deadline, so that a hung round surfaces
        # here as SyncTimeoutError (publish) rather than as a gloo/NCCL error inside an actor
        # forming the group is not a sync: the learner's first import of vLLM's weight-transfer
        # modules alone can take longer than a short ray.sync_timeout_s on a loaded machine
        ray.get([r.open_weight_sender.remote(self.backend, engines, rank, 2 * self.timeout_s)
                 for rank, r in enumerate(learner_ranks)], timeout=max(self.timeout_s, GROUP_FORM_TIMEOUT_S))

    def publish(self, learner) -> Delivered:
        """`learner`: the learner actor, or every rank of a learner group (each takes part)."""
        import ray
        from ray.exceptions import GetTimeoutError

        ranks = learner if isinstance(learner, list) else [learner]
        try:
            ray.get([r.send_weights.remote() for r in ranks], timeout=self.timeout_s)
        except GetTimeoutError as e:
            from rlreason.cluster.pool import SyncTimeoutError

            raise SyncTimeoutError(
                f"the {self.backend} weight broadcast did not finish within ray.sync_timeout_s={self.timeout_s} s; "
                "a rollout worker is hung or gone (raise ray.sync_timeout_s if a sync of this model is that slow)"
            ) from e
        return Delivered()


def make_transport(placement: str, transport: str, bucket_mb: float, timeout_s: float) -> Transport:
    """ray.transport for ray.placement: 'auto' is in-process when colocated, the object store when split."""
    if placement == "colocated":
        return InProcess()
    if transport in COLLECTIVE_BACKENDS:
        return Collective(transport, timeout_s)
    return ObjectStore(bucket_mb)
