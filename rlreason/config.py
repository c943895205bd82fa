"""One typed config tree.

A recipe is a sparse YAML file that states only what differs from the defaults
below; `key=value` overrides (dotted paths) are applied after it. Unknown keys and
ill-typed values stop the run before any work, naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlreason.data.stream import ADDITION_DIGITS, HELDOUT_SEED, HELDOUT_SIZE
from rlreason.errors import UserError


DTYPES = ("float32", "bfloat16", "float16")  # a model's, an engine's


class ConfigError(UserError, ValueError):
    """A recipe or override that does not fit the config tree."""


def _choose(ok: bool, key: str, value: Any, allowed: Any) -> None:
    """Unless ok: ConfigError "key 'KEY': unknown value VALUE; choose one of ALLOWED"."""
    if not ok:
        raise ConfigError(f"key '{key}': unknown value {value!r}; choose one of {allowed}")


def check_range(label: str, value: float, low: float = 0, high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
    """ConfigError "LABEL: must be a finite number > 0, got nan" unless `value` is finite and in
    [low, high] (an open end leaves its bound out; high None: no upper bound). NaN and inf never pass."""
    above = value > low if low_open else value >= low
    below = high is None or (value < high if high_open else value <= high)
    if not (math.isfinite(value) and above and below):
        if high is None:
            bound = f"{'>' if low_open else '>='} {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise ConfigError(f"{label}: must be {kind} {bound}, got {value}")


def _each(section: str, obj: Any, names: tuple[str, ...], **bounds) -> None:
    """check_range on each of obj's `names`, as keys 'section.name'."""
    for name in names:
        check_range(f"key '{section}.{name}'", getattr(obj, name), **bounds)


def _positive(section: str, obj: Any, *names: str) -> None:
    """Each of obj's `names` is finite and > 0 (a count, a size, a divisor)."""
    _each(section, obj, names, low_open=True)


def _non_negative(section: str, obj: Any, *names: str) -> None:
    """Each of obj's `names` is finite and >= 0."""
    _each(section, obj, names)


def _fraction(section: str, obj: Any, *names: str) -> None:
    """Each of obj's `names` is in [0, 1] (a probability, a share)."""
    _each(section, obj, names, high=1)


@dataclass
class TinyModelConfig:
    """Shape of the locally built Qwen2-architecture model (used when model.path == 'tiny')."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 2  # head_dim 64: a size every vLLM attention backend supports
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 256
    # RoPE's base: positions rotate query/key pairs at frequencies theta^(-2i/head_dim). A larger
    # base slows the low frequencies only: the first pair rotates 1 radian a token at any base.
    rope_theta: float = 10000.0
    seed: int = 0

    def check(self) -> None:
        _positive("model.tiny", self, "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings", "rope_theta")
        _non_negative("model.tiny", self, "seed")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"key 'model.tiny.num_heads': must divide model.tiny.hidden_size={self.hidden_size}, got {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"key 'model.tiny.num_kv_heads': must divide model.tiny.num_heads={self.num_heads}, got {self.num_kv_heads}")


@dataclass
class ModelConfig:
    path: str = "tiny"  # 'tiny' = build locally; else an HF hub id or a local HF directory
    dtype: str = "float32"
    cache_dir: str = "~/.cache/rlreason"  # where the tiny model and tokenizer are cached
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)

    def check(self) -> None:
        """Known dtype and a path; whether the path exists is resolve_model's (rlreason.models) and the dry run's."""
        _choose(self.dtype in DTYPES, "model.dtype", self.dtype, list(DTYPES))
        if not self.path.strip():
            raise ConfigError("key 'model.path': empty; use 'tiny', a local model directory or a hub id")
        self.tiny.check()


@dataclass
class DatasetConfig:
    """task.name=dataset: the rows to train on (rlreason.data.datasets / dataset_task). Every key
    but source overrides the built-in's mapping when set; null keeps it."""

    source: str = ""  # a built-in (gsm8k_train, math_train, countdown, mbpp, ...), a .jsonl/.json/.parquet file, or an HF hub id
    local: str | None = None  # read this .jsonl/.json/.parquet copy instead of the hub, with the same mapping (offline clusters)
    split: str | None = None  # hub split; null = the built-in's, else 'train'
    hub_config: str | None = None  # e.g. 'main' for openai/gsm8k
    question: str | None = None  # field names ...
    answer: str | None = None
    answer_extract: str | None = None  # 'gsm8k' (#### N), 'boxed' (a solution's last box) or 'field'
    tests: str | None = None  # code sets: the unit tests
    entry_point: str | None = None  # code sets: the function the tests call (inferred from the solution when null)
    solution: str | None = None  # worked solutions: the warm start imitates them
    question_format: str | None = None  # build the question from several fields: '{text} ... {test_list[0]}'
    answer_format: str | None = None
    template: str | None = None  # chat | r1_zero | plain | raw
    instruction: str | None = None  # appended to the question by the chat and plain templates
    difficulty: str | None = None  # a numeric field that ranks the rows ('Level 3' reads as 3): task.curriculum draws by it


