"""task.curriculum through the real loop (the session's vLLM engine, an in-process Learner,
DirectSync): the frontier moves on the step's own samples, easier prompts are replayed, each
difficulty's held-out set is evaluated up to the frontier + eval_ahead, the run writes
curriculum.png, and a resume from a checkpoint mid-climb goes on exactly as the straight run."""

import json

import pytest

from rlreason import checkpoint
from rlreason.config import load_config
from tests.test_e2e_resume import comparable

pytestmark = pytest.mark.slow


def run_segment(engine, path, model_cfg, run_dir, stop_at=None, resume=False, extra=()):
    from rlreason.config import learner_kwargs
    from rlreason.learner.policy import Learner
    from rlreason.loop import run
    from rlreason.sync import DirectSync

    cfg = load_config(None, [
        f"model.cache_dir={model_cfg.cache_dir}", f"run_dir={run_dir}", "steps=4", "warm_start.enabled=false",
        "reward=tests.plugins:always_right", "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_tokens=8",
        "task.curriculum.enabled=true", "task.curriculum.top=5", "task.curriculum.threshold=0.5", "task.curriculum.window=1",
        "task.curriculum.replay=0.5", "task.curriculum.eval_size=4", "task.curriculum.eval_ahead=1",
        "eval.size=4", "eval.every=2", "checkpoint.every=1", "rollout.kv_cache_gib=1", *extra,
    ])
    learner = Learner(**learner_kwargs(cfg, str(path), threads=0))
    sync = DirectSync(learner, engine)
    sync.push(version=0)  # the engine may hold another test's weights
    ckpt = checkpoint.latest(run_dir / "checkpoints") if resume else None
    return run(cfg, engine, learner, sync, run_dir, resume=ckpt, should_stop=lambda step: step == stop_at)


def test_the_loop_climbs_replays_evaluates_and_resumes_mid_climb(engine, tiny_model_dir, tmp_path):
    path, model_cfg = tiny_model_dir
    straight = run_segment(engine, path, model_cfg, tmp_path / "straight")
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    # every sample is right (pass rate 1 >= 0.5 over a window of 1): one difficulty up per step, to the top (5)
    assert [r["curriculum/frontier"] for r in rows[1:]] == [3, 4, 5, 5]
    assert rows[1]["curriculum/d3/prompts"] == 4 and "curriculum/d4/prompts" not in rows[1]  # nothing easier to replay yet
    assert rows[2]["curriculum/d3/prompts"] == 2 and rows[2]["curriculum/d4/prompts"] == 2  # replay 0.5 of 4 prompts
    assert rows[4]["curriculum/d5/prompts"] == 2 and rows[4]["curriculum/d3/prompts"] + rows[4]["curriculum/d4/prompts"] == 2
    assert all(rows[i][f"curriculum/d{d}/tokens"] > 0 for i, d in ((1, 3), (2, 4), (3, 5)))
    # held-out per difficulty: from the start to the frontier + 1, at steps 0, 2 and 4
    assert {k for k in rows[0] if k.startswith("eval/d")} == {"eval/d3/accuracy", "eval/d4/accuracy", "eval/d3/reward_errors", "eval/d4/reward_errors"}
    assert {"eval/d3/accuracy", "eval/d4/accuracy", "eval/d5/accuracy"} <= set(rows[2]) and "eval/d5/accuracy" in rows[4]
    assert (tmp_path / "straight" / "curriculum.png").stat().st_size > 0
    assert straight["curriculum"] == {"frontier_first": 3, "frontier_last": 5, "accuracy": {3: 1.0, 4: 1.0, 5: 1.0}}

    # stop after step 2 (frontier 4 drawn, 5 next), then resume from that checkpoint in a fresh learner
    run_segment(engine, path, model_cfg, tmp_path / "resumed", stop_at=2)
    state = json.loads((checkpoint.latest(tmp_path / "resumed" / "checkpoints") / "trainer_state.json").read_text())
    assert state["stream"]["frontier"] == 5 and state["step"] == 2
    run_segment(engine, path, model_cfg, tmp_path / "resumed", resume=True)
    again = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert comparable(again) == comparable(rows)


def test_max_minutes_ends_the_run_as_its_last_step_would(engine, tiny_model_dir, tmp_path):
    """max_minutes: the first step past the limit (here step 1) is evaluated, checkpointed and
    exported as a finished run's last step."""
    path, model_cfg = tiny_model_dir
    result = run_segment(engine, path, model_cfg, tmp_path / "timed", extra=("max_minutes=0.00001", "checkpoint.every=0"))
    rows = [json.loads(line) for line in (tmp_path / "timed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and "eval/accuracy" in rows[1]
    assert result["step"] == 1 and not result["stopped"] and (tmp_path / "timed" / "final" / "config.json").is_file()
    assert [p.name for p in (tmp_path / "timed" / "checkpoints").iterdir() if p.name.startswith("step")] == ["step_000001"]
