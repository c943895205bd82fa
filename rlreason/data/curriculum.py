"""A curriculum the loop climbs on its own (task.curriculum).

A task with difficulties (addition: digit counts; a data set: the numeric field
task.dataset.difficulty, MATH's level) has `difficulties()` (the values, lowest first) and
`at(d)` (the task restricted to difficulty d). CurriculumStream draws each step's prompts from
the frontier, plus a share (`replay`) from the easier difficulties it has passed, so that
earlier skill is not forgotten. After each step it reads the step's own samples: the pass rate
of the frontier's prompts (their mean reward, clipped to [0, 1]: the fraction the verifier
accepted, for a 0/1 reward). When the mean over the last `window` steps reaches `threshold`,
the frontier moves one difficulty up.

Why the step's own samples, not a held-out probe: they cost nothing (GRPO samples group_size
completions of every prompt anyway), they are many (with 32 prompts x 8 samples, ~190 at the
frontier, a standard error of about 0.03 at a pass rate of 0.8), and they measure the sampling
policy, the one whose samples must carry signal at the next difficulty. The held-out greedy
accuracy per difficulty is reported separately (eval/d<D>/accuracy), never used to steer.

The stream is deterministic and resumable: problem i depends on (seed, i) and the frontier at
the time it is drawn, and the whole state (position, frontier, the pass rates in the window)
is what state_dict() returns, saved with each checkpoint.
"""

from __future__ import annotations

import logging
import random

from rlreason.types import Problem

log = logging.getLogger(__name__)


def should_advance(rates: list[float], threshold: float, window: int) -> bool:
    """Whether the frontier moves up: `window` pass rates observed at it, their mean >= threshold."""
    return len(rates) >= window and sum(rates[-window:]) / window >= threshold


def pass_rates(difficulties: list, rewards: list[list[float]]) -> dict:
    """{difficulty: (pass rate, prompts)} of one step: each prompt's mean reward over its
    samples, clipped to [0, 1], averaged over the prompts of that difficulty."""
    sums: dict = {}
    for d, row in zip(difficulties, rewards, strict=True):
        rate = sum(min(1.0, max(0.0, r)) for r in row) / len(row)
        total, n = sums.get(d, (0.0, 0))
        sums[d] = (total + rate, n + 1)
    return {d: (total / n, n) for d, (total, n) in sums.items()}


class Mixture:
    """A task whose problems are drawn uniformly from several difficulties of `task`
    (warm_start.difficulties): each problem's teacher is its own difficulty's."""

    def __init__(self, task, difficulties: list):
        self.tasks = {d: task.at(d) for d in difficulties}
        self.levels = list(self.tasks)

    def sample(self, rng: random.Random) -> Problem:
        return self.tasks[rng.choice(self.levels)].sample(rng)

    def teacher(self, problem: Problem, rng: random.Random, error: float) -> str:
        return self.tasks[problem.meta["difficulty"]].teacher(problem, rng, error)


class CurriculumStream:
    """The prompt stream of a run with task.curriculum.enabled (see the module's text)."""

    def __init__(self, task, cfg, seed: int, levels: list, exclude: list[Problem] = ()):
        """levels: the difficulties it climbs, lowest (the first frontier) first (rlreason.loop.curriculum_levels)."""
        self.levels, self.cfg, self.seed = list(levels), cfg, seed
        self._tasks = {d: task.at(d) for d in self.levels}
        self._exclude = {p.prompt for p in exclude}
        self.epoch = 0  # an endless stream: no epochs (the record's data/epoch)
        self.position, self.index, self.rates, self.top_logged = 0, 0, [], False

    @property
    def frontier(self):
        return self.levels[self.index]

    def next_batch(self, n: int) -> list[Problem]:
        """n prompts: round(replay * n) of them at a difficulty below the frontier (uniformly among
        start .. frontier - 1; none while the frontier is at the start), the rest at the frontier."""
        easier = self.levels[: self.index]
        k = round(self.cfg.replay * n) if easier else 0
        out: list[Problem] = []
        while len(out) < n:
            rng = random.Random(f"train-{self.seed}-{self.position}")
            self.position += 1
            d = rng.choice(easier) if len(out) < k else self.frontier
            p = self._tasks[d].sample(rng)
            if p.prompt not in self._exclude:
                out.append(p)
        return out

    def observe(self, problems: list[Problem], rewards: list[list[float]], tokens: list[int]) -> dict:
        """Read one step's samples (every group sampled, kept or not: each problem's rewards and
        the tokens its group generated); move the frontier when its pass rate has reached the
        threshold. Returns the step's curriculum metrics: the frontier its prompts were drawn at,
        and per difficulty the pass rate, the prompts and the tokens generated."""
        frontier = self.frontier
        difficulties = [p.meta["difficulty"] for p in problems]
        rates = pass_rates(difficulties, rewards)
        record = {"curriculum/frontier": frontier}
        for d, (rate, count) in sorted(rates.items()):
            record[f"curriculum/d{d}/pass_rate"] = rate
            record[f"curriculum/d{d}/prompts"] = count
            record[f"curriculum/d{d}/tokens"] = sum(n for x, n in zip(difficulties, tokens, strict=True) if x == d)
        if frontier in rates:
            self.rates = (self.rates + [rates[frontier][0]])[-self.cfg.window :]
        if should_advance(self.rates, self.cfg.threshold, self.cfg.window):
            if self.index + 1 < len(self.levels):
                mean = sum(self.rates) / len(self.rates)
                self.index, self.rates = self.index + 1, []
                log.info("curriculum: pass rate %.2f at difficulty %s over the last %d steps; the frontier moves to %s",
                         mean, frontier, self.cfg.window, self.frontier)
            elif not self.top_logged:
                self.top_logged = True
                log.info("curriculum: the frontier is at the top difficulty %s and cannot move; training goes on there", frontier)
        return record

    def state_dict(self) -> dict:
        return {"position": self.position, "frontier": self.frontier, "rates": list(self.rates), "top_logged": self.top_logged}

    def load_state_dict(self, state: dict) -> None:
        if state.get("frontier") not in self.levels:
            raise ValueError(f"the checkpoint's curriculum frontier {state.get('frontier')!r} is not among this run's difficulties {self.levels}")
        self.position, self.index = state["position"], self.levels.index(state["frontier"])
        self.rates, self.top_logged = list(state["rates"]), state["top_logged"]