@dataclass
class CurriculumConfig:
    """task.curriculum: the prompt stream draws by difficulty (addition: digits; a data set: the
    numeric field task.dataset.difficulty) and moves its frontier up as the policy masters it
    (rlreason.data.curriculum)."""

    enabled: bool = False
    start: int | None = None  # the first frontier; null: what the warm start demonstrated (addition: task.digits), a data set's lowest
    top: int | None = None  # the hardest difficulty it may reach; null: the task's hardest
    # the frontier moves up once the pass rate of the frontier's prompts, in the step's own samples
    # (the mean reward, clipped to [0, 1]), averaged over the last `window` steps, reaches threshold
    threshold: float = 0.8
    window: int = 2
    replay: float = 0.25  # the share of each step's prompts drawn from easier difficulties (start .. frontier - 1)
    eval_size: int = 100  # held-out problems per difficulty: eval/d<D>/accuracy, from start to the frontier + eval_ahead
    eval_ahead: int = 2

    def check(self) -> None:
        check_range("key 'task.curriculum.threshold'", self.threshold, 0, 1, low_open=True)
        check_range("key 'task.curriculum.replay'", self.replay, 0, 1, high_open=True)
        _positive("task.curriculum", self, "window", "eval_size")
        _non_negative("task.curriculum", self, "eval_ahead")
        for name in ("start", "top"):
            if getattr(self, name) is not None:
                _non_negative("task.curriculum", self, name)
        if self.start is not None and self.top is not None and self.top < self.start:
            raise ConfigError(f"key 'task.curriculum.top': {self.top} is below task.curriculum.start={self.start}")


@dataclass
class TaskConfig:
    """A built-in generated task: 'addition' (n-digit addition with a carry scratchpad, answer in
    \\boxed{}; reward math) or 'functions' (write f(a,b) from a one-line spec; reward code); or
    'dataset': the rows of task.dataset (held out: task.heldout_size of them, a seeded sample)."""

    name: str = "addition"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    digits: int = ADDITION_DIGITS  # addition only (3)
    # addition only: an index hint (a letter, at a random offset in the alphabet) before each digit
    # of the operands and each scratchpad column, 'c2d3e7+c6d8e2>' (Zhou et al. 2023): the model can
    # find a column's digits by their letter rather than by their distance. (For the tiny model it did
    # not make sums longer than the demonstrated ones reachable: docs/curriculum.md.)
    hints: bool = False
    heldout_size: int = HELDOUT_SIZE  # 500
    seed: int = HELDOUT_SEED  # 1234
    train_size: int = 0  # 0 = an endless stream of fresh problems; N = a fixed pool of N, reshuffled each epoch
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # What a training sample is scored against: 'gold' (the problem's answer) or 'majority' (no
    # verifier label: each group's own majority answer, when at least majority_min of the group's
    # samples give it; a group without one scores 0). Evaluation always uses the gold.
    labels: str = "gold"
    majority_min: float = 0.5

    def extractor(self) -> str:
        """How a completion's answer is read for the majority label (math_reward's EXTRACTORS); '' = none."""
        if self.name == "addition":
            return "last_boxed"
        return _training_spec(self).extractor if self.name == "dataset" else ""

    def check(self) -> None:
        """A known task; for task.name=dataset, a source, a known template and extraction (the
        rows themselves are checked when they load, naming the row)."""
        _choose(self.name in ("addition", "functions", "dataset"), "task.name", self.name, ["addition", "functions", "dataset"])
        _positive("task", self, "digits", "heldout_size")
        _non_negative("task", self, "train_size", "seed")
        self.curriculum.check()
        _choose(self.labels in ("gold", "majority"), "task.labels", self.labels, ["gold", "majority"])
        _each("task", self, ("majority_min",), low_open=True, high=1)
        if self.labels == "majority" and not self.extractor():
            raise ConfigError(f"key 'task.labels': majority labels need an answer to vote on; task {self.name} "
                              f"{'(' + _training_spec(self).label + ') ' if self.name == 'dataset' else ''}has no answer extractor")
        if self.curriculum.enabled:
            if self.name == "functions":
                raise ConfigError("key 'task.curriculum.enabled': task functions has no difficulty; use addition, or a data set with task.dataset.difficulty")
            if self.name == "dataset" and not _training_spec(self).difficulty:
                raise ConfigError("key 'task.curriculum.enabled': set task.dataset.difficulty to the numeric field that ranks the rows (MATH: level)")
            if self.train_size:
                raise ConfigError("key 'task.train_size': a fixed pool cannot follow a curriculum's frontier; set task.train_size=0")
        if self.hints and self.name != "addition":
            raise ConfigError(f"key 'task.hints': index hints are for the addition task, not {self.name}")
        if self.hints and self.digits > 26:
            raise ConfigError(f"key 'task.digits': {self.digits} digits with task.hints: one letter a digit allows at most 26")
        if self.name == "dataset":
            from rlreason.data.datasets import ANSWER_EXTRACTS
            from rlreason.data.templates import TEMPLATES

            spec = _training_spec(self)
            if spec.template not in TEMPLATES:
                raise ConfigError(f"key 'task.dataset.template': unknown value {spec.template!r}; choose one of {sorted(TEMPLATES)}")
            if spec.answer_extract not in ANSWER_EXTRACTS:
                raise ConfigError(f"key 'task.dataset.answer_extract': unknown value {spec.answer_extract!r}; choose one of {list(ANSWER_EXTRACTS)}")


