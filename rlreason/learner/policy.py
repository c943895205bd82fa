"""The learner: a transformers causal LM, its AdamW optimizer, warm start and the RL update."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from rlreason.algos import (
    KL_ESTIMATORS,
    POLICY_LOSSES,
    aggregate,
    apply_kl_penalty,
    clipped_value_loss,
    entropy_bonus,
    gae_advantages,
    kl_penalty_to_go,
    masked_mean,
    mismatch_stats,
    part_weight,
    truncated_is_weights,
    whiten,
)
from rlreason.checkpoint import fingerprint, rng_state, set_rng_state
from rlreason.config import AlgoConfig, CriticConfig, OptimConfig, WarmStartConfig
from rlreason.learner.batch import pack_micro_batches, sft_batch, trim
from rlreason.types import Batch, UpdateStats

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _takes_logits_to_keep(model) -> bool:
    """Whether the model's forward computes logits for only its last N positions (transformers'
    `logits_to_keep`: every causal LM built on GenerationMixin's conventions, Qwen2 and Llama among them)."""
    forward = getattr(model, "forward", None)
    return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters


def token_logprobs(model, batch: Batch, temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = True):
    """Per-token logprobs of each next token (B, T-1), and optionally the entropy (B, T-1).

    The LM head and the softmax run only from the first position that the loss mask uses
    (the first completion token of any row) to the end; earlier positions (prompts) get 0.
    That is what they cost on a model with a 150k vocabulary; models whose forward has no
    `logits_to_keep` compute every position. entropy_grad=False computes the entropy as a
    metric only, outside autograd (no (B, T, V) tensors kept for a backward that adds nothing)."""
    T = batch.input_ids.shape[1]
    used = batch.loss_mask.any(0).nonzero()
    first = int(used[0]) if len(used) and _takes_logits_to_keep(model) else 0
    kwargs = {"logits_to_keep": T - first} if first else {}
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, batch.input_ids[:, first + 1 :, None].to(logits.device)).squeeze(-1)
    entropy = None
    if with_entropy:
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    if first:
        logp = torch.nn.functional.pad(logp, (first, 0))
        entropy = torch.nn.functional.pad(entropy, (first, 0)) if entropy is not None else None
    return logp, entropy


def micro_logprobs(model, batch: Batch, idx: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = True):
    """token_logprobs of rows `idx`, computed on those rows trimmed to their own longest and
    padded back with zeros to the batch's T: (len(idx), T) each."""
    logp, entropy = token_logprobs(model, trim(batch.select(idx)), temperature, with_entropy, entropy_grad)
    pad = (0, batch.loss_mask.shape[1] - logp.shape[1])
    return torch.nn.functional.pad(logp, pad), (torch.nn.functional.pad(entropy, pad) if entropy is not None else None)


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base lr at optimizer-schedule step `step` (0-based): linear warm-up,
    then constant or cosine decay that reaches `min_ratio` at step total_steps - 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps - 1 <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - 1 - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def compute_dtype(mixed_precision: str, device: torch.device, model_dtype: torch.dtype) -> torch.dtype | None:
    """The dtype optim.mixed_precision makes the learner compute in, or None for model_dtype
    ('auto': bfloat16 on a GPU, none on CPU)."""
    if mixed_precision == "auto":
        mixed_precision = "bfloat16" if device.type == "cuda" else ""
    dtype = _DTYPES[mixed_precision] if mixed_precision else None
    dtype = None if dtype == model_dtype else dtype
    if dtype == torch.bfloat16 and device.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning(
            "optim.mixed_precision=bfloat16 on a CPU without AVX512-BF16 or AMX (no avx512_bf16/amx_bf16 in /proc/cpuinfo): "
            "bf16 matmuls are emulated there, 10-30x slower than float32; set optim.mixed_precision='' for float32"
        )
    return dtype


