"""Process supervision from the policy's own rollouts (Math-Shepherd, Wang et al. 2024): a
completion's steps, and a label for each step from rollouts that continue its prefix.

    split_steps(text, delimiter) -> steps            ''.join(steps) == text
    label_steps(engine, reward_fn, problems, ...) -> StepLabels per sampled completion

A step is labelled by sampling `rollouts` continuations of the prompt plus the completion up to
and including that step, with the same engine and reward as training: its soft label is the
fraction of continuations the reward accepts, its hard label 1 when any is accepted. The last
step holds the answer, so its label is the completion's own verdict (no rollouts). A label
costs `rollouts` continuations; a completion of S steps costs rollouts * (S - 1).

This is the data side of issue 20; the PRM's training, search and allocation are not built yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rlreason.rewards import score_parallel
from rlreason.types import Problem

# Where a step ends: each column `a+b+c=s;` of the built-in addition task, a blank line in math text.
STEP_DELIMITERS = {"addition": ";", "math": "\n\n"}


def split_steps(text: str, delimiter: str) -> list[str]:
    """The steps of `text`: each ends with the delimiter (a run of delimiters stays with the step
    before it), the last may not; joined they give `text` back. No delimiter: one step."""
    if not delimiter:
        raise ValueError("a step delimiter must not be empty")
    steps, start = [], 0
    while (i := text.find(delimiter, start)) >= 0:
        end = i + len(delimiter)
        while text.startswith(delimiter, end):
            end += len(delimiter)
        steps.append(text[start:end])
        start = end
    if start < len(text):
        steps.append(text[start:])
    return steps


@dataclass
class StepLabels:
    """One sampled completion and a label per step (soft: the share of accepted continuations;
    hard: 1.0 when any was accepted; the last step's: the completion's own reward)."""

    prompt: str
    answer: str
    completion: str
    steps: list[str]
    soft: list[float]
    hard: list[float]
    reward: float  # the completion's own verdict
    rollouts: int  # continuations sampled for these labels
    errors: list[str] = field(default_factory=list)  # rows whose reward raised (scored 0, as in training)


@dataclass
class LabelReport:
    """label_steps' result: the labelled completions, and those it could not label."""

    labeled: list[StepLabels]
    no_steps: int  # completions without a delimiter: one step, nothing to label but the answer
    rollouts: int  # continuations sampled in all


def label_steps(
    engine, reward_fn, problems: list[Problem], samples: int, rollouts: int, delimiter: str,
    max_tokens: int, temperature: float = 1.0, seed: int = 0, workers: int = 8,
) -> LabelReport:
    """Sample `samples` completions of each problem, split them into steps, and label every step
    but the last by `rollouts` continuations of its prefix (see the module's docstring)."""
    groups = engine.generate([p.prompt for p in problems], samples, temperature, 1.0, max_tokens, seed)
    flat = [(p, s.text) for p, g in zip(problems, groups) for s in g]
    own = score_parallel(reward_fn, [p.prompt for p, _ in flat], [t for _, t in flat], [p.answer for p, _ in flat], workers)
    split = [split_steps(text, delimiter) for _, text in flat]
    # every prefix that ends a step before the last: (completion index, prefix text)
    prefixes = [(i, "".join(steps[: j + 1])) for i, steps in enumerate(split) for j in range(len(steps) - 1)]
    conts = engine.generate([flat[i][0].prompt + pre for i, pre in prefixes], rollouts, temperature, 1.0, max_tokens, seed + 1) if prefixes else []
    rows = [(flat[i][0], pre + c.text) for (i, pre), g in zip(prefixes, conts) for c in g]
    scores = score_parallel(reward_fn, [p.prompt for p, _ in rows], [t for _, t in rows], [p.answer for p, _ in rows], workers)
    labeled, k, no_steps = [], 0, 0
    for i, ((problem, text), steps) in enumerate(zip(flat, split)):
        if len(steps) < 2:
            no_steps += 1
            continue
        soft, hard, errors = [], [], [own.errors[i]] if own.errors[i] else []
        for _ in steps[:-1]:
            values = scores.values[k * rollouts : (k + 1) * rollouts]
            errors += [e for e in scores.errors[k * rollouts : (k + 1) * rollouts] if e]
            soft.append(sum(v > 0 for v in values) / rollouts)
            hard.append(float(any(v > 0 for v in values)))
            k += 1
        verdict = float(own.values[i] > 0)
        labeled.append(StepLabels(problem.prompt, problem.answer, text, steps, soft + [verdict], hard + [verdict],
                                  own.values[i], rollouts * (len(steps) - 1), errors))
    return LabelReport(labeled, no_steps, len(rows))


_COLUMN = re.compile(r"(\d)\+(\d)\+(\d)=(\d+);")


def addition_steps_correct(prompt: str, steps: list[str]) -> list[bool]:
    """Whether each step of an addition scratchpad is right so far (the exact truth the labels
    estimate, for measuring their noise): column i must read `a_i+b_i+carry_i=sum;` with the
    problem's digits and the true carry, and the last step the right `\\boxed{}` answer. A step
    after a wrong one is wrong."""
    a, b = (int(x) for x in prompt.rstrip(">").split("+"))
    digits = max(len(str(a)), len(str(b)))
    da, db = str(a).zfill(digits)[::-1], str(b).zfill(digits)[::-1]
    out, carry, ok = [], 0, True
    for i, step in enumerate(steps):
        if i < digits:
            m = _COLUMN.fullmatch(step)
            s = int(da[i]) + int(db[i]) + carry
            ok = ok and m is not None and m.groups() == (da[i], db[i], str(carry), str(s))
            carry = s // 10
        else:
            ok = ok and step == f"\\boxed{{{a + b}}}"
        out.append(ok)
    return out
