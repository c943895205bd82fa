"""The built-in verifiable reasoning task: n-digit addition with a per-column carry scratchpad.

    prompt:      347+586>
    completion:  7+6+0=13;4+8+1=13;3+5+1=9;=933

Each column is written as `da+db+carry_in=sum;` from the ones column up, then `=answer`.
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


def make_problem(a: int, b: int) -> Problem:
    return Problem(prompt=f"{a}+{b}>", answer=str(a + b), meta={"a": a, "b": b})


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
    return "".join(parts) + "=" + answer


def _operands(rng: random.Random, digits: int) -> tuple[int, int]:
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    return rng.randint(lo, hi), rng.randint(lo, hi)


def heldout_problems(digits: int, size: int, seed: int) -> list[Problem]:
    """A fixed held-out set, disjoint from the training stream (see PromptStream)."""
    rng = random.Random(f"heldout-{seed}")
    seen: set[tuple[int, int]] = set()
    out: list[Problem] = []
    while len(out) < size:
        ab = _operands(rng, digits)
        if ab not in seen:
            seen.add(ab)
            out.append(make_problem(*ab))
    return out


class PromptStream:
    """A deterministic, resumable stream of training problems.

    size == 0: an endless stream; problem i depends only on (seed, i).
    size == N: a fixed pool of the stream's first N problems, visited in a fresh shuffled
    order each epoch (the order of epoch e depends only on (seed, e)).
    Either way the whole state is (epoch, position), so a resume mid-epoch or exactly at an
    epoch boundary continues with the very next problem. Held-out problems are skipped.
    """

    def __init__(self, digits: int, seed: int, exclude: list[Problem] = (), size: int = 0):
        self.digits, self.seed = digits, seed
        self.epoch, self.position = 0, 0
        self._exclude = {(p.meta["a"], p.meta["b"]) for p in exclude}
        self.pool = self._take(size) if size else None
        self._order: tuple[int, list[int]] | None = None  # (epoch, permutation) cache

    def _problem(self, i: int) -> Problem | None:
        ab = _operands(random.Random(f"train-{self.seed}-{i}"), self.digits)
        return None if ab in self._exclude else make_problem(*ab)

    def _take(self, n: int) -> list[Problem]:
        out, i = [], 0
        while len(out) < n:
            p = self._problem(i)
            i += 1
            if p is not None:
                out.append(p)
        return out

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            order = list(range(len(self.pool)))
            random.Random(f"order-{self.seed}-{epoch}").shuffle(order)
            self._order = (epoch, order)
        return self._order[1]

    def next_batch(self, n: int) -> list[Problem]:
        out: list[Problem] = []
        while len(out) < n:
            if self.pool is None:
                p = self._problem(self.position)
                self.position += 1
                if p is not None:
                    out.append(p)
                continue
            if self.position == len(self.pool):  # epoch boundary: the next epoch starts here
                self.epoch, self.position = self.epoch + 1, 0
            out.append(self.pool[self._epoch_order(self.epoch)[self.position]])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def demonstrations(n: int, digits: int, carry_drop: float, seed: int, exclude: list[Problem] = ()) -> list[tuple[str, str]]:
    """n (prompt, completion) pairs written by the imperfect teacher."""
    stream = PromptStream(digits, seed=seed + 1_000_003, exclude=exclude)
    rng = random.Random(f"teacher-{seed}")
    return [
        (p.prompt, scratchpad(p.meta["a"], p.meta["b"], digits, carry_drop, rng))
        for p in stream.next_batch(n)
    ]
