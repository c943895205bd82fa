"""Training/inference mismatch: the sampler (vLLM) and the learner compute slightly different
logprobs for the same tokens (kernels, precision, batching). Measure it, and correct for it."""

from __future__ import annotations

import torch

from rlreason.algos.losses import masked_mean


def truncated_is_weights(
    learner_logprobs: torch.Tensor,  # (B, T) the learner's old-policy logprobs (detached)
    sample_logprobs: torch.Tensor,  # (B, T) the sampler's logprobs of the same tokens
    mask: torch.Tensor,  # (B, T)
    cap: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly
    Brings You Off-Policy RL Training"): w = min(pi_learner / pi_sampler, cap) per token, a
    constant (no gradient) that multiplies the token's policy-gradient term. As in the blog
    post it corrects token-level losses; masked positions get weight 0.

    Returns (w (B, T), stats): tis_clip_frac = share of tokens whose ratio exceeded the cap.
    """
    ratio = torch.exp(learner_logprobs - sample_logprobs).detach()
    weights = torch.clamp(ratio, max=cap) * mask
    return weights, {"tis_clip_frac": masked_mean((ratio > cap).float(), mask)}


def mismatch_stats(
    learner_logprobs: torch.Tensor,  # (B, T)
    sample_logprobs: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T)
) -> dict[str, torch.Tensor]:
    """Per-batch mismatch metrics over masked tokens.

    logprob_diff_mean / _max: |learner - sampler|; kl: k3 estimate of KL(sampler || learner)
    from the sampler's own tokens (Schulman 2020); is_ratio_{mean,min,max}: pi_learner / pi_sampler.
    """
    d = (learner_logprobs - sample_logprobs).detach()  # log(pi_l / pi_s)
    m = mask.bool()
    if not m.any():
        zero = torch.zeros(())
        return {k: zero for k in ("logprob_diff_mean", "logprob_diff_max", "kl", "is_ratio_mean", "is_ratio_min", "is_ratio_max")}
    ratio = torch.exp(d[m])
    return {
        "logprob_diff_mean": d[m].abs().mean(),
        "logprob_diff_max": d[m].abs().max(),
        "kl": (ratio - 1 - d[m]).mean(),  # k3 with log-ratio log(pi_s/pi_l) = -d
        "is_ratio_mean": ratio.mean(),
        "is_ratio_min": ratio.min(),
        "is_ratio_max": ratio.max(),
    }
