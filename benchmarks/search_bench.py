"""Test-time search on the addition task's warm-started policy (issue 20's figures): every
strategy at every budget, with 3 engine seeds, reported as median and range.

    python -m rlreason prm recipes/addition_prm.yaml        # first: labels, the PRM, the ORM, the revision model
    python3 benchmarks/search_bench.py [--prm-run runs/addition_prm] [--seeds 0 1 2] [--budgets 4 16 64]
        [--limit 500] [--out runs/search_bench]

For each seed, two `rlreason eval --search` runs on the held-out problems (--dataset addition):
- the policy (the recipe's warm start): majority, best-of-N by the outcome RM and by the PRM,
  weighted best-of-N by the PRM, beam search and DVTS with the PRM (beam width 4), and best-of-N
  by the verifier (the oracle ceiling), with the compute-optimal allocation over them;
- the revision model: sequential revisions (chains of 4), picked by the PRM's weighted vote, and
  by the verifier (oracle).
The runs go to OUT/policy_sS and OUT/revision_sS (rerun: finished parts are skipped). The
summary, with host, date and commit, goes to OUT/search_bench.json; the tables are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.host import host  # noqa: E402


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def med(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prm-run", default="runs/addition_prm")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--out", default="runs/search_bench")
    args = ap.parse_args()

    prm_run = Path(args.prm_run)
    report = json.loads((prm_run / "prm_report.json").read_text())
    policy, prm, orm = report["policy"]["path"], report["prm"], report["orm"]["path"]
    revision = (report.get("revision") or {}).get("path")
    common = ["--dataset", "addition", "--limit", str(args.limit), "--temperature", "1.0", "--max-tokens", "48",
              "--max-model-len", "256", "--budget", *map(str, args.budgets)]
    out = Path(args.out)
    runs = {"policy": [], "revision": []}
    for seed in args.seeds:
        t0 = time.time()
        run([sys.executable, "-m", "rlreason", "eval", policy, *common, "--seed", str(seed), "--out", str(out / f"policy_s{seed}"),
             "--search", "majority", f"best_of_n:rm:{orm}", f"best_of_n:prm:{prm}", f"weighted:prm:{prm}", f"beam:prm:{prm}",
             f"dvts:prm:{prm}", "best_of_n:verifier", "--beam-width", "4"])
        runs["policy"].append(json.loads((out / f"policy_s{seed}" / "search.json").read_text()) | {"bench_wall_s": time.time() - t0})
        if revision:
            t0 = time.time()
            run([sys.executable, "-m", "rlreason", "eval", revision, *common, "--seed", str(seed), "--out", str(out / f"revision_s{seed}"),
                 "--search", f"revise:prm:{prm}", "revise:verifier", "--chain", "4"])
            runs["revision"].append(json.loads((out / f"revision_s{seed}" / "search.json").read_text()) | {"bench_wall_s": time.time() - t0})

    def short(label: str) -> str:
        return label.replace(f"prm:{prm}", "PRM").replace(f"rm:{orm}", "ORM")

    table: dict = {}
    for kind, reports in runs.items():
        for r in reports:
            for label, by in r["summary"].items():
                for b, m in by.items():
                    cell = table.setdefault(short(label), {}).setdefault(str(b), {"accuracy": [], "generated_tokens": [], "scorer_tokens": [], "wall_s": []})
                    cell["accuracy"].append(m["accuracy"])
                    cell["generated_tokens"].append(m["generated_tokens"])
                    cell["scorer_tokens"].append(m["scorer_tokens"])
                    if (t := r["timing_s"].get(f"{label}@{b}")) is not None:
                        cell["wall_s"].append(t)
    summary = {lab: {b: {k: med(v) for k, v in cell.items() if v} for b, cell in by.items()} for lab, by in table.items()}
    allocs = [r["allocation"] for r in runs["policy"] if r.get("allocation")]
    alloc = None
    if allocs:
        alloc = {"reference": short(allocs[0]["reference"]["strategy"]) + f"@{allocs[0]['reference']['budget']}",
                 "accuracy": med([a["test"]["allocation"]["accuracy"] for a in allocs]),
                 "reference_accuracy": med([a["test"]["reference"]["accuracy"] for a in allocs]),
                 "generated_tokens": med([a["test"]["allocation"]["generated_tokens"] for a in allocs]),
                 "reference_generated_tokens": med([a["test"]["reference"]["generated_tokens"] for a in allocs]),
                 "token_ratio": med([a["token_ratio"] for a in allocs]),
                 "choices": [{b: f"{short(c['strategy'])}@{c['budget']}" for b, c in a["bins"]["choice"].items()} for a in allocs]}
    parts = {}
    for r in runs["policy"]:
        for part in ("engine_start", "sample"):
            parts.setdefault(part, []).append(r["timing_s"].get(part, 0.0))
        for label in r["timing_s"]:
            if label.startswith("score "):
                parts.setdefault(short(label), []).append(r["timing_s"][label])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"host": host(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "commit": commit, "command": " ".join(sys.argv),
              "prm_run": str(prm_run), "policy": policy, "revision_model": revision, "problems": args.limit, "seeds": args.seeds,
              "summary": summary, "allocation": alloc, "shared_parts_s": {k: med(v) for k, v in parts.items()},
              "prm_report": {k: report[k] for k in ("labels", "heldout", "prm_train_s", "orm", "revision", "wall_s")}}
    (out / "search_bench.json").write_text(json.dumps(result, indent=1) + "\n")

    def rng(m: dict, fmt: str = ".3f") -> str:
        return f"{m['median']:{fmt}} ({m['min']:{fmt}}-{m['max']:{fmt}})" if m["runs"] > 1 else f"{m['median']:{fmt}}"

    print(f"\n{result['host']}, {result['cores']} cores, {result['date']}, commit {commit}; {args.limit} problems, seeds {args.seeds}")
    print("\n| strategy | " + " | ".join(f"N={b}: accuracy" for b in args.budgets) + " |")
    print("| --- |" + " --- |" * len(args.budgets))
    for lab, by in summary.items():
        print(f"| {lab} | " + " | ".join(rng(by[str(b)]["accuracy"]) if str(b) in by else "" for b in args.budgets) + " |")
    print("\n| strategy | " + " | ".join(f"N={b}: tokens generated + read, wall s" for b in args.budgets) + " |")
    print("| --- |" + " --- |" * len(args.budgets))
    for lab, by in summary.items():
        cells = []
        for b in map(str, args.budgets):
            if b in by:
                c = by[b]
                cells.append(f"{c['generated_tokens']['median']:.0f} + {c['scorer_tokens']['median']:.0f}" + (f", {rng(c['wall_s'], '.0f')} s" if "wall_s" in c else ""))
            else:
                cells.append("")
        print(f"| {lab} | " + " | ".join(cells) + " |")
    if alloc:
        print(f"\ncompute-optimal (test half): accuracy {rng(alloc['accuracy'])} with {rng(alloc['generated_tokens'], '.0f')} tokens a problem; "
              f"{alloc['reference']}: {rng(alloc['reference_accuracy'])} with {rng(alloc['reference_generated_tokens'], '.0f')}; "
              f"token ratio {rng(alloc['token_ratio'], '.2f')}")
        print("choices per bin (0: hardest):", alloc["choices"])
    print("shared parts (s):", {k: rng(v, '.1f') for k, v in result["shared_parts_s"].items()})
    print(f"wrote {out / 'search_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
