"""Advantage estimators: rewards (P, G) -> advantages (P, G). The group is a tensor dim.

All share the signature fn(rewards (P, G), eps) -> (P, G); eps is unused by those that
do not divide by a standard deviation.
"""

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


def dr_grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dr. GRPO advantage (Liu et al. 2025, "Understanding R1-Zero-Like Training").

    A_ij = r_ij - mean_j r_i: GRPO without the division by the group std, which the
    paper shows biases updates towards too-easy and too-hard questions. The paper's
    other fix, dropping the 1/|o_i| length normalisation, lives in the loss
    aggregation ("seq_mean_token_sum_norm"), not here. eps is unused.
    """
    return rewards - rewards.mean(-1, keepdim=True)


def rloo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics"; Kool et al. 2019).

    A_ij = r_ij - mean_{k != j} r_ik = G / (G - 1) * (r_ij - mean_j r_i). A group of one
    sample has no other sample to compare with and gets 0. The paper pairs it with plain
    REINFORCE; here it is just an advantage, usable with any policy loss. eps is unused.
    """
    g = rewards.shape[-1]
    if g == 1:
        return torch.zeros_like(rewards)
    return g / (g - 1) * (rewards - rewards.mean(-1, keepdim=True))


def reinforce_pp_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++ global-batch normalisation (Hu 2025, "REINFORCE++").

    A = (r - mean(r)) / (std(r) + eps), mean and population std over the WHOLE batch
    (all P * G samples), not per group. Departure: the paper normalises token-level
    returns that have the per-token KL penalty folded into the reward; here the inputs
    are outcome rewards, one per sample (fold KL in with kl.apply_kl_penalty upstream
    if wanted). A batch of equal rewards gets 0.
    """
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + eps)


def reinforce_pp_baseline_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++ with a group baseline (Hu 2025, "REINFORCE++"; verl's
    `reinforce_plus_plus_baseline`): subtract each prompt's group mean, then normalise over the
    WHOLE batch, A = (x - mean(x)) / (std(x) + eps) with x_ij = r_ij - mean_j r_i, mean and
    population std over all P * G samples. Departures: verl whitens token-level scores (each
    sample weighted by its length) with the sample std; here there is one outcome reward per
    sample, weighted alike, and the population std, as in reinforce_pp. A batch whose groups
    are each all-equal gets 0.
    """
    x = rewards - rewards.mean(-1, keepdim=True)
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


ADVANTAGES = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
}


def raw_reward(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The reward itself, unchanged: for learners that compute their own advantages from it
    (PPO with a critic turns it into token-level GAE, Schulman et al. 2016)."""
    return rewards


def rft_filter(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Expert iteration / rejection-sampling fine-tuning (STaR, Zelikman et al. 2022; ReST-EM,
    Singh et al. 2023): weight 1 for verified-correct samples (reward >= 1, the full score of a
    binary verifier), 0 for the rest. Paired with the `sft` loss it is supervised learning on
    the model's own correct answers. Departs from the papers by filtering and training on
    every rollout batch as it comes, instead of collecting a whole dataset per iteration.
    """
    return (rewards >= 1.0 - eps).to(rewards.dtype)


ADVANTAGES["rft"] = rft_filter
ADVANTAGES["reward"] = raw_reward

# What code outside rlreason.algos may rely on about an advantage (it tests none by its name),
# False when absent:
# - passes_reward_through: the "advantages" are the rewards themselves, for a learner that computes
#   its own advantages from them (the config requires it with critic.enabled);
# - group_relative: each sample is compared with the other samples of its prompt, so a group of
#   one gets advantage 0 and nothing is learned (the config refuses rollout.group_size=1).
raw_reward.passes_reward_through = True
for _fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages, reinforce_pp_baseline_advantages):
    _fn.group_relative = True
