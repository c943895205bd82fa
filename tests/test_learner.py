import math

import pytest
import torch

from rlreason.config import AlgoConfig, OptimConfig, WarmStartConfig
from rlreason.learner.batch import make_batch
from rlreason.learner.policy import Learner
from rlreason.types import Sample
from tests.helpers import assert_same_weights, mixed_groups_batch


def rollout_batch(advantages):
    groups = [[Sample([10, 11, 12], [13, 14, 2], "", [-1.0, -1.0, -1.0], "stop", 0), Sample([10, 11, 12], [15, 2], "", [-1.0, -1.0], "stop", 0)]]
    return make_batch(groups, torch.tensor([advantages]), pad_id=0)


@pytest.fixture
def learner(tiny_model_dir):
    path, _ = tiny_model_dir
    return Learner(str(path), AlgoConfig(), OptimConfig(lr=1e-2, warmup_steps=1), threads=2)


def test_warm_start_lowers_loss(learner):
    pairs = [("12+34>", "2+4+0=6;1+3+0=4;=46")] * 8
    stats = learner.warm_start(pairs, WarmStartConfig(steps=15, batch_size=4, lr=3e-3, warmup_steps=2))
    assert stats["warm_start/loss_last"] < stats["warm_start/loss_first"] - 1.0


def test_warm_start_in_pieces_is_the_warm_start_in_one_call(tiny_model_dir):
    """loop.warm_start calls the learner in pieces to show progress between them: the weights
    and the summary's losses are those of one call, bit for bit."""
    from rlreason.loop import warm_start

    path, _ = tiny_model_dir
    pairs = [(f"{a}+{b}>", f"={a + b}") for a in range(10, 20) for b in range(30, 33)]
    ws = WarmStartConfig(steps=7, batch_size=4, lr=3e-3, warmup_steps=2)
    whole, pieces = (Learner(str(path), AlgoConfig(), OptimConfig(), threads=1) for _ in range(2))
    one = whole.warm_start(pairs, ws)
    split = warm_start(pieces, pairs, ws, pieces=3)  # 3 + 3 + 1 steps
    assert "losses" in one and "losses" not in split
    assert {k: v for k, v in one.items() if k not in ("losses", "timing/warm_start")} == {k: v for k, v in split.items() if k != "timing/warm_start"}
    w1, w2 = whole.weights(), pieces.weights()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_warm_start_in_micro_batches_is_the_warm_start_of_the_whole_batch(tiny_model_dir):
    """The warm start honours optim.micro_batch_size / micro_batch_tokens (a long demonstration
    need not fit beside 63 others): the losses and weights are those of one micro-batch."""
    path, _ = tiny_model_dir
    pairs = [(f"{a}+{b}>", f"{a}+{b}=" + "1" * (a % 7) + f"={a + b}") for a in range(10, 20) for b in range(30, 33)]
    ws = WarmStartConfig(steps=4, batch_size=8, lr=3e-3, warmup_steps=2)
    whole = Learner(str(path), AlgoConfig(), OptimConfig(), threads=1).warm_start(pairs, ws)
    learners = [Learner(str(path), AlgoConfig(), OptimConfig(micro_batch_size=3), threads=1),
                Learner(str(path), AlgoConfig(), OptimConfig(micro_batch_tokens=40), threads=1)]
    for learner in learners:
        split = learner.warm_start(pairs, ws)
        assert split["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    a, b = learners[0].weights(), Learner(str(path), AlgoConfig(), OptimConfig(), threads=1)
    b.warm_start(pairs, ws)
    b = b.weights()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # Adam turns float-order noise into ~1e-5


def test_logits_only_at_the_positions_the_loss_uses(tiny_model_dir):
    """The LM head runs from the first completion position on (transformers' logits_to_keep),
    the logprobs and entropy are those of the full computation, and the entropy is outside
    autograd unless asked for (entropy_grad)."""
    from rlreason.learner.policy import token_logprobs

    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(), OptimConfig(), threads=1)
    groups = [[Sample([10, 11, 12, 13, 14], [15, 16, 2], "", [-1.0] * 3, "stop", 0), Sample([10, 11, 12], [17, 18, 19, 2], "", [-1.0] * 4, "stop", 0)]]
    batch = make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0)  # T = 8; the first completion token is at 3
    seen = []
    hook = learner.model.lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    logp, entropy = token_logprobs(learner.model, batch, with_entropy=True, entropy_grad=False)
    hook.remove()
    assert seen == [8 - 2]  # positions 2..7 (position 2 predicts token 3); 7 drops as it predicts nothing
    logits = learner.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    full = torch.log_softmax(logits.float(), -1)
    want = full.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.loss_mask.bool()
    assert torch.allclose(logp[mask], want[mask], atol=1e-6) and (logp[:, :2] == 0).all()
    assert torch.allclose(entropy[mask], -(full.exp() * full).sum(-1)[mask], atol=1e-6)
    assert logp.requires_grad and not entropy.requires_grad
    assert token_logprobs(learner.model, batch, with_entropy=True)[1].requires_grad  # entropy_grad=True: the entropy bonus


