"""End-to-end: `rlreason train` on a data set file (task.name=dataset) with Ray, vLLM and the
math reward: warm start from the file's worked solutions, GRPO over its rows in epochs."""

import json

import pytest

from rlreason.config import load_config
from tests.helpers import addition_rows, write_jsonl

pytestmark = pytest.mark.slow


def live_groups(ray) -> set:
    """Ids of the placement groups that hold resources now."""
    return {k for k, pg in ray.util.placement_group_table().items() if pg["state"] == "CREATED"}


def test_train_on_a_data_file(ray_cluster, tiny_model_dir, tmp_path):
    """rlreason.train.train in this process, on the session's Ray cluster (it leaves a cluster it
    did not start running, and frees its actors)."""
    from rlreason.train import train

    groups_before = live_groups(ray_cluster)
    rows = addition_rows(20)
    path = write_jsonl(tmp_path / "add.jsonl", rows)
    cfg = load_config(None, [
        f"model.cache_dir={tiny_model_dir[1].cache_dir}", f"run_dir={tmp_path / 'run'}",
        "task.name=dataset", f"task.dataset.source={path}", "task.dataset.question=q", "task.dataset.answer=gold",
        "task.dataset.solution=work", "task.dataset.template=raw",
        "task.heldout_size=4", "eval.size=4", "eval.every=0",
        "warm_start.steps=20", "warm_start.batch_size=16",
        "steps=5", "rollout.prompts_per_step=4", "rollout.group_size=4", "checkpoint.every=0",
    ])
    result = train(cfg)
    assert result["stopped"] is False and result["step"] == 5
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["step"] > 0]
    assert [m["step"] for m in steps] == [1, 2, 3, 4, 5]
    # 20 rows - 4 held out = 16 to train on: 4 prompts a step is one epoch per 4 steps
    assert [m["data/epoch"] for m in steps] == [0, 0, 0, 0, 1]
    assert all(m["sampling/groups"] == 4 and m["reward/errors"] == 0 for m in steps)
    assert "eval/accuracy" in metrics[0] and "eval/accuracy" in metrics[-1]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_000005" / "trainer_state.json").read_text())
    assert state["stream"] == {"epoch": 1, "position": 4}
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert ray_cluster.is_initialized() and live_groups(ray_cluster) == groups_before  # its learner and engine freed
