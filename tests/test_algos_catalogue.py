"""Hand-computed checks for the algorithm catalogue (advantages, aggregations, losses, KL)."""

import math
import re

import pytest
import torch

from rlreason.algos import (
    ADVANTAGES,
    AGGREGATIONS,
    POLICY_LOSSES,
    aggregate,
    apply_kl_penalty,
    dr_grpo_advantages,
    entropy_bonus,
    gspo_loss,
    ppo_clip_loss,
    reinforce_pp_advantages,
    rloo_advantages,
)

# two groups of four: means 0.5 and 0.25
R = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])


# ---- advantages ----


def test_dr_grpo_hand_computed():
    # r - group mean, no std: [1,0,0,1] - 0.5 ; [1,0,0,0] - 0.25
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.75, -0.25, -0.25, -0.25]])
    assert torch.allclose(dr_grpo_advantages(R, 1e-6), expected)


def test_rloo_hand_computed():
    # row 0: 1 - mean(0,0,1) = 2/3 ; 0 - mean(0,1,1) = -2/3   (= 4/3 * (r - 0.5))
    # row 1: 1 - mean(0,0,0) = 1   ; 0 - mean(1,0,0) = -1/3   (= 4/3 * (r - 0.25))
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [1.0, -1 / 3, -1 / 3, -1 / 3]])
    assert torch.allclose(rloo_advantages(R, 1e-6), expected)


def test_reinforce_pp_hand_computed():
    # whole batch: mean 3/8, population var = E[r^2] - mean^2 = 3/8 - 9/64 = 15/64, std = sqrt(15)/8
    # r=1 -> (5/8) / (sqrt(15)/8) = 5/sqrt(15) ; r=0 -> -3/sqrt(15)
    hi, lo = 5 / math.sqrt(15), -3 / math.sqrt(15)
    expected = torch.tensor([[hi, lo, lo, hi], [hi, lo, lo, lo]])
    assert torch.allclose(reinforce_pp_advantages(R, 0.0), expected)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_group_advantages_equal_group_and_single_sample_give_zero(name):
    fn = ADVANTAGES[name]
    a = fn(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]), 1e-6)
    assert torch.equal(a[0], torch.zeros(3))  # no signal in an all-equal group
    assert a[1].abs().sum() > 0
    assert torch.equal(fn(torch.tensor([[0.7], [0.2]]), 1e-6), torch.zeros(2, 1))  # G == 1


def test_reinforce_pp_equal_batch_gives_zero_but_normalises_across_groups():
    assert torch.equal(reinforce_pp_advantages(torch.full((2, 3), 0.4), 1e-6), torch.zeros(2, 3))
    # an all-equal group is not zero when the rest of the batch differs: batch mean 0.5, std 0.5
    a = reinforce_pp_advantages(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 0.0)
    assert torch.allclose(a, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))


# ---- aggregation ----

# Three rows (two would leave only one non-empty row, where the seq modes all coincide):
# row 0 has one padded token (100 must be ignored), row 1 is full, row 2 is fully masked.
X = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0], [7.0, 8.0, 9.0]])
M = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_mean", 15 / 5),  # (1+2+3+4+5) / 5 tokens
        ("seq_mean_token_mean", (1.5 + 4.0) / 2),  # row means 3/2, 12/3; empty row not counted
        ("seq_mean_token_sum", (3.0 + 12.0) / 2),  # row sums 3, 12; empty row not counted
        ("seq_mean_token_sum_norm", 15 / (3 * 3)),  # masked sum / (B * T)
    ],
)
def test_aggregate_hand_computed(mode, expected):
    assert math.isclose(aggregate(X, M, mode).item(), expected, rel_tol=1e-6)
    assert aggregate(X, torch.zeros(3, 3), mode).item() == 0.0  # all masked: 0, not NaN


