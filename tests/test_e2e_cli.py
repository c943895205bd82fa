"""End-to-end through the command line: `rlreason train` on the default recipe, shortened, on the
local cluster it starts itself. (Joining a cluster started with `ray start --head`, through
RAY_ADDRESS, is in test_ray_job: the job's driver is `rlreason train` too.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


# The run's own lines (rlreason.console); anything else on the console is a library's
OWN_LINES = re.compile(
    r"^(step +\d+/\d+ \||warm start: |done\.$|  \S|model: |starting the learner |actors placed in |the rollout engines serve |"
    r"resumed from |warning: |stopped after step |rlreason: SIGTERM: |training set |eval set |dataset )"
)


def foreign_lines(*outputs: str) -> list[str]:
    """Console lines that are not the run's own (Ray's, vLLM's, a warning of another library)."""
    return [line for out in outputs for line in out.splitlines() if line.strip() and not OWN_LINES.match(line)]


def test_cli_sigterm_kill9_and_resume(tmp_path, tiny_model_dir):
    """On a local cluster the CLI starts itself: SIGTERM saves and exits 143; kill -9 of the whole
    process group in the middle of a save loses nothing; --resume auto refuses a frozen key,
    warns about a changed one, finishes the run with every step logged once; a finished run
    says so; export writes a model that transformers loads."""
    import signal
    import time

    from rlreason import checkpoint

    _, model_cfg = tiny_model_dir
    run_dir = tmp_path / "run"
    root = run_dir / "checkpoints"
    cmd = [
        sys.executable, "-m", "rlreason.cli", "train", str(ROOT / "recipes" / "addition_grpo.yaml"),
        "steps=8", "warm_start.steps=20", "rollout.prompts_per_step=4", "rollout.group_size=4",
        "eval.size=20", "eval.every=2", "checkpoint.every=1", "checkpoint.keep_last=2", "ray.num_cpus=2",
        f"run_dir={run_dir}", f"model.cache_dir={model_cfg.cache_dir}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}

    def start(*extra):
        return subprocess.Popen([*cmd, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def wait_for_line(proc, text):
        for line in proc.stdout:
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; stderr: {proc.stderr.read()[-3000:]}")

    # 1. SIGTERM: finish the step, save, exit 128 + 15
    proc = start()
    wait_for_line(proc, "step    2/8")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    stopped = int(re.search(r"stopped after step (\d+)", out).group(1))
    assert stopped >= 2 and checkpoint.checkpoint_step(checkpoint.latest(root)) == stopped
    assert "--resume auto" in out
    assert foreign_lines(out, err) == []  # quiet: Ray's and vLLM's lines are in run_dir/train.log only
    assert "(EngineWorker pid=" in (run_dir / "train.log").read_text()

    # 2. without --resume the run directory is refused; with a frozen key changed the resume is refused
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume auto" in again.stderr
    frozen = subprocess.run([*cmd, "rollout.group_size=2", "--resume", "auto"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert frozen.returncode == 2 and "rollout.group_size" in frozen.stderr

    # 3. kill -9 of the whole process group while a checkpoint is being written
    proc = start("--resume", "auto")
    deadline = time.time() + 300
    while not any(p.name.startswith(".tmp-step_") for p in root.iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivor = checkpoint.latest(root)
    assert survivor is not None and checkpoint.checkpoint_step(survivor) >= stopped

    # 4. resume with an allowed change: warned, then finished, every step logged exactly once
    done = subprocess.run([*cmd, "eval.every=4", "--resume", "auto"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "changed config keys: eval.every" in done.stderr
    assert f"resumed from {survivor}" in done.stderr
    assert foreign_lines(done.stdout, done.stderr) == [] and "done." in done.stdout.splitlines()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(9))
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_000007", "step_000008"]

    # 5. a finished run says so; 6. export to plain HF format
    finished = subprocess.run([*cmd, "--resume", "auto"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and "already finished at step 8" in finished.stdout
    export = subprocess.run([sys.executable, "-m", "rlreason.cli", "export", str(run_dir), str(tmp_path / "hf")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    saved = load_file(str(root / "step_000008" / "policy" / "model.safetensors"))
    assert all(torch_equal(model.state_dict()[k], v) for k, v in saved.items())


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)