def test_progress_prints_plain_lines_where_the_output_is_not_a_terminal():
    """In CI or `ray job logs` the warm start's progress is a line every few seconds and one at
    the end (tqdm's text: count, elapsed, rate, ETA, the loss), never carriage returns."""
    import io

    from rlreason.progress import Progress

    out = io.StringIO()
    with Progress(4, "warm start", stream=out, every_s=3600) as bar:
        for i in range(4):
            bar.update(1, loss=1.0 / (i + 1))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in out.getvalue()  # none within the hour, one at the end
    assert lines[0].startswith("warm start: 100% 4/4 [") and lines[0].endswith("loss=0.25]")


def test_update_raises_logprob_of_positive_sample(learner):
    ids = [10, 11, 12, 13, 14, 2]
    before = sum(learner.sequence_logprobs(ids)[2:])
    stats = learner.update(rollout_batch([1.0, -1.0]))
    after = sum(learner.sequence_logprobs(ids)[2:])
    assert after > before
    assert stats.clip_frac == 0.0  # on-policy single update: ratio == 1
    assert stats.tokens == 5
    assert stats.mismatch_logprob_diff > 0  # fake sampling logprobs (-1.0) differ from the model's


def test_zero_advantage_leaves_weights_unchanged(learner):
    w0 = learner.weights()
    learner.update(rollout_batch([0.0, 0.0]))
    w1 = learner.weights()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_weights_include_tied_lm_head(learner):
    w = learner.weights()
    assert "lm_head.weight" in w and torch.equal(w["lm_head.weight"], w["model.embed_tokens.weight"])


def test_nan_loss_is_an_error_and_weights_survive(learner):
    w0 = learner.weights()
    with pytest.raises(FloatingPointError, match="non-finite"):
        learner.update(rollout_batch([float("nan"), 1.0]))
    w1 = learner.weights()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_several_epochs_and_minibatches_with_kl(tiny_model_dir):
    path, _ = tiny_model_dir
    algo = AlgoConfig(epochs=2, minibatches=2, kl_coef=0.1)
    learner = Learner(str(path), algo, OptimConfig(lr=1e-2, warmup_steps=1), threads=2)
    stats = learner.update(rollout_batch([1.0, -1.0]))
    assert learner.ref is not None
    assert stats.kl >= 0.0
    assert stats.clip_frac > 0.0  # lr 1e-2 moves the ratio past 1.2 by the second epoch


