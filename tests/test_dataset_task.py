"""Training on data sets: the countdown reward, multi-field mapping, MBPP-style code rows, the
finite-task held-out split and epoch stream, and `rlreason train --dry-run` on the real recipes."""

import json
from pathlib import Path

import pytest

from rlreason.config import ConfigError, load_config
from rlreason.data.dataset_task import DatasetTask, load_dataset_task, training_spec
from rlreason.data.datasets import get_spec, infer_entry_point, load_problems
from rlreason.data.stream import PromptStream, demonstrations, heldout_problems
from rlreason.rewards import resolve_reward
from rlreason.rewards.countdown import answer_format_reward, countdown_reward, evaluate_equation
from rlreason.types import Problem
from tests.helpers import addition_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
GOLD = '{"target": 24, "nums": [3, 4, 6, 1]}'


# --- countdown reward: hand-checked equations ---------------------------------------------

@pytest.mark.parametrize(
    "completion, score",
    [
        ("<think>6/(1-3/4) = 6/0.25 = 24</think>\n<answer> 6 / (1 - 3/4) </answer>", 1.0),  # each number once, = 24
        ("<answer>(6 - 3 + 1) * 4 + 8</answer>", 0.0),  # 8 is not given
        ("<answer>6 * 4 * (3 - 3 + 1)</answer>", 0.0),  # 3 twice
        ("<answer>6 * 4</answer>", 0.0),  # 3 and 1 unused
        ("<answer>(3 + 1) * 6 * 4 / 4</answer>", 0.0),  # 4 twice
        ("<answer>6 * 4 * 1 ** 3</answer>", 0.0),  # ** is not an allowed operator
        ("<answer>6 * 4 / (3 - 3) + 1</answer>", 0.0),  # division by zero is a wrong answer, not a crash
        ("6 * 4 * (3 - 1) / 2", 0.0),  # no <answer>
        ("<answer>6 / (1 - 3/4)</answer> wait <answer>6*4*1*3</answer>", 0.0),  # the last answer counts
        ("<think><answer>6/(1-3/4)</answer></think><answer>6*4+3-1</answer>", 0.0),  # only after </think>
        ("<answer>4*6*(1+3-3)</answer>", 0.0),  # 3 used twice
        ("<answer>(1 + 3) * 6 * 4 / 4</answer>", 0.0),
        ("<answer>4 * 6 * (3 - 1 - 1)</answer>", 0.0),  # 1 twice
    ],
)
def test_countdown_reward_hand_checked(completion, score):
    assert countdown_reward("", completion, GOLD) == score


def test_countdown_shaping_matches_tinyzero_ordering():
    """countdown + 0.1*answer_format: 1.1 correct, 0.1 a wrong but computable equation, 0 none."""
    fn = resolve_reward("countdown + 0.1*answer_format")
    assert fn("", "<answer>6/(1-3/4)</answer>", GOLD) == pytest.approx(1.1)
    assert fn("", "<answer>6*4*3*1</answer>", GOLD) == pytest.approx(0.1)
    assert fn("", "<answer>six times four</answer>", GOLD) == 0.0
    assert fn("", "no answer at all", GOLD) == 0.0
    assert answer_format_reward("", "<answer>1+</answer>", GOLD) == 0.0


def test_countdown_evaluates_without_eval():
    assert evaluate_equation("(1 + 2) / 3") == 1.0
    assert evaluate_equation("__import__('os')") is None
    assert evaluate_equation("9" * 300) is None  # longer than any answer
    with pytest.raises(ValueError, match="countdown answer must be JSON"):
        countdown_reward("", "<answer>1</answer>", "24")


# --- mapping rows with several fields ------------------------------------------------------

