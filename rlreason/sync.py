"""Weight sync: putting the learner's new weights into the engines, as one object.

The loop calls one method, `sync.push(version)`, after every update, in synchronous and async
mode alike; it does not know how the weights travel. Placement builds the sync beside the
engine and the learner (rlreason.cluster.placement.build_placement), one class per transport:

- `DirectSync` (here): learner and engine are plain objects in one process; the engine loads
  the learner's state dict (unit tests, local use).
- rlreason.cluster.sync: `ColocatedSync` (the learner and the engine share one Ray actor: the
  state dict never leaves it), `ObjectStoreSync` (buckets through Ray's object store) and
  `CollectiveSync` (an NCCL/gloo broadcast through vLLM's weight-transfer API).

A new transport is a subclass that implements `_push(version) -> version served`.

Async mode. The rollout thread may be sampling when the main thread pushes: the weights must
not change under a generation, and an in-process engine is not thread-safe. Every engine call
of the loop goes through `sync.serialized(engine)`, which holds the sync's lock, and `push`
takes the same lock; the time it waited for it (the generation in flight to finish) is
reported apart from the transfer (`Pushed.wait_s`, the loop's timing/sync_wait).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Pushed:
    version: int  # the policy version every engine now serves
    wait_s: float  # seconds waiting for the engine's call in flight to end (0 when none was)


class WeightSync:
    """One push method; subclasses move the bytes (`_push`)."""

    def __init__(self):
        self.lock = threading.Lock()

    def push(self, version: int) -> Pushed:
        """Put the learner's current weights into every engine, which then serves `version`."""
        wait = 0.0
        if not self.lock.acquire(blocking=False):  # an engine call is in flight: wait for its end
            t0 = time.perf_counter()
            self.lock.acquire()
            wait = time.perf_counter() - t0
        try:
            return Pushed(self._push(version), wait)
        finally:
            self.lock.release()

    def _push(self, version: int) -> int:
        raise NotImplementedError

    def serialized(self, engine) -> "Serialized":
        """`engine`, every call of which holds this sync's lock: one call at a time, never during a push."""
        return Serialized(engine, self.lock)


class DirectSync(WeightSync):
    """In one process: `engine.load_weights(learner.weights(), version)`."""

    def __init__(self, learner, engine):
        super().__init__()
        self.learner, self.engine = learner, engine

    def _push(self, version: int) -> int:
        return self.engine.load_weights(self.learner.weights(), version)


class Serialized:
    """An engine behind a lock (see WeightSync.serialized). Streams only when the engine does."""

    def __init__(self, engine, lock: threading.Lock):
        self._engine, self._lock = engine, lock
        if hasattr(engine, "generate_stream"):
            self.generate_stream = self._generate_stream

    def generate(self, *args, **kwargs):
        with self._lock:
            return self._engine.generate(*args, **kwargs)

    def _generate_stream(self, *args, **kwargs):
        with self._lock:
            yield from self._engine.generate_stream(*args, **kwargs)

    def __getattr__(self, name):  # read-only attributes such as worker_restarts
        return getattr(self._engine, name)
