"""Policy losses: per-token log-probabilities (B, T) -> scalar loss and stats.

Every loss shares the signature
    fn(logprobs, old_logprobs, advantages, mask, clip_low=0.2, clip_high=0.2, dual_clip=None, agg=...)
        -> (loss, stats dict of detached tensors, always with "clip_frac")
and reduces its per-token loss (B, T) with aggregate(..., agg), a name in AGGREGATIONS. Each
declares, with @declares, what the learner and the config may rely on (see `declares`).
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask == 1 (token-mean over the whole batch)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


# ---- aggregation: per-token loss (B, T) -> scalar -------------------------------------


def _token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over all masked tokens / number of masked tokens (DAPO, Yu et al. 2025)."""
    return masked_mean(x, mask)


def _seq_sums(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence token sums (B,), token counts (B,), and the number of non-empty sequences."""
    sums, counts = (x * mask).sum(-1), mask.sum(-1)
    return sums, counts, (counts > 0).sum().clamp(min=1)


def _seq_mean_token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-empty sequences of each sequence's token mean (GRPO's 1/G sum 1/|o_i| sum_t)."""
    sums, counts, n_seq = _seq_sums(x, mask)
    return (sums / counts.clamp(min=1)).sum() / n_seq


def _seq_mean_token_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-empty sequences of each sequence's token sum."""
    sums, _, n_seq = _seq_sums(x, mask)
    return sums.sum() / n_seq


def _seq_mean_token_sum_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025): sum of masked token losses / (B * T), a constant normaliser.

    T is the padded length of this batch; it is truly constant only if batches are padded
    to the generation limit, as in the paper's code. verl's mode of the same name (0.9.1)
    divides by B * T as well. Empty rows count in B.
    """
    return (x * mask).sum() / (mask.shape[0] * mask.shape[-1])


AGGREGATIONS = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum": _seq_mean_token_sum,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def aggregate(per_token_loss: torch.Tensor, mask: torch.Tensor, mode: str = "token_mean") -> torch.Tensor:
    """Reduce a per-token loss (B, T) over mask (B, T) to a scalar with AGGREGATIONS[mode].

    Sequences with no masked token add 0 and are not counted in the seq_* means; an
    all-masked batch gives 0, never NaN.
    """
    return AGGREGATIONS[mode](per_token_loss, mask.to(per_token_loss.dtype))


def part_weight(part_mask: torch.Tensor, whole_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Weight of aggregate(loss[part], mask[part], mode) such that the weighted sum over the
    parts (rows) of a batch equals aggregate(loss, mask, mode) of the whole: how gradient
    accumulation over micro-batches keeps the aggregation exact."""
    if mode == "token_mean":
        return part_mask.sum() / whole_mask.sum().clamp(min=1)
    if mode == "seq_mean_token_sum_norm":  # same padded T: the normaliser is proportional to rows
        return torch.tensor(part_mask.shape[0] / whole_mask.shape[0])
    return (part_mask.sum(-1) > 0).sum() / (whole_mask.sum(-1) > 0).sum().clamp(min=1)


def entropy_bonus(
    entropy: torch.Tensor,  # (B, T) per-token entropy of the policy
    mask: torch.Tensor,  # (B, T)
    coef: float,
    agg: str = "token_mean",
) -> torch.Tensor:
    """-coef * aggregate(entropy): add it to the loss so that minimising raises entropy."""
    return -coef * aggregate(entropy, mask, agg)


# ---- policy losses ---------------------------------------------------------------------

# A log-ratio (new - old logprob) is clamped to +-LOG_RATIO_CLAMP before exp, as verl's policy
# losses do (+-20): off-policy (several epochs, async lag) a large one overflows exp to inf and
# the loss to NaN. exp(20) = 4.9e8 is far past any clip range, so an in-range ratio is unchanged;
# a clamped token gets no gradient through the ratio.
LOG_RATIO_CLAMP = 20.0


def _ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(log_ratio, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))



