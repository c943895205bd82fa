import random

import pytest

from rlreason.config import load_config
from rlreason.data.addition import AdditionTask, make_problem, scratchpad
from rlreason.data.stream import PromptStream, demonstrations, heldout_problems
from rlreason.rewards import RewardError, resolve_reward, score
from rlreason.rewards.arithmetic import addition_reward


def test_scratchpad_hand_written():
    assert scratchpad(347, 586, 3) == "7+6+0=13;4+8+1=13;3+5+1=9;\\boxed{933}"
    assert scratchpad(999, 999, 3) == "9+9+0=18;9+9+1=19;9+9+1=19;\\boxed{1998}"
    assert scratchpad(100, 200, 3) == "0+0+0=0;0+0+0=0;1+2+0=3;\\boxed{300}"


def test_teacher_blind_spot_is_consistent_but_wrong():
    # drop every inner carry: 347+586 -> carry from 13 dropped at column 2 and 3
    text = scratchpad(347, 586, 3, carry_drop=1.0, rng=random.Random(0))
    assert text == "7+6+0=13;4+8+0=12;3+5+0=8;\\boxed{823}"
    assert addition_reward("347+586>", text, "933") == 0.0
    # no carries -> the teacher is right whatever its blind spot
    assert scratchpad(123, 456, 3, carry_drop=1.0, rng=random.Random(0)) == "3+6+0=9;2+5+0=7;1+4+0=5;\\boxed{579}"


def test_teacher_accuracy_close_to_design():
    pairs = demonstrations(AdditionTask(3), 2000, 0.6, seed=0)
    acc = sum(addition_reward(p, c, str(eval(p[:-1]))) for p, c in pairs) / len(pairs)
    assert 0.40 < acc < 0.60  # inner carries happen ~45% per column; 60% of them dropped


def test_reward_reads_only_the_final_answer():
    assert addition_reward("1+2>", "1+2+0=3;\\boxed{3}", "3") == 1.0
    assert addition_reward("1+2>", "=3;\\boxed{4}", "3") == 0.0
    assert addition_reward("1+2>", "1+2+0=3;=3 extra", "3") == 0.0
    assert addition_reward("1+2>", "", "3") == 0.0
    assert addition_reward("1+2>", "=33", "3") == 0.0


def test_heldout_disjoint_from_training_stream():
    held = heldout_problems(AdditionTask(2), 300, seed=1)  # 2 digits: 8100 pairs, so overlaps would happen
    stream = PromptStream(AdditionTask(2), seed=0, exclude=held)
    held_pairs = {p.prompt for p in held}
    assert len(held_pairs) == 300
    assert not held_pairs & {p.prompt for p in stream.next_batch(3000)}


def test_stream_is_deterministic_and_resumable():
    a = PromptStream(AdditionTask(3), seed=5)
    first = [p.prompt for p in a.next_batch(10)]
    state = a.state_dict()
    rest = [p.prompt for p in a.next_batch(10)]
    b = PromptStream(AdditionTask(3), seed=5)
    b.load_state_dict(state)
    assert [p.prompt for p in b.next_batch(10)] == rest
    assert [p.prompt for p in PromptStream(AdditionTask(3), seed=5).next_batch(10)] == first
    assert make_problem(12, 30).answer == "42"


def test_reward_plugin_by_dotted_path_and_errors():
    assert resolve_reward("tests.plugins:parity_reward")("", "ab", "") == 1.0
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        resolve_reward("nope")
    with pytest.raises(ValueError, match="cannot import"):
        resolve_reward("tests.plugins:missing")
    with pytest.raises(RewardError, match=r"raised on row 1 \(prompt 'b'\)"):
        score(_raise_on_b, ["a", "b"], ["", ""], ["", ""])
    with pytest.raises(RewardError, match="raising_reward.*missing field 'tests'"):
        score(resolve_reward("tests.plugins:raising_reward"), ["a"], [""], [""])


def _raise_on_b(prompt, completion, answer):
    if prompt == "b":
        raise ValueError("boom")
    return 1.0


def test_reward_returning_nan_is_an_error():
    with pytest.raises(RewardError, match="returned nan on row 0"):
        score(lambda p, c, a: float("nan"), ["a"], [""], [""])


def test_progress_line_and_metrics_files(tmp_path):
    import io
    import json

    from rlreason.metrics import MetricsLogger, plot
    from rlreason.trackers import TensorBoard

    out = io.StringIO()
    m = MetricsLogger(tmp_path, total_steps=2, stream=out, trackers=[TensorBoard(tmp_path, None)])
    m.log({"step": 0, "eval/accuracy": 0.25})
    m.log({"step": 1, "reward/mean": 0.5, "throughput/tokens_per_s": 1234.0, "loss": 0.1})
    m.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step    0/2 | heldout acc 0.250*")
    assert lines[1].startswith("step    1/2 | reward 0.500 | heldout acc 0.250  | 1234 tok/s | loss +0.1000")
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert plot(tmp_path / "metrics.jsonl", tmp_path / "p.png").stat().st_size > 1000


def test_score_groups_pairs_each_sample_with_its_problem():
    from rlreason.loop import score_groups
    from rlreason.types import Sample

    problems = [make_problem(1, 2), make_problem(5, 5)]
    groups = [
        [Sample([], [], t, [], "stop", 0) for t in ("1+2+0=3;\\boxed{3}", "=4", "x")],
        [Sample([], [], t, [], "stop", 0) for t in ("=3", "5+5+0=10;\\boxed{10}", ";\\boxed{10}")],
    ]
    cfg = load_config(None, [])
    for reward in (addition_reward, resolve_reward("math")):  # the exact checker and math-verify agree
        rewards, failed, why = score_groups(cfg, reward, problems, groups)
        assert rewards.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]] and not failed.any() and why == []


def test_weighted_reward_spec():
    fn = resolve_reward("math + 0.5*tests.plugins:parity_reward")
    assert fn("1+2>", "\\boxed{3}", "3") == 1.0  # 9 characters: parity 0
    assert fn("1+2>", "\\boxed{3} ", "3") == 1.5  # 10 characters: parity 1, weight 0.5
    assert fn("1+2>", "\\boxed{4} ", "3") == 0.5
    with pytest.raises(ValueError, match="term 'x\\*math'"):
        resolve_reward("x*math + think_format")
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        resolve_reward("math + 0.1*nope")



def test_functions_task_teacher_and_sandboxed_tests():
    """The code task: the teacher's correct solutions pass the sandboxed tests, its blind spot
    (no constant term) fails them; about `error` of its demonstrations are wrong."""
    from rlreason.data.functions import FunctionTask, make_problem as make_fn_problem, solution

    p = make_fn_problem(3, -2, 7)
    assert p.prompt == "f(a,b)=3a-2b+7>"
    assert solution(3, -2, 7) == "def f(a,b):\n return 3*a-2*b+7"
    code = resolve_reward("code")
    assert code(p.prompt, solution(3, -2, 7), p.answer) == 1.0
    assert code(p.prompt, solution(3, -2, None), p.answer) == 0.0
    assert code(p.prompt, "def f(a,b):\n return 3*a-2*b+8", p.answer) == 0.0
    pairs = demonstrations(FunctionTask(), 400, 0.6, seed=0)
    wrong = sum(c.endswith("*b") for _, c in pairs) / len(pairs)
    assert 0.5 < wrong < 0.7
    held = heldout_problems(FunctionTask(), 200, seed=0)
    assert len({h.prompt for h in held}) == 200
