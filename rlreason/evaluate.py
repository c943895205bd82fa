"""Evaluation on held-out sets: pass@k, maj@k and best-of-N, overall, per subject and per level.

Metrics of one problem with n samples, c of them correct (reward >= 1: the built-in verifiers
return exactly 0 or 1), averaged over problems:

    pass@k     the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
               Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k), the chance that at least one
               of k samples drawn without replacement from the n is correct. pass@1 = c / n.
    maj@k      self-consistency (Wang et al. 2022): a majority vote over the answers of the
               first k samples; 1 if the winning answer is correct. Answers are read with the
               data set's extractor (the last \\boxed{} after any </think>) and compared as
               strings after math_reward's `normalize` (so 1/2 and \\frac{1}{2} agree, 0.5 does
               not). Samples without an answer do not vote; ties go to the answer seen first;
               no answer at all scores 0. Not defined for code (no answer to vote on).
    best_of_k  the first k samples ranked by a scorer, the top one judged (ties: the first).
               Scorer 'verifier' is the data set's own reward (an oracle: best_of_k is then
               the empirical chance that one of the k is correct); 'rm:PATH' is an HF
               sequence-classification reward model scoring prompt + completion; 'prm:PATH'
               a process reward model (rlreason.prm) scoring each step, aggregated by the
               last step's score (the default: the PRM's estimate that the finished answer
               is right, as Snell et al. found best), 'prm:PATH:min' or 'prm:PATH:prod'.
    wmaj@k     weighted best-of-N (Li et al. 2023; search-and-learn's weighted_best_of_n):
               each of the first k samples votes for its answer with its scorer score; 1 if
               the answer with the most weight is correct (ties: the answer seen first).

`run_eval` samples with vLLM in this process (no Ray), scores every sample, and writes
eval.json (metrics, settings, timing), samples.jsonl (every completion with its extracted
answer, reward and scorer score) and problems.jsonl (per-problem counts and metrics).

The training loop evaluates through the same `EvalSet`s: `greedy_accuracy` on the task's
held-out problems and on each of eval.datasets (loaded by `load_eval_sets`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from rlreason.progress import Progress

log = logging.getLogger(__name__)
SCORING_THREADS = 4  # rows `rlreason eval` scores at once (the math verifier gets as many workers)

# ---------------------------------------------------------------------------------------------
# Metrics: pure functions
# ---------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), computed as the
    product 1 - prod_{i=n-c+1}^{n} (1 - k/i) (no big binomials; Chen et al. 2021, Fig. 3)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority(answers: list[str | None]) -> int | None:
    """Index of the first sample that holds the most common answer (None answers do not vote;
    ties go to the answer seen first); None when no sample has an answer."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def majority_label(answers: list[str | None], min_share: float) -> str | None:
    """The answer at least `min_share` of all the samples give (the most common one; ties to the
    first seen), or None: a group's own label when no verifier says what is right."""
    i = majority(answers)
    if i is None or answers.count(answers[i]) < min_share * len(answers):
        return None
    return answers[i]


def maj_at_k(answers: list[str | None], correct: list[bool], k: int) -> float:
    """1.0 when the majority answer of the first k samples is correct, else 0.0."""
    i = majority(answers[:k])
    return float(i is not None and correct[i])


def best_of_n(scores: list[float], correct: list[bool], n: int) -> float:
    """1.0 when the highest-scored of the first n samples (the first on ties) is correct."""
    first = scores[:n]
    i = max(range(len(first)), key=lambda j: (first[j], -j))
    return float(correct[i])


def weighted_maj_at_k(answers: list[str | None], scores: list[float], correct: list[bool], k: int) -> float:
    """1.0 when the answer whose first-k samples' scores add up to the most is correct (samples
    without an answer do not vote; ties go to the answer seen first), else 0.0."""
    weight: dict[str, float] = {}
    for a, sc in zip(answers[:k], scores[:k]):
        if a is not None:
            weight[a] = weight.get(a, 0.0) + sc
    if not weight:
        return 0.0
    best = max(weight.values())
    i = next(j for j, a in enumerate(answers[:k]) if a is not None and weight[a] == best)
    return float(correct[i])