@pytest.mark.parametrize("loss,agg", [("ppo_clip", "seq_mean_token_mean"), ("gspo", None), ("ppo_clip", "seq_mean_token_sum_norm")])
def test_micro_batching_keeps_the_aggregate(tiny_model_dir, loss, agg):
    """The loss reported (and back-propagated) is the same split into micro-batches of 1 or not."""
    path, _ = tiny_model_dir
    algo = AlgoConfig(policy_loss=loss, loss_agg=agg, entropy_coef=0.01, dual_clip=3.0)
    batch = rollout_batch([1.0, -1.0])
    whole = Learner(str(path), algo, OptimConfig(micro_batch_size=8), threads=2).update(batch)
    split = Learner(str(path), algo, OptimConfig(micro_batch_size=1), threads=2).update(batch)
    packed = Learner(str(path), algo, OptimConfig(micro_batch_size=8, micro_batch_tokens=6), threads=2).update(batch)
    for other in (split, packed):  # micro-batches of one row, or packed by tokens, each trimmed to its own length
        assert math.isclose(whole.loss, other.loss, rel_tol=1e-5, abs_tol=1e-7)
        assert math.isclose(whole.grad_norm, other.grad_norm, rel_tol=1e-4)


def test_truncated_importance_sampling_caps_and_reports(tiny_model_dir):
    path, _ = tiny_model_dir
    groups = [[Sample([10, 11, 12], [13, 14, 2], "", [-30.0, -30.0, -30.0], "stop", 0), Sample([10, 11, 12], [15, 2], "", [-30.0, -30.0], "stop", 0)]]
    batch = make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0)
    stats = Learner(str(path), AlgoConfig(tis_cap=2.0), OptimConfig(), threads=2).update(batch)
    # the sampler's logprobs (-30) are far below the learner's (~ -4.6): every ratio exceeds the cap
    assert stats.tis_clip_frac == 1.0
    assert stats.is_ratio_min > 2.0 and stats.mismatch_logprob_diff_max > 20
    off = Learner(str(path), AlgoConfig(), OptimConfig(), threads=2).update(batch)
    assert off.tis_clip_frac == 0.0 and math.isclose(off.mismatch_kl, stats.mismatch_kl, rel_tol=1e-6)


def test_ppo_with_critic_trains_values_toward_returns(tiny_model_dir):
    from rlreason.config import CriticConfig

    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(advantage="reward", minibatches=2), OptimConfig(lr=1e-3, warmup_steps=1), threads=2,
                      critic=CriticConfig(enabled=True, lr=1e-3))
    batch = rollout_batch([1.0, 0.0])  # advantage=reward: the batch carries the outcome rewards
    first_value = lambda: learner._values(batch)[0, 4].item()  # value at the positive sample's last completion position
    v0 = first_value()
    stats = [learner.update(batch) for _ in range(5)]
    assert all(math.isfinite(s.value_loss) and s.value_loss > 0 for s in stats)
    assert stats[-1].value_loss < stats[0].value_loss
    assert abs(first_value() - 1.0) < abs(v0 - 1.0)  # the return there is 1


def test_critic_gae_batch_puts_reward_on_last_token(tiny_model_dir):
    from rlreason.config import CriticConfig

    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(advantage="reward"), OptimConfig(), threads=2,
                      critic=CriticConfig(enabled=True, whiten=False))
    batch = rollout_batch([1.0, 0.0])
    gae_batch, old_values, returns = learner._gae_batch(batch, None)
    # gamma = lam = 1: returns are the outcome reward on every completion token, 0 elsewhere
    assert torch.allclose(returns, batch.loss_mask * torch.tensor([[1.0], [0.0]]))
    assert torch.allclose(gae_batch.advantages, (returns - old_values) * batch.loss_mask, atol=1e-6)


def test_kl_in_reward_moves_kl_out_of_the_loss(tiny_model_dir):
    from rlreason.config import CriticConfig

    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(advantage="reward", kl_coef=0.1, kl_in_reward=True), OptimConfig(), threads=2,
                      critic=CriticConfig(enabled=True))
    stats = learner.update(rollout_batch([1.0, 0.0]))
    assert learner.ref is not None and stats.kl == 0.0 and math.isfinite(stats.loss)
    # without a critic too: the penalty goes into the token advantages, not the loss
    learner = Learner(str(path), AlgoConfig(kl_coef=0.1, kl_in_reward=True), OptimConfig(lr=1e-2, warmup_steps=1), threads=2)
    learner.update(rollout_batch([1.0, -1.0]))  # the policy moves away from the reference
    stats = learner.update(rollout_batch([1.0, -1.0]))
    assert stats.kl == 0.0 and math.isfinite(stats.loss)