def test_aggregations_registry():
    assert set(AGGREGATIONS) == {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"}


def test_entropy_bonus_sign():
    ent = torch.tensor([[1.0, 2.0, 9.0]], requires_grad=True)
    bonus = entropy_bonus(ent, torch.tensor([[1.0, 1.0, 0.0]]), 0.01)
    assert math.isclose(bonus.item(), -0.01 * 1.5, rel_tol=1e-6)  # -coef * token mean (1+2)/2
    bonus.backward()  # minimising the loss pushes entropy up: negative gradient on masked tokens
    assert torch.allclose(ent.grad, torch.tensor([[-0.005, -0.005, 0.0]]))


# ---- ppo_clip ----


def test_ppo_clip_dual_clip_hand_computed():
    lp = torch.log(torch.tensor([[5.0, 5.0, 0.5]])).requires_grad_()  # ratios 5, 5, 0.5 against old = 0
    old, adv, mask = torch.zeros(1, 3), torch.tensor([[-1.0, 1.0, -1.0]]), torch.ones(1, 3)
    # token objectives, clip 0.2:  min(-5, -1.2) = -5 ; min(5, 1.2) = 1.2 ; min(-0.5, -0.8) = -0.8
    plain, _ = ppo_clip_loss(lp, old, adv, mask, 0.2, 0.2)  # positional call still works
    assert math.isclose(plain.item(), -(-5 + 1.2 - 0.8) / 3, rel_tol=1e-6)
    # dual clip 3 on A < 0: max(-5, -3) = -3 ; max(-0.8, -3) = -0.8 unchanged
    loss, stats = ppo_clip_loss(lp, old, adv, mask, 0.2, 0.2, dual_clip=3.0)
    assert math.isclose(loss.item(), -(-3 + 1.2 - 0.8) / 3, rel_tol=1e-6)
    assert math.isclose(stats["clip_frac"].item(), 2 / 3, rel_tol=1e-6)  # tokens 1 and 2 take the clipped term
    assert math.isclose(stats["dual_clip_frac"].item(), 1 / 3, rel_tol=1e-6)
    loss.backward()  # every token is clipped one way or the other: no gradient
    assert torch.equal(lp.grad, torch.zeros(1, 3))
    # without dual clip, token 0 is unclipped: d(-r*A/3)/dlogp = -r*A/3 = 5/3
    lp.grad = None
    plain, _ = ppo_clip_loss(lp, old, adv, mask, 0.2, 0.2)
    plain.backward()
    assert torch.allclose(lp.grad, torch.tensor([[5 / 3, 0.0, 0.0]]))


def test_ppo_clip_dual_clip_must_exceed_one():
    with pytest.raises(ValueError):
        ppo_clip_loss(torch.zeros(1, 1), torch.zeros(1, 1), -torch.ones(1, 1), torch.ones(1, 1), dual_clip=1.0)


def test_ppo_clip_agg_mode():
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 2.0]]))
    adv, mask = torch.tensor([[1.0, -1.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # token terms 1.2, -0.8, 1.1 (see test_algos); one sequence: token sum 1.5, / (B*T = 4)
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 4), adv, mask, agg="seq_mean_token_sum")
    assert math.isclose(loss.item(), -1.5, rel_tol=1e-6)
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 4), adv, mask, agg="seq_mean_token_sum_norm")
    assert math.isclose(loss.item(), -1.5 / 4, rel_tol=1e-6)


# ---- gspo ----


