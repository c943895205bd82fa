"""Turn sampled groups into a padded learner Batch (pure torch)."""

from __future__ import annotations

import torch

from rlreason.types import Batch, Sample


def make_batch(groups: list[list[Sample]], advantages: torch.Tensor, pad_id: int) -> Batch:
    """groups: P lists of G samples; advantages: (P, G). Returns a right-padded Batch of P*G rows."""
    samples = [s for g in groups for s in g]
    adv = advantages.reshape(-1)
    assert len(samples) == adv.numel(), f"{len(samples)} samples but {adv.numel()} advantages"
    length = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
    B = len(samples)
    input_ids = torch.full((B, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, length), dtype=torch.long)
    loss_mask = torch.zeros((B, length - 1))
    sample_logprobs = torch.zeros((B, length - 1))
    for i, s in enumerate(samples):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        input_ids[i, : p + c] = torch.tensor(s.prompt_ids + s.completion_ids)
        attention_mask[i, : p + c] = 1
        # position t predicts token t+1: completion tokens are targets at positions p-1 .. p+c-2
        loss_mask[i, p - 1 : p + c - 1] = 1
        sample_logprobs[i, p - 1 : p + c - 1] = torch.tensor(s.logprobs)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        advantages=adv[:, None].float() * loss_mask,
        sample_logprobs=sample_logprobs,
    )


def sft_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Supervised batch from (prompt_ids, completion_ids): loss on completion tokens only."""
    groups = [[Sample(p, c, "", [0.0] * len(c), "stop", 0)] for p, c in pairs]
    return make_batch(groups, torch.ones(len(pairs), 1), pad_id)
