"""Reward functions of strings: fn(prompt, completion, answer) -> float.

Built-ins are named in REWARDS; a user plugs in their own with a dotted path
'package.module:function'. `combine` weights several rewards into one;
`score_parallel` scores a batch with bounded concurrency and reports the rows
whose reward raised instead of stopping the run. This package never imports
ray or vllm.
"""

from __future__ import annotations

import importlib
import math
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

from rlreason.rewards.arithmetic import addition_reward
from rlreason.rewards.code import code_reward
from rlreason.rewards.countdown import answer_format_reward, countdown_reward
from rlreason.rewards.format_reward import think_format_reward
from rlreason.rewards.math_reward import make_math_reward, math_reward

RewardFn = Callable[[str, str, str], float]

REWARDS: dict[str, RewardFn] = {
    "addition": addition_reward,
    "answer_format": answer_format_reward,  # an <answer> with a computable equation (countdown's format term)
    "code": code_reward,  # sandboxed unit tests; see rewards/code.py for the answer format and errors
    "countdown": countdown_reward,  # TinyZero's countdown: each number once, reaches the target; see rewards/countdown.py
    "math": math_reward,  # last \boxed{} vs the gold with math-verify, hard time limit; see rewards/math_reward.py
    "math_gsm8k": make_math_reward("gsm8k"),  # the same, reading the completion's `#### N` line
    "think_format": think_format_reward,  # <think>...</think> then an answer; see rewards/format_reward.py
}


class RewardError(RuntimeError):
    """A reward function raised or returned something that is not a number."""


def resolve_reward(spec: str) -> RewardFn:
    """A REWARDS name, 'package.module:function', or a weighted sum of those:
    'math + 0.1*think_format' (a term without a weight has weight 1)."""
    terms = [t.strip() for t in spec.split("+")]
    if len(terms) == 1 and "*" not in spec:
        return _resolve_one(spec.strip())
    parts = []
    for term in terms:
        weight, star, name = term.partition("*")
        if not star:
            weight, name = "1", term
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"key 'reward': term {term!r} of {spec!r} is not 'weight*name'") from None
        parts.append((_resolve_one(name.strip()), w))
    return combine(parts)


def reward_names(spec: str) -> list[str]:
    """The reward names a spec uses: 'math + 0.1*think_format' -> ['math', 'think_format']."""
    return [t.split("*")[-1].strip() for t in spec.split("+")]


def prepare_rewards(spec: str, unsafe_code: bool = False, threads: int | None = None) -> None:
    """Start-up checks before any work: a code reward probes its sandbox and refuses to run
    without isolation unless unsafe_code (then it warns loudly). `threads`, the rows that will be
    scored at once, sizes the math verifiers' worker pools to match, so that no math check waits
    for a worker (each call's time limit counts that wait)."""
    if threads:
        from rlreason.rewards.math_reward import set_default_workers

        set_default_workers(threads)
    if "code" in reward_names(spec):
        from rlreason.rewards import code

        code.configure(unsafe=unsafe_code)


def _resolve_one(name: str) -> RewardFn:
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


def _name(fn) -> str:
    return getattr(fn, "__name__", repr(fn))


@dataclass(frozen=True)
class Combined:
    """sum(weight * fn(prompt, completion, answer)); built by `combine`. A part that raises makes
    the whole row raise (score_parallel marks it)."""

    parts: tuple[tuple[RewardFn, float], ...]

    def __call__(self, prompt: str, completion: str, answer: str) -> float:
        return sum(w * float(fn(prompt, completion, answer)) for fn, w in self.parts)

    @property
    def __name__(self) -> str:
        return " + ".join(f"{w:g}*{_name(fn)}" for fn, w in self.parts)


def combine(rewards: list[tuple[RewardFn, float]]) -> RewardFn:
    """A weighted sum of rewards, e.g. combine([(math_reward, 1.0), (think_format_reward, 0.1)])."""
    parts = tuple((fn, float(w)) for fn, w in rewards)
    if not parts:
        raise ValueError("combine: no rewards given")
    for fn, w in parts:
        if not callable(fn) or not math.isfinite(w):
            raise ValueError(f"combine: need (callable, finite weight) pairs, got ({fn!r}, {w})")
    return Combined(parts)


@dataclass
class Scores:
    """Per-row rewards from score_parallel. A row whose reward raised, returned a non-number or
    missed the deadline scores 0.0 and says why in errors; the loop logs n_errors."""

    values: list[float]  # (N,)
    errors: list[str | None]  # (N,) None where the row scored normally

    @property
    def n_errors(self) -> int:
        return sum(e is not None for e in self.errors)


def _score_row(fn: RewardFn, prompt: str, completion: str, answer: str) -> tuple[float, str | None]:
    try:
        r = float(fn(prompt, completion, answer))
    except Exception as e:  # noqa: BLE001  one row's failure is data, not a crash
        return 0.0, f"raised {e!r}"[:500]
    if not math.isfinite(r):
        return 0.0, f"returned {r}"
    return r, None


class ScoringPool:
    """Rows scored as they arrive (streamed generation): submit(key, prompt, completion, answer)
    as each row is sampled, then scores(keys) waits for those rows, in that order. Like
    score_parallel, a row whose reward raises scores 0.0 with the reason in Scores.errors."""

    def __init__(self, fn: RewardFn, max_workers: int = 8):
        self.fn, self._futures = fn, {}
        self._ex = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="reward")

    def submit(self, key, prompt: str, completion: str, answer: str) -> None:
        self._futures[key] = self._ex.submit(_score_row, self.fn, prompt, completion, answer)

    def scores(self, keys: list) -> Scores:
        try:
            values, errors = zip(*(self._futures[k].result() for k in keys)) if keys else ((), ())
        finally:
            self._ex.shutdown(wait=False, cancel_futures=True)
        return Scores(list(values), list(errors))


def score_parallel(
    fn: RewardFn,
    prompts: list[str],
    completions: list[str],
    answers: list[str],
    max_workers: int = 8,
    timeout_s: float | None = None,
) -> Scores:
    """Apply fn to every row, max_workers rows at a time (threads), never raising for one row.

    Rows that raise or return NaN/inf score 0.0 with the reason in Scores.errors. With timeout_s,
    rows still running when it expires score 0.0 as 'timed out' and the call returns without
    them (their threads finish in the background: Python cannot kill a thread, so a reward that
    can hang must bound itself, as math_reward and code_reward do with killable processes).
    """
    rows = list(zip(prompts, completions, answers, strict=True))
    if not rows:
        return Scores([], [])
    ex = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(rows))), thread_name_prefix="reward")
    try:
        futures = [ex.submit(_score_row, fn, p, c, a) for p, c, a in rows]
        wait(futures, timeout=timeout_s)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    values, errors = [], []
    for f in futures:
        v, e = f.result() if f.done() and not f.cancelled() else (0.0, f"timed out after {timeout_s} s")
        values.append(v)
        errors.append(e)
    return Scores(values, errors)