def test_countdown_rows_map_with_formats(tmp_path):
    """The built-in countdown spec on rows in the hub schema (target, nums): TinyZero's prompt, a
    JSON gold the reward reads, and a row lacking a field named by number."""
    rows = [{"target": 24, "nums": [3, 4, 6, 1]}, {"target": 10, "nums": [2, 5]}]
    path = write_jsonl(tmp_path / "cd.jsonl", rows)
    problems = load_problems(get_spec("countdown", local=str(path)))
    assert "Using the numbers [3, 4, 6, 1], create an equation that equals 24." in problems[0].prompt
    assert problems[0].prompt.endswith("Assistant: Let me solve this step by step.\n<think>")
    assert countdown_reward("", "<answer>2*5</answer>", problems[1].answer) == 1.0
    write_jsonl(path, rows + [{"nums": [1, 2]}])
    with pytest.raises(ValueError, match=r"row 2 lacks field .target. for the question"):
        load_problems(get_spec("countdown", local=str(path)))


MBPP_ROWS = [
    {
        "task_id": 901, "text": "Write a function to return the larger of two numbers.",
        "code": "def bigger(a, b):\n    return helper(a, b)\n\ndef helper(a, b):\n    return a if a > b else b",
        "test_list": ["assert bigger(1, 2) == 2", "assert bigger(5, -1) == 5", "assert max(bigger(3, 3), 0) == 3"],
        "test_setup_code": "", "challenge_test_list": [],
    },
    {
        "task_id": 902, "text": "Write a function to reverse a string.",
        "code": "def rev(s):\n    return s[::-1]",
        "test_list": ["assert rev('ab') == 'ba'", "assert rev('') == ''", "assert len(rev('abc')) == 3"],
        "test_setup_code": "", "challenge_test_list": [],
    },
]


def test_entry_point_is_the_tested_function_the_solution_defines():
    tests = MBPP_ROWS[0]["test_list"]
    assert infer_entry_point(tests, MBPP_ROWS[0]["code"]) == "bigger"  # not the helper, not max
    assert infer_entry_point(["assert len(rev('a')) == 1"], None) == "rev"  # no reference: first non-builtin
    assert infer_entry_point("def check(candidate): pass", None) is None  # not a list of asserts


@pytest.mark.slow  # runs the sandbox (bubblewrap) three times; ~2 s
def test_mbpp_rows_score_their_reference_in_the_sandbox(tmp_path):
    """MBPP's schema through the built-in spec: the prompt shows the asserts, the reference
    program passes its own tests in the sandbox and a wrong one fails."""
    from rlreason.rewards import REWARDS

    path = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    problems = load_problems(get_spec("mbpp", local=str(path)))
    assert problems[0].prompt.endswith("assert max(bigger(3, 3), 0) == 3") and problems[0].meta["id"] == "901"
    assert json.loads(problems[0].answer)["entry_point"] == "bigger"
    code = REWARDS["code"]
    assert code("", "```python\n" + problems[0].meta["solution"] + "\n```", problems[0].answer) == 1.0
    assert code("", "```python\n" + problems[1].meta["solution"] + "\n```", problems[1].answer) == 1.0
    assert code("", "```python\ndef rev(s):\n    return s\n```", problems[1].answer) == 0.0


# --- the finite task: held-out sample, epochs, warm start from solutions -------------------

def test_finite_task_holds_out_a_sample_and_streams_the_rest_in_epochs():
    task = DatasetTask([Problem(f"p{i}", str(i), {"row": i}) for i in range(30)], "toy")
    held = heldout_problems(task, 5, seed=1)
    assert held == heldout_problems(task, 5, seed=1) and len({p.prompt for p in held}) == 5
    stream = PromptStream(task, seed=0, exclude=held)
    first = [p.prompt for p in stream.next_batch(25)]
    assert sorted(first) == sorted(p.prompt for p in task.problems if p not in held)  # each once per epoch
    second = [p.prompt for p in stream.next_batch(25)]
    assert sorted(second) == sorted(first) and second != first and stream.epoch == 1  # reshuffled
    resumed = PromptStream(task, seed=0, exclude=held)
    resumed.load_state_dict({"epoch": 1, "position": 10})
    assert [p.prompt for p in resumed.next_batch(3)] == second[10:13]
    with pytest.raises(ValueError, match="task.heldout_size"):
        heldout_problems(task, 30, seed=1)


