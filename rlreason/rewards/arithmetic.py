"""Exact-answer reward for the built-in addition task (a fast alternative to the math reward)."""

from __future__ import annotations

import re

_FINAL = re.compile(r"\\boxed\{(\d+)\}\s*$")


def addition_reward(prompt: str, completion: str, answer: str) -> float:
    """1.0 when the completion ends in `\\boxed{N}` with N equal to the gold answer, else 0.0.

    Only the final answer is checked: the scratchpad is the model's own business.
    """
    m = _FINAL.search(completion)
    return 1.0 if m is not None and m.group(1) == answer.strip() else 0.0
