"""The built-in code task: write a Python function from a one-line spec, checked by unit tests
in the sandbox (the code reward).

    prompt:      f(a,b)=3a-2b+7>
    completion:  def f(a,b):
                  return 3*a-2*b+7

The answer carries assert-style tests (rlreason.rewards.code): the function is called on three
fixed input pairs in a sandbox and must return the spec's values. The warm-start teacher has a
blind spot: it leaves out the constant term with probability `error`, so an imitating model
fails those tests, and only the verifier (RL with the sandboxed reward) takes it past its teacher.
"""

from __future__ import annotations

import random

from rlreason.rewards.code import assert_answer
from rlreason.types import Problem

INPUTS = [(2, 5), (-3, 4), (10, -7)]


def _signed(c: int) -> str:
    return f"+{c}" if c >= 0 else f"-{-c}"


def make_problem(c1: int, c2: int, c3: int) -> Problem:
    spec = f"{c1}a{_signed(c2)}b{_signed(c3)}"
    test = "def check(candidate):\n" + "".join(f"    assert candidate({a}, {b}) == {c1 * a + c2 * b + c3}\n" for a, b in INPUTS)
    return Problem(prompt=f"f(a,b)={spec}>", answer=assert_answer(test, "f"), meta={"c": (c1, c2, c3)})


def solution(c1: int, c2: int, c3: int | None) -> str:
    """The function for the spec; c3=None leaves the constant out (the teacher's blind spot)."""
    body = f"{c1}*a{_signed(c2)}*b"
    if c3 is not None:
        body += _signed(c3)
    return f"def f(a,b):\n return {body}"


class FunctionTask:
    """f(a, b) = c1*a + c2*b + c3 with c1 in 1..9, c2 in -9..9 (not 0), c3 in -9..9 (not 0)."""

    def sample(self, rng: random.Random) -> Problem:
        c1 = rng.randint(1, 9)
        c2 = rng.choice([c for c in range(-9, 10) if c])
        c3 = rng.choice([c for c in range(-9, 10) if c])
        return make_problem(c1, c2, c3)

    def teacher(self, problem: Problem, rng: random.Random, error: float) -> str:
        c1, c2, c3 = problem.meta["c"]
        return solution(c1, c2, None if rng.random() < error else c3)