def test_dataset_task_from_a_file_with_a_template_and_solutions(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    path = write_jsonl(tmp_path / "add.jsonl", addition_rows(12))
    cfg = load_config(None, [
        "task.name=dataset", f"task.dataset.source={path}", "task.dataset.question=q", "task.dataset.answer=gold",
        "task.dataset.solution=work", "task.dataset.template=raw", "task.heldout_size=4", "eval.size=4",
    ])
    task = load_dataset_task(cfg.task.dataset, AutoTokenizer.from_pretrained(tiny_model_dir[0]), 200)
    assert len(task.problems) == 12 and task.problems[0].prompt.endswith(">")
    demos = demonstrations(task, 3, 0.6, seed=0)
    assert all(d[1].endswith("\\boxed{" + p.answer + "}") for d, p in zip(demos, [task_problem(task, d[0]) for d in demos]))
    # the chat template wraps the question in the model's turn markers
    chat = load_dataset_task(load_config(None, [
        "task.name=dataset", f"task.dataset.source={path}", "task.dataset.question=q", "task.dataset.answer=gold",
        "warm_start.enabled=false",
    ]).task.dataset, AutoTokenizer.from_pretrained(tiny_model_dir[0]), 200)
    assert chat.problems[0].prompt.startswith("<|im_start|>user\n") and "\\boxed{}" in chat.problems[0].prompt
    with pytest.raises(ValueError, match="prompts longer|no problem of add fits"):
        load_dataset_task(cfg.task.dataset, AutoTokenizer.from_pretrained(tiny_model_dir[0]), 3)


def task_problem(task, prompt):
    return next(p for p in task.problems if p.prompt == prompt)


def test_dataset_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="task.dataset.source"):
        load_config(None, ["task.name=dataset", "warm_start.enabled=false"])
    with pytest.raises(ConfigError, match="warm_start.enabled.*gsm8k_train.*task.dataset.solution"):
        load_config(None, ["task.name=dataset", "task.dataset.source=gsm8k_train"])
    with pytest.raises(ConfigError, match="task.dataset.local.*no such file"):
        load_config(None, ["task.name=dataset", "task.dataset.source=countdown", "task.dataset.local=/nope.jsonl", "warm_start.enabled=false"])
    with pytest.raises(ConfigError, match="task.dataset.template"):
        load_config(None, ["task.name=dataset", "task.dataset.source=gsm8k_train", "task.dataset.template=fancy", "warm_start.enabled=false"])
    with pytest.raises(ConfigError, match="eval.template"):
        load_config(None, ["eval.template=fancy"])
    with pytest.raises(ConfigError, match="key 'eval.reward'"):
        load_config(None, ["eval.reward=nope"])
    # a hub id that is not a built-in trains on its 'train' split
    assert training_spec(load_config(None, ["task.name=dataset", "task.dataset.source=me/my-set", "warm_start.enabled=false"]).task.dataset).split == "train"


# --- --dry-run on the real recipes ----------------------------------------------------------

def statuses(checks) -> dict:
    return {c.name: (c.status, c.detail) for c in checks}


@pytest.mark.slow  # reads and gold-checks all 8,792 GSM8K rows: ~20-40 s
def test_dry_run_gsm8k_recipe_maps_every_row(offline):
    from rlreason.dryrun import FAIL, dry_run

    checks = statuses(dry_run(load_config(ROOT / "recipes/gsm8k_qwen2.5_grpo.yaml")))
    assert all(status != FAIL for status, _ in checks.values()), checks
    assert checks["data"][0] == "ok" and "7473 rows mapped" in checks["data"][1]
    assert checks["eval set gsm8k"][0] == "ok" and "1319 rows mapped" in checks["eval set gsm8k"][1]
    assert checks["model"][0] == "unchecked"  # no hub here: said, not hidden
    assert "2 GPUs" in checks["placement"][1]


