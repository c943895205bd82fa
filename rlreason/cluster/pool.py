"""Split placement: N vLLM rollout workers and the learner, each in its own placement group.

`RolloutPool` has the methods of `RayEngine` (generate, load_weights, prompt_logprobs), so
the loop cannot tell one engine from many:

- generate shards the prompts contiguously across the workers; shard [s, e) runs with seed
  `seed + s * n`, which is the seed a single engine gives those prompts (request i gets
  seed + i * n), so N workers return exactly the samples of one engine, in prompt order.
- load_weights hands every worker the transport's handle (rlreason.cluster.transport: buckets
  in the object store) and checks that all of them report the same policy version, within
  ray.sync_timeout_s.
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

from rlreason.cluster.ray_workers import RayLearner, _actor_env
from rlreason.cluster.transport import COLLECTIVE_BACKENDS, Collective, make_transport
from rlreason.config import Config
from rlreason.rollout.vllm_engine import VLLMEngine, cpu_engine_env
from rlreason.types import Sample

log = logging.getLogger(__name__)


class SyncTimeoutError(TimeoutError):
    pass


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

    def __init__(self, index: int, threads: int, fault_sync_sleep_s: float, *engine_args, **engine_kwargs):
        if not os.environ.get("RLREASON_NO_BIND"):
            # Workers on one node generate at the same time: give each its own cores rather than
            # two OpenMP pools fighting over the same ones (vLLM-CPU pins its threads).
            cores = os.cpu_count() or 1
            first = (index * threads) % cores
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"{first}-{min(first + threads, cores) - 1}"
        self.fault_sync_sleep_s = fault_sync_sleep_s
        super().__init__(*engine_args, **engine_kwargs)

    def pid(self) -> int:
        return os.getpid()

    def served_version(self) -> int:
        return self.version

    def sync(self, weights, version: int) -> int:
        if self.fault_sync_sleep_s:
            time.sleep(self.fault_sync_sleep_s)
        return self.load_weights(weights, version)

    def update_weights(self, update_info: dict) -> None:
        if self.fault_sync_sleep_s:  # the collective transport's receive (rlreason.cluster.collective)
            time.sleep(self.fault_sync_sleep_s)
        return super().update_weights(update_info)


def _placement_group(cfg: Config, bundles: list[dict], name: str):
    """A PACK placement group, ready, or a clear error naming the keys that size it."""
    from ray.util.placement_group import placement_group, remove_placement_group

    hint = ("lower ray.rollout_workers or ray.rollout_cpus / ray.learner_cpus / *_gpus, or give the cluster more "
            "(ray.num_cpus: logical CPUs of a local cluster)")
    local = not (cfg.ray.address or os.environ.get("RAY_ADDRESS"))
    total = ray.cluster_resources()
    short = {r: n for r, n in _sum(bundles).items() if n > total.get(r, 0)}
    if local and short:  # a local cluster never grows: say so now rather than after the timeout
        raise RuntimeError(f"{name} needs {short} but this local Ray cluster has {total}; {hint}")
    pg = placement_group(bundles, strategy="PACK")  # unnamed: names are cluster-wide, pools are not
    ready, _ = ray.wait([pg.ready()], timeout=cfg.ray.placement_timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise RuntimeError(
            f"the Ray cluster could not place {name} ({bundles}) within ray.placement_timeout_s="
            f"{cfg.ray.placement_timeout_s} s; available: {ray.available_resources()}; {hint}"
        )
    return pg


def _sum(bundles: list[dict]) -> dict:
    out: dict = {}
    for b in bundles:
        for r, n in b.items():
            out[r] = out.get(r, 0) + n
    return out


def _bundle(cpus: float, gpus: float) -> dict:
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


def _in_bundle(pg, index: int = 0) -> dict:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}


class RolloutPool:
    """N EngineWorker actors, one per bundle of one placement group; see the module docstring."""

    def __init__(self, cfg: Config, model_path: str, fault_sync_sleep_s: float = 0.0):
        cfg.ray.check()
        self.cfg, self.model_path, self.fault_sync_sleep_s = cfg, model_path, fault_sync_sleep_s
        n = cfg.ray.rollout_workers
        # Each worker's share of the node's cores; set ray.threads when workers sit on their own nodes.
        self.threads = cfg.ray.threads or max(1, (os.cpu_count() or 1) // n)
        self.pg = _placement_group(cfg, [_bundle(cfg.ray.rollout_cpus, cfg.ray.rollout_gpus)] * n, "the rollout pool")
        self.version = 0  # the policy version every worker serves
        self._weights = None  # the last handle loaded: what a replacement worker gets again
        self.restarts = [0] * n  # per worker
        self.events: list[dict] = []  # one per replacement: {'worker', 'during', 'error'}
        self.workers = [self._start(k) for k in range(n)]

    @property
    def worker_restarts(self) -> int:
        return sum(self.restarts)

    def _start(self, k: int):
        cfg = self.cfg
        env = _actor_env(cfg)
        env["env_vars"].update(cpu_engine_env(self.threads))
        actor_cls = ray.remote(num_cpus=cfg.ray.rollout_cpus, num_gpus=cfg.ray.rollout_gpus)(EngineWorker)
        return actor_cls.options(runtime_env=env, max_restarts=0, **_in_bundle(self.pg, k)).remote(
            k, self.threads, self.fault_sync_sleep_s,
            self.model_path, cfg.engine_dtype, cfg.rollout.max_model_len, cfg.rollout.kv_cache_gib, cfg.rollout.seed, self.threads,
            cfg.ray.transport if cfg.ray.transport in COLLECTIVE_BACKENDS else None, enforce_eager=cfg.rollout.enforce_eager,
        )

    # ---- the engine interface ----
    def generate(self, prompts, n, temperature, top_p, max_tokens, seed) -> list[list[Sample]]:
        bounds = dict(enumerate(split_shards(len(prompts), len(self.workers))))
        bounds = {k: (s, e) for k, (s, e) in bounds.items() if e > s}

        def submit(k):
            s, e = bounds[k]  # seed + s * n: the seeds one engine would give prompts s..e-1
            return self.workers[k].generate.remote(prompts[s:e], n, temperature, top_p, max_tokens, seed + s * n)

        results = self._gather({k: submit(k) for k in bounds}, "generate", submit)
        groups = [g for k in sorted(bounds) for g in results[k]]
        stale = {s.version for g in groups for s in g} - {self.version}
        if stale:
            raise VersionMismatchError(f"samples of policy versions {sorted(stale)} in a batch that should all be version {self.version}")
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
            stale = {s.version for _, g in out for s in g} - {self.version}
            if stale:
                raise VersionMismatchError(f"samples of policy versions {sorted(stale)} in a batch that should all be version {self.version}")
            sent.update(i for i, _ in out)
            if out:
                yield out

    def load_weights(self, weights, version: int) -> int:
        """Every worker loads `weights` (a transport handle); all must then serve `version`."""
        self._weights, self.version = weights, version
        versions = dict(sorted(self._sync(range(len(self.workers))).items()))  # by worker, not by finish order
        if set(versions.values()) != {version}:
            raise VersionMismatchError(f"after the sync to version {version} the rollout workers serve {versions} (worker: version)")
        return version

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return self._gather({0: self.workers[0].prompt_logprobs.remote(token_ids)}, "prompt_logprobs",
                            lambda k: self.workers[k].prompt_logprobs.remote(token_ids))[0]

    # ---- workers ----
    def pids(self) -> list[int]:
        return ray.get([w.pid.remote() for w in self.workers])

    def served_versions(self) -> list[int]:
        return ray.get([w.served_version.remote() for w in self.workers])

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for w in self.workers:
            ray.kill(w)
        remove_placement_group(self.pg)

    def _sync(self, ks) -> dict[int, int]:
        """Load the current weights into workers `ks`; returns {worker: version served}."""
        refs = {k: self.workers[k].sync.remote(self._weights, self.version) for k in ks}
        # a replacement was already synced by _replace: just ask what it serves
        return self._gather(refs, "sync", lambda k: self.workers[k].served_version.remote(), timeout=self.cfg.ray.sync_timeout_s)

    def _gather(self, refs: dict, during: str, resubmit, timeout: float | None = None) -> dict:
        """{worker: result} of one call per worker. A worker that died is replaced and
        `resubmit(worker)` re-runs its call; past `timeout` seconds, SyncTimeoutError."""
        pending = {ref: k for k, ref in refs.items()}
        results = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            if not ready:
                hung = sorted(pending.values())
                raise SyncTimeoutError(
                    f"weight sync to policy version {self.version} did not finish within ray.sync_timeout_s="
                    f"{timeout} s on rollout worker(s) {hung} of {len(self.workers)}; raise ray.sync_timeout_s if a "
                    f"sync of this model is that slow, else that worker is hung"
                )
            k = pending.pop(ready[0])
            try:
                results[k] = ray.get(ready[0])
            except RayActorError as e:
                self._replace(k, during, e)
                pending[resubmit(k)] = k
                if deadline is not None:
                    deadline = time.monotonic() + timeout  # the replacement's start is not the sync's time
        return results

    def _replace(self, k: int, during: str, error: Exception) -> None:
        """Start a new worker k in its bundle and give it the current weights and version."""
        cap = self.cfg.ray.max_worker_restarts
        if self.restarts[k] >= cap:
            raise WorkerRestartsExceeded(
                f"rollout worker {k} died during {during} after {self.restarts[k]} restarts "
                f"(ray.max_worker_restarts={cap}); raise that key, or look for why it dies: {error}"
            )
        if self.cfg.ray.transport in COLLECTIVE_BACKENDS:  # even before the first sync: the group is formed
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
            self._sync([k])


def build_split(cfg: Config, model_path: str) -> tuple[RolloutPool, RayLearner]:
    """The split layout: the learner alone in one placement group, the rollout pool in another;
    weights through ray.transport (the object store in buckets of ray.sync_bucket_mb, or a
    broadcast group of the learner and every engine, opened here)."""
    cfg.ray.check()
    pg = _placement_group(cfg, [_bundle(cfg.ray.learner_cpus, cfg.ray.learner_gpus)] * cfg.ray.learner_workers, "the learner")
    transport = make_transport("split", cfg.ray.transport, cfg.ray.sync_bucket_mb, cfg.ray.sync_timeout_s)
    if cfg.ray.learner_workers > 1:  # FSDP2 ranks, one bundle each (rlreason.cluster.learner_group)
        from rlreason.cluster.learner_group import LearnerGroup

        learner = LearnerGroup(cfg, model_path, transport, pg)
        ranks = learner.actors
    else:
        learner = RayLearner(cfg, model_path, transport=transport, options=_in_bundle(pg))
        learner.placement_group = pg
        ranks = [learner.actor]
    pool = RolloutPool(cfg, model_path)
    if isinstance(transport, Collective):
        transport.connect(ranks, pool.workers)
    return pool, learner


def build_placement(cfg: Config, model_path: str):
    """(engine, learner) for ray.placement."""
    cfg.ray.check()
    if cfg.ray.placement == "colocated":
        from rlreason.cluster.colocated import build_colocated

        return build_colocated(cfg, model_path)
    return build_split(cfg, model_path)
