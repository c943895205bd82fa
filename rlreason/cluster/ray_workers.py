"""Thin Ray adapters: the learner and the vLLM engine as actors, behind the same methods
the loop calls on in-process objects.

Weight transport here is the Ray object store: `RayLearner.weights()` returns an ObjectRef
that is never fetched by the driver; `RayEngine.load_weights(ref)` hands it to the engine
actor, and Ray resolves it there. Given a transport (rlreason.cluster.transport, as the
split placement does), `weights()` returns that transport's handle instead: buckets streamed
through the object store.
"""

from __future__ import annotations

import logging
import os

import ray

from rlreason.config import Config
from rlreason.types import Batch, Sample, UpdateStats

log = logging.getLogger(__name__)


def connect(cfg: Config) -> None:
    """Join RAY_ADDRESS (or ray.address) when given, else start a local cluster."""
    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": always a fresh local cluster, never a stale one found on disk
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True)


def _threads(cfg: Config) -> int:
    return cfg.ray.threads or os.cpu_count() or 1


def _actor_env(cfg: Config) -> dict:
    # Learner and engine take turns, so each may use every core of the node; Ray's
    # default for a num_cpus=1 actor is OMP_NUM_THREADS=1.
    threads = str(_threads(cfg))
    return {
        "env_vars": {
            "OMP_NUM_THREADS": threads,
            "TOKENIZERS_PARALLELISM": "false",
            # keep the console for the progress line; export VLLM_LOGGING_LEVEL=INFO to see vLLM's logs
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
            "HF_HUB_DISABLE_PROGRESS_BARS": os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        }
    }


class RayLearner:
    def __init__(self, cfg: Config, model_path: str, transport=None, options: dict | None = None):
        """`transport` (rlreason.cluster.transport): how weights() publishes; None = one ObjectRef
        of the whole state dict. `options`: extra actor options, e.g. a placement group."""
        from rlreason.learner.policy import Learner

        self.transport = transport
        actor_cls = ray.remote(num_cpus=cfg.ray.learner_cpus, num_gpus=cfg.ray.learner_gpus)(Learner)
        self.actor = actor_cls.options(runtime_env=_actor_env(cfg), **(options or {})).remote(
            model_path, cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, _threads(cfg), cfg.steps, cfg.critic
        )

    def warm_start(self, pairs, ws_cfg) -> dict:
        return ray.get(self.actor.warm_start.remote(pairs, ws_cfg))

    def update(self, batch: Batch, temperature: float) -> UpdateStats:
        return ray.get(self.actor.update.remote(batch, temperature))

    def weights(self):
        if self.transport is not None:
            return self.transport.publish(self.actor)  # e.g. Buckets: one ObjectRef per bucket
        return self.actor.weights.remote()

    def sequence_logprobs(self, token_ids: list[int]) -> list[float]:
        return ray.get(self.actor.sequence_logprobs.remote(token_ids))

    def save(self, path: str) -> str:
        return ray.get(self.actor.save.remote(path))

    def save_checkpoint(self, path: str) -> None:
        return ray.get(self.actor.save_checkpoint.remote(path))

    def load_checkpoint(self, path: str) -> None:
        return ray.get(self.actor.load_checkpoint.remote(path))


class RayEngine:
    def __init__(self, cfg: Config, model_path: str):
        from rlreason.rollout.vllm_engine import VLLMEngine, cpu_engine_env

        env = _actor_env(cfg)
        env["env_vars"].update(cpu_engine_env(_threads(cfg)))
        actor_cls = ray.remote(num_cpus=cfg.ray.rollout_cpus, num_gpus=cfg.ray.rollout_gpus)(VLLMEngine)
        self.actor = actor_cls.options(runtime_env=env).remote(
            model_path, cfg.engine_dtype, cfg.rollout.max_model_len, cfg.rollout.kv_cache_gib, cfg.rollout.seed, _threads(cfg),
            enforce_eager=cfg.rollout.enforce_eager,
        )

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed) -> list[list[Sample]]:
        return ray.get(self.actor.generate.remote(prompts, n, temperature, top_p, max_tokens, seed))

    def generate_stream(self, prompts, n, temperature, top_p, max_tokens, seed):
        """generate as a Ray streaming generator: [(prompt index, group), ...] as requests finish."""
        refs = self.actor.generate_stream.options(num_returns="streaming").remote(prompts, n, temperature, top_p, max_tokens, seed)
        for ref in refs:
            yield ray.get(ref)

    def load_weights(self, weights, version: int) -> int:
        return ray.get(self.actor.load_weights.remote(weights, version))

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return ray.get(self.actor.prompt_logprobs.remote(token_ids))
