"""task.curriculum: difficulties, the frontier and its moves, replay, resume, bad input (pure
unit tests: the stream and the rules; the loop's use of them is in test_e2e_loop)."""

from __future__ import annotations

import json
import logging

import pytest

from rlreason.config import ConfigError, CurriculumConfig, load_config
from rlreason.data.addition import AdditionTask
from rlreason.data.curriculum import CurriculumStream, pass_rates, should_advance
from rlreason.data.dataset_task import DatasetTask
from rlreason.data.datasets import DataError, difficulty_value
from rlreason.types import Problem


def digits(p: Problem) -> int:
    return len(str(p.meta["a"]))


def stream(levels=(3, 4, 5), **kw) -> CurriculumStream:
    return CurriculumStream(AdditionTask(3), CurriculumConfig(enabled=True, **kw), seed=7, levels=list(levels))


def test_should_advance_needs_a_full_window_at_the_threshold():
    assert not should_advance([0.9], 0.8, 2)  # one step is not a window
    assert should_advance([0.7, 0.9], 0.8, 2)  # mean 0.8
    assert not should_advance([0.7, 0.88], 0.8, 2)  # mean 0.79
    assert should_advance([0.0, 0.8, 0.8], 0.8, 2)  # only the last `window` count
    assert should_advance([1.0], 1.0, 1)


def test_pass_rates_by_hand():
    # difficulty 3: prompts at 2/4 and 4/4 -> 0.75; difficulty 4: 1/4 -> 0.25; rewards clipped to [0, 1]
    got = pass_rates([3, 4, 3], [[1, 0, 1, 0], [1.5, -0.5, 0, 0], [1, 1, 1, 1]])
    assert got == {3: (0.75, 2), 4: (0.25, 1)}


def test_addition_problems_carry_their_digit_count():
    task = AdditionTask(3)
    assert task.difficulties()[:4] == [1, 2, 3, 4]
    import random

    p = task.at(6).sample(random.Random(0))
    assert p.meta["difficulty"] == 6 and digits(p) == 6 and p.answer == str(p.meta["a"] + p.meta["b"])


def test_the_frontier_moves_after_a_window_at_the_threshold_and_replay_draws_easier():
    s = stream(threshold=0.8, window=2, replay=0.25)
    first = s.next_batch(8)
    assert {digits(p) for p in first} == {3}  # no easier difficulty yet: all at the frontier
    rec = s.observe(first, [[1, 1, 1, 0]] * 8, [10] * 8)  # 0.75 < 0.8
    assert rec["curriculum/frontier"] == 3 and rec["curriculum/d3/pass_rate"] == 0.75 and rec["curriculum/d3/tokens"] == 80
    s.observe(s.next_batch(8), [[1, 1, 1, 1]] * 8, [10] * 8)  # window (0.75, 1.0): mean 0.875
    assert s.frontier == 4
    batch = s.next_batch(8)
    assert [digits(p) for p in batch].count(3) == 2 and [digits(p) for p in batch].count(4) == 6  # round(0.25 * 8) replayed
    rec = s.observe(batch, [[1, 1, 1, 1]] * 2 + [[0, 0, 0, 0]] * 6, [5] * 8)
    assert rec["curriculum/frontier"] == 4 and rec["curriculum/d4/pass_rate"] == 0.0 and rec["curriculum/d3/pass_rate"] == 1.0
    assert s.rates == [0.0]  # the window restarted at the new frontier; only its own prompts count


def test_a_frontier_at_the_top_is_logged_once_and_training_goes_on(caplog):
    s = stream(levels=(3,), threshold=0.5, window=1)
    with caplog.at_level(logging.INFO, logger="rlreason.data.curriculum"):
        for _ in range(3):
            s.observe(s.next_batch(4), [[1, 1]] * 4, [1] * 4)
    assert s.frontier == 3
    assert sum("cannot move" in r.getMessage() for r in caplog.records) == 1


