"""Split placement: the rollout pool, its weight transport, and its faults.

Pure unit tests first (shard bounds, bucketing, config checks: no Ray, no vLLM). Then the
slow ones, with real Ray actors and real vLLM engines: N workers return exactly the samples
of one engine, the weights stream in buckets and every worker serves the same version, a
worker killed with SIGKILL mid-generate is replaced without changing the samples, restarts
are capped, and a hung sync (a fault-injection hook) raises instead of hanging.
"""

import os
import signal
import threading
import time

import pytest
import torch

from rlreason.cluster.pool import split_shards
from rlreason.config import ConfigError, load_config
from tests.helpers import ADV, IDS, PROMPTS, SHORT_RUN, free, make_config, placed, read_rows



# ---- pure unit tests ----
def test_split_shards_is_contiguous_and_balanced():
    assert split_shards(5, 2) == [(0, 3), (3, 5)]
    assert split_shards(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert split_shards(1, 3) == [(0, 1), (1, 1), (1, 1)]  # idle workers get empty ranges
    assert split_shards(0, 2) == [(0, 0), (0, 0)]


def test_weight_buckets_cover_the_state_dict_in_order(tiny_model_dir):
    """Learner.weight_buckets: the tensors of weights(), same order, lm_head included, each
    bucket within the size unless one tensor alone exceeds it."""
    from rlreason.config import AlgoConfig, OptimConfig
    from rlreason.learner.policy import Learner

    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(), OptimConfig())
    whole = learner.weights()
    limit_mb = 0.2
    buckets = list(learner.weight_buckets(limit_mb))
    assert len(buckets) > 2
    flat = [pair for b in buckets for pair in b]
    assert [k for k, _ in flat] == list(whole) and "lm_head.weight" in whole
    assert all(torch.equal(t, whole[k]) for k, t in flat)
    for b in buckets:
        assert len(b) == 1 or sum(t.nbytes for _, t in b) <= limit_mb * 2**20


def test_ray_config_check_names_the_key():
    for override, key in [("ray.placement=spread", "ray.placement"), ("ray.rollout_workers=0", "ray.rollout_workers"),
                          ("ray.sync_timeout_s=0", "ray.sync_timeout_s"), ("ray.max_worker_restarts=-1", "ray.max_worker_restarts")]:
        with pytest.raises(ConfigError, match=key):
            load_config(None, [override]).ray.check()
    load_config(None, ["ray.rollout_workers=2"]).ray.check()


def test_fake_buckets_handle_fetches_one_bucket_at_a_time(monkeypatch):
    """Unit test with a FAKE ray.get: Buckets iterates lazily, one fetch per bucket as consumed."""
    import ray

    from rlreason.cluster.sync import Buckets

    store = {"a": [("x", torch.zeros(1)), ("y", torch.ones(1))], "b": [("z", torch.ones(2))]}
    fetched = []
    monkeypatch.setattr(ray, "get", lambda ref: fetched.append(ref) or store[ref])
    it = iter(Buckets(["a", "b"]))
    assert next(it)[0] == "x" and fetched == ["a"]
    assert [k for k, _ in it] == ["y", "z"] and fetched == ["a", "b"]


def test_colocated_worker_sleeps_the_engine_while_the_learner_works():
    """Unit test with a FAKE engine and learner (no vLLM, no Ray): the colocated actor puts the
    engine to sleep before every learner call and wakes it before every engine call and sync."""
    from rlreason.cluster.colocated import ColocatedWorker

    log = []

    class FakeEngine:  # FAKE: records the calls the worker makes
        def sleep(self):
            log.append("sleep")

        def wake_up(self):
            log.append("wake")

        def generate(self, *args):
            log.append("generate")

        def load_weights(self, weights, version):
            log.append(("load", sorted(weights)))
            return version

    class FakeLearner:  # FAKE
        def update(self, *args):
            log.append("update")

        def weights(self):
            return {"w": torch.zeros(1)}

    worker = ColocatedWorker.__new__(ColocatedWorker)
    worker.engine, worker.learner = FakeEngine(), FakeLearner()
    worker.engine_call("generate", ["1+2>"])
    worker.learner_call("update", None)
    assert worker.sync(3) == 3
    assert log == ["wake", "generate", "sleep", "update", "wake", ("load", ["w"])]


def test_engine_sleeps_only_with_sleep_mode_and_only_once():
    """VLLMEngine.sleep / wake_up with a FAKE vllm.LLM: level-1 sleep once, wake once; without
    sleep mode (vLLM-CPU) both do nothing."""
    from rlreason.rollout.vllm_engine import VLLMEngine

    class FakeLLM:  # FAKE: records sleep / wake_up
        def __init__(self):
            self.calls = []

        def sleep(self, level):
            self.calls.append(("sleep", level))

        def wake_up(self):
            self.calls.append("wake_up")

    for sleep_mode, expected in [(True, [("sleep", 1), "wake_up"]), (False, [])]:
        engine = VLLMEngine.__new__(VLLMEngine)
        engine.llm, engine.sleep_mode, engine.asleep = FakeLLM(), sleep_mode, False
        engine.sleep(), engine.sleep(), engine.wake_up(), engine.wake_up()
        assert engine.llm.calls == expected


