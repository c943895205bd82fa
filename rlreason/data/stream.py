"""Generated tasks as data: a held-out set, a resumable training stream, teacher demonstrations.

A task is any object with `sample(rng) -> Problem` (one problem drawn from a random.Random)
and `teacher(problem, rng, error) -> str` (a demonstration whose systematic mistake happens
with probability `error`). Problems are identified by their prompt. A finite task (a data
set, rlreason.data.dataset_task) also has `problems`: its held-out set is a seeded sample of
them and its stream visits the rest in epochs.
"""

from __future__ import annotations

import random

from rlreason.errors import DataError
from rlreason.types import Problem

# The built-in tasks' defaults (TaskConfig's, in rlreason.config): `rlreason eval --dataset
# addition` evaluates this held-out set, the problems a default run never trains on.
ADDITION_DIGITS, HELDOUT_SIZE, HELDOUT_SEED = 3, 500, 1234


def heldout_problems(task, size: int, seed: int) -> list[Problem]:
    """A fixed held-out set of distinct prompts, disjoint from the training stream (see PromptStream)."""
    rng = random.Random(f"heldout-{seed}")
    if (pool := getattr(task, "problems", None)) is not None:
        unique = list({p.prompt: p for p in pool}.values())
        if size >= len(unique):
            raise DataError(f"key 'task.heldout_size': holding out {size} problems leaves none of the {len(unique)} distinct prompts to train on")
        return rng.sample(unique, size)
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < size:
        p = task.sample(rng)
        if p.prompt not in seen:
            seen.add(p.prompt)
            out.append(p)
    return out


class PromptStream:
    """A deterministic, resumable stream of training problems.

    size == 0: an endless stream; problem i depends only on (seed, i).
    size == N: a fixed pool of the stream's first N problems, visited in a fresh shuffled
    order each epoch (the order of epoch e depends only on (seed, e)).
    A finite task (one with `problems`, a data set): the pool is its problems in file order
    (the first N when size == N), visited the same way.
    Either way the whole state is (epoch, position), so a resume mid-epoch or exactly at an
    epoch boundary continues with the very next problem. Held-out prompts are skipped.
    """

    def __init__(self, task, seed: int, exclude: list[Problem] = (), size: int = 0):
        self.task, self.seed = task, seed
        self.epoch, self.position = 0, 0
        self._exclude = {p.prompt for p in exclude}
        if getattr(task, "problems", None) is not None:
            self.pool = [p for p in task.problems if p.prompt not in self._exclude]
            self.pool = self.pool[:size] if size else self.pool
        else:
            self.pool = self._take(size) if size else None
        self._order: tuple[int, list[int]] | None = None  # (epoch, permutation) cache

    def _problem(self, i: int) -> Problem | None:
        p = self.task.sample(random.Random(f"train-{self.seed}-{i}"))
        return None if p.prompt in self._exclude else p

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


def demonstrations(task, n: int, error: float, seed: int, exclude: list[Problem] = ()) -> list[tuple[str, str]]:
    """n (prompt, completion) pairs written by the imperfect teacher."""
    stream = PromptStream(task, seed=seed + 1_000_003, exclude=exclude)
    rng = random.Random(f"teacher-{seed}")
    return [(p.prompt, task.teacher(p, rng, error)) for p in stream.next_batch(n)]


def make_task(name: str, digits: int = ADDITION_DIGITS, hints: bool = False):
    """The generated task task.name names (task.digits and task.hints: addition only)."""
    from rlreason.data.addition import AdditionTask
    from rlreason.data.functions import FunctionTask

    if name == "addition":
        return AdditionTask(digits, hints)
    if name == "functions":
        return FunctionTask()
    if name == "dataset":
        raise ValueError("key 'task.name': a data set task is built with rlreason.data.dataset_task.build_task (it needs the tokenizer)")
    raise ValueError(f"key 'task.name': unknown task {name!r}; choose one of ['addition', 'functions', 'dataset']")
