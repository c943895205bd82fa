"""The FSDP2 learner (rlreason.learner.fsdp) on CPU with gloo: 2 ranks (Ray actors behind one
RemoteLearner) make the same update as the single-process Learner; the weights they send are
the same; checkpoints interchange between them; gradient checkpointing changes nothing
numerically. The real loop with 2 ranks is in test_collective (with the gloo broadcast)."""

import json
import math

import pytest
import torch

from rlreason.config import AlgoConfig, OptimConfig, WarmStartConfig, load_config
from rlreason.learner.batch import make_batch
from rlreason.learner.policy import Learner
from rlreason.types import Sample
from tests.helpers import assert_same_weights

STATS = ("loss", "policy_loss", "kl", "clip_frac", "entropy", "grad_norm", "lr", "tokens", "mismatch_logprob_diff",
         "mismatch_kl", "is_ratio_max", "tis_clip_frac", "skipped_rows")


def batch_of_five(advantages=(1.0, -1.0, 0.5, -0.5, 1.0)):
    """5 rows of 4 lengths: ranks get 3 and 2 rows, so one of them pads its micro-batches."""
    comps = [[13, 14, 2], [15, 2], [16, 17, 18, 19, 2], [20, 2], [21, 22, 23, 2]]
    groups = [[Sample([10, 11, 12], c, "", [-1.0] * len(c), "stop", 0) for c in comps]]
    return make_batch(groups, torch.tensor([list(advantages)]), pad_id=0)


def assert_same_stats(a, b, rel=1e-5):
    for k in STATS:
        x, y = getattr(a, k), getattr(b, k)
        # exp(logprob difference): a 1e-5 logprob difference (Adam amplifies float noise) is 1e-5
        # relative, so these get 1e-4; with rel=1e-4 (bf16, four updates: 5e-4 seen), 10x rel
        tol = max(1e-4, 10 * rel) if k in ("is_ratio_max", "mismatch_kl") else rel
        assert math.isclose(x, y, rel_tol=tol, abs_tol=1e-7), f"{k}: {x} vs {y}"


def group_and_single(path, model_cfg, algo: AlgoConfig, optim: OptimConfig, steps=10):
    """2 FSDP learner ranks (Ray actors, behind one RemoteLearner) and a single-process Learner of the same config."""
    from rlreason.cluster.placement import build_learner

    cfg = load_config(None, [f"model.cache_dir={model_cfg.cache_dir}", "ray.learner_workers=2", "ray.threads=1", f"steps={steps}"])
    cfg.algo, cfg.optim = algo, optim
    single = Learner(str(path), algo, optim, seed=cfg.seed, threads=1, total_steps=steps)
    single.start = single.weights()
    return build_learner(cfg, str(path)), single


def weights_of(group):
    """The ranks' full weights as the object-store sync sends them: rank 0's buckets of the
    tensors every rank gathered (FSDPLearner.weight_buckets / gather_weights)."""
    from rlreason.cluster.sync import ObjectStoreSync

    buckets = ObjectStoreSync(group.actors, None, bucket_mb=0.2).publish()
    assert len(buckets) > 2
    return dict(buckets)


