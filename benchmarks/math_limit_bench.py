"""The math reward's time limit under the loop's scoring concurrency (issue 24).

    python3 benchmarks/math_limit_bench.py [--threads 8] [--limit 3] [--repeats 3] [--out runs/math_limit_bench.json]

A batch as the loop scores it: --threads rows at once (scoring.workers, default 8), each row the
full math reward. The batch is math_bench's MATH-500 mix (16 problems x 4 completions) plus
--slow hostile answers, `(x+y+z+1)^{30}` against `x^2+2x+1` (sympy expands it for seconds),
spread through the batch. Two pool sizes, in one invocation:
  - 'cpu default': the verifier's size without prepare_rewards, min(4, cores) workers (2 on a
    2-core machine), so calls wait for a worker;
  - 'sized to threads': what `rlreason train` does (prepare_rewards(..., threads=scoring.workers)).
Reported per pool, as median [min-max] over --repeats: the longest call, the benign rows scored 0
as timeouts (a correct answer lost to the queue), the timeouts, the seconds calls waited for a
worker, the batch's wall time, and the pool's start (timed apart: the first call pays it once,
before any call's clock runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from math_bench import DATA, workload

from benchmarks.host import host
from rlreason.rewards.math_reward import MathReward

SLOW = ("q", r"\boxed{(x+y+z+1)^{30}}", "x^2+2x+1")
TIMEOUTS = ("timeout", "queue_timeout")


def one_batch(jobs: list[tuple[str, str, str]], workers: int, threads: int, limit: float) -> dict:
    reward = MathReward(timeout_s=limit, workers=workers)
    t0 = time.monotonic()
    reward.verifier.start()
    startup = time.monotonic() - t0
    waited = reward.verifier.stats().get("queue_wait_s", 0.0)  # the verifier is shared: counts accumulate

    def timed(job):
        t0 = time.monotonic()
        outcome = reward.check(*job)
        return outcome, time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        results = list(ex.map(timed, jobs))
    wall = time.monotonic() - t0
    stats = reward.verifier.stats()
    reward.verifier.close()
    benign_lost = sum(o in TIMEOUTS for job, (o, _) in zip(jobs, results) if job is not SLOW)
    return {
        "max_call_s": max(s for _, s in results),
        "benign_timeouts": benign_lost,
        "timeouts": sum(o in TIMEOUTS for o, _ in results),
        "queue_wait_s": stats.get("queue_wait_s", 0.0) - waited,
        "batch_s": wall,
        "pool_start_s": startup,
    }


def summary(runs: list[dict]) -> dict:
    return {k: {"median": statistics.median(r[k] for r in runs), "min": min(r[k] for r in runs), "max": max(r[k] for r in runs)} for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=8, help="rows scored at once (the loop's scoring.workers)")
    ap.add_argument("--limit", type=float, default=3.0, help="the math reward's time limit, seconds")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--slow", type=int, default=4, help="hostile answers in the batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="runs/math_limit_bench.json")
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][: args.problems]
    jobs = workload(rows)
    step = max(1, len(jobs) // max(1, args.slow))
    for i in range(args.slow):
        jobs.insert(i * (step + 1), SLOW)
    pools = {"cpu default": max(1, min(4, os.cpu_count() or 1)), "sized to threads": args.threads}
    report = {
        "host": host(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
        "threads": args.threads, "limit_s": args.limit, "rows": len(jobs), "slow_rows": args.slow, "pools": {},
    }
    for name, workers in pools.items():
        runs = [one_batch(jobs, workers, args.threads, args.limit) for _ in range(args.repeats)]
        report["pools"][name] = {"workers": workers, "runs": runs, "summary": summary(runs)}
    print(f"{report['host']}, {report['cores']} cores, {report['date']}: {len(jobs)} rows ({args.slow} hostile), "
          f"{args.threads} threads, limit {args.limit} s; median [min-max] of {args.repeats}")
    for name, p in report["pools"].items():
        s = p["summary"]
        cells = ", ".join(f"{k} {v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]" for k, v in s.items())
        print(f"  {name} ({p['workers']} workers): {cells}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
