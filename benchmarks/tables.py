"""Build the performance tables of README.md and docs/benchmarks.md from the benchmarks' JSON.

    python benchmarks/tables.py            # rewrite every marked table from benchmarks/results/*.json
    python benchmarks/tables.py --check    # exit 1 if a document differs from what the JSON gives

A table lives in a document between `<!-- table: NAME -->` and `<!-- /table -->`; the lines in
between belong to this script. Each table names the host (CPU model and speed flag), date,
commit and command of the JSON it comes from. A benchmark publishes its figures by writing
its JSON into benchmarks/results/ (`--out benchmarks/results/NAME.json`); runs/ is for the rest.
When code under rlreason/ changed after a results file's commit, the script says so on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", ROOT / "docs" / "benchmarks.md"]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trl_bench import CONFIGS, breakdown_shares, med_range, ratios, summarize  # noqa: E402


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path.relative_to(ROOT)}: missing; a table needs it (run the benchmark with --out {path.relative_to(ROOT)})")
    return json.loads(path.read_text())


def source(d: dict) -> str:
    return f"{d['host']}, {d['date']}, commit {d['commit']}: `{d['command']}`"


def trl_comparison(d: dict) -> list[str]:
    target = d["spec"]["target"]
    rows = [f"Measured on {source(d)}. {d['spec']['repeats']} rounds, each system once a round in a rotated order; "
            f"median (min-max) over the rounds. A run's step time is the median of its steps 2-{d['spec']['steps']}.", "",
            f"| configuration | s / step | RL s to {target} held-out | steps to {target} | held-out at step 0 -> best | set-up s | peak RSS GiB |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in d["systems"]:
        s = summarize(d["results"][name], target)
        reached = f" ({s['reached']} of {s['ok']} runs)" if s["reached"] < s["ok"] else ""
        rows.append(f"| `{name}`: {CONFIGS[name][1]} | {med_range(s['step_s'])} | {med_range(s['time_to_target_s'], '.1f')}{reached} | "
                    f"{med_range(s['target_step'], 'd')} | {med_range(s['accuracy_start'], '.3f')} -> {med_range(s['accuracy_best'], '.3f')} | "
                    f"{med_range(s['setup_s'], '.0f')} | {med_range(s['peak_rss_gib'])} |")
    return rows


def trl_ratios(d: dict) -> list[str]:
    target = d["spec"]["target"]
    ours = next(n for n in d["systems"] if CONFIGS[n][0] == "ours")
    rows = ["| ours / theirs, round by round | step time | time to " + str(target) + " |", "| --- | --- | --- |"]
    for name in d["systems"]:
        if CONFIGS[name][0] != "ours":
            o, t = d["results"][ours], d["results"][name]
            rows.append(f"| `{ours}` / `{name}` | {med_range(ratios(o, t, 'step_s_median'))}x | {med_range(ratios(o, t, 'time_to_target_s'))}x |")
    return rows


def trl_search(d: dict) -> list[str]:
    if not d.get("search"):
        return ["(this run had no search)"]
    rows = [f"Each configuration once, {d['spec']['search_steps']} steps, the median of steps 2-{d['spec']['search_steps']}; "
            f"the fastest of each side (bold) went on to the comparison. From the same run ({d['date']}).", "",
            "| side | configuration | s / step |", "| --- | --- | --- |"]
    for name, e in sorted(d["search"].items(), key=lambda kv: (list(CONFIGS).index(kv[0]))):
        r = e["runs"][0]
        res = r.get("result")
        fig = f"{res['step_s_median']:.2f}" if res and res.get("step_s_median") is not None else f"failed: {r.get('error')}"
        bold = "**" if name in d["systems"] else ""
        rows.append(f"| {CONFIGS[name][0]} | {bold}`{name}`{bold}: {CONFIGS[name][1]} | {bold}{fig}{bold} |")
    return rows


def trl_breakdown(d: dict) -> list[str]:
    rows = ["| configuration | share of step time, median of the runs (steps >= 2) |", "| --- | --- |"]
    for name in d["systems"]:
        shares = breakdown_shares(d["results"][name])
        src = "metrics.jsonl" if CONFIGS[name][0] == "ours" else "TRL's own timers"
        parts = ", ".join(f"{k} {100 * statistics.median(v):.0f}%" for k, v in shares.items() if statistics.median(v) >= 0.005)
        rows.append(f"| `{name}` ({src}) | {parts} |")
    return rows


def placement(d: dict) -> list[str]:
    rows = [f"Measured on {source(d)}. {d['repeats']} rounds (layouts in a rotated order, then bare vLLM in a fresh process), "
            f"median (min-max) over the rounds; each run's steps 2-{d['steps'] - 1} (the last step's time holds the final evaluation).", "",
            "| layout | s / step | sync share of the step | loop tokens/s | bare vLLM tokens/s | rollout ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in d["layouts"].items():
        col = lambda k, f=".2f": med_range([r[k] for r in runs], f)  # noqa: E731
        rows.append(f"| {name} | {col('step_s')} | {col('sync_frac', '.3f')} | {col('loop_generate_tok_s', '.0f')} | "
                    f"{col('bare_vllm_tok_s', '.0f')} | {col('rollout_ratio')} |")
    return rows


def rollout_overhead(d: dict) -> list[str]:
    rows = [f"Measured on {source(d)}. {d['repeats']} rounds of {d['calls']} measured calls per layout, median (min-max) over the rounds.", "",
            "| layout | loop's call / bare vLLM (tokens/s) | vLLM inside the engine's actor / bare | vLLM's share of the loop's call | our decoding's share | the same completions |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in d["layouts"].items():
        col = lambda k, f=".2f": med_range([r[k] for r in runs], f)  # noqa: E731
        same = "yes" if all(r["same_tokens"] for r in runs) else "no"
        rows.append(f"| {name} | {col('driver_ratio')} | {col('vllm_ratio')} | {col('vllm_share')} | {col('decode_share', '.3f')} | {same} |")
    return rows


def learner() -> list[str]:
    """learner_bench's JSON files in benchmarks/results/learner/, one row per configuration,
    median (min-max) over its files (one file per round)."""
    files = sorted((RESULTS / "learner").glob("*.json"))
    if not files:
        raise SystemExit("benchmarks/results/learner/: no learner_bench JSON; a table needs them")
    groups: dict[tuple, list[dict]] = {}
    for f in files:
        d = json.loads(f.read_text())
        key = (d["learner"], d["compute_dtype"].replace("torch.", ""), d["attn_implementation"], d["params"], d["rows"], d["tokens"],
               " ".join(o for o in d["overrides"] if not o.startswith("model.cache_dir")))
        groups.setdefault(key, []).append(d)
    first = json.loads(files[0].read_text())
    dates = sorted(json.loads(f.read_text())["date"] for f in files)
    commits = sorted({json.loads(f.read_text())["commit"] for f in files})
    rows = [f"Measured on {first['host']}, {dates[0]} to {dates[-1]}, commit {', '.join(commits)}; "
            f"{len(files)} runs of `python benchmarks/learner_bench.py` (the commands below), one figure per run: "
            "its median update. Median (min-max) over the runs of each configuration.", "",
            "| learner, compute, attention | model, batch | threads | runs | update s | tokens/s | TFLOP/s | peak RSS GiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (lrn, dtype, attn, params, nrows, tokens, _), ds in groups.items():
        col = lambda k, f: med_range([d[k] for d in ds], f)  # noqa: E731
        rows.append(f"| {lrn}, {dtype}, {attn} | {params / 1e6:.1f}M, {nrows} rows, {tokens} tokens | {ds[0]['threads']} | {len(ds)} | "
                    f"{col('update_s_median', '.3f')} | {col('tokens_per_s', '.0f')} | {col('tflops', '.3f')} | {col('peak_rss_gib', '.2f')} |")
    return rows


TABLES = {
    "trl_bench/comparison": lambda: trl_comparison(load("trl_bench")),
    "trl_bench/ratios": lambda: trl_ratios(load("trl_bench")),
    "trl_bench/search": lambda: trl_search(load("trl_bench")),
    "trl_bench/breakdown": lambda: trl_breakdown(load("trl_bench")),
    "placement_bench": lambda: placement(load("placement_bench")),
    "learner_bench": learner,
    "rollout_overhead": lambda: rollout_overhead(load("rollout_overhead")),
}


def rebuild(text: str, doc: str) -> str:
    """The document with every marked table rebuilt."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.startswith("<!-- table: ") and line.endswith(" -->"):
            name = line[len("<!-- table: "):-len(" -->")]
            if name not in TABLES:
                raise SystemExit(f"{doc}: unknown table {name!r}; known: {sorted(TABLES)}")
            end = next((j for j in range(i, len(lines)) if lines[j] == "<!-- /table -->"), None)
            if end is None:
                raise SystemExit(f"{doc}: table {name!r} has no closing <!-- /table -->")
            out += TABLES[name]()
            i = end
    return "\n".join(out)