def test_two_ranks_match_one_process_warm_start_and_micro_batches(ray_cluster, tiny_model_dir, tmp_path):
    """On-policy PPO (token mean), micro-batches of one row (rank 0 runs 3, rank 1 pads its 2 to
    3), KL to the warm-started snapshot: the warm start's losses, then two updates' statistics and
    weights, equal one process's; the snapshot reference checkpoints and loads in one process."""
    path, model_cfg = tiny_model_dir
    algo = AlgoConfig(entropy_coef=0.01, kl_coef=0.05)
    group, single = group_and_single(path, model_cfg, algo, OptimConfig(lr=1e-2, warmup_steps=1, micro_batch_size=1))
    try:
        pairs = [("12+34>", "2+4+0=6;1+3+0=4;=46"), ("5+7>", "5+7+0=12;=12"), ("1+1>", "1+1+0=2;=2")]
        ws = WarmStartConfig(steps=3, batch_size=3, lr=3e-3, warmup_steps=1)
        a, b = group.warm_start(pairs, ws), single.warm_start(pairs, ws)
        for k in ("warm_start/loss_first", "warm_start/loss_last"):
            assert math.isclose(a[k], b[k], rel_tol=1e-5), k
        # the first update's statistics agree to float noise; the second starts from weights that
        # Adam's amplification of that noise moved apart (assert_same_weights): on an AMX host its
        # kl is then 2e-5 apart, and the logprobs after it 1.9e-5, so 1e-4 for both
        for adv, rel in [((1.0, -1.0, 0.5, -0.5, 1.0), 1e-5), ((-1.0, 1.0, 1.0, -0.5, 0.0), 1e-4)]:
            assert_same_stats(group.update(batch_of_five(adv), 1.0), single.update(batch_of_five(adv), 1.0), rel)
        assert_same_weights(weights_of(group), single.weights(), single.start, worst=5e-3)
        ids = [10, 11, 12, 13, 14, 2]
        assert max(abs(x - y) for x, y in zip(group.sequence_logprobs(ids), single.sequence_logprobs(ids))) < 1e-4

        # a NaN in one rank's rows: every rank raises (none hangs in a collective), weights unchanged
        before = weights_of(group)
        with pytest.raises(FloatingPointError, match="non-finite"):
            group.update(batch_of_five((float("nan"), 1.0, 1.0, 1.0, 1.0)), 1.0)
        after = weights_of(group)
        assert all(torch.equal(v, after[k]) for k, v in before.items())

        group.save_checkpoint(str(tmp_path / "snap"))  # reference/ written by rank 0, its sha256 checked on load
        fresh = Learner(str(path), algo, OptimConfig(lr=1e-2, warmup_steps=1), threads=1, total_steps=10)
        fresh.load_checkpoint(str(tmp_path / "snap"))
        assert fresh.ref_identity["source"] == "snapshot" and (tmp_path / "snap" / "reference" / "model.safetensors").exists()
        assert_same_stats(fresh.update(batch_of_five(), 1.0), group.update(batch_of_five(), 1.0))
    finally:
        group.shutdown()


def test_two_ranks_compute_in_bf16_on_cpu_when_asked(ray_cluster, tiny_model_dir):
    """optim.mixed_precision=bfloat16 on CPU ranks (torch.autocast per rank; FSDP2's
    MixedPrecisionPolicy is for GPUs): four updates give one bf16 process's statistics and
    weights, which differ from fp32's, and the ranks' weights stay fp32. Rows with zero
    advantages are skipped before the rows are split between ranks (the third batch leaves one
    row to each rank, the fourth one row in all: the other rank pads)."""
    path, model_cfg = tiny_model_dir
    # sdpa, as fp32 uses: 'auto' would pick eager attention for bf16 on CPU, whose bf16 rounding
    # moves the ranks and one process further apart after these updates
    optim = OptimConfig(lr=1e-2, warmup_steps=1, micro_batch_size=1, mixed_precision="bfloat16", attn_implementation="sdpa")
    group, single = group_and_single(path, model_cfg, AlgoConfig(), optim)
    fp32 = Learner(str(path), AlgoConfig(), OptimConfig(lr=1e-2, warmup_steps=1, micro_batch_size=1), threads=1, total_steps=10)
    try:
        # The first update starts from the same weights: ranks and one process agree to 1e-4 (both
        # hosts: exactly). Then the gradients' summation order differs by float noise, Adam moves
        # near-zero-gradient weights by a fair part of lr on it, and bf16 rounds the moved weights
        # apart: on an AMX host the third and fourth updates' entropy is 1.3e-3 apart, is_ratio_max
        # 1.7e-2 (it gets 10x), and the weights 8e-3 of the update's norm, up to 2.4 lr in one
        # weight. So 5e-3 after the first update; bf16 against fp32 is checked on its own below.
        for i, (adv, skipped) in enumerate([((1.0, -1.0, 0.5, -0.5, 1.0), 0.0), ((-1.0, 1.0, 1.0, -0.5, 0.0), 0.2), ((0.0, 0.0, 0.0, 1.0, -1.0), 0.6), ((0.0,) * 5, 0.8)]):
            a, b, c = group.update(batch_of_five(adv), 1.0), single.update(batch_of_five(adv), 1.0), fp32.update(batch_of_five(adv), 1.0)
            assert_same_stats(a, b, rel=1e-4 if i == 0 else 5e-3)
            assert a.skipped_rows == pytest.approx(skipped)
            if c.grad_norm:  # the ranks compute in bf16: 5e-4 from fp32 in the first update, 9e-3 to 2e-2 after
                assert not math.isclose(a.grad_norm, c.grad_norm, rel_tol=1e-4)
        weights = weights_of(group)
        assert {v.dtype for v in weights.values()} == {torch.float32}
        assert_same_weights(weights, single.weights(), single.start, rel=3e-2, worst=None)
    finally:
        group.shutdown()


