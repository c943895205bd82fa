"""The critic family for PPO: token-level GAE and the clipped value loss (pure torch).

The learner calls them when `critic.enabled` (rlreason/learner/policy.py: _gae_batch, _critic_step).
"""

from __future__ import annotations

import torch

from rlreason.algos.losses import masked_mean


def gae_advantages(
    token_rewards: torch.Tensor,  # (B, T) reward per target position; an outcome reward sits on the last completion token
    values: torch.Tensor,  # (B, T) critic's value estimate at each position
    mask: torch.Tensor,  # (B, T) 1 on completion tokens
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), per token.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V = 0
    after a sequence's last completion token. Returns (advantages, returns = A + V), both
    (B, T) and 0 outside the mask. gamma = lam = 1, the usual choice for LLM RL (as in
    OpenRLHF/verl defaults), makes A_t = (sum of rewards from t) - V_t.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    adv = torch.zeros_like(values)
    running = torch.zeros(values.shape[0], dtype=values.dtype)
    T = values.shape[1]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
    return adv, (adv + values) * mask


def clipped_value_loss(
    values: torch.Tensor,  # (B, T) current critic
    old_values: torch.Tensor,  # (B, T) critic when the batch was made
    returns: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T)
    clip: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss (as in OpenAI baselines' ppo2, which the PPO paper's eq. 9 leaves
    unclipped): 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2), token mean."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_err, clipped_err = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    return loss, {"value_clip_frac": masked_mean((clipped_err > unclipped_err).float(), mask).detach()}


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / (std + eps) over the masked positions, 0 elsewhere (critic.whiten: PPO's
    GAE advantages over a batch's completion tokens). The std is the population std (ddof=0), as
    in this project's GRPO; verl's masked_whiten uses the sample std, larger by sqrt(n / (n - 1)):
    1.0003 for a batch of 1,600 completion tokens, the smallest a default step has."""
    m = mask.bool()
    return (values - values[m].mean()) / (values[m].std(unbiased=False) + eps) * mask
