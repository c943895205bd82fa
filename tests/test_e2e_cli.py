"""End-to-end through the command line: `rlreason train` on the default recipe, shortened."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlreason.config import load_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray cluster started the way users start one: `ray start --head`."""
    start = ["ray", "start", "--head", "--port=6391", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    out = subprocess.run(start, check=True, capture_output=True, text=True, timeout=120)
    address = re.search(r"ray start --address='([^']+)'", out.stdout + out.stderr).group(1)
    try:
        yield address
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


def test_cli_train_default_recipe_joins_ray_address(tmp_path, tiny_model_dir, ray_head):
    """`rlreason train` on the default recipe, shortened, joining the cluster named by RAY_ADDRESS."""
    _, model_cfg = tiny_model_dir
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "rlreason.cli", "train", str(ROOT / "recipes" / "addition_grpo.yaml"),
        "steps=2", "warm_start.steps=20", "rollout.prompts_per_step=4", "rollout.group_size=4",
        "eval.size=20", "eval.every=1", f"run_dir={run_dir}", f"model.cache_dir={model_cfg.cache_dir}",
    ]
    # Ray >= 2.5x turns token auth on for `ray start --head`; a driver that names the
    # address explicitly must say so (the token itself is read from ~/.ray/auth_token).
    env = {**os.environ, "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "token"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"joining Ray cluster at {ray_head}" in proc.stderr
    assert "done: held-out accuracy" in proc.stdout
    assert "step    2/2" in proc.stdout  # the progress line

    resolved = load_config(run_dir / "config.yaml")  # the resolved config is itself a valid recipe
    assert resolved.steps == 2 and resolved.warm_start.steps == 20 and resolved.name == "addition_grpo"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[0]["warm_start/loss_last"] < rows[0]["warm_start/loss_first"]
    assert all("eval/accuracy" in r for r in rows)
    assert (run_dir / "final" / "config.json").is_file() and (run_dir / "final" / "tokenizer.json").is_file()

    # the same run directory is refused, before any work
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 2 and "already holds a run" in again.stderr
