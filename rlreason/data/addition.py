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


MAX_DIGITS = 26  # the hardest difficulty a curriculum may draw (task.curriculum.top caps it lower): one hint letter a digit
HINTS = "abcdefghijklmnopqrstuvwxyz"


def hinted(n: int, digits: int, offset: int) -> str:
    """n with an index hint before each digit: letters offset, offset + 1, ... from the most
    significant digit down (Zhou et al. 2023): 347 at offset 2 -> 'c3d4e7'."""
    return "".join(HINTS[offset + i] + c for i, c in enumerate(str(n).zfill(digits)))


def make_problem(a: int, b: int, digits: int | None = None, hint_offset: int | None = None) -> Problem:
    meta = {"a": a, "b": b} if digits is None else {"a": a, "b": b, "difficulty": digits}
    if hint_offset is None:
        return Problem(prompt=f"{a}+{b}>", answer=str(a + b), meta=meta)
    meta["hint_offset"] = hint_offset
    return Problem(prompt=f"{hinted(a, digits, hint_offset)}+{hinted(b, digits, hint_offset)}>", answer=str(a + b), meta=meta)


def scratchpad(a: int, b: int, digits: int, carry_drop: float = 0.0, rng: random.Random | None = None, hint_offset: int | None = None) -> str:
    """The teacher's completion for a+b. carry_drop > 0 needs an rng. With index hints, each
    column starts with its digits' letter: 'e7+6+0=13;'."""
    da = [int(c) for c in str(a).zfill(digits)[::-1]]
    db = [int(c) for c in str(b).zfill(digits)[::-1]]
    parts, out_digits, carry = [], [], 0
    for i in range(digits):
        if i > 0 and carry == 1 and carry_drop > 0 and rng.random() < carry_drop:
            carry = 0  # the blind spot
        s = da[i] + db[i] + carry
        hint = "" if hint_offset is None else HINTS[hint_offset + digits - 1 - i]
        parts.append(f"{hint}{da[i]}+{db[i]}+{carry}={s};")
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
    """Problems of `digits`-digit addition; the teacher drops inner carries with probability `error`.
    hints: index hints (a letter before each digit, at a random offset in the alphabet), so that
    a column's digits are found by their letter, not by their distance (task.hints)."""

    def __init__(self, digits: int = 3, hints: bool = False):
        self.digits, self.hints = digits, hints

    def sample(self, rng: random.Random) -> Problem:
        a, b = _operands(rng, self.digits)
        return make_problem(a, b, self.digits, rng.randint(0, len(HINTS) - self.digits) if self.hints else None)

    def difficulties(self) -> list[int]:
        """What a curriculum can draw: the digit counts (rlreason.data.curriculum)."""
        return list(range(1, MAX_DIGITS + 1))

    def at(self, difficulty: int) -> AdditionTask:
        """The task restricted to one difficulty: `difficulty`-digit sums."""
        return AdditionTask(int(difficulty), self.hints)

    def teacher(self, problem: Problem, rng: random.Random, error: float) -> str:
        return scratchpad(problem.meta["a"], problem.meta["b"], self.digits, error, rng, problem.meta.get("hint_offset"))