@dataclass
class WarmStartConfig:
    """Supervised 'cold start' on demonstrations from an imperfect teacher."""

    enabled: bool = True
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 30
    # Probability of the teacher's systematic mistake (its blind spot): addition drops an inner
    # carry, functions leaves out the constant term.
    teacher_error: float = 0.6
    # The difficulties the teacher demonstrates, drawn uniformly (addition: digit counts, e.g.
    # [1, 2, 3]); [] = the task as configured (addition: task.digits only). Generated tasks only.
    difficulties: list[int] = field(default_factory=list)
    # Reuse the outcome of a warm start this machine already ran with the same inputs (the
    # demonstrations, these settings, the model, its dtype, kernels and threads, the seed, torch's version),
    # from <model.cache_dir>/warm_start/KEY: the weights and the learner's generator, so the run
    # goes on exactly as if it had run it. One learner rank only. `--no-cache` sets it false.
    cache: bool = True

    def check(self) -> None:
        _positive("warm_start", self, "steps", "batch_size", "lr")
        _non_negative("warm_start", self, "warmup_steps")
        _fraction("warm_start", self, "teacher_error")
        for i, d in enumerate(self.difficulties):
            check_range(f"key 'warm_start.difficulties[{i}]'", d, low_open=True)


@dataclass
class RolloutConfig:
    prompts_per_step: int = 32
    group_size: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 48  # the longest correct addition completion is 39 tokens + EOS
    kv_cache_gib: float = 1.0
    max_model_len: int = 256
    seed: int = 0
    # The engines' dtype; '' = model.dtype. On GPUs: bfloat16 engines beside a float32 learner
    # (model.dtype, its master weights and AdamW state) that computes in bf16 (optim.mixed_precision).
    dtype: str = ""
    # vLLM's enforce_eager. null = eager on CPU (fast start), compiled on GPUs (torch.compile +
    # CUDA graphs). false on CPU compiles with inductor: ~25-50 s more start, faster bf16 sampling.
    enforce_eager: bool | None = None
    # Async mode: the batches of the next N steps are sampled while the learner trains, so a
    # batch is up to N policy versions old (metrics async/policy_lag_*). 0 = synchronous.
    # Needs algo.tis_cap, which reweights the stale samples to the current policy.
    max_staleness: int = 0
    # Samples where they teach: each prompt first gets `probe` samples; only a prompt whose probe
    # is scored unevenly (neither all right nor all wrong) gets the other group_size - probe.
    # The others stop there and are refilled with new prompts, as algo.group_filter=mixed does
    # (which this needs). 0 = off: every prompt gets group_size samples.
    probe: int = 0

    def check(self) -> None:
        _choose(self.dtype in ("", *DTYPES), "rollout.dtype", self.dtype, ["''", *DTYPES])
        _positive("rollout", self, "group_size", "prompts_per_step", "max_tokens", "max_model_len", "temperature", "kv_cache_gib")
        _non_negative("rollout", self, "max_staleness", "seed", "probe")
        if self.probe:
            if not 2 <= self.probe < self.group_size:  # one sample is never mixed; group_size is no probe
                raise ConfigError(f"key 'rollout.probe': must be 0 (off) or in [2, rollout.group_size={self.group_size}), got {self.probe}")
        _each("rollout", self, ("top_p",), high=1, low_open=True)
        if self.max_tokens >= self.max_model_len:
            raise ConfigError(f"key 'rollout.max_tokens': {self.max_tokens} leaves no room for a prompt in rollout.max_model_len={self.max_model_len}")


