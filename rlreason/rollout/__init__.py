"""Rollout engines: the protocol the loop sees, and its vLLM implementation (vllm_engine).

Weights come in through the sync objects (rlreason.sync, rlreason.cluster.sync), not through
the loop: an engine the loop sees only samples."""

from __future__ import annotations

from typing import Protocol

from rlreason.types import Sample


class Engine(Protocol):
    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int, seed: int
    ) -> list[list[Sample]]:
        """n samples per prompt, in prompt order, each with its sampling logprobs and the policy
        version that produced it. An engine may also have generate_stream (same arguments),
        yielding [(prompt index, group), ...] as requests finish."""