def problem_metrics(correct: list[bool], answers: list[str | None] | None, scores: list[float] | None, ks: list[int]) -> dict[str, float]:
    """Every metric of one problem's samples (in sample order)."""
    n, c = len(correct), sum(correct)
    out = {f"pass@{k}": pass_at_k(n, c, k) for k in ks}
    if answers is not None:
        out |= {f"maj@{k}": maj_at_k(answers, correct, k) for k in ks}
    if scores is not None:
        out |= {f"best_of_{k}": best_of_n(scores, correct, k) for k in ks if k > 1}
    if answers is not None and scores is not None:
        out |= {f"wmaj@{k}": weighted_maj_at_k(answers, scores, correct, k) for k in ks if k > 1}
    return out


def aggregate(rows: list[dict], keys: tuple[str, ...] = ("subject", "level")) -> dict:
    """Mean of each metric over problems: {'overall': {...}, 'by_subject': {s: {...}}, ...}.
    rows: {'metrics': {name: value}, 'subject': ..., 'level': ...}; a key missing from every row
    gets no breakdown."""

    def mean(group: list[dict]) -> dict:
        names = list(group[0]["metrics"]) if group else []
        return {"n_problems": len(group)} | {m: sum(r["metrics"][m] for r in group) / len(group) for m in names}

    out = {"overall": mean(rows)}
    for key in keys:
        values = {r[key] for r in rows if r.get(key) is not None}
        if values:
            out[f"by_{key}"] = {v: mean([r for r in rows if r.get(key) == v]) for v in sorted(values, key=_natural)}
    return out


def _natural(v: str):
    return (0, int(v), "") if str(v).isdigit() else (1, 0, str(v))


def vote_answer(completion: str, extractor: str) -> str | None:
    """The answer a sample votes for: the extractor's last candidate after any </think>, normalised."""
    from rlreason.rewards.math_reward import EXTRACTORS, final_section, normalize

    found = EXTRACTORS[extractor](final_section(completion))
    return normalize(found[-1]) if found else None


