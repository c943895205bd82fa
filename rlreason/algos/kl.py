"""Per-token KL estimators between the policy and a reference, from sampled tokens.

Schulman, "Approximating KL divergence" (2020): with log-ratio d = logp - logp_ref on
tokens sampled from the policy, k1 = d, k2 = d^2 / 2, k3 = exp(-d) - 1 + d (unbiased,
always >= 0; the one GRPO uses).
"""

from __future__ import annotations

import torch


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return logprobs - ref_logprobs


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logprobs - ref_logprobs) ** 2


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    d = logprobs - ref_logprobs
    return torch.exp(-d) - 1 + d


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def apply_kl_penalty(
    token_rewards: torch.Tensor,  # (B, T) per-token rewards (e.g. the outcome reward on the last token)
    kl: torch.Tensor,  # (B, T) per-token KL estimate, e.g. KL_ESTIMATORS["k1"](logp, ref_logp)
    mask: torch.Tensor,  # (B, T)
    coef: float,
) -> torch.Tensor:
    """KL "in the reward": token_rewards - coef * kl on masked tokens (Ouyang et al. 2022, InstructGPT;
    Ziegler et al. 2019), before returns/advantages are computed, as PPO-RLHF and REINFORCE++ do.

    The alternative, KL "in the loss" (GRPO, Shao et al. 2024), adds coef * mean(kl) to the
    policy loss instead and leaves the rewards alone; use one or the other, not both. Pass
    a detached kl here: the penalty is a reward, not a term to differentiate.
    """
    return token_rewards - coef * kl * mask


def kl_penalty_to_go(
    kl: torch.Tensor,  # (B, T) per-token KL(policy || ref) on the sampled tokens
    mask: torch.Tensor,  # (B, T)
    coef: float,
) -> torch.Tensor:
    """The per-token KL reward penalty seen from each token without a critic: the undiscounted
    sum of -coef * KL over the token and the ones after it (B, T), to add to a sequence-level
    advantage. This is how REINFORCE++ (Hu 2025) folds the KL into its token returns; with a
    critic, apply_kl_penalty puts it in the rewards that GAE reads instead.
    """
    penalty = -coef * kl * mask
    return torch.flip(torch.cumsum(torch.flip(penalty, [-1]), -1), [-1]) * mask