@dataclass
class AlgoConfig:
    advantage: str = "grpo"  # a name in rlreason.algos.ADVANTAGES
    policy_loss: str = "ppo_clip"  # a name in rlreason.algos.POLICY_LOSSES
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low is DAPO's clip-higher
    dual_clip: float | None = None  # c > 1 enables dual-clip for negative advantages
    loss_agg: str | None = None  # a name in rlreason.algos.AGGREGATIONS; None = the loss's own default
    entropy_coef: float = 0.0  # entropy bonus weight
    group_filter: str = "all"  # a name in rlreason.algos.GROUP_FILTERS; 'mixed' = DAPO dynamic sampling
    max_sampling_rounds: int = 1  # rounds of sampling to fill the batch with groups that pass the filter
    overlong_buffer: int = 0  # DAPO soft overlong punishment over the last N tokens of rollout.max_tokens; 0 = off
    overlong_penalty: float = 1.0
    tis_cap: float | None = None  # truncated importance sampling vLLM -> learner, e.g. 2.0; None = off
    kl_coef: float = 0.0  # > 0 loads a frozen reference model and adds a KL loss term
    kl_estimator: str = "k3"  # a name in rlreason.algos.KL_ESTIMATORS
    kl_in_reward: bool = False  # kl_coef * KL as a per-token reward penalty instead of a loss term
    std_eps: float = 1e-6
    epochs: int = 1  # passes over each rollout batch
    minibatches: int = 1  # optimizer steps per pass

    def check(self) -> None:
        """Known algorithm names, and what the chosen loss declares (rlreason.algos.declares)."""
        from rlreason import algos  # pure torch, no ray/vllm

        _choose(self.advantage in algos.ADVANTAGES, "algo.advantage", self.advantage, sorted(algos.ADVANTAGES))
        _choose(self.policy_loss in algos.POLICY_LOSSES, "algo.policy_loss", self.policy_loss, sorted(algos.POLICY_LOSSES))
        _choose(self.kl_estimator in algos.KL_ESTIMATORS, "algo.kl_estimator", self.kl_estimator, sorted(algos.KL_ESTIMATORS))
        _choose(self.loss_agg in (None, *algos.AGGREGATIONS), "algo.loss_agg", self.loss_agg, sorted(algos.AGGREGATIONS))
        if self.dual_clip is not None:
            _each("algo", self, ("dual_clip",), low=1, low_open=True)
        _choose(self.group_filter in algos.GROUP_FILTERS, "algo.group_filter", self.group_filter, sorted(algos.GROUP_FILTERS))
        if self.tis_cap is not None:
            _positive("algo", self, "tis_cap")
        token_level = getattr(algos.POLICY_LOSSES[self.policy_loss], "token_level_ratio", True)
        _choose(self.tis_cap is None or token_level, "algo.tis_cap", self.tis_cap,
                f"null with {self.policy_loss} (token weights; {self.policy_loss}'s ratio is per sequence)")
        _positive("algo", self, "epochs", "minibatches", "max_sampling_rounds", "std_eps")
        _each("algo", self, ("clip_low",), high=1, high_open=True)  # the ratio's floor is 1 - clip_low
        _non_negative("algo", self, "clip_high", "entropy_coef", "overlong_penalty", "kl_coef")
        if self.kl_in_reward and self.kl_coef <= 0:
            raise ConfigError("key 'algo.kl_in_reward': needs algo.kl_coef > 0")


@dataclass
class CriticConfig:
    """PPO's value model: the policy's backbone with a scalar head, trained on the learner
    (in the learner actor, beside the policy) with its own AdamW and clipped value loss.
    With a critic, the loop's per-sequence 'advantages' are taken as the outcome reward
    (use algo.advantage=reward) and the learner turns them into token-level GAE advantages."""

    enabled: bool = False
    lr: float = 1e-4
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 1.0
    whiten: bool = True  # normalise GAE advantages over the batch's completion tokens

    def check(self) -> None:
        _positive("critic", self, "lr", "value_clip")
        _fraction("critic", self, "gamma", "lam")


# optim.attn_implementation: 'auto', or one of transformers' attention kernels
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    warmup_steps: int = 10
    schedule: str = "constant"  # after warm-up: 'constant', or 'cosine' decay to min_lr_ratio * lr at the last step
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0
    micro_batch_size: int = 256  # at most this many sequences per forward/backward; gradients accumulate
    # and at most this many tokens, each micro-batch padded to its own longest sequence (rows of
    # similar length go together); 0 = no token cap
    micro_batch_tokens: int = 0
    gradient_checkpointing: bool = False  # recompute activations in backward (transformers'): less memory, more time
    # The dtype the learner's forward and backward compute in; parameters, gradients and AdamW
    # state stay in model.dtype. 'auto' = bfloat16 on a GPU, model.dtype on CPU; 'bfloat16' = on
    # CPU too (fast on CPUs with AVX512-BF16 or AMX); '' = model.dtype. One process: torch.autocast;
    # FSDP2 ranks on GPUs: MixedPrecisionPolicy (gradients reduced in float32).
    mixed_precision: str = "auto"
    # Skip the forward and backward of rows whose advantages are all zero (a GRPO group whose
    # samples all got the same reward) when that is exact: a policy loss that declares it (PPO-clip,
    # GSPO: rlreason.algos.declares), no entropy bonus, no KL loss term. Such a row adds exactly
    # nothing to the gradient; the loss is still normalised over the whole minibatch, so the
    # update is unchanged.
    skip_zero_advantage: bool = True
    # transformers' attention kernel for the learner's models: 'auto' = 'eager' when the learner
    # computes in bf16 on CPU (torch's CPU flash-attention backward in bf16 was 1.5x slower there,
    # and further from float32), else transformers' default ('sdpa'); or a name transformers knows
    attn_implementation: str = "auto"

    def check(self) -> None:
        _choose(self.schedule in ("constant", "cosine"), "optim.schedule", self.schedule, ["constant", "cosine"])
        _choose(self.mixed_precision in ("auto", "bfloat16", ""), "optim.mixed_precision", self.mixed_precision, ["auto", "bfloat16", "''"])
        _choose(self.attn_implementation in ATTN_IMPLEMENTATIONS, "optim.attn_implementation", self.attn_implementation, list(ATTN_IMPLEMENTATIONS))
        _positive("optim", self, "lr", "micro_batch_size", "grad_clip")
        _non_negative("optim", self, "warmup_steps", "weight_decay", "micro_batch_tokens")
        _fraction("optim", self, "min_lr_ratio")
        if len(self.betas) != 2:
            raise ConfigError(f"key 'optim.betas': must be two numbers [beta1, beta2], got {self.betas}")
        for i, beta in enumerate(self.betas):
            check_range(f"key 'optim.betas[{i}]'", beta, high=1, high_open=True)