def attention_kwargs(attn_implementation: str, device: torch.device, compute: torch.dtype | None) -> dict:
    """from_pretrained's attn_implementation for optim.attn_implementation ({} = transformers'
    default). 'auto': 'eager' for bf16 compute on CPU, where torch's flash-attention kernel for
    CPU was 1.5x slower in the update (its backward) and further from float32 than eager
    attention (docs/learner.md); else transformers' default."""
    if attn_implementation == "auto":
        attn_implementation = "eager" if device.type == "cpu" and compute == torch.bfloat16 else ""
    return {"attn_implementation": attn_implementation} if attn_implementation else {}


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); None where unknown."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@dataclasses.dataclass
class MicroStats:
    """What one micro-batch of the RL update adds to its statistics (Learner._micro_step)."""

    weight: float  # its loss weight: its share of the minibatch's aggregate (0 for a rank's padding)
    token_share: float  # its share of the minibatch's completion tokens (0 for a rank's padding)
    loss: float  # its total loss, its policy loss and KL term, and the policy loss's clip_frac: unweighted
    policy_loss: float
    kl: float
    clip_frac: float
    entropy: float  # token mean of its entropy
    tis_clip_frac: float | None  # None: algo.tis_cap off


@dataclasses.dataclass
class UpdateSums:
    """Running sums of one RL update's statistics. Per micro-batch (add_micro): the loss terms,
    clip fraction and entropy weighted by its loss weight, the TIS clip fraction by its token
    share, and both weights; per optimizer step (add_step): the gradient norm and the critic's
    value loss and clip fraction. shares() are what the data-parallel ranks sum
    (Learner._reduce_stats; FSDPLearner all-reduces the keys of its _SHARED_SUMS)."""

    loss: float = 0.0
    policy_loss: float = 0.0
    kl: float = 0.0
    clip_frac: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0
    tis_clip_frac: float = 0.0
    value_loss: float = 0.0
    value_clip_frac: float = 0.0
    seen_weight: float = 0.0
    seen_tokens: float = 0.0
    steps: int = 0  # optimizer steps

    def add_micro(self, m: MicroStats) -> None:
        """One micro-batch's forward and backward (Learner._micro_step)."""
        self.seen_tokens += m.token_share
        if m.tis_clip_frac is not None:
            self.tis_clip_frac += m.tis_clip_frac * m.token_share
        self.loss += m.loss * m.weight
        self.policy_loss += m.policy_loss * m.weight
        self.kl += m.kl * m.weight
        self.clip_frac += m.clip_frac * m.weight
        self.entropy += m.entropy * m.weight
        self.seen_weight += m.weight

    def add_step(self, grad_norm: float, value: tuple[float, float] | None = None) -> None:
        """One optimizer step: its gradient norm, and the critic step's (value loss, clip fraction) sums."""
        self.grad_norm += grad_norm
        if value is not None:
            self.value_loss += value[0]
            self.value_clip_frac += value[1]
        self.steps += 1

    def shares(self) -> dict[str, float]:
        """Every sum by name (not the step count)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "steps"}

    def update_stats(self, lr: float, tokens: int, mismatch: dict[str, float], skipped_rows: float) -> UpdateStats:
        """Clip fraction, entropy and the TIS clip fraction: means over the rows whose forward ran
        (all of them unless rows were skipped); loss, KL, gradient norm and the critic's: means
        of the minibatch aggregates over the optimizer steps."""
        n = self.steps
        per_seen = lambda total, weight: total / weight if weight > 0 else 0.0  # noqa: E731
        return UpdateStats(
            loss=self.loss / n,
            policy_loss=self.policy_loss / n,
            kl=self.kl / n,
            clip_frac=per_seen(self.clip_frac, self.seen_weight),
            entropy=per_seen(self.entropy, self.seen_weight),
            grad_norm=self.grad_norm / n,
            lr=lr,
            tokens=tokens,
            mismatch_logprob_diff=mismatch["logprob_diff_mean"],
            mismatch_logprob_diff_max=mismatch["logprob_diff_max"],
            mismatch_kl=mismatch["kl"],
            is_ratio_mean=mismatch["is_ratio_mean"],
            is_ratio_min=mismatch["is_ratio_min"],
            is_ratio_max=mismatch["is_ratio_max"],
            tis_clip_frac=per_seen(self.tis_clip_frac, self.seen_tokens),
            skipped_rows=skipped_rows,
            value_loss=self.value_loss / n,
            value_clip_frac=self.value_clip_frac / n,
        )


class Learner:
    # data-parallel rank and number of ranks: rlreason.learner.fsdp.FSDPLearner sets them and
    # overrides the hooks below (_wrap ... _reduce_stats); one process owns the whole batch
    rank, world = 0, 1

    def __init__(
        self,
        model: str,
        algo: AlgoConfig,
        optim: OptimConfig,
        dtype: str = "float32",
        seed: int = 0,
        threads: int = 0,
        total_steps: int = 1,
        critic: CriticConfig | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        if not hasattr(self, "device"):  # FSDPLearner picks its rank's device first
            # the GPU Ray gave this actor (ray.learner_gpus), else the CPU
            self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        torch.manual_seed(seed)
        self.algo, self.optim_cfg, self.model_path, self.dtype = algo, optim, model, _DTYPES[dtype]
        self.compute_dtype = compute_dtype(optim.mixed_precision, self.device, self.dtype)
        # every model this learner loads (policy, critic, KL reference) gets this attention kernel
        self.load_kwargs = {"dtype": self.dtype, **attention_kwargs(optim.attn_implementation, self.device, self.compute_dtype)}
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, **self.load_kwargs)
        if optim.gradient_checkpointing:  # recompute each layer's activations in backward: memory for time
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = self._wrap(self.model)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.ref = None
        self.ref_identity: dict | None = None  # {'source': 'base' | 'snapshot', 'sha256': ...}
        self.trained = False  # have the weights moved away from `model`?
        self.optimizer = self._new_optimizer(optim.lr, optim.weight_decay, optim.betas)
        self.lr_lambda = lambda s: lr_factor(s, optim.warmup_steps, total_steps, optim.schedule, optim.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_lambda)
        self.policy_loss = POLICY_LOSSES[algo.policy_loss]
        # None: the loss's own default aggregation (token mean for PPO-clip, seq mean for GSPO)
        self.agg = algo.loss_agg or inspect.signature(self.policy_loss).parameters["agg"].default
        self.kl_fn = KL_ESTIMATORS[algo.kl_estimator]
        self.generator = torch.Generator().manual_seed(seed)
        self.critic_cfg = critic or CriticConfig()
        self.critic = None
        if self.critic_cfg.enabled:  # PPO's value model lives on the learner, beside the policy
            from transformers import AutoConfig, AutoModelForTokenClassification

            # no dropout before the value head (transformers defaults it to 0.1): values must be deterministic
            critic_config = AutoConfig.from_pretrained(model, num_labels=1)
            critic_config.classifier_dropout = 0.0
            self.critic = AutoModelForTokenClassification.from_pretrained(model, config=critic_config, **self.load_kwargs)
            self.critic = self.critic.to(self.device)
            self.critic.config.pad_token_id = self.pad_id
            self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=self.critic_cfg.lr, betas=tuple(optim.betas))

    def _new_optimizer(self, lr, weight_decay, betas):
        return torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay, betas=tuple(betas))

    # ---- warm start (the R1 "cold start": supervised steps on demonstrations) ----
    def warm_start(self, pairs: list[tuple[str, str]] | None, cfg: WarmStartConfig, first: int = 0, last: int | None = None) -> dict:
        """Supervised fine-tuning on (prompt, completion) text pairs; completions end with EOS.

        Runs steps first .. last-1 of cfg.steps (all by default), so that the caller can show
        progress between pieces: the piece with first=0 encodes `pairs` and starts the optimizer
        (later pieces pass pairs=None), the one that reaches cfg.steps finishes (the KL reference,
        the summary). Returns {'losses': this piece's losses}, and at the end the summary:
        warm_start/loss_first, warm_start/loss_last, timing/warm_start."""
        last = cfg.steps if last is None else last
        if first == 0:
            eos = self.tokenizer.eos_token_id
            encoded = [
                (self.tokenizer(p, add_special_tokens=False)["input_ids"], self.tokenizer(c, add_special_tokens=False)["input_ids"] + [eos])
                for p, c in pairs
            ]
            opt = self._new_optimizer(cfg.lr, 0.0, (0.9, 0.99))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, "cosine", 0.1))
            self._warm = {"encoded": encoded, "opt": opt, "sched": sched, "losses": [], "t0": time.time(), "seconds": 0.0}
        w = self._warm
        t0 = time.time()
        self.trained = True
        self.model.train()
        losses = []
        for step in range(first, last):
            idx = torch.randint(len(w["encoded"]), (cfg.batch_size,), generator=self.generator)
            batch = self._on_device(sft_batch([w["encoded"][i] for i in idx], self.pad_id))
            w["opt"].zero_grad(set_to_none=True)
            loss_sum = 0.0
            # rows of similar length together (optim.micro_batch_size / micro_batch_tokens), each
            # trimmed to its own longest; FSDP: this rank's share, padded to the others' count
            for rows, real in self._rank_micro_batches(batch, torch.arange(len(batch))):
                micro = trim(batch.select(rows))
                with self._autocast():
                    logp, _ = token_logprobs(self.model, micro)
                loss = -masked_mean(logp, micro.loss_mask)
                self._check_finite(loss, f"warm-start step {step}")
                weight = part_weight(micro.loss_mask, batch.loss_mask, "token_mean") * real
                (loss * weight).backward()  # the micro-batches' parts add up to the batch's token mean
                loss_sum += loss.item() * weight.item()
            self._clip_grads(self.model.parameters(), 1.0)
            w["opt"].step()
            w["sched"].step()
            losses.append(self._reduce_stats({"loss": loss_sum}, None)[0]["loss"])
        w["losses"] += losses
        w["seconds"] += time.time() - t0
        if last < cfg.steps:
            return {"losses": losses}
        del self._warm
        if self.algo.kl_coef > 0:
            self.make_reference()
        return {"losses": losses, "warm_start/loss_first": w["losses"][0], "warm_start/loss_last": w["losses"][-1], "timing/warm_start": w["seconds"]}

    def save_warm_start(self, path: str, summary: dict) -> None:
        """Keep this warm start's outcome in `path` (the warm-start cache): the policy's weights,
        the learner's generator (a run that reuses them goes on exactly as this one) and the
        summary. Written whole under a temporary name, then renamed: a reader sees all or nothing."""
        import shutil

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.parent / f".tmp-{p.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.save(str(tmp / "policy"))
        torch.save({"generator": self.generator.get_state()}, tmp / "learner.pt")
        (tmp / "summary.json").write_text(json.dumps(summary))
        try:
            tmp.rename(p)
        except OSError:  # another run cached the same warm start first
            shutil.rmtree(tmp, ignore_errors=True)

    def load_warm_start(self, path: str) -> dict | None:
        """The outcome save_warm_start kept in `path`, loaded into this learner (weights,
        generator, the KL reference when one is used); its summary, or None when there is none."""
        from transformers import AutoModelForCausalLM

        p = Path(path)
        if not (p / "summary.json").is_file():
            return None
        self._load_model_state(self.model, AutoModelForCausalLM.from_pretrained(p / "policy", dtype=self.dtype).state_dict())
        self.generator.set_state(torch.load(p / "learner.pt", weights_only=False)["generator"])
        self.trained = True
        self.model.train()
        if self.algo.kl_coef > 0:
            self.make_reference()
        return json.loads((p / "summary.json").read_text())

    def make_reference(self) -> None:
        """Freeze a copy of the current policy as the KL reference. Its identity is the base
        model when the weights are still those of `model`, else a snapshot that checkpoints carry."""
        self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.ref_identity = {"source": "snapshot" if self.trained else "base", "sha256": fingerprint(self.ref.state_dict())}

    # ---- the RL update ----
    def update(self, batch: Batch, temperature: float = 1.0) -> UpdateStats:
        """PPO-style update on one rollout batch: `epochs` passes of `minibatches` optimizer steps.

        With exactly one pass and one minibatch the update is on-policy and the old logprobs
        are the current ones, detached: no second forward pass.
        """
        if self.algo.kl_coef > 0 and self.ref is None:
            self.make_reference()
        batch = self._on_device(batch)
        self.trained = True
        self.model.train()
        old_logprobs, ref_logprobs = self._old_and_ref_logprobs(batch, temperature)
        batch, critic_targets = self._shape_advantages(batch, old_logprobs, ref_logprobs, temperature)
        kl_ref = None if self.algo.kl_in_reward else ref_logprobs  # the KL loss term's reference logprobs
        needed = self._rows_with_gradient(batch, kl_ref is not None)
        sums = UpdateSums()
        seen_old = torch.zeros_like(batch.sample_logprobs)  # the learner's old logprobs, for the mismatch metrics
        seen_rows = torch.zeros(len(batch), dtype=torch.bool)  # rows whose forward ran (epoch 0)
        for epoch in range(self.algo.epochs):
            for mb_idx in torch.randperm(len(batch), generator=self.generator).chunk(self.algo.minibatches):
                mb_mask = batch.loss_mask[mb_idx]  # the minibatch's aggregate is over all its rows, computed or not
                rows = self._minibatch_rows(mb_idx, needed)
                if epoch == 0:
                    seen_rows[rows] = True
                self.optimizer.zero_grad(set_to_none=True)
                for idx, real in self._rank_micro_batches(batch, rows):  # real=0: a rank's padding
                    old, micro_stats = self._micro_step(batch, idx, real, mb_mask, old_logprobs, kl_ref, temperature)
                    if epoch == 0 and real:
                        seen_old[idx] = old
                    sums.add_micro(micro_stats)
                grad_norm = self._clip_grads(self.model.parameters(), self.optim_cfg.grad_clip)
                self._check_finite(grad_norm, "RL update (gradient norm)")
                self.optimizer.step()
                value = self._critic_step(batch, mb_idx, *critic_targets) if self.critic is not None else None
                sums.add_step(grad_norm.item(), value)
        self.scheduler.step()
        return self._update_stats(sums, batch, seen_old, seen_rows)

    def _old_and_ref_logprobs(self, batch: Batch, temperature: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The pre-update policy's logprobs (None on-policy: one epoch of one minibatch uses the
        current ones, detached) and the KL reference's (None without a reference), (B, T) each."""
        on_policy = self.algo.epochs == 1 and self.algo.minibatches == 1
        old_logprobs = None if on_policy else self._no_grad_logprobs(self.model, batch, temperature)
        ref_logprobs = self._no_grad_logprobs(self.ref, batch, temperature) if self.ref is not None else None
        return old_logprobs, ref_logprobs

    def _shape_advantages(self, batch: Batch, old_logprobs, ref_logprobs, temperature: float) -> tuple[Batch, tuple]:
        """The batch with the advantages the loss uses, and the critic's (old values, returns)
        (() without a critic). With a critic: token-level GAE of the outcome reward, the KL
        penalty in the rewards under algo.kl_in_reward. Without one, under kl_in_reward: each
        token's advantage carries the KL penalty still to come. Else the batch as it is."""
        token_kl = None
        if self.algo.kl_in_reward:  # KL(policy || ref) of the pre-update policy on the sampled tokens (B, T)
            pre_update = old_logprobs if old_logprobs is not None else self._no_grad_logprobs(self.model, batch, temperature)
            token_kl = self.kl_fn(pre_update, ref_logprobs)
        if self.critic is not None:
            batch, old_values, returns = self._gae_batch(batch, token_kl)
            return batch, (old_values, returns)
        if token_kl is not None:
            batch = dataclasses.replace(batch, advantages=batch.advantages + kl_penalty_to_go(token_kl, batch.loss_mask, self.algo.kl_coef))
        return batch, ()

    @staticmethod
    def _minibatch_rows(mb_idx: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
        """The rows of a minibatch that run forward and backward: those with a gradient, else
        one zero-gradient row, so that AdamW steps on zero gradients (not on none) and every
        FSDP rank runs a pass."""
        rows = mb_idx[needed[mb_idx]]
        return rows if len(rows) else mb_idx[:1]

    def _micro_step(self, batch: Batch, idx: torch.Tensor, real: float, mb_mask: torch.Tensor,
                    old_logprobs: torch.Tensor | None, kl_ref: torch.Tensor | None, temperature: float) -> tuple[torch.Tensor, MicroStats]:
        """Forward, loss and backward of micro-batch `idx` (rows of `batch`) in a minibatch whose
        loss mask is `mb_mask`: the policy loss on the advantages (times the truncated IS weights
        under algo.tis_cap), minus the entropy bonus, plus kl_coef * KL to `kl_ref` when given.
        The loss is weighted by the micro-batch's share of the minibatch's aggregate (times
        `real`: 0 for a rank's padding), so the micro-batches' gradients add up to the
        minibatch's. Returns the old logprobs it used (rows idx) and its statistics."""
        micro = batch.select(idx)
        with self._autocast():
            # the entropy is a metric unless the loss has an entropy bonus
            logp, entropy = micro_logprobs(self.model, batch, idx, temperature, with_entropy=True, entropy_grad=bool(self.algo.entropy_coef))
        old = logp.detach() if old_logprobs is None else old_logprobs[idx]
        advantages, tis_clip_frac = micro.advantages, None
        token_share = part_weight(micro.loss_mask, mb_mask, "token_mean").item() * real
        if self.algo.tis_cap is not None:  # correct for sampling with vLLM's slightly different policy
            tis_w, tis_stats = truncated_is_weights(old, micro.sample_logprobs, micro.loss_mask, self.algo.tis_cap)
            advantages = advantages * tis_w  # w > 0 commutes with PPO's min/clip
            tis_clip_frac = tis_stats["tis_clip_frac"].item()
        pg_loss, pg_stats = self.policy_loss(
            logp, old, advantages, micro.loss_mask,
            self.algo.clip_low, self.algo.clip_high, self.algo.dual_clip, self.agg,
        )
        loss = pg_loss
        if self.algo.entropy_coef:
            loss = loss + entropy_bonus(entropy, micro.loss_mask, self.algo.entropy_coef, self.agg)
        kl = torch.zeros(())
        if kl_ref is not None:
            kl = aggregate(self.kl_fn(logp, kl_ref[idx]), micro.loss_mask, self.agg)
            loss = loss + self.algo.kl_coef * kl
        self._check_finite(loss, "RL update")
        # micro-batches add up to the minibatch's aggregate, whatever the mode
        weight = part_weight(micro.loss_mask, mb_mask, self.agg) * real
        (loss * weight).backward()
        return old, MicroStats(
            weight=weight.item(), token_share=token_share, loss=loss.item(), policy_loss=pg_loss.item(), kl=kl.item(),
            clip_frac=pg_stats["clip_frac"].item(), entropy=masked_mean(entropy.detach(), micro.loss_mask).item(),
            tis_clip_frac=tis_clip_frac,
        )

    def _update_stats(self, sums: UpdateSums, batch: Batch, seen_old: torch.Tensor, seen_rows: torch.Tensor) -> UpdateStats:
        """The update's UpdateStats: the ranks' shares of the sums and of the old logprobs
        `seen_old` added up (_reduce_stats), and the mismatch metrics of those old logprobs
        against the sampler's over the rows whose forward ran (`seen_rows`)."""
        totals, seen_old = self._reduce_stats(sums.shares(), seen_old)
        seen_mask = batch.loss_mask * seen_rows[:, None].to(batch.loss_mask.device)
        mismatch = {k: v.item() for k, v in mismatch_stats(seen_old, batch.sample_logprobs, seen_mask).items()}
        return dataclasses.replace(sums, **totals).update_stats(
            lr=self.scheduler.get_last_lr()[0],
            tokens=int(batch.loss_mask.sum().item()),
            mismatch=mismatch,
            skipped_rows=1.0 - seen_rows.float().mean().item(),
        )

    def _values(self, batch: Batch) -> torch.Tensor:
        """Critic value at each position that predicts a next token (B, T)."""
        with self._autocast():
            return self.critic(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1, 0].float()

    @torch.no_grad()
    def _gae_batch(self, batch: Batch, token_kl: torch.Tensor | None):
        """PPO with a critic: the batch's advantages hold the outcome reward (algo.advantage=reward);
        put it on each sequence's last completion token, subtract kl_coef * token_kl when given
        (algo.kl_in_reward), and return (batch with token-level GAE advantages, old values, returns)."""
        c, mask = self.critic_cfg, batch.loss_mask
        old_values = torch.cat([self._values(batch.select(i)) for i in torch.arange(len(batch)).split(self.optim_cfg.micro_batch_size)])
        last = (mask * torch.arange(mask.shape[1])).argmax(-1)  # (B,) last completion position
        rows = torch.arange(len(batch))
        token_rewards = torch.zeros_like(mask)
        token_rewards[rows, last] = batch.advantages[rows, last]
        if token_kl is not None:
            token_rewards = apply_kl_penalty(token_rewards, token_kl, mask, self.algo.kl_coef)
        adv, returns = gae_advantages(token_rewards, old_values, mask, c.gamma, c.lam)
        if c.whiten:
            adv = whiten(adv, mask)
        return dataclasses.replace(batch, advantages=adv), old_values, returns

    def _critic_step(self, batch: Batch, mb_idx: torch.Tensor, old_values, returns) -> tuple[float, float]:
        """One clipped-value-loss optimizer step of the critic on a minibatch."""
        self.critic.train()
        self.critic_optimizer.zero_grad(set_to_none=True)
        mb_mask = batch.loss_mask[mb_idx]
        loss_sum = clip_sum = 0.0
        for idx in mb_idx.split(self.optim_cfg.micro_batch_size):
            micro = batch.select(idx)
            loss, stats = clipped_value_loss(self._values(micro), old_values[idx], returns[idx], micro.loss_mask, self.critic_cfg.value_clip)
            self._check_finite(loss, "critic update")
            w = part_weight(micro.loss_mask, mb_mask, "token_mean")
            (loss * w).backward()
            loss_sum += loss.item() * w.item()
            clip_sum += stats["value_clip_frac"].item() * w.item()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.optim_cfg.grad_clip)
        self.critic_optimizer.step()
        return loss_sum, clip_sum

    def _rows_with_gradient(self, batch: Batch, kl_in_loss: bool) -> torch.Tensor:
        """(B,) bool: the rows the update must run forward and backward. With a policy loss that
        declares zero_advantage_rows_add_nothing (rlreason.algos.declares: PPO-clip, GSPO), no
        entropy bonus and no KL loss term, every term of a row's loss is multiplied by its
        advantage, so a row whose advantages are all zero (a group whose samples all got the same
        reward) adds exactly zero to the gradient: it is skipped (optim.skip_zero_advantage).
        Otherwise, every row."""
        exact = (
            self.optim_cfg.skip_zero_advantage
            and getattr(self.policy_loss, "zero_advantage_rows_add_nothing", False)
            and not self.algo.entropy_coef
            and not kl_in_loss
        )
        if not exact:
            return torch.ones(len(batch), dtype=torch.bool)
        return (batch.advantages != 0).any(-1).cpu()

    def _micro_batches(self, batch: Batch, idx: torch.Tensor) -> list[torch.Tensor]:
        """Rows of similar length together, at most optim.micro_batch_size rows and (when set)
        optim.micro_batch_tokens padded tokens each: no micro-batch pads to the batch's longest."""
        lengths = batch.attention_mask.sum(-1).tolist()
        return pack_micro_batches(lengths, idx, self.optim_cfg.micro_batch_size, self.optim_cfg.micro_batch_tokens)

    def _autocast(self):
        """Forward passes run under this: torch.autocast to compute_dtype (optim.mixed_precision),
        else nothing. Backward follows the forward's dtypes; log-softmax and the loss stay float32."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    # ---- data-parallel hooks: one process here; rlreason.learner.fsdp.FSDPLearner overrides them ----
    def _wrap(self, model):
        """The model as this learner trains it: on its device (FSDP: sharded)."""
        return model.to(self.device)

    def _on_device(self, batch: Batch) -> Batch:
        if self.device.type == "cpu":
            return batch
        return Batch(*(getattr(batch, f.name).to(self.device) for f in dataclasses.fields(batch)))

    def _load_model_state(self, model, state_dict: dict) -> None:
        """Load a full (unsharded) state dict into `model`."""
        model.load_state_dict(state_dict)

    def _load_optimizer_state(self, state: dict) -> None:
        """Load the optimizer's state_dict() as torch writes it (parameters numbered in model order)."""
        self.optimizer.load_state_dict(state)

    def _rank_micro_batches(self, batch: Batch, idx: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
        """This rank's micro-batches of rows `idx`, each with 1.0, or 0.0 for padding (every rank
        must run as many forward/backward passes as the others)."""
        return [(i, 1.0) for i in self._micro_batches(batch, idx)]

    def _clip_grads(self, params, max_norm: float) -> torch.Tensor:
        """Clip to the global gradient norm; returns it (before clipping)."""
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def _reduce_stats(self, sums: dict, seen_old: torch.Tensor | None) -> tuple[dict, torch.Tensor | None]:
        """Sum the ranks' shares of the update's statistics; one process: as they are."""
        return sums, seen_old

    @torch.no_grad()
    def _no_grad_logprobs(self, model, batch: Batch, temperature: float) -> torch.Tensor:
        out = torch.zeros_like(batch.loss_mask)
        for idx in self._micro_batches(batch, torch.arange(len(batch))):
            with self._autocast():
                out[idx] = micro_logprobs(model, batch, idx, temperature)[0]
        return out

    @staticmethod
    def _check_finite(x: torch.Tensor, where: str) -> None:
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"non-finite value ({x.item()}) in {where}; the optimizer step was skipped, weights are unchanged")

    # ---- weights out ----
    def weights(self) -> dict[str, torch.Tensor]:
        """Every tensor of the state dict (lm_head.weight included when tied), detached, on CPU."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def weight_buckets(self, bucket_mb: float):
        """The tensors of weights(), in state-dict order, as lists of (name, tensor) of about
        `bucket_mb` MiB each (rlreason.weight_transfer.state_dict_buckets): the object-store sync
        sends one bucket at a time. A generator: Ray streams it."""
        from rlreason.weight_transfer import state_dict_buckets

        yield from state_dict_buckets(((k, v.detach().to("cpu", copy=True)) for k, v in self.model.state_dict().items()), bucket_mb)

    def open_weight_sender(self, backend: str, engines: list, rank: int, timeout_s: float) -> None:
        """Join a collective weight-transfer group with the rollout `engines` (actor handles):
        rank 0 sends, other ranks only gather (rlreason.weight_transfer)."""
        from rlreason.weight_transfer import open_sender

        self._sender = open_sender(backend, self.model, engines, rank, timeout_s)

    def send_weights(self) -> None:
        """One broadcast round of the current weights to every engine of the group."""
        self._sender.send_weights()

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: list[int]) -> list[float]:
        self.model.eval()
        ids = torch.tensor([token_ids])
        b = Batch(ids, torch.ones_like(ids), torch.ones(1, len(token_ids) - 1), torch.zeros(1, len(token_ids) - 1), torch.zeros(1, len(token_ids) - 1))
        with self._autocast():
            return token_logprobs(self.model, self._on_device(b))[0][0].tolist()

    def save(self, path: str) -> str:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path

    # ---- checkpoints (the driver seals the directory; see rlreason.checkpoint) ----
    def save_checkpoint(self, path: str) -> None:
        """policy/ (HF format), learner.pt (optimizer, LR scheduler, RNG states, critic and its
        optimizer), reference.json (the KL reference's identity) and reference/ for a snapshot reference."""
        p = Path(path)
        self.save(str(p / "policy"))
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "rng": rng_state(),
            "trained": self.trained,
        }
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        torch.save(state, p / "learner.pt")
        (p / "reference.json").write_text(json.dumps(self.ref_identity))
        if self.ref is not None and self.ref_identity["source"] == "snapshot":
            self.ref.save_pretrained(p / "reference")

    def load_checkpoint(self, path: str) -> None:
        """Restore everything save_checkpoint wrote. The optimizer's hyperparameters (lr, betas,
        weight decay) and the LR schedule come from the current config, so a resume may change them."""
        from transformers import AutoModelForCausalLM

        p = Path(path)
        self._load_model_state(self.model, AutoModelForCausalLM.from_pretrained(p / "policy", dtype=self.dtype).state_dict())
        state = torch.load(p / "learner.pt", weights_only=False, map_location="cpu")  # a GPU run resumes anywhere
        self._load_optimizer_state(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        step = self.scheduler.last_epoch
        self.scheduler.base_lrs = [self.optim_cfg.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group.update(initial_lr=self.optim_cfg.lr, lr=self.optim_cfg.lr * self.lr_lambda(step),
                         betas=tuple(self.optim_cfg.betas), weight_decay=self.optim_cfg.weight_decay)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        self.trained = state["trained"]
        if (self.critic is None) != ("critic" not in state):
            raise ValueError(f"{p}: critic.enabled differs between this run and the checkpoint")
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.ref_identity = json.loads((p / "reference.json").read_text())
        self.ref = None
        if self.ref_identity is not None:
            source = p / "reference" if self.ref_identity["source"] == "snapshot" else self.model_path
            ref = AutoModelForCausalLM.from_pretrained(source, **self.load_kwargs)
            if fingerprint(ref.state_dict()) != self.ref_identity["sha256"]:
                raise ValueError(f"{p}: the KL reference loaded from {source} is not the one the run used (sha256 differs)")
            self.ref = self._wrap(ref).eval().requires_grad_(False)
