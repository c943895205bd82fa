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
- `NcclBroadcast`: GPU clusters. UNVERIFIED: written to the interface, never run here (no
  GPU); see its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

import torch


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


@dataclass
class NcclBroadcast:
    """NCCL broadcast from learner rank 0 to every engine, for GPU clusters. UNVERIFIED: no GPU
    was available where this was written; it is the interface's shape for that transport, and
    `publish` refuses to run rather than pretend.

    The plan (as OpenRLHF / verl do it): at start-up, the learner's rank 0 and every engine
    worker join one `torch.distributed` process group (NCCL, world = 1 + engines, a TCP
    rendezvous on rank 0's address). A sync then sends only metadata through Ray (names,
    shapes, dtypes, per bucket) while the learner broadcasts each bucket's flattened tensor
    from rank 0, and each engine's handle iterates by receiving the same broadcast into a
    fresh GPU buffer and yielding views of it to vLLM's reload_weights."""

    bucket_mb: float = 256.0
    name: str = "nccl"

    def publish(self, learner):
        raise NotImplementedError(
            "ray transport 'nccl' is not implemented: it needs GPUs and was never run here; "
            "use the object-store transport (the default for ray.placement=split)"
        )


def make_transport(placement: str, bucket_mb: float) -> Transport:
    """The transport a placement uses: in-process when colocated, the object store when split."""
    return InProcess() if placement == "colocated" else ObjectStore(bucket_mb)
