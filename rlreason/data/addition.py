"""The built-in verifiable reasoning task: n-digit addition with a per-column carry scratchpad.

    prompt:      347+586>
    completion:  7+6+0=13;4+8+1=13;3+5+1=9;\boxed{933}

Each column is written as `da+db+carry_in=sum;` from the ones column up, then the answer
in `\boxed{}`, as math data sets write it, so the math reward (math-verify) checks it.
The answer takes the last digit of each column sum plus the final carry, so a wrong carry
propagates to a wrong answer: the scratchpad is internally consistent.

The warm-start teacher has a systematic blind spot: at an inner column whose true carry
is 1 it writes 0 with probability `carry_drop`. With carry_drop > 0.5 that error is the
majority habit, so greedy decoding of an imitating model inherits it, and only a
verifier (RL) can take the model past its teacher.
"""

from __future__ import annotations

import random

from rlreason.types import Problem


MAX_DIGITS = 30  # the hardest difficulty a curriculum may draw (task.curriculum.top caps it lower)


def make_problem(a: int, b: int, digits: int | None = None) -> Problem:
    meta = {"a": a, "b": b} if digits is None else {"a": a, "b": b, "difficulty": digits}
    return Problem(prompt=f"{a}+{b}>", answer=str(a + b), meta=meta)


def scratchpad(a: int, b: int, digits: int, carry_drop: float = 0.0, rng: random.Random | None = None) -> str:
    """The teacher's completion for a+b. carry_drop > 0 needs an rng."""
    da = [int(c) for c in str(a).zfill(digits)[::-1]]
    db = [int(c) for c in str(b).zfill(digits)[::-1]]
    parts, out_digits, carry = [], [], 0
    for i in range(digits):
        if i > 0 and carry == 1 and carry_drop > 0 and rng.random() < carry_drop:
            carry = 0  # the blind spot
        s = da[i] + db[i] + carry
        parts.append(f"{da[i]}+{db[i]}+{carry}={s};")
        out_digits.append(s % 10)
        carry = s // 10
    answer = "".join(map(str, out_digits[::-1]))
    if carry:
        answer = "1" + answer
    answer = answer.lstrip("0") or "0"
    return "".join(parts) + "\\boxed{" + answer + "}"


def _operands(rng: random.Random, digits: int) -> tuple[int, int]:
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    return rng.randint(lo, hi), rng.randint(lo, hi)


class AdditionTask:
    """Problems of `digits`-digit addition; the teacher drops inner carries with probability `error`."""

    def __init__(self, digits: int = 3):
        self.digits = digits

    def sample(self, rng: random.Random) -> Problem:
        return make_problem(*_operands(rng, self.digits), self.digits)

    def difficulties(self) -> list[int]:
        """What a curriculum can draw: the digit counts (rlreason.data.curriculum)."""
        return list(range(1, MAX_DIGITS + 1))

    def at(self, difficulty: int) -> AdditionTask:
        """The task restricted to one difficulty: `difficulty`-digit sums."""
        return AdditionTask(int(difficulty))

    def teacher(self, problem: Problem, rng: random.Random, error: float) -> str:
        return scratchpad(problem.meta["a"], problem.meta["b"], self.digits, error, rng)
