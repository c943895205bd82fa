"""Turn sampled groups into a padded learner Batch (pure torch)."""

from __future__ import annotations

import torch

from rlreason.types import Batch, Sample


def pack_micro_batches(lengths: list[int], idx: torch.Tensor, max_seqs: int, max_tokens: int = 0) -> list[torch.Tensor]:
    """Split rows `idx` into micro-batches of rows of similar length, longest first: each holds at
    most `max_seqs` rows and, when max_tokens > 0, at most `max_tokens` tokens once padded to its
    longest row (a row longer than that goes alone). With `trim`, a micro-batch then costs its
    own longest row, not the whole batch's."""
    order = sorted(idx.tolist(), key=lambda i: -lengths[i])  # stable: ties keep their order
    out: list[list[int]] = []
    for i in order:
        cur = out[-1] if out else None
        if cur is None or len(cur) >= max_seqs or (max_tokens and (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            out.append([i])
        else:
            cur.append(i)
    return [torch.tensor(c) for c in out]


def trim(batch: Batch) -> Batch:
    """Drop the padding columns that no row of `batch` uses (rows are right-padded)."""
    n = int(batch.attention_mask.sum(-1).max())
    return Batch(batch.input_ids[:, :n], batch.attention_mask[:, :n], batch.loss_mask[:, : n - 1],
                 batch.advantages[:, : n - 1], batch.sample_logprobs[:, : n - 1])


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
