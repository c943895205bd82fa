"""A data set as a training task: `task.name: dataset` with `task.dataset.source: gsm8k_train`.

The rows are loaded and mapped by rlreason.data.datasets (a built-in name, a local
.jsonl/.json/.parquet file or an HF hub id, with the recipe's field mapping), rendered with
the set's prompt template, and filtered to prompts that leave room for rollout.max_tokens in
rollout.max_model_len. The result is a finite task: the loop holds out task.heldout_size rows
(a seeded sample) and the PromptStream visits the others epoch by epoch, reshuffled each
epoch, resumably (see rlreason.data.stream).

The warm start, when enabled, imitates the set's worked solutions (task.dataset.solution, or
the built-in's: GSM8K's answer, MBPP's code): supervised fine-tuning before RL. A set without
solutions cannot warm-start; the recipe then says warm_start.enabled: false.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path

from rlreason.errors import DataError
from rlreason.types import Problem

log = logging.getLogger(__name__)

# DatasetConfig keys that override the built-in spec's field of the same name (None = keep it)
SPEC_KEYS = (
    "local", "split", "hub_config", "question", "answer", "answer_extract", "tests", "entry_point", "solution",
    "template", "instruction", "question_format", "answer_format", "difficulty",
)


class DatasetTask:
    """A finite task: `problems` hold rendered prompts. `sample` draws one at random (for the
    generic held-out code); PromptStream sees `problems` and walks them in epochs instead."""

    def __init__(self, problems: list[Problem], name: str):
        if not problems:
            raise DataError(f"dataset {name}: no problems to train on")
        self.problems, self.name = problems, name

    def sample(self, rng: random.Random) -> Problem:
        return rng.choice(self.problems)

    def difficulties(self) -> list:
        """The distinct values of the rows' difficulty (task.dataset.difficulty), lowest first."""
        return sorted({p.meta["difficulty"] for p in self.problems if "difficulty" in p.meta})

    def at(self, difficulty) -> DatasetTask:
        """The rows of one difficulty, as a task."""
        return DatasetTask([p for p in self.problems if p.meta.get("difficulty") == difficulty], f"{self.name} (difficulty {difficulty})")

    def teacher(self, problem: Problem, rng: random.Random, error: float) -> str:
        """The row's worked solution (the set's own; `error` does not apply to real data)."""
        if "solution" not in problem.meta:
            raise DataError(
                f"dataset {self.name}: the warm start needs worked solutions, and row {problem.meta.get('row')} has none; "
                "map one with task.dataset.solution=FIELD, or set warm_start.enabled=false"
            )
        return problem.meta["solution"]


def training_spec(data_cfg):
    """The DatasetSpec a recipe's task.dataset section names: a built-in (with its mapping) or a
    file / hub id, with the section's non-null keys replacing the spec's. Hub sets other than
    the built-ins read their 'train' split unless task.dataset.split says otherwise."""
    from rlreason.data.datasets import SPECS, get_spec

    if not data_cfg.source:
        raise ValueError("key 'task.dataset.source': task.name=dataset needs a data set (a built-in name, a file or a hub id)")
    if data_cfg.local and not Path(data_cfg.local).expanduser().is_file():
        raise ValueError(f"key 'task.dataset.local': no such file {data_cfg.local!r}")
    overrides = {k: getattr(data_cfg, k) for k in SPEC_KEYS}
    if data_cfg.local:
        overrides["local"] = str(Path(data_cfg.local).expanduser().resolve())
    try:
        spec = get_spec(data_cfg.source, **overrides)
    except FileNotFoundError as e:
        raise ValueError(f"key 'task.dataset.source': {e}") from None
    if data_cfg.split is None and data_cfg.source not in SPECS and not spec.local:
        spec = replace(spec, split="train")
    return spec


def load_dataset_task(data_cfg, tokenizer, budget: int) -> DatasetTask:
    """Load, map, render and length-filter the rows of task.dataset."""
    from rlreason.data.datasets import load_problems
    from rlreason.data.templates import fitting_prompts

    spec = training_spec(data_cfg)
    problems, prompts, dropped = fitting_prompts(spec, load_problems(spec), tokenizer, budget)
    rendered = [Problem(prompt=text, answer=p.answer, meta=p.meta) for p, text in zip(problems, prompts)]
    log.info("training set %s: %d problems (%d prompts too long left out), template %r", spec.label, len(rendered), dropped, spec.template)
    return DatasetTask(rendered, spec.label)


def build_task(cfg, tokenizer=None):
    """The task a run trains on: a generated one (addition, functions) or task.dataset's rows
    (rendered with `tokenizer`, the run's model's: needed then)."""
    from rlreason.data.stream import make_task

    if cfg.task.name != "dataset":
        return make_task(cfg.task.name, cfg.task.digits, cfg.task.hints)
    return load_dataset_task(cfg.task.dataset, tokenizer, cfg.rollout.max_model_len - cfg.rollout.max_tokens)
