"""Rollout engines: the protocol the loop sees, and its vLLM implementation (vllm_engine)."""

from __future__ import annotations

from typing import Any, Protocol

from rlreason.types import Sample


class Engine(Protocol):
    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int, seed: int
    ) -> list[list[Sample]]:
        """n samples per prompt, in prompt order, each with its sampling logprobs."""

    def load_weights(self, weights: Any, version: int) -> int:
        """Load new policy weights in place; return the version now served."""