def stale_warnings() -> list[str]:
    """For each commit that results were measured at: the files under rlreason/ changed since
    (the reader judges whether they touch what was measured)."""
    by_commit: dict[str, list[str]] = {}
    for path in sorted(RESULTS.rglob("*.json")):
        commit = json.loads(path.read_text()).get("commit", "").split("+")[0]
        by_commit.setdefault(commit, []).append(str(path.relative_to(RESULTS)))
    notes = []
    for commit, files in by_commit.items():
        try:
            changed = subprocess.run(["git", "diff", "--name-only", f"{commit}..HEAD", "--", "rlreason"], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout.split()
        except (OSError, subprocess.CalledProcessError):
            continue
        if changed:
            notes.append(f"{len(files)} result file(s) measured at {commit} ({files[0]}{', ...' if len(files) > 1 else ''}): "
                         f"changed since under rlreason/: {', '.join(changed)}; measure again if that touches what they measure")
    return notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a document's tables differ from the JSON")
    args = ap.parse_args()
    differ = []
    for doc in DOCS:
        text = doc.read_text()
        new = rebuild(text, str(doc.relative_to(ROOT)))
        if new != text:
            differ.append(str(doc.relative_to(ROOT)))
            if not args.check:
                doc.write_text(new)
    for note in stale_warnings():
        print(note, file=sys.stderr)
    if args.check and differ:
        raise SystemExit(f"tables differ from benchmarks/results/*.json in: {', '.join(differ)} (run python benchmarks/tables.py)")
    print(("up to date: " if args.check or not differ else "rewrote: ") + ", ".join(differ or [str(d.relative_to(ROOT)) for d in DOCS]))


if __name__ == "__main__":
    main()
