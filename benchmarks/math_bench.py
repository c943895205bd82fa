"""Math reward throughput: checks per second with 1 and N worker processes.

    python3 benchmarks/math_bench.py [--workers 2] [--rows 200] [--out runs/math_bench.json]

The mix is realistic for RL on MATH: for each of --rows MATH-500 problems, a group of 4
completions (`<think>...</think>` then a boxed answer): the gold spelled as in the data set,
the gold respelled (\\dfrac, spaces), a wrong answer (another problem's gold) and an echo of a
number from the problem text; golds repeat within a group as they do under GRPO. Each check is
the full reward (extraction, guards, math-verify in a worker with its hard time limit), fed from
a thread pool as score_parallel would. Worker start-up is timed separately and excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlreason.rewards.math_reward import MathReward

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"


def workload(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(prompt, completion, gold) rows: 4 completions per problem."""
    out = []
    for i, r in enumerate(rows):
        gold, other = r["answer"], rows[(i + 1) % len(rows)]["answer"]
        respelled = re.sub(r",(?!\\!)", ", ", re.sub(r"\\frac", r"\\dfrac", gold))  # keep 10,\!080 whole
        number = (re.findall(r"\d+", r["problem"]) or ["0"])[-1]
        for pred in (gold, respelled, other, number):
            out.append((r["problem"], f"<think>Let me work it out.</think> The answer is $\\boxed{{{pred}}}$.", gold))
    return out


def run(jobs: list[tuple[str, str, str]], workers: int, timeout_s: float) -> dict:
    reward = MathReward(timeout_s=timeout_s, workers=workers)
    t0 = time.perf_counter()
    reward.verifier.start()
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2 * workers) as ex:
        outcomes = list(ex.map(lambda job: reward.check(*job), jobs))
    elapsed = time.perf_counter() - t0
    reward.verifier.close()
    return {
        "workers": workers,
        "checks": len(jobs),
        "seconds": round(elapsed, 3),
        "checks_per_s": round(len(jobs) / elapsed, 1),
        "startup_s": round(startup, 3),
        "outcomes": dict(Counter(outcomes)),
        "verifier": reward.verifier.stats(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--out", default="runs/math_bench.json")
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][: args.rows]
    jobs = workload(rows)
    results = [run(jobs, 1, args.timeout)]
    if args.workers > 1:
        results.append(run(jobs, args.workers, args.timeout))
    for r in results:
        print(
            f"{r['workers']} worker(s): {r['checks']} checks in {r['seconds']} s = {r['checks_per_s']} checks/s "
            f"(start-up {r['startup_s']} s); outcomes {r['outcomes']}"
        )
    report = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "timeout_s": args.timeout, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
