"""Self-improvement on the curriculum at equal wall time (issue 21, docs/curriculum.md).

Runs each recipe with `rlreason train RECIPE max_minutes=M rollout.seed=S` (the same cached
warm start for all; only the sampling seeds differ between repeats), the recipes in a rotated
order in each repeat, one at a time, and reads each run's metrics.jsonl:

- the frontier at the end, and the RL minutes at which it first reached each difficulty;
- held-out greedy accuracy per difficulty at the end (the evaluation of the last step);
- tokens sampled per difficulty (probes and refills included), and steps taken.

Prints median (min-max) over the repeats and writes runs/self_improvement/results.json. A run
directory that exists already is read as it is (rerun into the same --out to print the table
again without training).

    python benchmarks/self_improvement.py --minutes 5 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.host import provenance  # noqa: E402
from rlreason.metrics import curriculum_table, read_metrics, rl_elapsed  # noqa: E402

RECIPES = {
    "GRPO": "recipes/addition_curriculum.yaml",
    "GRPO + probe": "recipes/addition_curriculum_probe.yaml",
    "EI, verifier": "recipes/addition_curriculum_ei.yaml",
    "EI, majority": "recipes/addition_curriculum_majority.yaml",
}


def summarize(rows: list[dict]) -> dict:
    """One run's figures from its metrics records."""
    levels, table = curriculum_table(rows)
    reached: dict[int, float] = {}
    tokens: dict[int, int] = {}
    for elapsed, r in rl_elapsed(rows):
        if "curriculum/frontier" in r:
            reached.setdefault(int(r["curriculum/frontier"]), round(elapsed / 60, 2))
        for k, v in r.items():
            if k.startswith("curriculum/d") and k.endswith("/tokens"):
                d = int(float(k.split("/")[1][1:]))
                tokens[d] = tokens.get(d, 0) + int(v)
    steps = [r for r in rows if r["step"] >= 1]
    return {
        "steps": len(steps),
        "rl_minutes": round(sum(r.get("timing/step", 0.0) for r in steps) / 60, 2),
        "frontier": int(steps[-1]["curriculum/frontier"]) if steps else None,
        "reached_at_minutes": reached,
        "accuracy": {int(d): a for d, a in table[-1][2].items()} if table else {},
        "tokens": tokens,
        "tokens_total": sum(tokens.values()),
        "gold_agree": statistics.mean(r["labels/gold_agree"] for r in steps if "labels/gold_agree" in r) if any("labels/gold_agree" in r for r in steps) else None,
    }


def fmt(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1 else f"{med:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="RL minutes for each run (max_minutes)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per recipe, with rollout.seed 0, stride, 2 * stride, ...")
    ap.add_argument("--seed-stride", type=int, default=1_000_003,
                    help="rollout.seed of repeat r is r * stride. Each sample's seed is rollout.seed + its index, so a "
                         "stride of 1 gives repeats that share most of their samples' seeds (the figures of 2026-12-05 "
                         "in docs/curriculum.md were taken so)")
    ap.add_argument("--only", nargs="*", default=list(RECIPES), help=f"which of {list(RECIPES)}")
    ap.add_argument("--out", default="runs/self_improvement")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in RECIPES if n in args.only]
    results: dict[str, list[dict]] = {n: [] for n in names}
    prov = provenance()  # host, date (the start), commit, command
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]  # rotated: no recipe always runs first
        for name in order:
            seed = rep * args.seed_stride
            run_dir = out / f"{name.replace(' ', '').replace(',', '_').replace('+', '_')}-seed{seed}"
            cmd = [sys.executable, "-m", "rlreason", "train", RECIPES[name], f"run_dir={run_dir}", f"max_minutes={args.minutes}",
                   f"rollout.seed={seed}", *args.set]
            print("$", " ".join(cmd[1:]), flush=True)
            if run_dir.exists():
                print(f"  {run_dir} exists: read as it is", flush=True)
            else:
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            fig = summarize(read_metrics(run_dir / "metrics.jsonl"))
            results[name].append(fig)
            print(f"  {name} seed {seed}: {fig['steps']} steps in {fig['rl_minutes']} min, frontier {fig['frontier']}, "
                  f"accuracy {fig['accuracy']}, tokens {fig['tokens_total']}", flush=True)
    meta = {**prov, "started": prov["date"], "minutes": args.minutes, "repeats": args.repeats}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    levels = sorted({d for runs in results.values() for r in runs for d in r["accuracy"]})
    print(f"\n{meta['host']}, {meta['started']}, commit {meta['commit']}, {args.minutes} RL minutes a run, median (min-max) of {args.repeats}")
    print("| | steps | frontier | " + " | ".join(f"{d} digits" for d in levels) + " | tokens (M) |")
    print("| --- " * (4 + len(levels)) + "|")
    for name, runs in results.items():
        cells = [fmt([r["steps"] for r in runs], 0), fmt([r["frontier"] for r in runs], 0)]
        for d in levels:  # a difficulty is evaluated up to the frontier + eval_ahead: not in every run
            vals = [r["accuracy"][d] for r in runs if d in r["accuracy"]]
            cells.append(fmt(vals) + (f" [{len(vals)} of {len(runs)} runs]" if 0 < len(vals) < len(runs) else ""))
        cells.append(fmt([r["tokens_total"] / 1e6 for r in runs]))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\ntokens (M) per difficulty, median:")
    for name, runs in results.items():
        ds = sorted({d for r in runs for d in r["tokens"]})
        print(f"  {name}: " + ", ".join(f"{d}: {statistics.median([r['tokens'].get(d, 0) / 1e6 for r in runs]):.2f}" for d in ds))
    for name, runs in results.items():
        agree = [r["gold_agree"] for r in runs if r["gold_agree"] is not None]
        if agree:
            print(f"  {name}: majority labels that equal the gold, mean over steps: {fmt(agree)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
