"""Our policy losses against TRL's GRPOTrainer loss on the same tensors (TRL is a dependency).

TRL keeps the loss inside GRPOTrainer._compute_loss; we call it on a stand-in `self` that
carries only the attributes that method reads, and feed it fixed per-token logprobs.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlreason.algos import gspo_loss, ppo_clip_loss

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

B, T = 4, 6


class _Accelerator:
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def trl_loss(loss_type, logp, old, adv, mask, eps_low, eps_high, level="token"):
    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level,
        beta=0.0, loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        use_vllm=False, model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        max_completion_length=T, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)), accelerator=_Accelerator(),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.long(),
        "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": mask.sum(),
    }
    return trl_grpo.GRPOTrainer._compute_loss(stub, None, inputs)


@pytest.mark.parametrize(
    "trl_type,agg",
    [("grpo", "seq_mean_token_mean"), ("bnpo", "token_mean"), ("dr_grpo", "seq_mean_token_sum_norm"), ("dapo", "token_mean")],
)
def test_loss_matches_trl(trl_type, agg):
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + (torch.rand(B, T, generator=g) - 0.5) * 0.8  # ratios on both sides of the clip range
    adv = torch.tensor([1.5, -0.5, 0.7, -1.2])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.float)
    ours, _ = ppo_clip_loss(logp, old, adv[:, None] * mask, mask, clip_low=0.2, clip_high=0.28, agg=agg)
    theirs = trl_loss(trl_type, logp, old, adv, mask, 0.2, 0.28)
    assert abs(ours.item() - theirs.item()) < 1e-6, (ours.item(), theirs.item())
    assert abs(ours.item()) > 1e-3  # a real number, not two zeros


def test_gspo_matches_trl_sequence_level_importance_sampling():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + (torch.rand(B, T, generator=g) - 0.5) * 0.01  # sequence ratios near 1, some past a 3e-4 clip
    adv = torch.tensor([1.5, -0.5, 0.7, -1.2])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.float)
    ours, stats = gspo_loss(logp, old, adv[:, None] * mask, mask, clip_low=3e-4, clip_high=4e-4)
    theirs = trl_loss("grpo", logp, old, adv, mask, 3e-4, 4e-4, level="sequence")
    assert abs(ours.item() - theirs.item()) < 1e-6, (ours.item(), theirs.item())
    assert 0 < stats["clip_frac"].item() < 1  # the example exercises both branches
