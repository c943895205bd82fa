"""Reward shaping and group filtering, pure functions over (P, G) tensors."""

from __future__ import annotations

import torch


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), added to the reward.

    0 for |y| <= L_max - buffer; ((L_max - buffer) - |y|) / buffer inside the last `buffer`
    tokens (down to -1 at L_max); -1 beyond. Scaled by `penalty`. buffer == 0 turns it off.
    """
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    start = max_tokens - buffer
    inside = (start - lengths.float()) / buffer
    return penalty * torch.where(lengths <= start, torch.zeros_like(inside), inside.clamp(min=-1.0))


def keep_all(rewards: torch.Tensor) -> torch.Tensor:
    """Keep every group (P,) -> True."""
    return torch.ones(rewards.shape[0], dtype=torch.bool)


def keep_mixed(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling (Yu et al. 2025): keep groups whose rewards are not all equal,
    i.e. those that carry a policy-gradient signal under group-relative advantages."""
    return rewards.max(-1).values > rewards.min(-1).values


GROUP_FILTERS = {"all": keep_all, "mixed": keep_mixed}