def test_gspo_value_and_gradient_hand_computed():
    # log-ratios (old = 0): row 0 [0.2, -0.1, pad], row 1 [0.6, 0.6, 0.6], row 2 fully masked
    lp = torch.tensor([[0.2, -0.1, 5.0], [0.6, 0.6, 0.6], [3.0, 3.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, 7.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0]])  # junk on padding
    loss, stats = gspo_loss(lp, torch.zeros(3, 3), adv, mask, clip_low=0.2, clip_high=0.2)
    # s_0 = exp((0.2 - 0.1)/2) = e^0.05 in [0.8, 1.2]: objective e^0.05 * 1
    # s_1 = e^0.6 ~ 1.82 > 1.2, A = 1: objective min(1.82, 1.2) = 1.2 (clipped)
    # seq-mean over the 2 non-empty rows of each row's (constant) token mean
    s0 = math.exp(0.05)
    assert math.isclose(loss.item(), -(s0 + 1.2) / 2, rel_tol=1e-6)
    assert math.isclose(stats["clip_frac"].item(), 0.5, rel_tol=1e-6)
    assert math.isclose(stats["seq_ratio_mean"].item(), (s0 + math.exp(0.6)) / 2, rel_tol=1e-6)
    loss.backward()
    # d/dlogp_t of -(1/2) * (1/|y_0|) * sum_t s_0,t * A_0, with d s_0,t / d logp_t = s_0 and |y_0| = 2:
    # -(1/2)(1/2) s_0 = -e^0.05 / 4 on row 0's two tokens; clipped row 1 and masked tokens get 0
    expected = torch.tensor([[-s0 / 4, -s0 / 4, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(lp.grad, expected)


def test_gspo_token_matches_sequence_level_gspo():
    # GSPO-token with per-sequence advantages has the value and gradient of sequence-level GSPO
    g = torch.Generator().manual_seed(0)
    lp = (0.3 * torch.randn(4, 6, generator=g)).requires_grad_()
    old = 0.3 * torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2, [1.0] + [0.0] * 5, [1.0] * 3 + [0.0] * 3])
    adv = torch.tensor([1.0, -0.5, 2.0, -1.0])[:, None].expand(4, 6)
    loss, _ = gspo_loss(lp, old, adv, mask, 0.1, 0.15)
    (grad_token,) = torch.autograd.grad(loss, lp)
    s = torch.exp(((lp - old) * mask).sum(-1) / mask.sum(-1))
    a = adv[:, 0]
    ref = -torch.minimum(s * a, torch.clamp(s, 0.9, 1.15) * a).mean()
    (grad_seq,) = torch.autograd.grad(ref, lp)
    assert torch.allclose(loss, ref)
    assert torch.allclose(grad_token, grad_seq, atol=1e-6)


# ---- KL in the reward ----


def test_apply_kl_penalty_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # r - 0.5 * kl on masked tokens: [-0.05, -0.1, 1 - 0.15] ; [-0.25, 1 - 0.25, 0 (masked)]
    expected = torch.tensor([[-0.05, -0.1, 0.85], [-0.25, 0.75, 0.0]])
    assert torch.allclose(apply_kl_penalty(rewards, kl, mask, 0.5), expected)


# ---- registries ----


def test_every_registered_algorithm_cites_a_year():
    for fn in [*ADVANTAGES.values(), *POLICY_LOSSES.values()]:
        assert fn.__doc__ and re.search(r"20\d\d", fn.__doc__), fn.__name__


def test_registry_names_and_common_call():
    assert ADVANTAGES["dr_grpo"] is dr_grpo_advantages and ADVANTAGES["rloo"] is rloo_advantages
    assert ADVANTAGES["reinforce_pp"] is reinforce_pp_advantages
    assert POLICY_LOSSES["ppo_clip"] is ppo_clip_loss and POLICY_LOSSES["gspo"] is gspo_loss
    for fn in ADVANTAGES.values():
        assert fn(R, 1e-6).shape == R.shape
    lp = torch.zeros(2, 3, requires_grad=True)
    for fn in POLICY_LOSSES.values():  # the learner's positional call; it reads stats["clip_frac"]
        loss, stats = fn(lp, lp.detach(), torch.ones(2, 3), torch.ones(2, 3), 0.2, 0.28)
        assert loss.dim() == 0 and "clip_frac" in stats and not stats["clip_frac"].requires_grad


def test_losses_and_advantages_declare_what_the_learner_and_config_rely_on():
    assert POLICY_LOSSES["ppo_clip"].zero_advantage_rows_add_nothing and POLICY_LOSSES["gspo"].zero_advantage_rows_add_nothing
    assert not POLICY_LOSSES["sft"].zero_advantage_rows_add_nothing
    assert POLICY_LOSSES["ppo_clip"].token_level_ratio and POLICY_LOSSES["sft"].token_level_ratio
    assert not POLICY_LOSSES["gspo"].token_level_ratio
    assert [name for name, fn in ADVANTAGES.items() if getattr(fn, "passes_reward_through", False)] == ["reward"]
    # a declaring loss's zero-advantage row has exactly zero gradient (the dual clip included)
    lp = torch.randn(3, 4, requires_grad=True)
    adv = torch.tensor([[1.0], [0.0], [-0.5]]).expand(3, 4)
    for name, fn in POLICY_LOSSES.items():
        if fn.zero_advantage_rows_add_nothing:
            loss, _ = fn(lp, lp.detach() + 0.3 * torch.randn(3, 4), adv, torch.ones(3, 4), 0.2, 0.2, 3.0)
            (grad,) = torch.autograd.grad(loss, lp)
            assert torch.all(grad[1] == 0) and grad[0].abs().sum() > 0, name


def test_the_learner_skips_zero_advantage_rows_only_for_a_loss_that_declares_it(tiny_model_dir, monkeypatch):
    from rlreason.algos import declares
    from rlreason.config import AlgoConfig, OptimConfig
    from rlreason.learner.policy import Learner
    from tests.helpers import mixed_groups_batch

    def plain(logprobs, old_logprobs, advantages, mask, clip_low=0.2, clip_high=0.2, dual_clip=None, agg="token_mean"):
        return ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg)

    @declares(zero_advantage_rows_add_nothing=False)
    def declared_false(logprobs, old_logprobs, advantages, mask, clip_low=0.2, clip_high=0.2, dual_clip=None, agg="token_mean"):
        return ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg)

    monkeypatch.setitem(POLICY_LOSSES, "ppo_clip_undeclared", plain)  # no declaration: never skipped either
    monkeypatch.setitem(POLICY_LOSSES, "ppo_clip_declared_false", declared_false)
    path, _ = tiny_model_dir
    batch = mixed_groups_batch([[1.0, -1.0], [0.0, 0.0], [-0.5, 0.5]])  # the second group: all zero
    for name, rows in (("ppo_clip", [True, True, False, False, True, True]), ("ppo_clip_undeclared", [True] * 6), ("ppo_clip_declared_false", [True] * 6)):
        learner = Learner(str(path), AlgoConfig(policy_loss=name), OptimConfig(), threads=2)
        assert learner._rows_with_gradient(batch, kl_in_loss=False).tolist() == rows, name
    assert learner.update(batch).skipped_rows == 0.0