def test_update_with_a_zero_length_completion(learner):
    groups = [[Sample([10, 11, 12], [], "", [], "length", 0), Sample([10, 11, 12], [15, 2], "", [-1.0, -1.0], "stop", 0)]]
    stats = learner.update(make_batch(groups, torch.tensor([[1.0, -1.0]]), pad_id=0))
    assert math.isfinite(stats.loss) and stats.tokens == 2


def test_mixed_precision_resolves_per_device():
    from rlreason.learner.policy import compute_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert compute_dtype("auto", cpu, torch.float32) is None  # CPU default: model.dtype
    assert compute_dtype("auto", gpu, torch.float32) is torch.bfloat16
    assert compute_dtype("bfloat16", cpu, torch.float32) is torch.bfloat16
    assert compute_dtype("bfloat16", gpu, torch.bfloat16) is None  # already the model's dtype
    assert compute_dtype("", gpu, torch.float32) is None


def test_attention_kernel_resolves_per_device_and_dtype(tiny_model_dir):
    """'auto' is eager attention for bf16 compute on CPU (torch's CPU flash-attention backward is
    slow in bf16), transformers' default otherwise; a name given is passed through."""
    from rlreason.learner.policy import attention_kwargs

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert attention_kwargs("auto", cpu, torch.bfloat16) == {"attn_implementation": "eager"}
    assert attention_kwargs("auto", cpu, None) == {} and attention_kwargs("auto", gpu, torch.bfloat16) == {}
    assert attention_kwargs("sdpa", cpu, torch.bfloat16) == {"attn_implementation": "sdpa"}
    path, _ = tiny_model_dir
    bf16 = Learner(str(path), AlgoConfig(kl_coef=0.1), OptimConfig(mixed_precision="bfloat16"), threads=2)
    fp32 = Learner(str(path), AlgoConfig(), OptimConfig(), threads=2)
    bf16.update(rollout_batch([1.0, -1.0]))  # makes the KL reference
    assert bf16.model.config._attn_implementation == "eager" and bf16.ref.config._attn_implementation == "eager"
    assert fp32.model.config._attn_implementation == "sdpa"


def test_bf16_on_a_cpu_without_bf16_units_warns(tmp_path, monkeypatch, caplog):
    """An AVX2-only CPU emulates bf16 matmuls (measured 1-8 GFLOP/s against 31-76 in fp32):
    asking for bf16 there says so, naming the key; a CPU with avx512_bf16 or AMX does not warn."""
    from rlreason.learner import policy

    avx2, bf16, amx = tmp_path / "avx2", tmp_path / "bf16", tmp_path / "amx"
    avx2.write_text("flags\t\t: fpu sse avx2 fma\n")
    bf16.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    amx.write_text("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert policy.cpu_has_native_bf16(str(avx2)) is False
    assert policy.cpu_has_native_bf16(str(bf16)) is True and policy.cpu_has_native_bf16(str(amx)) is True
    assert policy.cpu_has_native_bf16(str(tmp_path / "missing")) is None

    cpu = torch.device("cpu")
    for flags, warns in ((False, True), (True, False), (None, False)):
        monkeypatch.setattr(policy, "cpu_has_native_bf16", lambda flags=flags: flags)
        caplog.clear()
        assert policy.compute_dtype("bfloat16", cpu, torch.float32) is torch.bfloat16  # still what was asked for
        assert ("optim.mixed_precision=bfloat16 on a CPU without AVX512-BF16" in caplog.text) is warns
    caplog.clear()
    assert policy.compute_dtype("auto", cpu, torch.float32) is None and caplog.text == ""  # the CPU default: fp32, no warning


def test_bf16_mixed_precision_computes_in_bf16_and_keeps_fp32_state(tiny_model_dir):
    """optim.mixed_precision=bfloat16 on CPU: the layers' matmuls run in bf16 (autocast), while
    parameters, gradients and AdamW state stay float32; the update still does its job."""
    path, _ = tiny_model_dir
    mixed = Learner(str(path), AlgoConfig(), OptimConfig(lr=1e-2, warmup_steps=1, mixed_precision="bfloat16"), threads=2)
    full = Learner(str(path), AlgoConfig(), OptimConfig(lr=1e-2, warmup_steps=1), threads=2)
    seen = []
    mixed.model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    ids = [10, 11, 12, 13, 14, 2]
    lp_mixed, lp_full = mixed.sequence_logprobs(ids), full.sequence_logprobs(ids)
    diff = max(abs(a - b) for a, b in zip(lp_mixed, lp_full))
    assert 0 < diff < 0.05  # bf16 rounding: not the fp32 numbers, but close to them
    before = sum(lp_mixed[2:])
    mixed.update(rollout_batch([1.0, -1.0]))
    assert seen and set(seen) == {torch.bfloat16}
    assert sum(mixed.sequence_logprobs(ids)[2:]) > before
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32) for p in mixed.model.parameters())
    state = mixed.optimizer.state[next(mixed.model.parameters())]
    assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in mixed.weights().values())


