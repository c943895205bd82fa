"""Policy losses: per-token log-probabilities (B, T) -> scalar loss and stats."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask == 1 (token-mean over the whole batch)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def ppo_clip_loss(
    logprobs: torch.Tensor,  # (B, T) current policy
    old_logprobs: torch.Tensor,  # (B, T) policy that sampled (or the pre-update policy)
    advantages: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T) 1 on completion tokens
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level PPO-clip (Schulman et al. 2017, eq. 7), aggregated as a token mean over
    the batch, as in DAPO (Yu et al. 2025) rather than PPO's per-sequence mean.

    ratio = exp(logp - old_logp); loss = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).
    With clip_low == clip_high this is the paper's symmetric clip.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped < unclipped).float(), mask)
    return loss, {"clip_frac": clip_frac.detach()}


POLICY_LOSSES = {
    "ppo_clip": ppo_clip_loss,
}