# ---- expert iteration, DAPO shaping and filtering (hand-computed) ----


def test_rft_filter_keeps_verified_correct():
    from rlreason.algos import rft_filter

    r = torch.tensor([[1.0, 0.0, 0.5, 1.0]])
    assert rft_filter(r).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_sft_loss_is_mean_nll_over_kept_tokens():
    from rlreason.algos import sft_loss

    lp = torch.tensor([[-1.0, -2.0, -9.0], [-4.0, -9.0, -9.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # row 2 rejected
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = sft_loss(lp, lp.detach(), adv, mask)
    assert math.isclose(loss.item(), (1.0 + 2.0) / 2, rel_tol=1e-6)  # mean NLL over the 2 kept tokens
    assert math.isclose(stats["kept_frac"].item(), 2 / 5, rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(lp.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.0, 0.0, 0.0]]))


def test_overlong_penalty_hand_computed():
    from rlreason.algos import overlong_penalty

    lengths = torch.tensor([[10, 12, 14, 16, 20]])
    # L_max 16, buffer 4: start 12 -> 0, 0, (12-14)/4 = -0.5, (12-16)/4 = -1, clamp -1
    assert overlong_penalty(lengths, 16, 4).tolist() == [[0.0, 0.0, -0.5, -1.0, -1.0]]
    assert overlong_penalty(lengths, 16, 4, penalty=0.5).tolist() == [[0.0, 0.0, -0.25, -0.5, -0.5]]
    assert overlong_penalty(lengths, 16, 0).tolist() == [[0.0] * 5]


def test_keep_mixed_drops_equal_groups():
    from rlreason.algos import GROUP_FILTERS, keep_mixed

    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.5, 0.5001]])
    assert keep_mixed(r).tolist() == [False, True, False, True]
    assert GROUP_FILTERS["all"](r).tolist() == [True] * 4


# ---- critic family (hand-computed) ----


def test_gae_hand_computed():
    from rlreason.algos.critic import gae_advantages

    # one sequence: position 0 is prompt, 1..3 completion, 4 padding; outcome reward 1 on the last token
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    m = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae_advantages(r, v, m, gamma=1.0, lam=1.0)
    # gamma = lam = 1: A_t = 1 - V_t on completion tokens, returns = 1
    assert torch.allclose(adv, torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]]))
    adv, _ = gae_advantages(r, v, m, gamma=0.9, lam=0.5)
    # delta3 = 1 - 0.7 = 0.3; delta2 = 0.9*0.7 - 0.6 = 0.03; delta1 = 0.9*0.6 - 0.5 = 0.04
    # A3 = 0.3; A2 = 0.03 + 0.45*0.3 = 0.165; A1 = 0.04 + 0.45*0.165 = 0.11425
    assert torch.allclose(adv, torch.tensor([[0.0, 0.11425, 0.165, 0.3, 0.0]]), atol=1e-6)