def declares(*, zero_advantage_rows_add_nothing: bool, token_level_ratio: bool = True):
    """Mark a policy loss with what code outside rlreason.algos may rely on, as attributes of
    the function (the learner and the config read them; none tests a loss by its name):

    - zero_advantage_rows_add_nothing: every term of a row's loss is multiplied by the row's
      advantages, so a row whose advantages are all zero adds exactly zero to the loss and to
      its gradient; the learner may then skip the row's forward and backward
      (optim.skip_zero_advantage), normalising over the whole minibatch as before.
    - token_level_ratio: the loss's importance ratio and advantage are per token, so per-token
      weights on the advantages (algo.tis_cap's truncated IS weights) act token by token.
      False when they are per sequence (GSPO): the config then refuses algo.tis_cap.
    """

    def mark(fn):
        fn.zero_advantage_rows_add_nothing = zero_advantage_rows_add_nothing
        fn.token_level_ratio = token_level_ratio
        return fn

    return mark


def _clipped_objective(ratio, advantages, clip_low, clip_high, dual_clip):
    """Per-token PPO objective (to maximise), with optional dual clip; and the clip indicators."""
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    objective = torch.minimum(unclipped, clipped)
    is_clipped = clipped < unclipped
    is_dual = torch.zeros_like(is_clipped)
    if dual_clip is not None:
        if dual_clip <= 1:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        floor = dual_clip * advantages
        is_dual = (advantages < 0) & (floor > objective)
        objective = torch.where(is_dual, floor, objective)
    return objective, is_clipped, is_dual


