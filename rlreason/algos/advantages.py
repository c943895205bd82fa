"""Advantage estimators: rewards (P, G) -> advantages (P, G). The group is a tensor dim."""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO group-normalised advantage (Shao et al. 2024, DeepSeekMath, eq. 3 outcome supervision).

    A_ij = (r_ij - mean_j r_i) / (std_j r_i + eps), with the population std (ddof=0)
    rather than the paper's unspecified one, so a group of two rewards {0, 1} gives
    exactly +-1. A group whose rewards are all equal gets advantage 0 (no signal).
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


ADVANTAGES = {
    "grpo": grpo_advantages,
}
