"""Process supervision from the policy's own rollouts (Math-Shepherd, Wang et al. 2024): a
completion's steps, and a label for each step from rollouts that continue its prefix.

    split_steps(text, delimiter) -> steps            ''.join(steps) == text
    label_steps(engine, reward_fn, problems, ...) -> StepLabels per sampled completion

A step is labelled by sampling `rollouts` continuations of the prompt plus the completion up to
and including that step, with the same engine and reward as training: its soft label is the
fraction of continuations the reward accepts, its hard label 1 when any is accepted. The last
step holds the answer, so its label is the completion's own verdict (no rollouts). A label
costs `rollouts` continuations; a completion of S steps costs rollouts * (S - 1).

A PRM learns those labels: a token-classification model (one logit) started from the policy's
weights, trained with binary cross-entropy on the soft labels at each step's last token
(`train_prm`), scoring a completion's steps with `prm_step_scores`. `auc` measures how well scores
rank right steps above wrong ones.

`rlreason prm RECIPE` (rlreason/prm_run.py) runs all of it in a run directory; `rlreason eval
--scorer prm:DIR` and `--search` (rlreason/search.py) use the PRM.
"""

from __future__ import annotations

import random
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


# ---------------------------------------------------------------------------------------------
# The process reward model
# ---------------------------------------------------------------------------------------------


def step_positions(tokenizer, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
    """The token ids of prompt + completion, and the index of each step's last token (the token
    that holds the step's last character, by the tokenizer's offsets)."""
    text = prompt + "".join(steps)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [a for a, _ in enc["offset_mapping"]]
    positions, end = [], len(prompt)
    for step in steps:
        end += len(step)
        positions.append(max(i for i, a in enumerate(starts) if a <= end - 1))
    return enc["input_ids"], positions


def _device():
    """Where a PRM or outcome RM trains: the GPU when there is one."""
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _bce_epoch(opt, batches, forward) -> float:
    """One epoch of binary cross-entropy on logits: forward(batch) -> (logits, targets), an
    optimizer step a batch. Returns the mean loss per target."""
    import torch

    total, n = 0.0, 0
    for batch in batches:
        logits, target = forward(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, n = total + loss.item() * len(target), n + len(target)
    return total / max(n, 1)


def _batches(rows: list, size: int, rng: random.Random):
    order = list(range(len(rows)))
    rng.shuffle(order)
    for i in range(0, len(order), size):
        yield [rows[j] for j in order[i : i + size]]


def _logits_at(model, batch: list[tuple[list[int], list[int]]], pad_id: int):
    """The model's step logits: one tensor of every row's positions, in row order."""
    import torch

    length = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for r, (row, _) in enumerate(batch):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[..., 0].float()  # (B, T)
    return torch.cat([logits[r, pos] for r, (_, pos) in enumerate(batch)])


def train_prm(base: str, labels: list[StepLabels], epochs: int = 2, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
              start_epoch: int = 0, optimizer_state: dict | None = None, rng_state: dict | None = None, on_epoch=None):
    """A PRM from `base` (the policy's directory, or a checkpoint's model to go on from):
    AutoModelForTokenClassification with one label, trained on the soft labels at every step's
    last token (binary cross-entropy) for epochs start_epoch+1 .. epochs, each epoch's order
    shuffled by (seed, epoch). After each: on_epoch(epoch, model, tokenizer, optimizer, mean loss).
    To go on from a checkpoint: its model as `base`, its optimizer state, and its generators'
    state (rlreason.checkpoint.rng_state: the head's dropout draws from torch's). Returns (model, tokenizer, the mean loss of each epoch run here)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForTokenClassification.from_pretrained(base, num_labels=1).to(_device())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = []
    for lab in labels:
        ids, positions = step_positions(tokenizer, lab.prompt, lab.steps)
        rows.append((ids, positions, lab.soft))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    if rng_state is not None:
        from rlreason.checkpoint import set_rng_state

        set_rng_state(rng_state)
    losses = []
    def forward(batch):
        logits = _logits_at(model, [(ids, pos) for ids, pos, _ in batch], pad_id)
        return logits, torch.tensor([t for _, _, soft in batch for t in soft], device=logits.device)

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        losses.append(_bce_epoch(opt, _batches(rows, batch_size, random.Random(f"{seed}-{epoch}")), forward))
        model.eval()
        if on_epoch is not None:
            on_epoch(epoch, model, tokenizer, opt, losses[-1])
    model.eval()
    return model, tokenizer, losses


def train_orm(base: str, rows: list[tuple[str, str, bool]], epochs: int = 2, lr: float = 1e-3, batch_size: int = 32, seed: int = 0):
    """An outcome reward model (Cobbe et al. 2021) from `base`: AutoModelForSequenceClassification
    with one logit (read at the last token), trained with binary cross-entropy on whether each
    (prompt, completion) was right. `rlreason eval --scorer rm:DIR` ranks by its logit.
    Returns (model, tokenizer, per-epoch mean losses)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).to(_device())
    model.config.pad_token_id = tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    def forward(batch):
        enc = tokenizer([p + c for p, c, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        logits = model(**enc).logits[:, 0].float()
        return logits, torch.tensor([float(ok) for _, _, ok in batch], device=logits.device)

    for epoch in range(1, epochs + 1):
        losses.append(_bce_epoch(opt, _batches(rows, batch_size, random.Random(f"{seed}-{epoch}")), forward))
    model.eval()
    return model, tokenizer, losses


def prm_step_scores(model, tokenizer, prompts: list[str], steps_list: list[list[str]], batch_size: int = 64,
                    read: list[int] | None = None, rows: list[int] | None = None) -> list[list[float]]:
    """The PRM's probability that each step is right, for each (prompt, steps) pair. `read`:
    where to put the tokens read for each pair (at the indices `rows`, default 0, 1, ...)."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [step_positions(tokenizer, p, steps) for p, steps in zip(prompts, steps_list)]
    if read is not None:
        for j, (ids, _) in zip(rows if rows is not None else range(len(encoded)), encoded):
            read[j] = len(ids)
    rows = encoded
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = rows[i : i + batch_size]
            probs = torch.sigmoid(_logits_at(model, batch, pad_id)).tolist()
            k = 0
            for _, pos in batch:
                out.append(probs[k : k + len(pos)])
                k += len(pos)
    return out


def auc(scores: list[float], truth: list[bool]) -> float:
    """The probability that a right step scores above a wrong one (ties count half): the area
    under the ROC curve, by ranks. NaN when either class is empty."""
    pos = [s for s, t in zip(scores, truth) if t]
    neg = [s for s, t in zip(scores, truth) if not t]
    if not pos or not neg:
        return float("nan")
    ranked = sorted((s, t) for s, t in zip(scores, truth))
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(1 for _, t in ranked[i:j] if t) * (i + j + 1) / 2
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