@pytest.mark.parametrize("loss,agg,micro,minibatches", [
    ("ppo_clip", None, 256, 1), ("ppo_clip", "seq_mean_token_mean", 1, 2), ("gspo", None, 2, 1), ("ppo_clip", "seq_mean_token_sum_norm", 256, 2),
])
def test_rows_with_zero_advantage_are_skipped_and_the_update_is_unchanged(tiny_model_dir, loss, agg, micro, minibatches):
    """A group whose samples all got the same reward has zero advantages: its rows add nothing to
    the gradient, so they are not run, and the weights after each update are those of the update
    that ran them. The second batch is all zero: AdamW still steps (on its momentum) the same."""
    path, _ = tiny_model_dir
    algo = AlgoConfig(policy_loss=loss, loss_agg=agg, minibatches=minibatches, tis_cap=2.0 if loss == "ppo_clip" else None)  # the config refuses TIS with GSPO
    batches = [mixed_groups_batch([[1.0, -1.0], [0.0, 0.0], [-0.5, 0.5]]), mixed_groups_batch([[0.0, 0.0]] * 3)]
    runs = {}
    for skip in (False, True):
        learner = Learner(str(path), algo, OptimConfig(lr=1e-2, warmup_steps=1, micro_batch_size=micro, skip_zero_advantage=skip), threads=2)
        rows_run = []
        learner.model.model.embed_tokens.register_forward_hook(lambda m, args, out: rows_run.append(args[0].shape[0]))
        stats = [learner.update(b) for b in batches]
        runs[skip] = stats, learner.weights(), sum(rows_run)
    (full, w_full, rows_full), (skipped, w_skipped, rows_skipped) = runs[False], runs[True]
    start = Learner(str(path), algo, OptimConfig()).weights()
    moved = max((w_full[k] - start[k]).abs().max().item() for k in w_full)
    assert moved > 1e-3  # the updates did change the weights
    # the same updates, to summation order, which Adam amplifies in near-zero gradients (seen on an
    # AMX host: 2e-5 of the update's norm apart, 1.8e-4 in one weight, where Adam's steps are ~1e-2)
    assert_same_weights(w_skipped, w_full, start)
    for a, b in zip(full, skipped):
        assert math.isclose(a.loss, b.loss, rel_tol=1e-5, abs_tol=1e-7)
        assert math.isclose(a.grad_norm, b.grad_norm, rel_tol=1e-4, abs_tol=1e-9)
    assert [s.skipped_rows for s in full] == [0.0, 0.0]
    assert skipped[0].skipped_rows == pytest.approx(2 / 6)
    assert skipped[1].grad_norm == 0.0 and skipped[1].skipped_rows == pytest.approx(1 - minibatches / 6)  # one zero-gradient row per minibatch still runs
    if minibatches == 1:  # the forward passes ran on 6 + 6 rows, against 4 + 1 with skipping
        assert (rows_full, rows_skipped) == (12, 5)
    # the mismatch metrics cover the rows that ran: not the skipped group's far-off sampling logprobs
    assert skipped[0].mismatch_logprob_diff_max < 10 < full[0].mismatch_logprob_diff_max


