"""`rlreason prm RECIPE`: a short real run (the warm start in this process, vLLM labels, a PRM,
an outcome RM and a revision model trained and saved, the search strategies compared with
them), then what a rerun does: refused without --resume, nothing
to do when finished, and from a killed epoch it goes on from the last complete checkpoint with
the labels it had, to the same losses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlreason import checkpoint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    """The command in a process of its own: its in-process vLLM engine replaces
    torch.set_num_threads for the rest of the process, which later tests rely on."""
    return subprocess.run([sys.executable, "-m", "rlreason.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_prm_command_trains_saves_and_resumes(tmp_path, tiny_model_dir, offline):
    run_dir = tmp_path / "prm_run"
    args = ["prm", "recipes/addition_prm.yaml", f"model.cache_dir={tiny_model_dir[1].cache_dir}", f"run_dir={run_dir}",
            "warm_start.steps=19", "eval.size=4", "prm.problems=6", "prm.heldout_problems=4", "prm.samples=2", "prm.rollouts=2",
            "prm.epochs=2", "prm.revision_steps=3", "prm.compare_budgets=[4]", "prm.compare_problems=4", "rollout.max_tokens=24", "rollout.kv_cache_gib=1", "checkpoint.keep_last=0"]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "held-out steps" in out and f"{run_dir / 'prm'} (step delimiter ';')" in out and "outcome RM" in out
    report = json.loads((run_dir / "prm_report.json").read_text())
    labels = report["labels"]
    assert labels["train"]["completions"] == 12 and labels["heldout"]["completions"] == 8
    train = [json.loads(x) for x in (run_dir / "labels" / "train.jsonl").read_text().splitlines()]
    assert len(train) == labels["train"]["labelled_completions"] == 12 - labels["train"]["no_steps"]
    assert labels["train"]["continuations"] == sum(2 * (len(lab["steps"]) - 1) for lab in train)  # 2 a label, none for the answer
    assert report["policy"]["policy"] == "warm_start" and report["policy"]["cached"] is False
    assert os.path.isdir(report["policy"]["path"]) and "warm_start" in report["policy"]["path"]  # it went into the cache
    assert json.loads((run_dir / "prm" / "prm.json").read_text())["step_delimiter"] == ";"
    assert (run_dir / "orm" / "config.json").is_file()
    # the comparison: every strategy at budget 4 with these verifiers, then the revision model's
    assert set(report["search"]) == {"policy", "revision"} and "search with the policy, 4 problems" in out
    assert {lab.split(":")[0] for lab in report["search"]["policy"]["summary"]} == {"majority", "best_of_n", "weighted", "beam", "dvts"}
    assert (run_dir / "search" / "search.png").is_file() and (run_dir / "search_revision" / "search.jsonl").is_file()
    assert json.loads((run_dir / "revision" / "revision.json").read_text())["separator"] == "|" and report["revision"]["pairs"] >= len(train)  # each sample a first attempt, and the revisions
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("heldout/auc_vs_labels" in r for r in rows)
    assert [checkpoint.checkpoint_step(p) for p in checkpoint.complete_checkpoints(run_dir / "checkpoints")] == [1, 2]

    proc = run_cli(args)  # a second run into the same directory
    assert proc.returncode == 2 and "already holds a PRM run; continue it with --resume auto" in proc.stderr
    proc = run_cli(args + ["--resume", "auto"])
    assert proc.returncode == 0 and "already finished" in proc.stdout

    # killed during epoch 2: its checkpoint and everything after it are not there
    labels_mtime = (run_dir / "labels" / "train.jsonl").stat().st_mtime_ns
    shutil.rmtree(run_dir / "checkpoints" / checkpoint.step_dir_name(2))
    for name in ("prm_report.json",):
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "prm")
    proc = run_cli(args + ["--resume", "auto"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in again] == [1, 2]
    assert again[1]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-5)  # epoch 2 again, from epoch 1's weights and optimizer
    assert (run_dir / "labels" / "train.jsonl").stat().st_mtime_ns == labels_mtime  # the labels were reused
    assert json.loads((run_dir / "prm_report.json").read_text())["policy"]["cached"] is True  # the warm start from the cache
