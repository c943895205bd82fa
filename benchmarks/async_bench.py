"""Async mode against the synchronous loop: step time and time to a held-out accuracy.

    python benchmarks/async_bench.py [--steps 30] [--target 0.9] [--quick] [--out runs/bench/async.json]

One warm start (recipes/addition_grpo_1m.yaml's, the 1.1M model), saved as step 0, then the same RL steps twice from that
checkpoint: synchronous (rollout.max_staleness=0) and async (=1: step t+1's batch is sampled
while the learner trains on step t). Both use algo.tis_cap=2.0 (a no-op when on-policy). Time
to accuracy is the RL time (evaluation excluded) until the held-out greedy accuracy first
reaches --target. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def summarize(rows: list[dict], target: float) -> dict:
    steps = [r for r in rows if r["step"] > 0]
    rl_time, reached = 0.0, None
    for r in steps:
        rl_time += r["timing/step"] - r.get("timing/eval", 0.0)
        if reached is None and r.get("eval/accuracy", -1) >= target:
            reached = rl_time
    median = lambda key: statistics.median(r[key] for r in steps)
    return {
        "steps": len(steps),
        "step_s_median": statistics.median(r["timing/step"] - r.get("timing/eval", 0.0) for r in steps),  # evaluation excluded
        "rollout_wait_s_median": median("timing/rollout"),
        "generate_s_median": median("timing/generate"),
        "update_s_median": median("timing/update"),
        "sync_wait_s_median": median("timing/sync_wait"),
        "sync_s_median": median("timing/sync"),
        "policy_lag_mean": statistics.mean(r["async/policy_lag_mean"] for r in steps),
        "rl_time_s": rl_time,
        "time_to_target_s": reached,
        "accuracy": [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/addition_grpo_1m.yaml")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="a 3-minute smoke run: short warm start, 4 steps")
    ap.add_argument("--work", default="runs/bench/async")
    ap.add_argument("--out", default="runs/bench/async.json")
    args = ap.parse_args(argv)

    from rlreason import checkpoint
    from rlreason.config import load_config
    from rlreason.train import train

    work = Path(args.work)
    common = [f"eval.every={args.eval_every}", f"eval.size={args.eval_size}", "algo.tis_cap=2.0", "checkpoint.every=0"]
    if args.quick:
        common += ["warm_start.steps=150", "rollout.prompts_per_step=16"]
        args.steps = 4
    warm_dir = work / "warm"
    if checkpoint.latest(warm_dir / "checkpoints") is None:
        t = time.time()
        train(load_config(args.recipe, [*common, f"run_dir={warm_dir}", "steps=1", "checkpoint.every=1", "checkpoint.keep_last=0"]))
        print(f"warm start: {time.time() - t:.0f} s", file=sys.stderr)
    start = warm_dir / "checkpoints" / checkpoint.step_dir_name(0)

    results = {}
    for name, staleness in (("sync", 0), ("async", 1)):
        run_dir = work / name
        cfg = load_config(args.recipe, [*common, f"run_dir={run_dir}", f"steps={args.steps}", f"rollout.max_staleness={staleness}"])
        if (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()
        t = time.time()
        train(cfg, resume=str(start))
        results[name] = summarize(_rows(run_dir), args.target) | {"wall_s": time.time() - t}

    s, a = results["sync"], results["async"]
    ratio = lambda x, y: (x / y) if x and y else None
    results["async_over_sync"] = {
        "step_time": ratio(a["step_s_median"], s["step_s_median"]),
        "time_to_target": ratio(a["time_to_target_s"], s["time_to_target_s"]),
    }
    print(f"{'':<8}{'step s':>8}{'wait s':>8}{'gen s':>8}{'update s':>9}{'sync wait':>10}{'sync s':>8}{'lag':>6}{'to ' + str(args.target):>10}  accuracy by step")
    for name in ("sync", "async"):
        r = results[name]
        reach = f"{r['time_to_target_s']:.0f} s" if r["time_to_target_s"] is not None else "not reached"
        acc = " ".join(f"{st}:{v:.2f}" for st, v in r["accuracy"])
        print(f"{name:<8}{r['step_s_median']:>8.2f}{r['rollout_wait_s_median']:>8.2f}{r['generate_s_median']:>8.2f}"
              f"{r['update_s_median']:>9.2f}{r['sync_wait_s_median']:>10.2f}{r['sync_s_median']:>8.2f}{r['policy_lag_mean']:>6.2f}{reach:>10}  {acc}")
    print(f"async / sync: step time {results['async_over_sync']['step_time']}, time to target {results['async_over_sync']['time_to_target']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