def test_clipped_value_loss_hand_computed():
    from rlreason.algos.critic import clipped_value_loss

    v = torch.tensor([[1.0, 1.0]])
    old = torch.tensor([[0.0, 0.0]])
    ret = torch.tensor([[0.0, 2.0]])
    loss, stats = clipped_value_loss(v, old, ret, torch.ones(1, 2), clip=0.2)
    # token 1: unclipped (1-0)^2 = 1, clipped (0.2-0)^2 = 0.04 -> 1
    # token 2: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 3.24 (the clipped error counts)
    assert math.isclose(loss.item(), 0.5 * (1 + 3.24) / 2, rel_tol=1e-6)
    assert stats["value_clip_frac"].item() == 0.5


def test_kl_penalty_to_go_hand_computed():
    from rlreason.algos import kl_penalty_to_go

    kl = torch.tensor([[9.0, 0.1, 0.2, 0.3, 9.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    # coef 0.5: to-go sums of -0.5 * kl over completion tokens: -0.3, -0.25, -0.15
    assert torch.allclose(kl_penalty_to_go(kl, mask, 0.5), torch.tensor([[0.0, -0.3, -0.25, -0.15, 0.0]]))


# ---- issue 24: numerics and a missing estimator ----


def test_reinforce_pp_baseline_hand_computed():
    """Group mean first, then the whole batch: [[1, 0], [1, 1]] -> x = [[.5, -.5], [0, 0]], batch
    mean 0, population std sqrt((.25 + .25) / 4) = sqrt(.125): A = [[sqrt 2, -sqrt 2], [0, 0]]."""
    from rlreason.algos import reinforce_pp_baseline_advantages

    assert ADVANTAGES["reinforce_pp_baseline"] is reinforce_pp_baseline_advantages
    a = reinforce_pp_baseline_advantages(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), 0.0)
    assert torch.allclose(a, torch.tensor([[math.sqrt(2), -math.sqrt(2)], [0.0, 0.0]]))
    # R: x = [[.5, -.5, -.5, .5], [.75, -.25, -.25, -.25]]; mean 0; population std of x
    x = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.75, -0.25, -0.25, -0.25]])
    std = math.sqrt(sum(v * v for v in x.flatten().tolist()) / 8)
    assert torch.allclose(reinforce_pp_baseline_advantages(R, 0.0), x / std)
    assert torch.equal(reinforce_pp_baseline_advantages(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 1e-6), torch.zeros(2, 2))


def test_group_relative_advantages_are_declared():
    relative = {name for name, fn in ADVANTAGES.items() if getattr(fn, "group_relative", False)}
    assert relative == {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"}
    for name in relative:  # why: a group of one gets 0 everywhere
        assert torch.equal(ADVANTAGES[name](torch.tensor([[1.0], [0.0]]), 1e-6), torch.zeros(2, 1)), name


@pytest.mark.parametrize("loss_fn", [ppo_clip_loss, gspo_loss])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_log_ratio_of_100_gives_a_finite_loss_and_gradient(loss_fn, sign):
    """Far off-policy tokens (log-ratio +-100, exp(100) overflows float32): the log-ratio is
    clamped to +-20 before exp, so the loss and the gradient stay finite, for either sign of
    the advantage."""
    from rlreason.algos.losses import LOG_RATIO_CLAMP

    assert LOG_RATIO_CLAMP == 20.0
    for log_ratio in (100.0, -100.0):
        lp = torch.full((2, 3), log_ratio, requires_grad=True)
        loss, stats = loss_fn(lp, torch.zeros(2, 3), torch.full((2, 3), sign), torch.ones(2, 3))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(lp.grad).all(), (log_ratio, loss, lp.grad)
        assert all(torch.isfinite(v).all() for v in stats.values())
    # inside the clamp nothing changes: exp(0.5) exactly
    lp = torch.full((1, 2), 0.5)
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 2), torch.full((1, 2), -1.0), torch.ones(1, 2), 0.2, 0.2)
    assert math.isclose(loss.item(), math.exp(0.5), rel_tol=1e-6)  # -min(r * -1, 1.2 * -1) = r


def test_whiten_uses_the_population_std():
    """critic.whiten's decision, pinned: [1, 2, 3, 4] (the padding 9 left out) -> mean 2.5, population
    std sqrt(1.25) (the sample std would be sqrt(5 / 3))."""
    from rlreason.algos import whiten

    values = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    s = math.sqrt(1.25)
    expected = torch.tensor([[-1.5 / s, -0.5 / s, 0.0], [0.5 / s, 1.5 / s, 0.0]])
    assert torch.allclose(whiten(values, mask, eps=0.0), expected)
