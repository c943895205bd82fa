"""Checkpoints: atomic commit, keep-last-N, partial ones ignored, resume rules, and the
learner's and the data sampler's state restored bit for bit (no Ray, no vLLM here)."""

import json
import os

import pytest
import torch

from rlreason import checkpoint
from rlreason.config import AlgoConfig, CriticConfig, OptimConfig, WarmStartConfig, load_config, resume_changes, to_dict
from rlreason.data.addition import AdditionTask
from rlreason.data.stream import PromptStream
from rlreason.learner.batch import make_batch
from rlreason.learner.policy import Learner
from rlreason.metrics import MetricsLogger, read_metrics
from rlreason.types import Sample


def fake_save(root, step, keep_last, payload=b"x" * 100):
    tmp = checkpoint.begin(root, step)
    (tmp / "state.bin").write_bytes(payload)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "more.txt").write_text(str(step))
    return checkpoint.commit(tmp, step, keep_last)


def test_commit_is_complete_and_keep_last_prunes_only_older(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (0, 10, 20, 30):
        path = fake_save(root, step, keep_last=2)
        assert path.name == f"step_{step:06d}" and checkpoint.is_complete(path)
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_000020", "step_000030"]
    assert sorted(os.listdir(root)) == ["step_000020", "step_000030"]  # no temp or trash left
    marker = json.loads((root / "step_000030" / "COMPLETE").read_text())
    assert marker == {"step": 30, "files": {"state.bin": 100, "sub/more.txt": 2}}


def test_keep_last_one_never_leaves_zero_complete(tmp_path):
    root = tmp_path / "checkpoints"
    fake_save(root, 1, keep_last=1)
    tmp = checkpoint.begin(root, 2)  # a save of step 2 in progress: step 1 must still be there
    (tmp / "state.bin").write_bytes(b"half")
    assert checkpoint.latest(root).name == "step_000001"
    checkpoint.commit(tmp, 2, keep_last=1)
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_000002"]


def test_partial_and_damaged_checkpoints_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    fake_save(root, 5, keep_last=0)
    good = fake_save(root, 6, keep_last=0)
    # a killed save (no marker), a directory renamed into place without a marker, and a truncated file
    (checkpoint.begin(root, 9) / "state.bin").write_bytes(b"x")
    (root / "step_000008").mkdir()
    damaged = fake_save(root, 7, keep_last=0)
    (damaged / "state.bin").write_bytes(b"x" * 50)
    assert checkpoint.latest(root) == good
    assert not checkpoint.is_complete(root / "step_000008") and not checkpoint.is_complete(damaged)
    removed = checkpoint.clean_partial(root)
    assert sorted(removed)[1:] == ["step_000007", "step_000008"] and sorted(removed)[0].startswith(".tmp-step_000009-")
    assert sorted(os.listdir(root)) == ["step_000005", "step_000006"]


def test_resolve_resume(tmp_path):
    run = tmp_path / "run"
    assert checkpoint.resolve_resume(run, "auto") is None  # nothing yet: auto starts fresh
    with pytest.raises(FileNotFoundError, match="neither a checkpoint nor a run directory"):
        checkpoint.resolve_resume(run, str(run))
    fake_save(run / "checkpoints", 3, keep_last=0)
    newest = fake_save(run / "checkpoints", 4, keep_last=0)
    assert checkpoint.resolve_resume(run, "auto") == newest
    assert checkpoint.resolve_resume(run, str(run)) == newest
    assert checkpoint.resolve_resume(run, str(run / "checkpoints" / "step_000003")).name == "step_000003"
    (newest / "COMPLETE").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        checkpoint.resolve_resume(run, str(newest))
    assert checkpoint.resolve_resume(run, "auto").name == "step_000003"


def test_export_copies_policy_atomically_and_refuses_existing(tmp_path):
    ckpt = checkpoint.begin(tmp_path / "checkpoints", 1)
    (ckpt / "policy").mkdir()
    (ckpt / "policy" / "config.json").write_text("{}")
    ckpt = checkpoint.commit(ckpt, 1, keep_last=0)
    out = checkpoint.export(ckpt, tmp_path / "hf")
    assert os.listdir(out) == ["config.json"]
    with pytest.raises(FileExistsError):
        checkpoint.export(ckpt, tmp_path / "hf")


def test_prompt_stream_epochs_and_resume_anywhere():
    stream = PromptStream(AdditionTask(3), seed=0, size=6)
    pool = {p.prompt for p in stream.pool}
    first = [p.prompt for p in stream.next_batch(6)]
    assert set(first) == pool and stream.state_dict() == {"epoch": 0, "position": 6}  # exactly at the boundary
    second = [p.prompt for p in stream.next_batch(6)]
    assert set(second) == pool and second != first  # a fresh permutation each epoch
    # straight vs resumed at a boundary and mid-epoch: the same prompts in the same order
    straight = PromptStream(AdditionTask(3), seed=0, size=6)
    order = [p.prompt for p in straight.next_batch(20)]
    for cut in (6, 4, 13):
        a = PromptStream(AdditionTask(3), seed=0, size=6)
        head = [p.prompt for p in a.next_batch(cut)]
        b = PromptStream(AdditionTask(3), seed=0, size=6)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        assert head + [p.prompt for p in b.next_batch(20 - cut)] == order
    endless = PromptStream(AdditionTask(3), seed=0)
    endless.next_batch(5)
    resumed = PromptStream(AdditionTask(3), seed=0)
    resumed.load_state_dict(endless.state_dict())
    assert [p.prompt for p in resumed.next_batch(3)] == [p.prompt for p in endless.next_batch(3)]


def test_resume_changes_warn_or_refuse():
    saved = to_dict(load_config(None, []))
    allowed, frozen = resume_changes(saved, load_config(None, ["steps=99", "optim.lr=0.5", "model.cache_dir=/elsewhere"]))
    assert allowed == ["model.cache_dir", "optim.lr", "steps"] and frozen == []
    allowed, frozen = resume_changes(saved, load_config(None, ["rollout.group_size=4", "model.tiny.hidden_size=64", "task.train_size=7"]))
    assert frozen == ["model.tiny.hidden_size", "rollout.group_size", "task.train_size"] and allowed == []


def test_metrics_history_continues_after_resume(tmp_path):
    m = MetricsLogger(tmp_path, 5, stream=open(os.devnull, "w"))
    for step in range(4):
        m.log({"step": step, "reward/mean": step / 10, **({"eval/accuracy": 0.5} if step == 0 else {})})
    m.close()
    resumed = MetricsLogger(tmp_path, 5, stream=open(os.devnull, "w"), history=m.rows[:2])  # checkpoint at step 1
    assert resumed.last_accuracy == 0.5
    resumed.log({"step": 2, "reward/mean": 0.9})
    resumed.close()
    assert [(r["step"], r["reward/mean"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(0, 0.0), (1, 0.1), (2, 0.9)]


# ---- the learner's state, bit for bit ----


def rollout_batch(seed):
    g = torch.Generator().manual_seed(seed)
    groups = [
        [Sample([10, 11, 12], torch.randint(13, 40, (int(n),), generator=g).tolist() + [2], "", [-1.0] * (int(n) + 1), "stop", 0) for n in torch.randint(1, 6, (4,), generator=g)]
        for _ in range(2)
    ]
    return make_batch(groups, torch.randn(2, 4, generator=g), pad_id=0)


def make_learner(path):
    algo = AlgoConfig(advantage="reward", kl_coef=0.05, epochs=2, minibatches=2)  # random minibatch order: the generator matters
    optim = OptimConfig(lr=5e-3, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1, weight_decay=0.01)
    return Learner(str(path), algo, optim, seed=3, threads=2, total_steps=6, critic=CriticConfig(enabled=True))


def state_of(learner):
    return (
        learner.weights(),
        learner.critic.state_dict(),
        learner.optimizer.state_dict()["state"],
        learner.critic_optimizer.state_dict()["state"],
        learner.scheduler.get_last_lr(),
    )


def assert_identical(a, b):
    def flat(x):
        if isinstance(x, dict):
            return [v for k in sorted(x) for v in flat(x[k])]
        if isinstance(x, (list, tuple)):
            return [v for item in x for v in flat(item)]
        return [x]

    fa, fb = flat(a), flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


def test_learner_checkpoint_round_trip_is_bit_identical(tiny_model_dir, tmp_path):
    """warm start + 4 updates straight == warm start + 2 updates, save, fresh learner, load, 2 updates:
    policy, critic, both optimizers, LR, and the snapshot KL reference."""
    path, _ = tiny_model_dir
    pairs = [("12+34>", "2+4+0=6;1+3+0=4;=46")] * 8
    ws = WarmStartConfig(steps=3, batch_size=4, lr=3e-3, warmup_steps=1)

    straight = make_learner(path)
    straight.warm_start(pairs, ws)
    losses = [straight.update(rollout_batch(i)).loss for i in range(4)]

    first = make_learner(path)
    first.warm_start(pairs, ws)
    losses_a = [first.update(rollout_batch(i)).loss for i in range(2)]
    first.save_checkpoint(str(tmp_path))
    assert json.loads((tmp_path / "reference.json").read_text())["source"] == "snapshot"  # the warm-started policy
    resumed = make_learner(path)
    torch.manual_seed(12345)  # a different global RNG state: the checkpoint must restore it
    resumed.load_checkpoint(str(tmp_path))
    losses_b = [resumed.update(rollout_batch(i)).loss for i in range(2, 4)]

    assert losses_a + losses_b == losses
    assert_identical(state_of(resumed), state_of(straight))
    assert_identical(resumed.ref.state_dict(), straight.ref.state_dict())
    assert torch.equal(resumed.generator.get_state(), straight.generator.get_state())


def test_reference_identity_is_checked(tiny_model_dir, tmp_path):
    path, _ = tiny_model_dir
    learner = Learner(str(path), AlgoConfig(kl_coef=0.1), OptimConfig(), threads=2)
    learner.update(rollout_batch(0))  # no warm start: the reference is the base model itself
    learner.save_checkpoint(str(tmp_path))
    identity = json.loads((tmp_path / "reference.json").read_text())
    assert identity["source"] == "base" and not (tmp_path / "reference").exists()  # not copied: reloaded from model.path
    (tmp_path / "reference.json").write_text(json.dumps({**identity, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="not the one the run used"):
        Learner(str(path), AlgoConfig(kl_coef=0.1), OptimConfig(), threads=2).load_checkpoint(str(tmp_path))


@pytest.mark.slow
def test_kill_9_at_random_moments_during_saves(tiny_model_dir, tmp_path):
    """12 times: kill -9 a process that saves full checkpoints back to back (keep_last=1), at a
    random moment. Every time the newest complete checkpoint is there, loads, has a contiguous
    metrics history, and the step never goes backwards; the next process resumes from it."""
    import random
    import subprocess
    import sys
    import time
    from pathlib import Path

    saver = Path(__file__).with_name("crash_saver.py")
    path, _ = tiny_model_dir
    rng = random.Random(0)
    last, mid_save = 0, 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, str(saver), str(path), str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == f"resumed {last}"  # --resume auto semantics: the newest complete one
        assert proc.stdout.readline().startswith("saved")
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.wait()
        root = tmp_path / "checkpoints"
        mid_save += any(p.name.startswith((".tmp-", ".deleting-")) for p in root.iterdir())
        ckpt = checkpoint.latest(root)
        assert ckpt is not None
        step = checkpoint.checkpoint_step(ckpt)
        assert step >= last + 1  # never backwards, and each process saved at least once
        assert [r["step"] for r in read_metrics(ckpt / "metrics.jsonl")] == list(range(1, step + 1))
        last = step
    print(f"12 kills, {mid_save} inside a save or a deletion; last step {last}")
    assert mid_save >= 3  # most kills land inside a save: saves run back to back


def test_stop_flag_first_signal_asks_second_exits_at_once(tmp_path):
    """The first SIGTERM only sets the flag the loop polls; a second one exits at once with 143."""
    import subprocess
    import sys

    script = tmp_path / "stop.py"
    script.write_text(
        "import os, signal, time\n"
        "from rlreason.train import StopFlag\n"
        "with StopFlag() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.2)\n"
        "    print('asked', stop(0), stop.signum, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "    print('not reached', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "asked True 15\n"
    assert proc.returncode == 143 and "second SIGTERM: exiting now" in proc.stderr