def format_table(metrics: dict) -> str:
    """The console table: one row for all problems, then one per subject and per level."""
    cols = ["n_problems"] + [m for m in metrics["overall"] if m != "n_problems"]
    rows = [("overall", metrics["overall"])]
    for key in (k for k in metrics if k.startswith("by_")):
        rows += [(f"{key[3:]}={v}", m) for v, m in metrics[key].items()]
    width = max(len(r[0]) for r in rows)
    lines = [" ".join([f"{'':<{width}}"] + [f"{c if c != 'n_problems' else 'n':>10}" for c in cols])]
    for name, m in rows:
        cells = [f"{m[c]:>10d}" if c == "n_problems" else f"{m[c]:>10.4f}" for c in cols]
        lines.append(" ".join([f"{name:<{width}}"] + cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Model resolution and scorers
# ---------------------------------------------------------------------------------------------


def resolve_eval_model(model: str, max_model_len: int) -> str:
    """What vLLM should load for MODEL:
    'tiny'               the locally built tiny model (positions >= max_model_len; same weights)
    a checkpoint         runs/NAME/checkpoints/step_N -> its policy/ (must be complete)
    a run directory      its final/ when the run finished, else its newest complete checkpoint's policy/
    an HF model dir      as is
    anything else        an HF hub id, from the HF cache or the hub (rlreason.models.locate_model).
    A path that is not there, or holds none of these, is NotFound."""
    from rlreason import checkpoint
    from rlreason.errors import NotFound, is_local_path
    from rlreason.models import locate_model

    if model == "tiny":
        from rlreason.config import ModelConfig, TinyModelConfig
        from rlreason.models import ensure_tiny_model

        # Rotary positions have no weights: a longer context gives the very same model.
        return str(ensure_tiny_model(ModelConfig(tiny=TinyModelConfig(max_position_embeddings=max(256, max_model_len)))))
    if not is_local_path(model):
        return locate_model(model)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise NotFound(f"no such model directory: {model}")
    if (path / "config.json").is_file():
        return str(path)
    if checkpoint._STEP_DIR.match(path.name):
        if not checkpoint.is_complete(path):
            raise NotFound(f"{model}: not a complete checkpoint (no valid {checkpoint.MARKER} marker)")
        return str(path / "policy")
    if (path / "final" / "config.json").is_file():
        return str(path / "final")
    ckpt = checkpoint.latest(path / "checkpoints")
    if ckpt is None:
        raise NotFound(f"{model}: neither an HF model directory, a checkpoint, nor a run directory with final/ or a complete checkpoint")
    return str(ckpt / "policy")


def model_max_len(model_path: str) -> int | None:
    """The model's context length from its config, when readable."""
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    except Exception:  # noqa: BLE001  a hub id without network: let vLLM decide
        return None


class RewardModelScorer:
    """Scores prompt + completion with an HF AutoModelForSequenceClassification (one logit)."""

    def __init__(self, path: str, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval().to("cuda" if torch.cuda.is_available() else "cpu")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.max_len = getattr(self.model.config, "max_position_embeddings", 2048)

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        """The score of each prompt + completion; self.read: the tokens read for each."""
        out, self.read = [], []
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        self.tokenizer.padding_side = "right"
        with self.torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i : i + self.batch_size], return_tensors="pt", padding=True, truncation=True, max_length=self.max_len, add_special_tokens=False)
                logits = self.model(**enc.to(self.model.device)).logits  # (B, num_labels)
                out += logits[:, 0].float().tolist()
                self.read += enc["attention_mask"].sum(dim=1).tolist()
        return out


PRM_AGGREGATES = ("last", "min", "prod")


def parse_prm_scorer(scorer: str) -> tuple[str, str]:
    """'prm:PATH[:last|min|prod]' -> (PATH, aggregate); 'last' by default."""
    path, _, agg = scorer[4:].rpartition(":")
    return (path, agg) if path and agg in PRM_AGGREGATES else (scorer[4:], "last")


class PRMScorer:
    """Scores a completion by a process reward model (rlreason.prm.train_prm's, saved with
    prm.json naming its step delimiter): each step's score, aggregated by the last step's, the
    lowest or their product. Completions without the delimiter are one step; they are counted
    (no_steps), never scored 0 for it."""

    def __init__(self, path: str, aggregate: str = "last"):
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.delimiter = prm_delimiter(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        import torch

        self.model = AutoModelForTokenClassification.from_pretrained(path).eval().to("cuda" if torch.cuda.is_available() else "cpu")
        self.aggregate, self.no_steps = aggregate, 0

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        """The aggregated score of each completion; self.read: the tokens the PRM read for each
        (prompt and completion; 0 for an empty completion, which it does not score)."""
        import math

        from rlreason.prm import prm_step_scores, split_steps

        steps = [split_steps(c, self.delimiter) or [c] for c in completions]
        self.no_steps = sum(len(s) < 2 for s in steps)
        keep = [i for i, s in enumerate(steps) if s and s[0]]  # an empty completion has no step to score
        read = [0] * len(completions)
        scores = dict(zip(keep, prm_step_scores(self.model, self.tokenizer, [prompts[i] for i in keep], [steps[i] for i in keep], read=read, rows=keep)))
        self.read = read
        agg = {"last": lambda xs: xs[-1], "min": min, "prod": math.prod}[self.aggregate]
        return [agg(scores[i]) if i in scores else 0.0 for i in range(len(completions))]


def prm_delimiter(path: str) -> str:
    """The step delimiter a PRM was trained with (its prm.json), or NotFound naming the file."""
    from rlreason.errors import NotFound

    meta = Path(path) / "prm.json"
    if not meta.is_file():
        raise NotFound(f"--scorer prm:{path}: no prm.json (a PRM saved by rlreason.prm names its step delimiter there)")
    return json.loads(meta.read_text())["step_delimiter"]


def dataset_step_delimiter(spec) -> str:
    """The steps of a data set's completions: each column of the addition task, else a blank line."""
    from rlreason.prm import STEP_DELIMITERS

    return STEP_DELIMITERS["addition" if spec.source == "task:addition" else "math"]


# ---------------------------------------------------------------------------------------------
# Eval sets: loaded the same way for `rlreason eval` and for the training loop's evaluations
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Problems to evaluate on, their rendered prompts (what the model sees and the reward is
    given) and the reward that judges them."""

    name: str
    problems: list  # rlreason.types.Problem
    prompts: list[str]
    reward_fn: Callable
    dropped: int = 0  # problems left out: their prompt did not fit
    spec: object = None  # the data set's DatasetSpec (None: a generated task's held-out problems)


def load_eval_set(spec, tokenizer, budget: int, limit: int | None = None) -> EvalSet:
    """The data set's first `limit` problems whose prompt fits `budget` tokens (max_model_len -
    max_tokens), rendered with its template, with its reward resolved."""
    from rlreason.data.datasets import load_problems
    from rlreason.data.templates import fitting_prompts
    from rlreason.rewards import resolve_reward

    problems, prompts, dropped = fitting_prompts(spec, load_problems(spec), tokenizer, budget, limit)
    return EvalSet(spec.label, problems, prompts, resolve_reward(spec.reward), dropped, spec)


def eval_specs(cfg) -> list:
    """The DatasetSpecs of eval.datasets (rlreason.config.Config), with eval.template when set."""
    from rlreason.data.datasets import get_spec

    return [get_spec(name, template=cfg.eval.template or None) for name in cfg.eval.datasets]


def load_eval_sets(cfg, tokenizer) -> list[EvalSet]:
    """eval.datasets: the first eval.dataset_size problems of each whose prompt fits
    rollout.max_model_len - rollout.max_tokens tokens."""
    budget = cfg.rollout.max_model_len - cfg.rollout.max_tokens
    sets = [load_eval_set(spec, tokenizer, budget, cfg.eval.dataset_size) for spec in eval_specs(cfg)]
    for es in sets:
        log.info("eval set %s: %d problems", es.name, len(es.problems))
    return sets


def greedy_accuracy(engine, es: EvalSet, max_tokens: int, workers: int) -> tuple[float, int]:
    """(greedy accuracy, samples whose reward failed) of `engine` on `es`; a failed sample counts as wrong."""
    import torch

    groups = engine.generate(es.prompts, 1, 0.0, 1.0, max_tokens, 0)
    scores = score_samples(es, [(i, g[0]) for i, g in enumerate(groups)], workers)
    return torch.tensor(scores.values).mean().item(), scores.n_errors


# ---------------------------------------------------------------------------------------------
# The eval run
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalSettings:
    model: str  # 'tiny', an HF directory or hub id, a run directory or a checkpoint
    dataset: str = "math500"  # a built-in name, a hub id or a local file
    split: str | None = None
    fields: dict = field(default_factory=dict)  # spec overrides: question=..., answer=..., ...
    answer_extract: str | None = None
    reward: str | None = None  # default: the data set's
    template: str | None = None  # default: the data set's
    hub: bool = False  # read a built-in from the hub even when the local file is there
    n: int = 4
    ks: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 256
    max_model_len: int = 2048
    limit: int | None = None
    scorer: str = "verifier"  # 'verifier' | 'rm:PATH' | 'none'
    seed: int = 0
    dtype: str = "float32"
    kv_cache_gib: float = 1.0
    threads: int = 0
    unsafe_code: bool = False
    out: str | None = None
    # test-time search (rlreason.search): strategies STRATEGY[:SCORER], each at every budget
    search: list[str] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)  # default: [n]
    beam_width: int = 4
    chain: int = 4  # revise: attempts a chain (budget/chain chains)
    step_tokens: int = 0  # tokens a search step may take (0: max_tokens)
    max_steps: int = 40  # search iterations; the last one continues each candidate to its end
    difficulty_samples: int = 4  # samples whose PRM scores estimate a problem's difficulty (allocation)
    bins: int = 4  # difficulty bins of the compute-optimal allocation

    def check(self) -> None:
        """ConfigError naming the flag of the first value out of range (before any work)."""
        from rlreason.config import DTYPES, ConfigError, check_range, check_reward

        for name in ("n", "max_tokens", "max_model_len", "kv_cache_gib", *(["limit"] if self.limit is not None else [])):
            check_range(_flag(name), getattr(self, name), low_open=True)
        for name in ("seed", "threads", "temperature", "step_tokens"):
            check_range(_flag(name), getattr(self, name))
        for name in ("beam_width", "chain", "max_steps", "difficulty_samples", "bins"):
            check_range(_flag(name), getattr(self, name), low_open=True)
        check_range("--top-p", self.top_p, high=1, low_open=True)
        for k in self.ks:
            check_range("--k", k, low=1, high=self.n)
        if self.max_tokens >= self.max_model_len:
            raise ConfigError(f"--max-tokens: {self.max_tokens} leaves no room for a prompt in --max-model-len {self.max_model_len}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype: unknown value {self.dtype!r}; choose one of {list(DTYPES)}")
        if not (self.scorer in ("verifier", "none") or (self.scorer.startswith(("rm:", "prm:")) and self.scorer.split(":", 1)[1])):
            raise ConfigError(f"--scorer: unknown value {self.scorer!r}; use 'verifier', 'rm:PATH', 'prm:PATH[:last|min|prod]' or 'none'")
        if self.reward:
            check_reward("--reward", self.reward)


def _flag(name: str) -> str:
    """EvalSettings field -> its `rlreason eval` flag: max_tokens -> --max-tokens."""
    return "--" + name.replace("_", "-")


def run_eval(s: EvalSettings) -> dict:
    """Sample, score, aggregate, write eval.json / samples.jsonl / problems.jsonl; return eval.json's
    content. (With s.search, `rlreason eval` runs rlreason.search.run_search instead.)"""
    from rlreason.data.datasets import spec_dict

    s.check()
    t_start = time.time()
    ks = sorted(set(s.ks) | {1})
    spec, model_path, max_len, es = prepare_eval(s, [s.scorer])
    timing = {"load_s": time.time() - t_start}

    groups = _sample(es, model_path, max_len, s, timing)
    t0 = time.time()
    flat = [(i, smp) for i, g in enumerate(groups) for smp in g]
    scores = score_samples(es, flat)
    timing["score_s"], t0 = time.time() - t0, time.time()
    ranks = _scorer_scores(s.scorer, es, flat, scores.values)
    timing["rank_s"] = time.time() - t0

    problem_rows, sample_rows = result_rows(es, groups, scores, ranks, ks)
    n_tokens = sum(r["tokens"] for r in sample_rows)
    timing |= {"total_s": time.time() - t_start, "completion_tokens": n_tokens, "tokens_per_s": n_tokens / max(timing["generate_s"], 1e-9)}
    out = Path(s.out) if s.out else Path("runs") / f"eval-{spec.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    report = {
        "model": s.model, "model_path": model_path, "dataset": spec_dict(spec), "settings": asdict(s) | {"ks": ks, "max_model_len": max_len},
        "n_problems": len(es.problems), "n_samples": len(sample_rows), "prompts_left_out_too_long": es.dropped,
        "reward_errors": scores.n_errors, "metrics": aggregate(problem_rows), "timing": timing,
        "files": {"samples": "samples.jsonl", "problems": "problems.jsonl"},
        "host": {"cpus": os.cpu_count()},
    }
    write_report(out, report, sample_rows, problem_rows)
    report["out"] = str(out)
    return report


def prepare_eval(s: EvalSettings, scorers: list[str]):
    """(spec, model path, context length, EvalSet) of an eval, after the checks that come before
    any sampling: each reward model is there, each PRM's step delimiter is the data set's."""
    from transformers import AutoTokenizer

    from rlreason.config import ConfigError
    from rlreason.data.datasets import get_spec
    from rlreason.models import locate_model
    from rlreason.rewards import prepare_rewards

    spec = get_spec(s.dataset, prefer_hub=s.hub, split=s.split, answer_extract=s.answer_extract, reward=s.reward, template=s.template, **s.fields)
    for scorer in scorers:
        if scorer.startswith("rm:"):
            locate_model(scorer[3:])  # a reward model that is not there fails now, not after sampling
        if scorer.startswith("prm:"):
            prm_path, _ = parse_prm_scorer(scorer)
            if (theirs := prm_delimiter(prm_path)) != (ours := dataset_step_delimiter(spec)):
                raise ConfigError(f"--scorer prm:{prm_path}: its step delimiter {theirs!r} differs from data set {spec.label}'s {ours!r}")
    prepare_rewards(spec.reward, unsafe_code=s.unsafe_code, threads=SCORING_THREADS)
    model_path = resolve_eval_model(s.model, s.max_model_len)
    max_len = s.max_model_len
    if (limit := model_max_len(model_path)) is not None and limit < max_len:
        log.info("model %s holds %d positions: max_model_len %d -> %d", model_path, limit, max_len, limit)
        max_len = limit
    es = load_eval_set(spec, AutoTokenizer.from_pretrained(model_path), max_len - s.max_tokens, s.limit)
    return spec, model_path, max_len, es


def start_engine(s: EvalSettings, model_path: str, max_len: int):
    """The eval's vLLM engine, in this process (no Ray)."""
    from rlreason.rollout.vllm_engine import VLLMEngine

    log.info("starting the vLLM engine: %s, %s, %d positions", model_path, s.dtype, max_len)
    return VLLMEngine(model_path, s.dtype, max_len, s.kv_cache_gib, s.seed, s.threads)


def _sample(es: EvalSet, model_path: str, max_len: int, s: EvalSettings, timing: dict):
    """s.n samples of every prompt from a vLLM engine started here (and let go after)."""
    t0 = time.time()
    engine = start_engine(s, model_path, max_len)
    t1 = time.time()
    log.info("engine ready in %.0f s; sampling %d problems x %d", t1 - t0, len(es.prompts), s.n)
    groups, tokens = [None] * len(es.prompts), 0
    try:
        with Progress(len(es.prompts), "eval", unit="problem") as bar:
            for done in engine.generate_stream(es.prompts, s.n, s.temperature, s.top_p, s.max_tokens, s.seed):
                for i, group in done:
                    groups[i] = group
                    tokens += sum(len(smp.completion_ids) for smp in group)
                bar.update(len(done), tok_s=round(tokens / max(time.time() - t1, 1e-9)))
    finally:
        engine.shutdown()  # now, not when collected (VLLMEngine.shutdown)
    timing["engine_start_s"], timing["generate_s"] = t1 - t0, time.time() - t1
    return groups


def score_samples(es: EvalSet, flat: list, workers: int = SCORING_THREADS):
    """Scores of [(problem index, sample), ...] by the set's reward, rows in parallel."""
    from rlreason.rewards import score_parallel

    return score_parallel(es.reward_fn, [es.prompts[i] for i, _ in flat], [smp.text for _, smp in flat],
                          [es.problems[i].answer for i, _ in flat], max_workers=workers)


def _scorer_scores(scorer: str, es: EvalSet, flat: list, rewards: list[float]) -> list[float] | None:
    """The best-of-N ranking score of each sample of `flat` (None for --scorer none)."""
    if scorer == "verifier":
        return list(rewards)
    if scorer.startswith("rm:"):
        return RewardModelScorer(scorer[3:])([es.prompts[i] for i, _ in flat], [smp.text for _, smp in flat])
    if scorer.startswith("prm:"):
        prm = PRMScorer(*parse_prm_scorer(scorer))
        out = prm([es.prompts[i] for i, _ in flat], [smp.text for _, smp in flat])
        if prm.no_steps:
            log.warning("--scorer %s: %d of %d samples have no step delimiter %r (scored as one step)", scorer, prm.no_steps, len(flat), prm.delimiter)
        return out
    return None  # 'none' (EvalSettings.check refuses any other)


def result_rows(es: EvalSet, groups, scores, ranks: list[float] | None, ks: list[int]) -> tuple[list[dict], list[dict]]:
    """(one row per problem with its metrics, one row per sample), in problem and sample order.
    `scores`: the samples' rewards (Scores, flat in that order); `ranks`: their scorer's scores."""
    vote, code = bool(es.spec.extractor), es.spec.tests is not None
    problem_rows, sample_rows, flat_i = [], [], 0
    for i, (problem, group) in enumerate(zip(es.problems, groups)):
        n = len(group)
        values, errors = scores.values[flat_i : flat_i + n], scores.errors[flat_i : flat_i + n]
        scored = ranks[flat_i : flat_i + n] if ranks is not None else None
        flat_i += n
        correct = [v >= 1.0 for v in values]
        answers = [vote_answer(smp.text, es.spec.extractor) for smp in group] if vote else None
        top = majority(answers) if vote else None
        meta, gold = problem.meta, None if code else problem.answer
        problem_rows.append({
            "id": meta["id"], "row": meta["row"], "subject": meta.get("subject"), "level": meta.get("level"),
            "n": n, "correct": sum(correct), "gold": gold, "majority": answers[top] if top is not None else None,
            "metrics": problem_metrics(correct, answers, scored, ks),
        })
        for j, smp in enumerate(group):
            sample_rows.append({
                "id": meta["id"], "sample": j, "prompt": es.prompts[i] if j == 0 else None, "completion": smp.text,
                "answer": answers[j] if vote else None, "gold": gold, "reward": values[j], "correct": correct[j],
                "reward_error": errors[j], "score": scored[j] if scored is not None else None,
                "finish_reason": smp.finish_reason, "tokens": len(smp.completion_ids),
            })
    return problem_rows, sample_rows


def write_report(out: Path, report: dict, sample_rows: list[dict], problem_rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "samples.jsonl", sample_rows)
    _write_jsonl(out / "problems.jsonl", problem_rows)
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")

