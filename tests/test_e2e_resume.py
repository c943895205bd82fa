"""Resume equivalence on the real loop (Ray actors, vLLM engine, learner): 6 steps straight
equal 3 + 3 (a stop at an epoch boundary) and 2 + 2 + 2 (two resumes, each mid-epoch), bit for
bit: prompts in order, sampled completions, rewards, losses, LR, metrics, weights at every
step, optimizer state and data sampler position. Each segment runs in fresh actors, as after a
crash; the stop goes through the same should_stop path as SIGTERM."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlreason import checkpoint
from rlreason.config import load_config

pytestmark = pytest.mark.slow

STEPS = 6


class Recording:
    """Delegates to the real engine and records what the loop asked of it, in order."""

    def __init__(self, engine, log):
        self.engine, self.log = engine, log

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        groups = self.engine.generate(prompts, n, temperature, top_p, max_tokens, seed)
        self.log.append(("generate", list(prompts), seed, [[(s.text, s.version) for s in g] for g in groups]))
        return groups

    def load_weights(self, weights, version):
        self.log.append(("load_weights", version))
        return self.engine.load_weights(weights, version)


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    import ray

    from rlreason.cluster.ray_workers import connect

    path, model_cfg = tiny_model_dir
    base = [
        f"model.cache_dir={model_cfg.cache_dir}",
        f"steps={STEPS}",
        "warm_start.steps=5",
        "warm_start.batch_size=8",
        "reward=tests.plugins:parity_reward",  # mixed groups even for a barely trained model
        "rollout.prompts_per_step=4",
        "rollout.group_size=4",
        "rollout.max_tokens=12",
        "task.train_size=12",  # 3 steps per epoch: step 3 ends epoch 0
        "algo.kl_coef=0.05",  # a snapshot KL reference (the warm-started policy) to restore
        "optim.lr=1e-2",
        "optim.warmup_steps=2",
        "optim.schedule=cosine",  # a different LR every step
        "eval.size=8",
        "eval.every=3",
        "checkpoint.every=1",
        "checkpoint.keep_last=0",  # keep all: compare the weights of every step
        "ray.num_cpus=4",
    ]
    cfg = load_config(None, base)
    connect(cfg)
    yield path, base
    ray.shutdown()


def segment(setup, run_dir, stop_at=None, resume=None):
    """One process lifetime: fresh actors, run (or resume) until stop_at, then the actors die."""
    import ray

    from rlreason.cluster.ray_workers import RayEngine, RayLearner
    from rlreason.loop import run

    path, base = setup
    cfg = load_config(None, [*base, f"run_dir={run_dir}"])
    learner, engine = RayLearner(cfg, str(path)), RayEngine(cfg, str(path))
    calls = []
    ckpt = checkpoint.latest(run_dir / "checkpoints") if resume else None
    result = run(cfg, Recording(engine, calls), learner, run_dir, resume=ckpt, should_stop=lambda step: step == stop_at)
    ray.kill(learner.actor)
    ray.kill(engine.actor)
    return result, calls


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("timing/", "throughput/"))} for r in rows]


def generations(calls):
    return [c[1:] for c in calls if c[0] == "generate"]


def policy_at(run_dir, step):
    return load_file(str(run_dir / "checkpoints" / checkpoint.step_dir_name(step) / "policy" / "model.safetensors"))


def learner_state(run_dir, step):
    return torch.load(run_dir / "checkpoints" / checkpoint.step_dir_name(step) / "learner.pt", weights_only=False)


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    result, calls = segment(setup, run_dir)
    assert result["step"] == STEPS and not result["stopped"]
    return run_dir, calls


@pytest.mark.parametrize("stops", [[3], [2, 4]], ids=["epoch_boundary", "mid_epoch_double_resume"])
def test_resume_is_bit_identical(setup, straight, stops, tmp_path):
    ref_dir, ref_calls = straight
    run_dir = tmp_path / "run"
    calls = []
    result, seg = segment(setup, run_dir, stop_at=stops[0])
    assert result["stopped"] and result["step"] == stops[0]
    calls += seg
    for i, done in enumerate(stops):
        result, seg = segment(setup, run_dir, stop_at=stops[i + 1] if i + 1 < len(stops) else None, resume=True)
        # the restored policy goes into the fresh engine before it generates anything
        assert seg[0] == ("load_weights", done) and seg[1][0] == "generate"
        calls += seg
    assert result["step"] == STEPS and not result["stopped"]

    # the same prompts, in the same order, with the same seeds and the same sampled completions
    assert generations(calls) == generations(ref_calls)
    # the same rewards, losses, LR, KL, mismatch, epochs, evaluations: one row per step, none twice
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(STEPS + 1))
    assert comparable(rows) == comparable(ref_rows)
    assert [r["data/epoch"] for r in rows[1:]] == [0, 0, 0, 1, 1, 1]
    # the same weights after every step, and the same optimizer, scheduler and sampler at the end
    for step in range(STEPS + 1):
        assert_same_tensors(policy_at(run_dir, step), policy_at(ref_dir, step))
    state, ref_state = learner_state(run_dir, STEPS), learner_state(ref_dir, STEPS)
    for k, v in ref_state["optimizer"]["state"].items():
        assert_same_tensors(state["optimizer"]["state"][k], v)
    assert state["scheduler"] == ref_state["scheduler"]
    assert torch.equal(state["generator"], ref_state["generator"])
    trainer = json.loads((run_dir / "checkpoints" / checkpoint.step_dir_name(STEPS) / "trainer_state.json").read_text())
    assert trainer == json.loads((ref_dir / "checkpoints" / checkpoint.step_dir_name(STEPS) / "trainer_state.json").read_text())
    assert trainer["stream"] == {"epoch": 1, "position": 12} and trainer["finished"]
