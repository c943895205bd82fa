import math

import torch

from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, POLICY_LOSSES, grpo_advantages, kl_k1, kl_k2, kl_k3, masked_mean, ppo_clip_loss


def test_grpo_hand_computed():
    # group 1: mean 0.5, population std 0.5 -> +-1; group 2: mean 0.25, std sqrt(3)/4
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    a = grpo_advantages(r, eps=0.0)
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    s = math.sqrt(3) / 4
    assert torch.allclose(a[1], torch.tensor([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]))


def test_grpo_equal_rewards_and_single_sample_give_zero():
    assert torch.equal(grpo_advantages(torch.tensor([[1.0, 1.0, 1.0]])), torch.zeros(1, 3))
    assert torch.equal(grpo_advantages(torch.tensor([[0.7]])), torch.zeros(1, 1))


def test_ppo_clip_hand_computed():
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 2.0]]))  # ratios 1.5, 0.5, 1.1, 2.0 against old = 0
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # last token masked out
    loss, stats = ppo_clip_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # token terms: min(1.5, 1.2)=1.2 ; min(-0.5, -0.8)=-0.8 ; min(1.1, 1.1)=1.1 -> loss = -(1.2 - 0.8 + 1.1)/3
    assert math.isclose(loss.item(), -(1.2 - 0.8 + 1.1) / 3, rel_tol=1e-6)
    assert math.isclose(stats["clip_frac"].item(), 2 / 3, rel_tol=1e-6)


def test_ppo_clip_asymmetric_bounds():
    lp = torch.log(torch.tensor([[1.5]]))
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), clip_low=0.2, clip_high=0.28)
    assert math.isclose(loss.item(), -1.28, rel_tol=1e-6)


def test_ppo_clip_on_policy_gradient_is_policy_gradient():
    # with old = logp.detach(), d loss / d logp = -A / n_tokens
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, stats = ppo_clip_loss(lp, lp.detach(), torch.tensor([[2.0, -1.0]]), torch.ones(1, 2))
    loss.backward()
    assert torch.allclose(lp.grad, torch.tensor([[-1.0, 0.5]]))
    assert stats["clip_frac"].item() == 0.0


def test_kl_estimators_hand_computed():
    lp, ref = torch.tensor([0.0, math.log(2.0)]), torch.tensor([0.0, 0.0])
    d = math.log(2.0)
    assert torch.allclose(kl_k1(lp, ref), torch.tensor([0.0, d]))
    assert torch.allclose(kl_k2(lp, ref), torch.tensor([0.0, d * d / 2]))
    assert torch.allclose(kl_k3(lp, ref), torch.tensor([0.0, 0.5 - 1 + d]))
    assert (kl_k3(torch.randn(100), torch.randn(100)) >= 0).all()


def test_masked_mean_ignores_masked_and_empty():
    assert masked_mean(torch.tensor([1.0, 100.0]), torch.tensor([1.0, 0.0])).item() == 1.0
    assert masked_mean(torch.tensor([5.0]), torch.tensor([0.0])).item() == 0.0


def test_registries_name_the_functions():
    assert ADVANTAGES["grpo"] is grpo_advantages
    assert POLICY_LOSSES["ppo_clip"] is ppo_clip_loss
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}


def test_lr_schedule_hand_computed():
    from rlreason.learner.policy import lr_factor

    # warm-up 2 steps, then cosine over steps 2..6 down to 0.1
    f = [lr_factor(s, 2, 7, "cosine", 0.1) for s in range(7)]
    assert f[:3] == [0.5, 1.0, 1.0]
    assert math.isclose(f[4], 0.1 + 0.9 * 0.5, rel_tol=1e-9)  # halfway
    assert math.isclose(f[6], 0.1, rel_tol=1e-9)
    assert [lr_factor(s, 2, 7, "constant", 0.1) for s in (0, 1, 6)] == [0.5, 1.0, 1.0]


def test_part_weights_make_micro_batches_add_up_to_the_whole():
    from rlreason.algos import AGGREGATIONS, aggregate, part_weight

    torch.manual_seed(0)
    x = torch.randn(5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1.0]])
    for mode in AGGREGATIONS:
        parts = [torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([3, 4])]
        total = sum(part_weight(mask[i], mask, mode) * aggregate(x[i], mask[i], mode) for i in parts)
        assert torch.allclose(total, aggregate(x, mask, mode), atol=1e-6), mode


def test_truncated_is_weights_and_mismatch_stats_by_hand():
    from rlreason.algos import mismatch_stats, truncated_is_weights

    learner = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    sampler = torch.tensor([[math.log(0.1), math.log(0.9), 0.0]])  # ratios 5, 1, (masked)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, stats = truncated_is_weights(learner, sampler, mask, cap=2.0)
    assert torch.allclose(w, torch.tensor([[2.0, 1.0, 0.0]]))
    assert stats["tis_clip_frac"].item() == 0.5
    m = mismatch_stats(learner, sampler, mask)
    assert math.isclose(m["logprob_diff_mean"].item(), math.log(5) / 2, rel_tol=1e-6)
    assert math.isclose(m["logprob_diff_max"].item(), math.log(5), rel_tol=1e-6)
    assert math.isclose(m["kl"].item(), (5 - 1 - math.log(5)) / 2, rel_tol=1e-6)  # k3 per token: r - 1 - log r
    assert math.isclose(m["is_ratio_mean"].item(), 3.0, rel_tol=1e-6)
    assert math.isclose(m["is_ratio_min"].item(), 1.0, rel_tol=1e-6) and math.isclose(m["is_ratio_max"].item(), 5.0, rel_tol=1e-6)
    assert mismatch_stats(learner, sampler, torch.zeros(1, 3))["kl"].item() == 0.0  # nothing masked in: zeros, not NaN
