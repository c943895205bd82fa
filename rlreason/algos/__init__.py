"""Pure torch algorithm pieces, named in plain dicts that the recipe picks from.

- ADVANTAGES[name](rewards (P, G), eps) -> advantages (P, G)
- POLICY_LOSSES[name](logprobs, old_logprobs, advantages, mask, clip_low, clip_high) -> (loss, stats)
- KL_ESTIMATORS[name](logprobs, ref_logprobs) -> per-token KL (B, T)

This package never imports ray or vllm.
"""

from rlreason.algos.advantages import ADVANTAGES, grpo_advantages
from rlreason.algos.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from rlreason.algos.losses import POLICY_LOSSES, masked_mean, ppo_clip_loss

__all__ = [
    "ADVANTAGES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "grpo_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "masked_mean",
    "ppo_clip_loss",
]