def test_zero_advantage_rows_run_when_their_loss_has_other_terms(tiny_model_dir):
    """An entropy bonus (or a KL loss term) gives a zero-advantage row a gradient: nothing is skipped."""
    path, _ = tiny_model_dir
    batch = mixed_groups_batch([[1.0, -1.0], [0.0, 0.0], [-0.5, 0.5]])
    for algo in (AlgoConfig(entropy_coef=0.01), AlgoConfig(kl_coef=0.1), AlgoConfig(policy_loss="sft")):
        assert Learner(str(path), algo, OptimConfig(), threads=2).update(batch).skipped_rows == 0.0
    # KL in the reward: rows are judged by their advantages after the KL penalty
    learner = Learner(str(path), AlgoConfig(kl_coef=0.1, kl_in_reward=True), OptimConfig(lr=1e-2, warmup_steps=1), threads=2)
    assert learner.update(batch).skipped_rows == pytest.approx(2 / 6)  # policy == reference: no penalty yet
    assert learner.update(batch).skipped_rows == 0.0  # the policy has moved: every row has a KL penalty


def test_a_cached_warm_start_goes_on_exactly_as_the_warm_start(tiny_model_dir, tmp_path, caplog):
    """The second run with the same inputs loads the first one's outcome instead of training
    (and says so): the same weights and the same learner generator, so what follows is the
    same. --no-cache (warm_start.cache=false) trains again."""
    import logging

    from rlreason.config import load_config
    from rlreason.loop import cached_warm_start

    path, model_cfg = tiny_model_dir
    cfg = load_config(None, [f"model.cache_dir={tmp_path}", "warm_start.steps=5", "warm_start.batch_size=4"])
    pairs = [(f"{a}+{b}>", f"={a + b}") for a in range(10, 20) for b in range(30, 33)]
    first, second, third = (Learner(str(path), AlgoConfig(), OptimConfig(), threads=1) for _ in range(3))

    trained = cached_warm_start(cfg, first, pairs, str(path))
    assert "warm_start/cached" not in trained
    with caplog.at_level(logging.INFO, logger="rlreason"):
        reused = cached_warm_start(cfg, second, pairs, str(path))
    assert reused["warm_start/cached"] == 1.0 and reused["warm_start/loss_last"] == trained["warm_start/loss_last"]
    assert "warm start: reused from the cache" in caplog.text
    w1, w2 = first.weights(), second.weights()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert torch.equal(first.generator.get_state(), second.generator.get_state())
    batch = rollout_batch([1.0, -1.0])
    assert first.update(batch).loss == second.update(batch).loss  # and the RL goes on alike

    no_cache = load_config(None, [f"model.cache_dir={tmp_path}", "warm_start.steps=5", "warm_start.batch_size=4", "warm_start.cache=false"])
    assert "warm_start/cached" not in cached_warm_start(no_cache, third, pairs, str(path))


def test_the_warm_start_cache_key_names_what_determines_the_outcome(tiny_model_dir):
    from rlreason.config import load_config
    from rlreason.loop import warm_start_key

    path, _ = tiny_model_dir
    pairs = [("1+2>", "=3")]
    key = warm_start_key(load_config(None, []), pairs, str(path))
    for override in ("warm_start.steps=7", "warm_start.lr=0.01", "seed=3", "model.dtype=bfloat16", "optim.mixed_precision=bfloat16", "ray.learner_cpus=2", "ray.threads=1", "ray.placement=colocated",
                     "optim.micro_batch_size=8", "optim.micro_batch_tokens=512"):
        assert warm_start_key(load_config(None, [override]), pairs, str(path)) != key, override
    assert warm_start_key(load_config(None, []), [("1+2>", "=4")], str(path)) != key  # the teacher's demonstrations
    for override in ("steps=3", "algo.kl_coef=0.1", "optim.lr=0.5", "warm_start.cache=false", "name=other"):
        assert warm_start_key(load_config(None, [override]), pairs, str(path)) == key, override