@declares(zero_advantage_rows_add_nothing=True)
def ppo_clip_loss(
    logprobs: torch.Tensor,  # (B, T) current policy
    old_logprobs: torch.Tensor,  # (B, T) policy that sampled (or the pre-update policy)
    advantages: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T) 1 on completion tokens
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token_mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level PPO-clip (Schulman et al. 2017, eq. 7), aggregated by default as a token mean
    over the batch, as in DAPO (Yu et al. 2025) rather than PPO's per-sequence mean.

    ratio = exp(logp - old_logp); loss = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).
    With clip_low == clip_high this is the paper's symmetric clip. The log-ratio is clamped to
    +-LOG_RATIO_CLAMP (20) first, as verl does, so a far off-policy token cannot overflow.

    dual_clip = c > 1 adds the dual clip (Ye et al. 2020, "Mastering Complex Control in MOBA
    Games"): where A < 0 the objective is max(min(rA, clip(r)A), cA), which bounds the loss of
    a token whose ratio has grown huge; such tokens get no gradient. None disables it.
    Stats: clip_frac (tokens where the clipped term is the min) and dual_clip_frac.

    A row whose advantages are all zero adds nothing: every term of its loss (rA, clip(r)A and
    the dual clip's cA) is multiplied by its advantage.
    """
    ratio = _ratio(logprobs - old_logprobs)  # log-ratio clamped to +-LOG_RATIO_CLAMP
    objective, is_clipped, is_dual = _clipped_objective(ratio, advantages, clip_low, clip_high, dual_clip)
    loss = aggregate(-objective, mask, agg)
    stats = {"clip_frac": masked_mean(is_clipped.float(), mask), "dual_clip_frac": masked_mean(is_dual.float(), mask)}
    return loss, {k: v.detach() for k, v in stats.items()}


@declares(zero_advantage_rows_add_nothing=True, token_level_ratio=False)
def gspo_loss(
    logprobs: torch.Tensor,  # (B, T) current policy
    old_logprobs: torch.Tensor,  # (B, T)
    advantages: torch.Tensor,  # (B, T) one value per sequence, broadcast over its tokens
    mask: torch.Tensor,  # (B, T)
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "seq_mean_token_mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"), in its GSPO-token form.

    Sequence ratio s_i = exp(mean over masked tokens t of (logp_t - old_logp_t)) (the mean
    clamped to +-LOG_RATIO_CLAMP first), clipped to
    [1 - clip_low, 1 + clip_high], with the sequence's advantage A_i read at its first masked
    token. The paper's GSPO-token variant uses s_i,t = sg[s_i] * exp(logp_t - sg[logp_t]): equal
    to s_i in value, so clipping is decided per sequence, and with one advantage per sequence
    its gradient, aggregated "seq_mean_token_mean" (the default, and the paper's
    1/G sum_i 1/|y_i| sum_t), equals that of sequence-level GSPO: d loss / d logp_t = -s_i A_i / (N |y_i|)
    when unclipped (N non-empty sequences). Other agg modes and dual_clip (applied at sequence level, since the ratio is
    the sequence's) depart from the paper. The paper's clip ranges are far smaller than PPO's
    (3e-4 low, 4e-4 high), because s_i is a per-token geometric mean; the 0.2 defaults here
    are only the common-signature defaults. Stats: clip_frac is the fraction of non-empty
    sequences clipped.

    A row whose advantage is zero adds nothing: every term of its loss (s_i A_i, clip(s_i) A_i,
    the dual clip's c A_i) is multiplied by its advantage. Ratio and advantage are per sequence,
    so per-token weights (truncated IS) do not apply.
    """
    mask = mask.to(logprobs.dtype)
    counts = mask.sum(-1)  # (B,)
    log_seq_ratio = ((logprobs - old_logprobs) * mask).sum(-1) / counts.clamp(min=1)  # (B,)
    seq_ratio = _ratio(log_seq_ratio).detach()[:, None]  # (B, 1) sg[s_i], log-ratio clamped to +-LOG_RATIO_CLAMP
    ratio = seq_ratio * torch.exp(logprobs - logprobs.detach())  # (B, T) s_i,t, value s_i
    first = mask.argmax(-1, keepdim=True)  # index of the first masked token (0 for empty rows)
    seq_adv = advantages.gather(-1, first)  # (B, 1)
    objective, is_clipped, is_dual = _clipped_objective(ratio, seq_adv, clip_low, clip_high, dual_clip)
    loss = aggregate(-objective, mask, agg)
    nonempty = (counts > 0).float()
    n_seq = nonempty.sum().clamp(min=1)
    stats = {
        "clip_frac": (is_clipped[:, 0].float() * nonempty).sum() / n_seq,
        "dual_clip_frac": (is_dual[:, 0].float() * nonempty).sum() / n_seq,
        "seq_ratio_mean": (seq_ratio[:, 0] * nonempty).sum() / n_seq,
    }
    return loss, {k: v.detach() for k, v in stats.items()}


@declares(zero_advantage_rows_add_nothing=False)
def sft_loss(
    logprobs: torch.Tensor,  # (B, T)
    old_logprobs: torch.Tensor,  # (B, T) unused: no ratio
    advantages: torch.Tensor,  # (B, T) per-sample weights, e.g. 1 for kept samples, 0 for rejected
    mask: torch.Tensor,  # (B, T)
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token_mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted negative log-likelihood over the samples with a non-zero weight: the supervised
    step of expert iteration (STaR, Zelikman et al. 2022). Rejected samples (weight 0) are left
    out of the aggregation's normaliser, so the loss is the mean over kept tokens, as in SFT on
    the filtered set. The clip arguments exist only for the common signature.

    A zero-weight row is not skippable: it adds zero to this loss, but the learner's micro-batch
    weight (part_weight over the loss mask) counts its tokens while this loss's normaliser (the
    kept tokens) does not, so leaving it out would change the step.
    """
    keep = mask * (advantages != 0)
    loss = aggregate(-advantages * logprobs, keep, agg)
    return loss, {"clip_frac": torch.zeros(()), "kept_frac": masked_mean((advantages != 0).float(), mask).detach()}


POLICY_LOSSES = {
    "ppo_clip": ppo_clip_loss,
    "gspo": gspo_loss,
    "sft": sft_loss,
}