@pytest.mark.slow  # 20-50 s each: the eval sets load and are gold-checked too
@pytest.mark.parametrize(
    "recipe, rows, expect",
    [
        ("countdown_qwen2.5_3b_grpo", [{"target": 10 + i, "nums": [i, 10]} for i in range(1100)], "1100 rows mapped"),
        ("mbpp_qwen2.5_coder_grpo", MBPP_ROWS * 30, "60 rows mapped (question, tests)"),
        (
            "math_r1zero_qwen2.5_math_drgrpo",
            [{"problem": f"What is {i}+1?", "solution": f"It is $\\boxed{{{i + 1}}}$.", "level": "Level 3", "type": "Algebra"} for i in range(300)],
            "300 rows mapped",
        ),
        (  # the curriculum over MATH's levels: every row's level reads as a number
            "math_curriculum_qwen2.5_math_drgrpo",
            [{"problem": f"What is {i}+1?", "solution": f"It is $\\boxed{{{i + 1}}}$.", "level": f"Level {i % 5 + 1}", "type": "Algebra"} for i in range(300)],
            "300 rows mapped",
        ),
    ],
)
def test_dry_run_hub_recipes_on_local_copies(offline, tmp_path, recipe, rows, expect):
    """The hub-only training sets, as local copies in the hub's schema (task.dataset.local)."""
    from rlreason.dryrun import FAIL, dry_run

    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    checks = statuses(dry_run(load_config(ROOT / f"recipes/{recipe}.yaml", [f"task.dataset.local={path}"])))
    assert checks["data"][0] == "ok" and expect in checks["data"][1], checks["data"]
    assert not [k for k, (s, _) in checks.items() if s == FAIL and not k.startswith("eval set mbpp_test")], checks


def test_dry_run_fails_on_a_bad_mapping_and_fits_prompts_with_the_tokenizer(offline, tmp_path, tiny_model_dir):
    from rlreason.cli import main
    from rlreason.dryrun import dry_run

    path = write_jsonl(tmp_path / "add.jsonl", addition_rows(40))
    base = [f"model.cache_dir={tiny_model_dir[1].cache_dir}", "task.name=dataset", f"task.dataset.source={path}",
            "task.dataset.answer=gold", "task.dataset.template=raw", "warm_start.enabled=false", "task.heldout_size=10", "eval.size=10"]
    checks = statuses(dry_run(load_config(None, [*base, "task.dataset.question=nope"])))
    assert checks["data"][0] == "FAIL" and "row 0 lacks field 'nope'" in checks["data"][1]
    good = statuses(dry_run(load_config(None, [*base, "task.dataset.question=q"])))
    assert good["data prompts"][0] == "ok" and "40 fit in 208 prompt tokens (0 too long)" in good["data prompts"][1]
    assert good["tokenizer"][0] == "ok" and good["placement"][0] == "ok"
    assert main(["train", str(ROOT / "recipes/addition_grpo.yaml"), *base, "task.dataset.question=nope", "--dry-run"]) == 1


def test_prm_dry_run_of_the_gpu_recipe_on_a_local_copy(offline, tmp_path, capsys):
    """`rlreason prm recipes/math_prm_qwen2.5_math.yaml --dry-run`: the training recipe's checks and
    the PRM's own; a held-out count above what the run holds out is a FAIL naming the key."""
    from rlreason.cli import main

    rows = [{"problem": f"What is {i}+1?", "solution": f"It is $\\boxed{{{i + 1}}}$.", "level": "Level 3", "type": "Algebra"} for i in range(300)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    args = ["prm", str(ROOT / "recipes/math_prm_qwen2.5_math.yaml"), "--dry-run", f"task.dataset.local={path}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prm labels" in out and "steps end at '\\n\\n'; 2000 training problems x 8 completions" in out
    assert "prm.policy" in out and "no failures" in out
    assert main(args + ["prm.heldout_problems=500"]) == 1
    assert "lower prm.heldout_problems" in capsys.readouterr().err
