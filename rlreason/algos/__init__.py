"""Pure torch algorithm pieces, named in plain dicts that the recipe picks from.

- ADVANTAGES[name](rewards (P, G), eps) -> advantages (P, G); `passes_reward_through` (an
  attribute, False when absent) marks the one that hands the rewards on unchanged,
  `group_relative` those that compare each sample only with its own group
- POLICY_LOSSES[name](logprobs, old_logprobs, advantages, mask, clip_low=0.2, clip_high=0.2,
  dual_clip=None, agg=...) -> (loss, stats); each declares (losses.declares)
  `zero_advantage_rows_add_nothing` and `token_level_ratio`
- AGGREGATIONS[mode](per_token_loss (B, T), mask (B, T)) -> scalar, via aggregate(x, mask, mode)
- KL_ESTIMATORS[name](logprobs, ref_logprobs) -> per-token KL (B, T)

Code outside this package reads those attributes and never tests an algorithm by its name.
This package never imports ray or vllm.
"""

from rlreason.algos.advantages import (
    ADVANTAGES,
    dr_grpo_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rft_filter,
    rloo_advantages,
)
from rlreason.algos.shaping import GROUP_FILTERS, keep_mixed, overlong_penalty
from rlreason.algos.critic import clipped_value_loss, gae_advantages, whiten
from rlreason.algos.mismatch import mismatch_stats, truncated_is_weights
from rlreason.algos.kl import KL_ESTIMATORS, apply_kl_penalty, kl_k1, kl_k2, kl_k3, kl_penalty_to_go
from rlreason.algos.losses import (
    AGGREGATIONS,
    POLICY_LOSSES,
    aggregate,
    declares,
    entropy_bonus,
    gspo_loss,
    masked_mean,
    part_weight,
    ppo_clip_loss,
    sft_loss,
)

__all__ = [
    "ADVANTAGES",
    "GROUP_FILTERS",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "aggregate",
    "apply_kl_penalty",
    "clipped_value_loss",
    "declares",
    "dr_grpo_advantages",
    "entropy_bonus",
    "gae_advantages",
    "grpo_advantages",
    "gspo_loss",
    "kl_k1",
    "kl_k2",
    "keep_mixed",
    "kl_k3",
    "kl_penalty_to_go",
    "masked_mean",
    "reinforce_pp_baseline_advantages",
    "whiten",
    "mismatch_stats",
    "overlong_penalty",
    "part_weight",
    "ppo_clip_loss",
    "reinforce_pp_advantages",
    "rft_filter",
    "rloo_advantages",
    "sft_loss",
    "truncated_is_weights",
]