def test_two_ranks_match_one_process_minibatches_kl_and_checkpoints(ray_cluster, tiny_model_dir, tmp_path):
    """2 minibatches x 2 epochs (old logprobs from a sharded forward), a sharded KL reference,
    GRPO's seq-mean aggregation, TIS; then checkpoints both ways: M=2 saves, M=1 loads, and back,
    and the next updates still agree (the optimizer moments came across)."""
    path, model_cfg = tiny_model_dir
    algo = AlgoConfig(minibatches=2, epochs=2, kl_coef=0.1, loss_agg="seq_mean_token_mean", tis_cap=2.0)
    # one row per micro-batch: clip_frac and entropy are token means of each micro-batch weighted by
    # its share of sequences here, so they depend on how rows are grouped (the loss does not)
    optim = OptimConfig(lr=1e-2, warmup_steps=1, micro_batch_size=1)
    group, single = group_and_single(path, model_cfg, algo, optim)
    try:
        for _ in range(2):
            assert_same_stats(group.update(batch_of_five(), 1.0), single.update(batch_of_five(), 1.0))
        assert_same_weights(weights_of(group), single.weights(), single.start)

        group.save_checkpoint(str(tmp_path / "m2"))  # M=2 -> M=1
        fresh = Learner(str(path), algo, optim, seed=7, threads=1, total_steps=10)
        fresh.load_checkpoint(str(tmp_path / "m2"))
        assert (tmp_path / "m2" / "policy" / "model.safetensors").exists()
        assert json.loads((tmp_path / "m2" / "reference.json").read_text())["source"] == "base"
        assert_same_weights(fresh.weights(), single.weights(), single.start)
        adv = (-1.0, 1.0, 1.0, -0.5, 0.0)
        assert_same_stats(fresh.update(batch_of_five(adv), 1.0), group.update(batch_of_five(adv), 1.0))

        fresh.save_checkpoint(str(tmp_path / "m1"))  # M=1 -> M=2
        group.load_checkpoint(str(tmp_path / "m1"))
        assert_same_stats(fresh.update(batch_of_five(), 1.0), group.update(batch_of_five(), 1.0))
        assert_same_weights(weights_of(group), fresh.weights(), single.start)
    finally:
        group.shutdown()


def test_gradient_checkpointing_changes_nothing(tiny_model_dir):
    path, _ = tiny_model_dir
    algo = AlgoConfig(minibatches=2, kl_coef=0.1)
    runs = [Learner(str(path), algo, OptimConfig(lr=1e-2, warmup_steps=1, gradient_checkpointing=gc), threads=2) for gc in (False, True)]
    start = runs[0].weights()
    assert runs[1].model.is_gradient_checkpointing and not runs[0].model.is_gradient_checkpointing
    for adv in [(1.0, -1.0, 0.5, -0.5, 1.0), (-1.0, 1.0, 1.0, -0.5, 0.0)]:
        assert_same_stats(*(r.update(batch_of_five(adv), 1.0) for r in runs))
    assert_same_weights(runs[0].weights(), runs[1].weights(), start)


def test_learner_workers_config():
    from rlreason.config import ConfigError

    load_config(None, ["ray.learner_workers=2"]).ray.check()
    for overrides in (["ray.learner_workers=0"], ["ray.learner_workers=2", "ray.placement=colocated"]):
        with pytest.raises(ConfigError, match="ray.learner_workers"):
            load_config(None, overrides).ray.check()