@dataclass
class EvalConfig:
    every: int = 5  # evaluate held-out greedy accuracy every K steps (0 = only at start and end)
    size: int = 500  # held-out problems (<= task.heldout_size)
    # Data sets also evaluated (greedy, their own template and reward) at each evaluation: built-in
    # names or local files, as `rlreason eval --dataset` takes them (rlreason.data.datasets.get_spec).
    datasets: list[str] = field(default_factory=list)
    dataset_size: int = 64  # problems of each (the first that fit rollout.max_model_len - rollout.max_tokens)
    template: str = ""  # the prompt template for eval.datasets; '' = each set's own (chat for the math sets)
    # the reward eval/accuracy counts on the held-out problems; '' = the first term of `reward`
    # (its correctness part: 'math' of 'math + 0.1*think_format')
    reward: str = ""

    def check(self) -> None:
        """Ranges, the reward, the template, and that each of eval.datasets names a built-in, an
        existing file or a hub id (whether the hub has it is known when it loads)."""
        from rlreason.data.datasets import get_spec
        from rlreason.data.templates import TEMPLATES

        _non_negative("eval", self, "every")
        _positive("eval", self, "size", "dataset_size")
        for i, name in enumerate(self.datasets):
            try:
                get_spec(name)
            except FileNotFoundError as e:
                raise ConfigError(f"key 'eval.datasets[{i}]': {e}") from None
        if self.reward:
            check_reward("eval.reward", self.reward)
        if self.template and self.template not in TEMPLATES:
            raise ConfigError(f"key 'eval.template': unknown value {self.template!r}; choose one of {sorted(TEMPLATES)}")


@dataclass
class ScoringConfig:
    """How rewards are computed: rows in parallel, failures counted instead of crashing."""

    workers: int = 8  # rows scored at once (threads; math and code checks run in killable processes)
    # A sample whose reward raises is marked, counted (reward/errors) and its group left out of the
    # update; a step where more than this share of samples fails stops the run, naming a row.
    max_error_frac: float = 0.25
    # Code rewards refuse to run without a sandbox (bubblewrap); true runs them with rlimits only,
    # with a loud warning. Only for code you trust.
    unsafe_code: bool = False

    def check(self) -> None:
        _positive("scoring", self, "workers")
        _fraction("scoring", self, "max_error_frac")


@dataclass
class CheckpointConfig:
    """Full run state under run_dir/checkpoints/step_NNNNNN (see rlreason.checkpoint)."""

    every: int = 10  # save every K RL steps, after the warm start (step 0) and at the end; 0 = only at the end
    keep_last: int = 2  # complete checkpoints kept (0 = all); an old one goes only after a newer one is complete

    def check(self) -> None:
        _non_negative("checkpoint", self, "every", "keep_last")


@dataclass
class PRMConfig:
    """`rlreason prm RECIPE`: step labels from the policy's own rollouts (Math-Shepherd), and a
    process reward model trained on them (rlreason/prm_run.py, docs/search.md)."""

    policy: str = "warm_start"  # whose rollouts: the recipe's warm-started policy, or a run directory, checkpoint or HF model
    base: str = ""  # the PRM's starting weights ('': the policy's)
    problems: int = 400  # training-stream problems labelled for training
    heldout_problems: int = 100  # held-out problems labelled for the step AUC
    samples: int = 4  # completions sampled per problem
    rollouts: int = 4  # continuations that label one step
    delimiter: str = ""  # where a step ends ('': the task's: ';' for addition, a blank line for math)
    epochs: int = 6
    lr: float = 3.0e-4
    batch_size: int = 32
    outcome_model: bool = True  # also train an outcome reward model (rm:PATH) on the same completions' verdicts
    # also train a revision model (rlreason/revision.py) on the same completions: wrong ones, then a right one
    revisions: bool = False
    revision_steps: int = 400  # supervised steps (the warm start's), from the policy's weights
    revision_batch_size: int = 64
    revision_lr: float = 1.0e-3
    revision_max_previous: int = 4  # earlier attempts shown at most (Snell et al.: 4)
    # then compare the search strategies with them at these budgets ([]: no comparison; rlreason.search)
    compare_budgets: list[int] = field(default_factory=list)
    compare_problems: int = 500  # held-out problems of the comparison (eval.datasets[0], or the addition task's)
    compare_beam_width: int = 4

    def check(self) -> None:
        _positive("prm", self, "problems", "heldout_problems", "samples", "rollouts", "epochs", "lr", "batch_size",
                  "revision_steps", "revision_batch_size", "revision_lr", "revision_max_previous", "compare_problems", "compare_beam_width")
        for i, b in enumerate(self.compare_budgets):
            check_range(f"key 'prm.compare_budgets[{i}]'", b, low_open=True)
            if b % self.compare_beam_width or b % 4:  # beam search and DVTS keep b/width; revisions run b/4 chains of 4
                raise ConfigError(f"key 'prm.compare_budgets': {b} is not a multiple of prm.compare_beam_width={self.compare_beam_width} "
                                  "and of 4 (the revision chains)")


