"""Typed records that cross process boundaries (driver <-> Ray actors).

Every tensor field carries its shape: B = sequences, T = tokens (prompt + completion - 1,
i.e. positions that predict a next token), P = prompts, G = samples per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Problem:
    """One prompt of a task, with what the reward needs to check it."""

    prompt: str
    answer: str
    meta: dict = field(default_factory=dict)


@dataclass
class Sample:
    """One completion as sampled by the rollout engine."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    logprobs: list[float]  # sampling logprob of each completion token (len == len(completion_ids))
    finish_reason: str  # 'stop' (EOS) or 'length'
    version: int  # policy version the engine served when it sampled this


@dataclass
class Batch:
    """A learner batch: P*G sequences, right-padded. Position t predicts token t+1."""

    input_ids: torch.Tensor  # (B, T+1) long
    attention_mask: torch.Tensor  # (B, T+1) long
    loss_mask: torch.Tensor  # (B, T) float: 1 where the target token is a completion token
    advantages: torch.Tensor  # (B, T) float: the sequence advantage broadcast over its tokens
    sample_logprobs: torch.Tensor  # (B, T) float: the engine's logprobs of the target tokens (0 elsewhere)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, idx: torch.Tensor) -> "Batch":
        return Batch(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass
class UpdateStats:
    """What one learner update reports back."""

    loss: float
    policy_loss: float
    kl: float
    clip_frac: float
    entropy: float
    grad_norm: float
    lr: float
    tokens: int
    # training/inference mismatch between the learner's old logprobs and the engine's sampling ones
    mismatch_logprob_diff: float  # mean |learner - engine| over completion tokens
    mismatch_logprob_diff_max: float
    mismatch_kl: float  # k3 estimate of KL(engine || learner)
    is_ratio_mean: float  # pi_learner / pi_engine
    is_ratio_min: float
    is_ratio_max: float
    tis_clip_frac: float  # share of tokens whose IS ratio exceeded algo.tis_cap (0 when off)
    value_loss: float = 0.0  # critic's clipped value loss (PPO with a critic; 0 without)
    value_clip_frac: float = 0.0
    # share of the batch's rows whose forward and backward were skipped: all-zero advantages,
    # no gradient (optim.skip_zero_advantage); clip_frac, entropy and the mismatch metrics cover the others
    skipped_rows: float = 0.0
