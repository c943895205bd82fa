import torch

from rlreason.learner.batch import make_batch, sft_batch
from rlreason.types import Sample


def s(prompt, completion, lps):
    return Sample(prompt, completion, "", lps, "stop", 3)


def test_make_batch_positions_and_masks_by_hand():
    groups = [[s([1, 2], [3, 4, 5], [-0.1, -0.2, -0.3]), s([1, 2], [6], [-0.5])]]
    b = make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [1, 2, 6, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    # position t predicts token t+1: completion targets sit at positions 1..3 and 1
    assert b.loss_mask.tolist() == [[0, 1, 1, 1], [0, 1, 0, 0]]
    assert torch.allclose(b.sample_logprobs, torch.tensor([[0, -0.1, -0.2, -0.3], [0, -0.5, 0, 0]]))
    assert b.advantages.tolist() == [[0, 1, 1, 1], [0, -1, 0, 0]]
    assert len(b) == 2 and b.select(torch.tensor([1])).input_ids.tolist() == [[1, 2, 6, 0, 0]]


def test_sft_batch_masks_prompt():
    b = sft_batch([([7, 8, 9], [10, 11])], pad_id=0)
    assert b.loss_mask.tolist() == [[0, 0, 1, 1]]


def test_zero_length_completion_gets_no_loss_tokens():
    groups = [[s([1, 2], [], []), s([1, 2], [3], [-0.5])]]
    b = make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0)
    assert b.input_ids.tolist() == [[1, 2, 0], [1, 2, 3]]
    assert b.loss_mask.tolist() == [[0, 0], [0, 1]]
    assert b.advantages.tolist() == [[0, 0], [0, -1]]


def test_micro_batches_pack_similar_lengths_under_a_token_cap():
    from rlreason.learner.batch import pack_micro_batches

    lengths = [5, 9, 3, 9, 4, 2]
    idx = torch.arange(6)
    # longest first: 9, 9, 5, 4, 3, 2; rows of a micro-batch pad to its first (longest) row
    assert [t.tolist() for t in pack_micro_batches(lengths, idx, max_seqs=2)] == [[1, 3], [0, 4], [2, 5]]
    # 20 padded tokens: [9, 9] = 18; 5 alone? [5, 4, 3] = 15, + 2 -> 20 fits
    assert [t.tolist() for t in pack_micro_batches(lengths, idx, max_seqs=8, max_tokens=20)] == [[1, 3], [0, 4, 2, 5]]
    # a row longer than the cap goes alone; a subset of rows keeps to itself
    assert [t.tolist() for t in pack_micro_batches(lengths, torch.tensor([2, 1, 5]), max_seqs=8, max_tokens=8)] == [[1], [2, 5]]


def test_trim_drops_only_unused_padding():
    from rlreason.learner.batch import make_batch, trim
    from rlreason.types import Sample

    groups = [[Sample([1, 2], [3], "", [-0.5], "stop", 0), Sample([1, 2], [3, 4, 5, 6], "", [-0.1] * 4, "stop", 0)]]
    batch = make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0)
    short = trim(batch.select(torch.tensor([0])))
    assert short.input_ids.tolist() == [[1, 2, 3]] and short.loss_mask.tolist() == [[0.0, 1.0]]
    assert trim(batch).input_ids.shape == batch.input_ids.shape