TRACKERS = ("tensorboard", "wandb", "mlflow")


@dataclass
class LogConfig:
    """Where each step's metrics go besides metrics.jsonl and the console (rlreason/trackers.py)."""

    backends: list[str] = field(default_factory=lambda: ["tensorboard"])  # any of tensorboard, wandb, mlflow
    project: str = "rlreason"  # the W&B project and the MLflow experiment; the run's name is `name`
    tags: list[str] = field(default_factory=list)
    wandb_entity: str | None = None  # None: W&B's default entity
    wandb_mode: str | None = None  # online | offline | disabled; None: W&B's own choice (WANDB_MODE, login)
    # None: MLFLOW_TRACKING_URI when set, else a SQLite file beside the run directories
    # (sqlite:///<run_dir's parent>/mlflow.db; `mlflow ui --backend-store-uri` that URI shows every run)
    mlflow_tracking_uri: str | None = None

    def check(self) -> None:
        for backend in self.backends:
            _choose(backend in TRACKERS, "log.backends", backend, list(TRACKERS))
        if len(set(self.backends)) != len(self.backends):
            raise ConfigError(f"key 'log.backends': {self.backends} names a backend twice")
        modes = [None, "online", "offline", "disabled"]
        _choose(self.wandb_mode in modes, "log.wandb_mode", self.wandb_mode, modes)
        if not self.project:
            raise ConfigError("key 'log.project': must not be empty")


@dataclass
class RayConfig:
    address: str | None = None  # None: join RAY_ADDRESS if set, else start a local cluster
    num_cpus: int | None = None  # for a local cluster; None = all cores
    learner_cpus: float = 1.0
    rollout_cpus: float = 1.0
    learner_gpus: float = 0.0
    rollout_gpus: float = 0.0
    threads: int = 0  # torch/OMP threads per actor; 0 = all cores of this node (split among rollout workers)
    # Placement (see docs/placement.md). 'split': rollout workers and the learner in separate
    # placement groups; 'colocated': one actor holds the learner and the engine.
    placement: str = "split"
    rollout_workers: int = 1  # vLLM engine actors; prompts are sharded across them
    # learner ranks (split placement): > 1 = FSDP2 data parallelism, one actor and bundle of
    # learner_cpus / learner_gpus each (rlreason.cluster.learner_group); 1 = one plain process
    learner_workers: int = 1
    sync_timeout_s: float = 600.0  # a weight sync slower than this is an error, not a hang
    max_worker_restarts: int = 3  # per rollout worker, over the run; one more death is an error
    sync_bucket_mb: float = 64.0  # weights travel to the engines in buckets of about this size
    # how weights reach the engines (docs/placement.md): 'auto' = in-process when colocated, the
    # object store (in sync_bucket_mb buckets) when split; 'nccl' (GPUs) or 'gloo' (CPU): a
    # broadcast from learner rank 0 to every engine through vLLM's weight-transfer API
    transport: str = "auto"
    placement_timeout_s: float = 120.0  # waiting for the cluster to grant the placement groups

    def check(self) -> None:
        """Raise ConfigError naming the key when a placement value is out of range."""
        if self.placement not in ("split", "colocated"):
            raise ConfigError(f"key 'ray.placement': unknown value {self.placement!r}; choose one of ['split', 'colocated']")
        if self.placement == "colocated" and self.rollout_workers != 1:
            raise ConfigError(f"key 'ray.rollout_workers': colocated placement has one engine, got {self.rollout_workers}")
        if self.placement == "colocated" and self.learner_workers != 1:
            raise ConfigError(f"key 'ray.learner_workers': colocated placement has one learner, got {self.learner_workers}")
        if self.transport not in ("auto", "object_store", "nccl", "gloo"):
            raise ConfigError(f"key 'ray.transport': unknown value {self.transport!r}; choose one of ['auto', 'object_store', 'nccl', 'gloo']")
        if self.placement == "colocated" and self.transport not in ("auto",):
            raise ConfigError(f"key 'ray.transport': colocated placement syncs in process; got {self.transport!r}, use 'auto'")
        if self.transport == "nccl" and not (self.learner_gpus > 0 and self.rollout_gpus > 0):
            raise ConfigError("key 'ray.transport': 'nccl' needs GPUs on both sides (ray.learner_gpus and ray.rollout_gpus > 0); "
                              "on CPU use 'gloo' or 'object_store'")
        if self.transport == "gloo" and self.rollout_gpus > 0:
            raise ConfigError("key 'ray.transport': 'gloo' is for CPU rollout engines (vLLM's engine core in the actor's "
                              "process); with ray.rollout_gpus > 0 use 'nccl'")
        _positive("ray", self, "rollout_workers", "learner_workers", "sync_timeout_s", "sync_bucket_mb", "placement_timeout_s")
        _non_negative("ray", self, "max_worker_restarts", "learner_cpus", "rollout_cpus", "learner_gpus", "rollout_gpus", "threads")
        if self.num_cpus is not None:
            _positive("ray", self, "num_cpus")


