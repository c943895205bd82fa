"""Resume equivalence on the real loop (the vLLM engine, a learner, checkpoints): 6 steps straight
equal 3 + 3 (a stop at an epoch boundary) and 2 + 2 + 2 (two resumes, each mid-epoch), bit for
bit: prompts in order, sampled completions, rewards, losses, LR, metrics, weights at every
step, optimizer state and data sampler position. Each segment starts from a fresh Learner, as
after a crash; the stop goes through the same should_stop path as SIGTERM. (The Learner runs in
this process: the subject is the loop's checkpoints. A resume through `rlreason train` with
Ray actors, after a real SIGTERM, is in test_e2e_cli and test_ray_job.)"""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlreason import checkpoint
from rlreason.config import load_config
from tests.helpers import Recording

pytestmark = pytest.mark.slow

STEPS = 6


@pytest.fixture(scope="module")
def setup(engine, tiny_model_dir):
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
    ]
    return path, base, engine


def segment(setup, run_dir, stop_at=None, resume=None):
    """One process lifetime of the learner: a fresh Learner, run (or resume) until stop_at, then
    dropped. The engine is the session's (the loop pushes the warm start, or on resume the restored
    policy, into it before it generates)."""
    from rlreason.config import learner_kwargs
    from rlreason.learner.policy import Learner
    from rlreason.loop import run
    from rlreason.sync import DirectSync

    path, base, engine = setup
    cfg = load_config(None, [*base, f"run_dir={run_dir}"])
    learner = Learner(**learner_kwargs(cfg, str(path), threads=0))
    calls = []
    recording = Recording(engine, calls)
    ckpt = checkpoint.latest(run_dir / "checkpoints") if resume else None
    result = run(cfg, recording, learner, recording.sync(DirectSync(learner, engine)), run_dir, resume=ckpt,
                 should_stop=lambda step: step == stop_at)
    return result, calls


def comparable(rows):
    """The rows without times and without warm_start/cached: the second run of a session reuses
    the first one's warm start from the cache (the session's model cache), and must go on bit
    for bit all the same."""
    return [{k: v for k, v in r.items() if not k.startswith(("timing/", "throughput/")) and k != "warm_start/cached"} for r in rows]


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
        assert seg[0] == ("push", done) and seg[1][0] == "generate"
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
