"""A rollout worker killed with SIGKILL in the middle of a step, through the real loop.

Split placement (a RolloutPool of 2 vLLM workers, a Learner actor, weights in object-store
buckets), 3 steps of the tiny model. The same run is made twice (one pool, a fresh learner
each): undisturbed, and with worker 1 killed while step 2's generate is running. The second run must replace
the worker (with the step-1 weights), re-run its shard, count the restart in the metrics,
and end with every step logged exactly once and the very same samples, rewards and losses
as the undisturbed run (the per-request seeds make the re-run shard sample the same).
"""

import json
import os
import signal
import threading
import time

import pytest

from rlreason.config import load_config

pytestmark = pytest.mark.slow

KILL_CALL = 2  # generate calls: 0 = the start's eval, 1 = step 1, 2 = step 2, ...


class Recording:
    """Delegates to the pool; records every generate; on call `kill_call`, SIGKILLs worker 1
    from a background thread shortly after the shards were handed out."""

    def __init__(self, pool, kill_call=None):
        self.pool, self.kill_call, self.calls, self.kills = pool, kill_call, [], []

    @property
    def worker_restarts(self):
        return self.pool.worker_restarts

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        thread = None
        if len(self.calls) == self.kill_call:
            pid = self.pool.pids()[1]

            def kill():
                time.sleep(0.1)  # a shard takes ~0.5 s or more: this lands inside it
                os.kill(pid, signal.SIGKILL)
                self.kills.append(pid)

            thread = threading.Thread(target=kill, daemon=True)
            thread.start()
        groups = self.pool.generate(prompts, n, temperature, top_p, max_tokens, seed)
        if thread is not None:
            thread.join()
        self.calls.append((list(prompts), seed, [[(s.text, s.logprobs, s.version) for s in g] for g in groups]))
        return groups



@pytest.fixture(scope="module")
def cluster(ray_cluster, tiny_model_dir):
    """The config and one 2-worker rollout pool, shared by both runs."""
    from rlreason.cluster.placement import build_pool

    path, model_cfg = tiny_model_dir
    base = [
        f"model.cache_dir={model_cfg.cache_dir}",
        "steps=3",
        "warm_start.enabled=false",
        "reward=tests.plugins:parity_reward",  # mixed groups even for an untrained model
        "rollout.prompts_per_step=16",
        "rollout.group_size=4",
        "eval.size=8",
        "eval.every=0",
        "optim.lr=1e-2",
        "optim.warmup_steps=1",
        "rollout.kv_cache_gib=1",
        "ray.rollout_workers=2",
        "ray.sync_bucket_mb=0.5",  # several buckets even for the tiny model
        "ray.threads=1",  # each worker pinned to its own core, alike in both runs
    ]
    pool = build_pool(load_config(None, base), str(path))
    yield str(path), base, pool
    pool.shutdown()


def run_once(cluster, run_dir, kill_call=None):
    """A fresh Learner actor and the object-store sync into the shared pool, which first serves the
    model on disk (version 0) again; then the loop."""
    from rlreason.cluster.placement import build_learner
    from rlreason.cluster.sync import ObjectStoreSync
    from rlreason.loop import run

    path, base, pool = cluster
    cfg = load_config(None, [*base, f"run_dir={run_dir}"])
    learner = build_learner(cfg, path)
    sync = ObjectStoreSync(learner.actors, pool, cfg.ray.sync_bucket_mb)
    engine = Recording(pool, kill_call)
    restarts = list(pool.restarts)
    try:
        sync.push(version=0)
        t0 = time.time()
        result = run(cfg, engine, learner, sync, run_dir)
        print(f"run {'with a kill' if kill_call is not None else 'undisturbed'}: {time.time() - t0:.1f} s")
    finally:
        learner.shutdown()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return result, rows, engine, [n - m for n, m in zip(pool.restarts, restarts)]


def test_a_killed_rollout_worker_is_replaced_and_the_run_is_unchanged(cluster, tmp_path):
    result0, rows0, rec0, restarts0 = run_once(cluster, tmp_path / "undisturbed")
    result, rows, rec, restarts = run_once(cluster, tmp_path / "killed", kill_call=KILL_CALL)

    assert len(rec.kills) == 1
    assert cluster[2].events == [{"worker": 1, "during": "generate", "error": "ActorDiedError"}]  # noticed mid-generate
    assert restarts == [0, 1] and restarts0 == [0, 0]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # no step lost, none counted twice
    assert [r.get("rollout/worker_restarts") for r in rows] == [None, 0, 1, 1]
    assert result["stopped"] is False and result["step"] == 3 and (tmp_path / "killed" / "final").is_dir()

    # the same samples (text, sampling logprobs, policy version) in every call, before and after the kill
    assert rec.calls == rec0.calls
    for step in (1, 2, 3):  # step s samples from the policy after s - 1 updates
        assert {v for g in rec.calls[step][2] for (_, _, v) in g} == {step - 1}
    for r, r0 in zip(rows[1:], rows0[1:]):
        assert (r["reward/mean"], r["loss"], r["policy_version"]) == (r0["reward/mean"], r0["loss"], r0["policy_version"])
    assert rows[-1]["eval/accuracy"] == rows0[-1]["eval/accuracy"]