def test_a_resume_draws_exactly_what_the_run_would_have():
    a = stream(threshold=0.5, window=1, replay=0.5)
    a.observe(a.next_batch(6), [[1]] * 6, [1] * 6)  # frontier 3 -> 4
    saved = json.loads(json.dumps(a.state_dict()))  # as a checkpoint stores it
    want = [p.prompt for p in a.next_batch(10)]
    b = stream(threshold=0.5, window=1, replay=0.5)
    b.load_state_dict(saved)
    assert b.frontier == 4 and [p.prompt for p in b.next_batch(10)] == want
    with pytest.raises(ValueError, match="frontier 9"):
        b.load_state_dict({**saved, "frontier": 9})


def test_held_out_prompts_are_never_drawn():
    s = stream()
    drawn = s.next_batch(20)
    held = stream(levels=(3, 4, 5))
    held._exclude = {p.prompt for p in drawn[:10]}
    assert not {p.prompt for p in held.next_batch(20)} & held._exclude


def test_a_data_set_difficulty_is_read_from_its_field_and_bad_rows_are_named():
    assert difficulty_value("Level 3", "here") == 3 and difficulty_value(2.5, "here") == 2.5 and difficulty_value("4", "here") == 4
    for bad in (None, "Level ?", "1-2 or 3", True, float("nan")):
        with pytest.raises(DataError, match=r"row 7, field 'level': the difficulty must be a number"):
            difficulty_value(bad, "dataset x: row 7, field 'level'")
    task = DatasetTask([Problem(f"q{i}", "1", {"difficulty": i % 3 + 1}) for i in range(9)], "t")
    assert task.difficulties() == [1, 2, 3] and [p.prompt for p in task.at(2).problems] == ["q1", "q4", "q7"]


