"""Reward functions of strings: fn(prompt, completion, answer) -> float.

Built-ins are named in REWARDS; a user plugs in their own with a dotted path
'package.module:function'. This package never imports ray or vllm.
"""

from __future__ import annotations

import importlib
from typing import Callable

from rlreason.rewards.arithmetic import addition_reward
from rlreason.rewards.code import code_reward

RewardFn = Callable[[str, str, str], float]

REWARDS: dict[str, RewardFn] = {
    "addition": addition_reward,
    "code": code_reward,  # sandboxed unit tests; see rewards/code.py for the answer format and errors
}


class RewardError(RuntimeError):
    """A reward function raised or returned something that is not a number."""


def resolve_reward(name: str) -> RewardFn:
    """A REWARDS name or 'package.module:function'."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" not in name:
        raise ValueError(f"key 'reward': unknown reward {name!r}; use one of {sorted(REWARDS)} or 'package.module:function'")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"key 'reward': cannot import {name!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"key 'reward': {name!r} is not callable")
    return fn


def score(fn: RewardFn, prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
    """Apply fn to every row; a raise or a non-finite value names the row and stops the run."""
    out = []
    for i, (p, c, a) in enumerate(zip(prompts, completions, answers, strict=True)):
        try:
            r = float(fn(p, c, a))
        except Exception as e:
            raise RewardError(f"reward {getattr(fn, '__name__', fn)!r} raised on row {i} (prompt {p!r}): {e!r}") from e
        if r != r or r in (float("inf"), float("-inf")):
            raise RewardError(f"reward {getattr(fn, '__name__', fn)!r} returned {r} on row {i} (prompt {p!r})")
        out.append(r)
    return out