@dataclass
class Config:
    name: str = "run"
    run_dir: str = "runs/{name}"
    seed: int = 0
    steps: int = 60
    # > 0: also stop after the first step that ends past this many minutes of RL (the warm start
    # and start-up not counted; a resumed run counts every session's steps), as a finished run does
    max_minutes: float = 0.0
    # a name in rlreason.rewards.REWARDS, 'package.module:function', or a weighted sum 'math + 0.1*think_format'
    reward: str = "math"
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    prm: PRMConfig = field(default_factory=PRMConfig)

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir.format(name=self.name))

    @property
    def engine_dtype(self) -> str:
        """The dtype the rollout engines load the model in."""
        return self.rollout.dtype or self.model.dtype


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '2e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{where}: unsupported type {tp}")
    raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")


def _merge(obj: Any, data: dict, prefix: str, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{path}' (known here: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{path}.", source)
        else:
            setattr(obj, key, _check(value, hints[key], f"{source}: key '{path}'"))


def apply_override(cfg: Config, override: str) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"command line: override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"command line: key '{key}': cannot parse value {raw!r}: {e}") from None
    if value is not None and not isinstance(value, str) and _is_str_field(cfg, key):
        value = raw  # e.g. name=123 for a string field
    nested: dict = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    _merge(cfg, nested, "", "command line")


def _is_str_field(cfg: Config, dotted: str) -> bool:
    obj: Any = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    hints = typing.get_type_hints(type(obj)) if dataclasses.is_dataclass(obj) else {}
    return hints.get(parts[-1]) in (str, str | None)


def load_config(recipe: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults <- recipe YAML <- overrides. Raises ConfigError naming the key and the file."""
    cfg = Config()
    if recipe is not None:
        _merge_recipe(cfg, Path(recipe), seen=())
    for override in overrides:
        apply_override(cfg, override)
    validate(cfg)
    return cfg


def _merge_recipe(cfg: Config, path: Path, seen: tuple) -> None:
    """Merge one recipe; `extends: other.yaml` (relative to it) is merged first."""
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'extends' cycle through {[str(p) for p in seen]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if isinstance(data, dict) and "extends" in data:
        base = data.pop("extends")
        if not isinstance(base, str):
            raise ConfigError(f"{path}: key 'extends': expected a recipe path, got {base!r}")
        _merge_recipe(cfg, path.parent / base, (*seen, path.resolve()))
    _merge(cfg, data, "", str(path))


def validate(cfg: Config) -> None:
    """Every check the types alone cannot express: the top-level keys, each section's own
    check() (every section that has one, once), then the checks across sections."""
    check_range("key 'steps'", cfg.steps, low_open=True)
    check_range("key 'seed'", cfg.seed)
    check_range("key 'max_minutes'", cfg.max_minutes)
    check_reward("reward", cfg.reward)
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if dataclasses.is_dataclass(section) and hasattr(section, "check"):
            section.check()
    _validate_across(cfg)


def _validate_across(cfg: Config) -> None:
    """The checks that read more than one section."""
    from rlreason import algos  # pure torch, no ray/vllm

    _choose(0 <= cfg.algo.overlong_buffer < cfg.rollout.max_tokens, "algo.overlong_buffer", cfg.algo.overlong_buffer, "0 <= n < rollout.max_tokens")
    if cfg.task.hints and any(d > 26 for d in cfg.warm_start.difficulties):
        raise ConfigError("key 'warm_start.difficulties': with task.hints (one letter a digit) at most 26 digits")
    if cfg.warm_start.difficulties and cfg.task.name != "addition":
        raise ConfigError(f"key 'warm_start.difficulties': task {cfg.task.name} has no difficulties to demonstrate (addition has: digit counts)")
    if cfg.task.name == "dataset" and cfg.warm_start.enabled:
        spec = _training_spec(cfg.task)
        if not spec.solution:
            raise ConfigError(
                f"key 'warm_start.enabled': data set {spec.label!r} maps no worked solutions to imitate; "
                "set task.dataset.solution=FIELD or warm_start.enabled=false"
            )
    pass_through = [name for name, fn in algos.ADVANTAGES.items() if getattr(fn, "passes_reward_through", False)]
    if cfg.critic.enabled and cfg.algo.advantage not in pass_through:
        raise ConfigError(f"key 'algo.advantage': with critic.enabled the learner computes GAE; set algo.advantage={' or '.join(pass_through)}")
    advantage, loss = algos.ADVANTAGES[cfg.algo.advantage], algos.POLICY_LOSSES[cfg.algo.policy_loss]
    if cfg.critic.enabled and not loss.token_level_ratio:
        raise ConfigError(
            f"keys 'critic.enabled' and 'algo.policy_loss': {cfg.algo.policy_loss} reads one advantage per sequence (its "
            "first token's), so the critic's per-token GAE advantages would be cut to the first token's; use "
            "algo.policy_loss=ppo_clip with a critic"
        )
    if cfg.rollout.group_size == 1 and getattr(advantage, "group_relative", False):
        raise ConfigError(
            f"keys 'rollout.group_size' and 'algo.advantage': {cfg.algo.advantage} compares each sample with the others of "
            "its prompt, so with a group of 1 every advantage is 0 and nothing is learned; set rollout.group_size >= 2, "
            "or algo.advantage=reinforce_pp (normalised over the whole batch)"
        )
    batch = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    if cfg.algo.minibatches > batch:
        raise ConfigError(f"key 'algo.minibatches': {cfg.algo.minibatches} exceeds the {batch} samples of a step "
                          "(rollout.prompts_per_step x rollout.group_size)")
    if cfg.model.path == "tiny" and cfg.rollout.max_model_len > cfg.model.tiny.max_position_embeddings:
        raise ConfigError(f"key 'rollout.max_model_len': {cfg.rollout.max_model_len} exceeds the tiny model's "
                          f"model.tiny.max_position_embeddings={cfg.model.tiny.max_position_embeddings}")
    if cfg.eval.size > cfg.task.heldout_size:
        raise ConfigError(f"key 'eval.size': {cfg.eval.size} exceeds task.heldout_size={cfg.task.heldout_size}")
    if cfg.rollout.probe and cfg.algo.group_filter != "mixed":
        raise ConfigError(f"key 'rollout.probe': a probe keeps only the prompts it finds mixed; set algo.group_filter=mixed "
                          f"(and algo.max_sampling_rounds > 1 to refill), got algo.group_filter={cfg.algo.group_filter!r}")
    if cfg.rollout.max_staleness > 0 and cfg.algo.tis_cap is None:
        raise ConfigError("key 'rollout.max_staleness': async mode samples with an older policy; set algo.tis_cap (e.g. 2.0) to correct for it")


def check_reward(key: str, spec: str) -> None:
    """resolve_reward(spec): unknown names and broken plug-in paths fail here, before any work."""
    from rlreason.rewards import resolve_reward

    try:
        resolve_reward(spec)
    except ValueError as e:
        raise ConfigError(str(e).replace("key 'reward'", f"key '{key}'")) from None


def _training_spec(task: TaskConfig):
    """task.dataset's DatasetSpec (rlreason.data.dataset_task.training_spec), its errors as ConfigError."""
    from rlreason.data.dataset_task import training_spec

    try:
        return training_spec(task.dataset)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# What a resumed run may not change: the model and its shape, the data and its order, the
# group size, the warm start that made the reference, and whether a critic exists.
FROZEN_ON_RESUME = ("model.path", "model.dtype", "model.tiny.", "task.", "warm_start.", "seed", "rollout.group_size", "critic.enabled")
NOT_FROZEN = ("warm_start.cache",)  # how a warm start is obtained, not what it is (a resume does none)


def resume_changes(saved: dict, cfg: Config) -> tuple[list[str], list[str]]:
    """Compare a checkpoint's config with the current one: (changed keys that are allowed,
    changed keys that are refused). Keys are dotted paths; added or removed keys count as changed."""
    old, new = flatten(saved), flatten(to_dict(cfg))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))
    frozen = [k for k in changed if k not in NOT_FROZEN and any(k == f or (f.endswith(".") and k.startswith(f)) for f in FROZEN_ON_RESUME)]
    return [k for k in changed if k not in frozen], frozen


def learner_kwargs(cfg: Config, model_path: str, threads: int) -> dict:
    """rlreason.learner.policy.Learner's constructor arguments for this run (a learner actor's,
    the colocated actor's, or one in this process: rlreason.prm_run)."""
    return dict(model=model_path, algo=cfg.algo, optim=cfg.optim, dtype=cfg.model.dtype, seed=cfg.seed,
                threads=threads, total_steps=cfg.steps, critic=cfg.critic)


def engine_kwargs(cfg: Config, model_path: str, threads: int, weight_transfer: str | None = None) -> dict:
    """rlreason.rollout.vllm_engine.VLLMEngine's constructor arguments for this run."""
    return dict(model=model_path, dtype=cfg.engine_dtype, max_model_len=cfg.rollout.max_model_len,
                kv_cache_gib=cfg.rollout.kv_cache_gib, seed=cfg.rollout.seed, threads=threads,
                weight_transfer=weight_transfer, enforce_eager=cfg.rollout.enforce_eager)


def dumps(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def dump(cfg: Config, path: Path) -> None:
    path.write_text(dumps(cfg))