def test_math_rows_rank_by_level(tmp_path):
    from rlreason.data.datasets import get_spec, load_problems

    rows = [{"problem": "1+1?", "answer": "2", "level": "Level 2"}, {"problem": "2+2?", "answer": "4", "level": "Level ?"}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = get_spec(str(path), question="problem", answer="answer", difficulty="level")
    with pytest.raises(DataError, match=r"row 1, field 'level': the difficulty must be a number .* 'Level \?'"):
        load_problems(spec)
    path.write_text(json.dumps(rows[0]) + "\n")
    assert load_problems(get_spec(str(path), question="problem", answer="answer", difficulty="level"))[0].meta["difficulty"] == 2


@pytest.mark.parametrize("override,key", [
    ("task.curriculum.threshold=0", "task.curriculum.threshold"),
    ("task.curriculum.threshold=1.5", "task.curriculum.threshold"),
    ("task.curriculum.replay=1", "task.curriculum.replay"),
    ("task.curriculum.replay=-0.1", "task.curriculum.replay"),
    ("task.curriculum.window=0", "task.curriculum.window"),
])
def test_curriculum_ranges_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(None, ["task.curriculum.enabled=true", override])


def test_a_task_without_difficulty_cannot_follow_a_curriculum():
    with pytest.raises(ConfigError, match="task functions has no difficulty"):
        load_config(None, ["task.curriculum.enabled=true", "task.name=functions", "reward=code"])
    with pytest.raises(ConfigError, match="task.train_size"):
        load_config(None, ["task.curriculum.enabled=true", "task.train_size=100"])
    load_config(None, ["task.curriculum.threshold=1", "task.curriculum.replay=0"])  # the ends that are allowed


def test_curriculum_levels_start_where_the_warm_start_demonstrated():
    from rlreason.loop import curriculum_levels

    cfg = load_config(None, ["task.curriculum.enabled=true", "task.curriculum.top=6"])
    assert curriculum_levels(cfg, AdditionTask(3)) == [3, 4, 5, 6]
    cfg = load_config(None, ["task.curriculum.enabled=true", "task.curriculum.start=40"])
    with pytest.raises(ConfigError, match="task.curriculum.start': 40 is not a difficulty"):
        curriculum_levels(cfg, AdditionTask(3))


def test_index_hints_put_a_letter_before_each_digit_and_column():
    from rlreason.data.addition import make_problem, scratchpad

    p = make_problem(347, 586, 3, hint_offset=2)
    assert p.prompt == "c3d4e7+c5d8e6>" and p.answer == "933" and p.meta["difficulty"] == 3
    assert scratchpad(347, 586, 3, hint_offset=2) == "e7+6+0=13;d4+8+1=13;c3+5+1=9;\\boxed{933}"
    assert scratchpad(347, 586, 3) == "7+6+0=13;4+8+1=13;3+5+1=9;\\boxed{933}"  # without hints: as before
    import random

    task = AdditionTask(3, hints=True)
    offsets = {task.sample(random.Random(i)).meta["hint_offset"] for i in range(400)}
    assert offsets == set(range(24))  # every window of 3 of the 26 letters: each letter is seen in training
    long = AdditionTask(3, hints=True).at(26).sample(random.Random(0))
    assert long.meta["hint_offset"] == 0 and long.prompt.startswith("a") and "z" in long.prompt
    with pytest.raises(ConfigError, match="task.hints"):
        load_config(None, ["task.hints=true", "task.name=functions", "reward=code"])
    with pytest.raises(ConfigError, match=r"key 'warm_start.difficulties': with task.hints .* at most 26"):
        load_config(None, ["task.hints=true", "warm_start.difficulties=[3,27]"])


def test_curriculum_table_reads_accuracy_per_difficulty_over_rl_time(tmp_path):
    from rlreason.metrics import curriculum_table, plot_curriculum

    rows = [
        {"step": 0, "eval/accuracy": 0.3, "eval/d3/accuracy": 0.3, "eval/d4/accuracy": 0.0, "timing/step": 99.0},  # step 0: no RL time
        {"step": 1, "curriculum/frontier": 3, "timing/step": 1.5},
        {"step": 2, "curriculum/frontier": 3, "timing/step": 2.5, "eval/d3/accuracy": 0.9, "eval/d4/accuracy": 0.1, "eval/d5/accuracy": 0.0},
    ]
    levels, table = curriculum_table(rows)
    assert levels == [3, 4, 5]
    assert table == [(0.0, 0, {3: 0.3, 4: 0.0}), (4.0, 2, {3: 0.9, 4: 0.1, 5: 0.0})]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_curriculum(path, tmp_path / "c.png").stat().st_size > 0
    path.write_text(json.dumps({"step": 0, "eval/accuracy": 0.3}) + "\n")
    assert plot_curriculum(path, tmp_path / "none.png") is None  # no curriculum: no plot


@pytest.mark.parametrize("overrides,message", [
    (["rollout.probe=1", "algo.group_filter=mixed"], r"key 'rollout.probe': must be 0 \(off\) or in \[2, rollout.group_size=8\), got 1"),
    (["rollout.probe=8", "algo.group_filter=mixed"], r"key 'rollout.probe'.*got 8"),
    (["rollout.probe=4"], r"key 'rollout.probe': a probe keeps only the prompts it finds mixed; set algo.group_filter=mixed"),
    (["task.labels=verifier"], r"key 'task.labels': unknown value 'verifier'"),
    (["task.labels=majority", "task.majority_min=0"], r"key 'task.majority_min'"),
    (["task.labels=majority", "task.majority_min=1.5"], r"key 'task.majority_min'"),
    (["task.labels=majority", "task.name=functions", "reward=code"], r"key 'task.labels': majority labels need an answer to vote on; task functions"),
    (["task.labels=majority", "task.name=dataset", "task.dataset.source=countdown", "reward=countdown", "warm_start.enabled=false"],
     r"key 'task.labels': majority labels need an answer to vote on; task dataset \(countdown\) has no answer extractor"),
    (["max_minutes=-1"], r"key 'max_minutes'"),
])
def test_sampling_and_label_settings_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
    load_config(None, ["rollout.probe=2", "algo.group_filter=mixed", "task.labels=majority", "task.majority_min=1", "max_minutes=0.5"])
    math = load_config(None, ["task.labels=majority", "task.name=dataset", "task.dataset.source=math_train", "warm_start.enabled=false"])
    assert math.task.extractor() == "last_boxed"  # MATH's answers are voted on as rlreason eval's maj@k reads them