# ---- real Ray + vLLM ----
def pool_cfg(model_cfg, *extra):
    return make_config(model_cfg, "ray.threads=1", *extra)  # 1 thread each: every engine computes alike


@pytest.fixture(scope="module")
def cluster(ray_cluster, tiny_model_dir):
    path, model_cfg = tiny_model_dir
    return str(path), model_cfg


@pytest.mark.slow
def test_more_workers_than_a_local_cluster_holds_fails_at_once(cluster):
    from rlreason.cluster.placement import build_pool

    path, model_cfg = cluster
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"the rollout pool needs \{'CPU': 9\.0\}.*ray.rollout_workers"):
        build_pool(pool_cfg(model_cfg, "ray.rollout_workers=9"), path)
    assert time.time() - t0 < 5  # not after ray.placement_timeout_s


@pytest.mark.slow
def test_workers_that_disagree_on_the_version_are_an_error(cluster):
    """The pool's version check, with FAKE worker actors (no vLLM) that report what they are told."""
    import ray

    from rlreason.cluster.actors import ActorGroup
    from rlreason.cluster.pool import RolloutPool, VersionMismatchError

    @ray.remote(num_cpus=0)
    class FakeWorker:  # FAKE: a rollout worker that serves a fixed version whatever it is sent
        def __init__(self, served):
            self.served = served

        def load_weights(self, weights, version):
            return self.served

    path, model_cfg = cluster
    pool = RolloutPool.__new__(RolloutPool)  # the pool's logic without its vLLM workers
    pool.cfg, pool.version, pool._weights = pool_cfg(model_cfg), 0, None
    pool.group, pool.restarts, pool.events = ActorGroup([FakeWorker.remote(3), FakeWorker.remote(2)]), [0, 0], []
    with pytest.raises(VersionMismatchError, match=r"after the sync to version 3 the rollout workers serve \{0: 3, 1: 2\}"):
        pool.load_weights({}, 3)


@pytest.mark.slow
def test_a_hung_sync_raises_within_the_timeout(cluster):
    """A real engine actor, slowed by the pool's fault-injection hook: every sync first sleeps 60 s."""
    from rlreason.cluster.actors import SyncTimeoutError
    from rlreason.cluster.placement import build_pool

    path, model_cfg = cluster
    pool = build_pool(pool_cfg(model_cfg, "ray.sync_timeout_s=2"), path, fault_sync_sleep_s=60)
    try:
        assert pool.generate(["1+2>"], 1, 1.0, 1.0, 4, 0)[0][0].version == 0  # the engine is up
        t0 = time.time()
        with pytest.raises(SyncTimeoutError, match=r"within ray.sync_timeout_s=2.0 s on rollout worker\(s\) \[0\]"):
            pool.load_weights({}, 1)
        assert time.time() - t0 < 10
    finally:
        pool.shutdown()


@pytest.fixture(scope="module")
def synced(cluster, engine):
    """A learner one update away from the model on disk; the shared 1-worker engine and a 2-worker
    pool, both synced to it through small buckets (the object-store sync); and the samples of the
    1-worker engine."""
    from rlreason.cluster.placement import build_learner, build_pool
    from rlreason.cluster.sync import ObjectStoreSync
    from rlreason.learner.batch import make_batch

    path, model_cfg = cluster
    cfg1, cfg2 = pool_cfg(model_cfg), pool_cfg(model_cfg, "ray.rollout_workers=2", "ray.max_worker_restarts=2")
    learner, one, two = build_learner(cfg1, path), engine, build_pool(cfg2, path)
    ObjectStoreSync(learner.actors, one, bucket_mb=0.2).push(0)  # the shared engine may hold another test's weights
    groups = one.generate(PROMPTS[:2], 4, 1.0, 1.0, 12, seed=0)
    learner.update(make_batch(groups, torch.tensor(ADV), pad_id=0), 1.0)
    handle = ObjectStoreSync(learner.actors, None, bucket_mb=0.2).publish()
    assert one.load_weights(handle, 1) == 1 and two.load_weights(handle, 1) == 1
    reference = one.generate(PROMPTS, 4, 1.0, 1.0, 24, seed=100)
    yield learner, one, two, handle, reference
    free(two, learner)

def flat(groups):
    return [(s.prompt_ids, s.completion_ids, s.text, s.logprobs, s.finish_reason, s.version) for g in groups for s in g]


