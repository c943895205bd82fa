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
