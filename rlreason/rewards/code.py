"""Code reward: run model-written Python against unit tests in the sandbox.

Reward contract, as every reward here: `fn(prompt, completion, answer) -> float`.
The prompt is not used. The code is the last ```python (or ```py) fenced block
of the completion (an unclosed fence runs to the end), else the whole text.
The answer is a JSON object string that carries the tests, in one of two styles:

    {"style": "assert", "entry_point": "add", "test": "def check(candidate): ...",
     "prefix": "<optional code put before the solution, e.g. the HumanEval prompt>"}
    {"style": "stdio", "cases": [{"input": "1 2\\n", "output": "3\\n"}, ...]}

Optional in both: "timeout_s" (wall seconds per sandbox run).

- assert (HumanEval, MBPP): the solution program is prefix + code (a newline
  between them when the code came from a fence). The tests run in a trusted
  harness process, with `candidate` (and the entry point's name) calling the
  solution's function in another process; see code_harness.py for why that
  defeats exit(0), always-equal objects and patching. If the test defines
  `check`, the harness calls check(candidate) after running it.
- stdio: one sandbox run per case, stdin in; the run must exit 0 and its stdout
  must equal the expected output up to trailing whitespace on each line and
  trailing blank lines. The comparison is made here, on the host: expected
  outputs never enter the sandbox.

Returns 1.0 on pass, 0.0 on fail or timeout. An infrastructure failure (the
sandbox did not start, the harness could not set itself up) is never scored:
`CodeReward.__call__` logs it and raises SandboxError, which `score()` turns into
a RewardError naming the row; `CodeReward.counts` holds pass/fail/timeout/error
totals for the metrics. Use `CodeReward.evaluate` for a CodeResult that
carries the status (error included) instead of raising. A malformed answer is a
ValueError (a data bug, also never scored).

Start-up: `configure(unsafe=...)` probes the sandbox at once and raises
IsolationUnavailable when there is no bubblewrap unless unsafe is True (then it
warns loudly); REWARDS["code"] (`code_reward`) uses what `configure` installed,
or configures itself safely on first use.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from rlreason.rewards.sandbox import Limits, RunResult, Sandbox, SandboxError, Status

log = logging.getLogger(__name__)

HARNESS_SOURCE = (Path(__file__).parent / "code_harness.py").read_text()

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class CodeResult:
    status: Status
    detail: str  # why it failed; for error, what broke
    duration_s: float
    stdout: str = ""  # of the last sandbox run, truncated
    stderr: str = ""


def extract_code(completion: str) -> tuple[str, bool]:
    """(code, fenced): the last ```python block of the completion, else the whole text."""
    blocks = _FENCE.findall(completion)
    return (blocks[-1], True) if blocks else (completion, False)


def parse_answer(answer: str) -> dict:
    """The tests of one problem; a ValueError names what is wrong."""
    try:
        spec = json.loads(answer)
    except json.JSONDecodeError as e:
        raise ValueError(f"code answer is not JSON: {e}") from None
    style = spec.get("style") if isinstance(spec, dict) else None
    if style == "assert":
        if not isinstance(spec.get("test"), str) or not isinstance(spec.get("entry_point"), str):
            raise ValueError("assert-style answer needs string 'test' and 'entry_point'")
        if not isinstance(spec.get("prefix", ""), str):
            raise ValueError("'prefix' must be a string")
    elif style == "stdio":
        cases = spec.get("cases")
        if not isinstance(cases, list) or not cases:
            raise ValueError("stdio-style answer needs a non-empty list 'cases'")
        for case in cases:
            if not (isinstance(case, dict) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)):
                raise ValueError("each stdio case is {'input': str, 'output': str}")  # noqa: TRY004
    else:
        raise ValueError(f"code answer style must be 'assert' or 'stdio', not {style!r}")
    return spec


def assert_answer(test: str, entry_point: str, prefix: str = "") -> str:
    """The answer string of an assert-style problem (HumanEval: prompt as prefix)."""
    return json.dumps({"style": "assert", "test": test, "entry_point": entry_point, "prefix": prefix})


def stdio_answer(cases: list[tuple[str, str]]) -> str:
    """The answer string of a stdin/stdout problem."""
    return json.dumps({"style": "stdio", "cases": [{"input": i, "output": o} for i, o in cases]})


def run_assert(sandbox: Sandbox, program: str, spec: dict, limits: Limits) -> CodeResult:
    nonce = secrets.token_hex(16)
    job = {"nonce": nonce, "prefix": spec.get("prefix", ""), "program": program, "test": spec["test"], "entry_point": spec["entry_point"]}
    run = sandbox.run("harness.py", {"harness.py": HARNESS_SOURCE}, stdin=json.dumps(job).encode(), limits=limits, report=True)
    armed, _, verdict_json = run.report.partition(b"\n")
    if run.status == "error" or armed != b"armed":  # nothing of the solution ran yet: infrastructure
        why = _verdict(run.report, nonce)[1] or run.detail or run.stderr[-500:]
        return _result("error", f"the test harness did not start ({run.status}): {why}", run)
    if run.status == "timeout":
        return _result("timeout", run.detail, run)
    verdict, detail = _verdict(verdict_json, nonce)
    if verdict == "pass" and run.status == "pass":
        return _result("pass", "", run)
    if verdict == "timeout":
        return _result("timeout", detail, run)
    return _result("fail", detail or f"no verdict from the harness ({run.detail or 'killed'})", run)


def _verdict(report: bytes, nonce: str) -> tuple[str, str]:
    """(verdict, detail) from the harness's report; ("", "") when missing, torn or not ours."""
    try:
        message = json.loads(report)
        if message["nonce"] == nonce:
            return str(message["verdict"]), str(message.get("detail", ""))
    except (ValueError, KeyError, TypeError):
        pass
    return "", ""


def run_stdio(sandbox: Sandbox, program: str, spec: dict, limits: Limits) -> CodeResult:
    """Cases in order, stopping at the first that does not pass."""
    start, run = time.monotonic(), None
    for i, case in enumerate(spec["cases"]):
        run = sandbox.run("main.py", {"main.py": program}, stdin=case["input"].encode(), limits=limits)
        if run.status != "pass":
            return _result(run.status, f"case {i}: {run.detail}", run, start)
        if run.truncated or _lines(run.stdout) != _lines(case["output"]):
            return _result("fail", f"case {i}: wrong output", run, start)
    return _result("pass", "", run, start)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _result(status: Status, detail: str, run: RunResult, start: float | None = None) -> CodeResult:
    duration = run.duration_s if start is None else time.monotonic() - start
    return CodeResult(status, detail, duration, run.stdout, run.stderr)


class CodeReward:
    """The code reward with its sandbox and counters; thread-safe."""

    __name__ = "code_reward"

    def __init__(self, sandbox: Sandbox | None = None, *, unsafe: bool = False, limits: Limits | None = None):
        self.sandbox = sandbox if sandbox is not None else Sandbox(unsafe=unsafe)
        self.limits = limits or self.sandbox.limits
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def evaluate(self, completion: str, answer: str) -> CodeResult:
        """Run the tests; the status may be error (nothing raised). Counted in self.counts."""
        spec = parse_answer(answer)
        limits = self.limits
        if "timeout_s" in spec:
            limits = replace(limits, wall_s=float(spec["timeout_s"]))
        code, fenced = extract_code(completion)
        prefix = spec.get("prefix", "")
        program = prefix + ("\n" if fenced and prefix else "") + code
        run = run_assert if spec["style"] == "assert" else run_stdio
        result = run(self.sandbox, program, spec, limits)
        with self._lock:
            self.counts[result.status] += 1
        if result.status == "error":
            log.error("code reward: sandbox infrastructure error (not scored): %s", result.detail)
        return result

    def __call__(self, prompt: str, completion: str, answer: str) -> float:
        result = self.evaluate(completion, answer)
        if result.status == "error":
            raise SandboxError(f"sandbox infrastructure error, not a wrong answer: {result.detail}")
        return 1.0 if result.status == "pass" else 0.0


_default: CodeReward | None = None
_default_lock = threading.Lock()


def configure(*, unsafe: bool = False, limits: Limits | None = None) -> CodeReward:
    """Build the code reward now (probing the sandbox) and make it what `code_reward` uses."""
    global _default
    reward = CodeReward(unsafe=unsafe, limits=limits)
    with _default_lock:
        _default = reward
    return reward


def code_reward(prompt: str, completion: str, answer: str) -> float:
    """REWARDS["code"]: 1.0 when the completion's code passes the tests in `answer`, else 0.0."""
    global _default
    with _default_lock:
        if _default is None:
            _default = CodeReward()
        reward = _default
    return reward(prompt, completion, answer)