@pytest.mark.slow
def test_two_workers_return_the_samples_of_one_engine(synced):
    learner, one, two, handle, reference = synced
    assert len(handle) > 2  # the weights travelled in several buckets
    assert two.served_versions() == [1, 1] and one.served_versions() == [1]
    sharded = two.generate(PROMPTS, 4, 1.0, 1.0, 24, seed=100)
    assert [len(g) for g in sharded] == [4] * 5
    assert flat(sharded) == flat(reference)  # bit for bit: ids, text, logprobs, version
    assert all(s.version == 1 for g in sharded for s in g)
    # the bucketed sync loaded every tensor, lm_head included: vLLM's logprobs are the learner's
    lp, ref = two.prompt_logprobs(IDS), learner.sequence_logprobs(IDS)
    assert max(abs(a - b) for a, b in zip(lp, ref)) < 1e-4
    greedy1, greedy2 = one.generate(PROMPTS, 1, 0.0, 1.0, 24, 0), two.generate(PROMPTS, 1, 0.0, 1.0, 24, 0)
    assert flat(greedy1) == flat(greedy2)


# A generate of 5 * LONG prompts x 4 samples x LONG_TOKENS tokens takes well over a second on a
# one-core worker, so a kill 0.3 s in lands inside it (at 5 * 8 prompts x 24 tokens a faster
# engine could finish first, and the test would see no kill)
LONG, LONG_TOKENS = 24, 40


def kill_soon(pool, worker: int, delay: float) -> threading.Thread:
    pid = pool.pids()[worker]

    def kill():
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_worker_killed_mid_generate_is_replaced_and_the_samples_do_not_change(synced):
    learner, one, two, handle, reference = synced
    before = two.pids()
    long_prompts = PROMPTS * LONG  # long enough a generate that the kill lands inside it
    expected = one.generate(long_prompts, 4, 1.0, 1.0, LONG_TOKENS, seed=100)
    t0 = time.time()
    thread = kill_soon(two, 1, 0.3)
    got = two.generate(long_prompts, 4, 1.0, 1.0, LONG_TOKENS, seed=100)
    thread.join()
    assert two.events[-1] == {"worker": 1, "during": "generate", "error": "ActorDiedError"}, two.events
    assert two.restarts == [0, 1]
    after = two.pids()
    assert after[0] == before[0] and after[1] != before[1]
    assert flat(got) == flat(expected)  # the shard re-ran on a replacement holding version 1
    assert two.served_versions() == [1, 1]
    print(f"generate with a kill and a restart: {time.time() - t0:.1f} s")


@pytest.mark.slow
def test_streamed_generate_survives_a_kill_and_sends_each_group_once(synced):
    """generate_stream: groups arrive as workers finish them; a worker killed mid-stream is
    replaced, its shard re-run, and no group is sent twice or lost: the samples of one engine."""
    learner, one, two, handle, reference = synced
    long_prompts = PROMPTS * LONG
    expected = one.generate(long_prompts, 4, 1.0, 1.0, LONG_TOKENS, seed=100)
    restarts = two.restarts[1]
    thread = kill_soon(two, 1, 0.3)
    got, chunks = {}, 0
    for chunk in two.generate_stream(long_prompts, 4, 1.0, 1.0, LONG_TOKENS, seed=100):
        chunks += 1
        for i, group in chunk:
            assert i not in got
            got[i] = group
    thread.join()
    assert two.restarts[1] == restarts + 1 and two.events[-1]["during"] == "generate"
    assert sorted(got) == list(range(len(long_prompts))) and chunks >= 2  # at least one chunk per worker
    assert flat([got[i] for i in range(len(long_prompts))]) == flat(expected)


@pytest.mark.slow
def test_restarts_are_capped_with_an_error_naming_the_worker(synced):
    from rlreason.cluster.pool import WorkerRestartsExceeded

    learner, one, two, handle, reference = synced
    two.restarts = [0, two.cfg.ray.max_worker_restarts]  # as if worker 1 had used up its restarts
    os.kill(two.pids()[1], signal.SIGKILL)
    with pytest.raises(WorkerRestartsExceeded, match=r"rollout worker 1 died .*ray.max_worker_restarts=2"):
        two.load_weights(handle, 1)


@pytest.mark.slow
def test_colocated_placement_runs_the_loop(cluster, tmp_path):
    """ray.placement=colocated: one actor with the learner and the engine, weights handed over
    in process; two real loop steps, and the engine then serves the learner's exact policy."""
    from rlreason.cluster.sync import ColocatedSync
    from rlreason.loop import run

    path, model_cfg = cluster
    cfg = pool_cfg(model_cfg, "ray.placement=colocated", f"run_dir={tmp_path}", "steps=2", *SHORT_RUN)
    with placed(cfg, path) as (engine, learner, sync):
        assert isinstance(sync, ColocatedSync)  # nothing crosses the process boundary
        before = learner.sequence_logprobs(IDS)
        result = run(cfg, engine, learner, sync, tmp_path)
        after = learner.sequence_logprobs(IDS)
        assert max(abs(a - b) for a, b in zip(before, after)) > 1e-3  # the policy moved
        assert max(abs(a - b) for a, b in zip(engine.prompt_logprobs(IDS), after)) < 1e-4  # and the engine serves it
        assert engine.generate(["1+2>"], 1, 1.0, 1.0, 4, 0)[0][0].version == 2
    rows = read_rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2] and result["stopped"] is False
    assert all(r["rollout/worker_restarts"] == 0 for r in rows[1:])
