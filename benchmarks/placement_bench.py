"""Placement figures on this machine: real loop steps of recipes/addition_grpo_1m.yaml (the 1.1M model) for each layout
(split with 1 and 2 rollout workers through the object store, and 2 through a gloo broadcast;
colocated), from the warm-started tiny model, then bare vLLM on the same prompts.

For each layout it reports
- sync_frac: weight-sync time over step time (the loop's timing/sync and timing/step), and
- rollout_ratio: rollout throughput inside the loop (tokens / wall time of the loop's
  engine.generate calls, Ray, sharding and our decoding of the token ids included) over bare
  vLLM `LLM.generate` with what our engine asks of vLLM (the same SamplingParams:
  detokenize=False, flat logprobs, logprobs=0, the same per-request seeds), on the same
  prompts, from the same warm-started weights, in a fresh child process after the loop's
  actors are gone (one engine with every core, as VLLMEngine builds it).

    python benchmarks/placement_bench.py [--steps 7] [--repeats 3] [--out runs/placement_bench.json]

Every layout and the bare engine run --repeats times (rounds, the layouts in a rotated order);
the first step and the first generate call of each run are warm-up and not measured. The
warm-started model is trl_bench's (1000 steps on the imperfect teacher, cached under --work):
its groups are mixed, so every step carries a real update.
The loop's engine is wrapped to time it, so the loop takes the plain generate path here (no
generate_stream: scoring does not overlap generation in these figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so that tests.plugins:... rewards import
RECIPE = ROOT / "recipes" / "addition_grpo_1m.yaml"

# (ray.placement, ray.rollout_workers, ray.transport)
LAYOUTS = [("split", 1, "auto"), ("split", 2, "auto"), ("split", 2, "gloo"), ("colocated", 1, "auto")]


class Timed:
    """The loop's engine, with the wall time and token count of each training generate."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    @property
    def worker_restarts(self):
        return getattr(self.engine, "worker_restarts", 0)

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        t0 = time.perf_counter()
        groups = self.engine.generate(prompts, n, temperature, top_p, max_tokens, seed)
        dt = time.perf_counter() - t0
        if temperature > 0:  # training rollouts, not the greedy evals
            tokens = sum(len(s.completion_ids) for g in groups for s in g)
            self.calls.append({"prompts": list(prompts), "n": n, "temperature": temperature, "top_p": top_p,
                               "max_tokens": max_tokens, "seed": seed, "tokens": tokens, "seconds": dt})
        return groups


def run_layout(placement: str, workers: int, transport: str, steps: int, overrides: list[str], root: Path) -> tuple[dict, list[dict]]:
    import ray

    from rlreason.cluster.actors import connect
    from rlreason.cluster.placement import build_placement
    from rlreason.config import load_config
    from rlreason.loop import run
    from rlreason.models import resolve_model

    run_dir = root / f"{placement}-{workers}-{transport}"
    cfg = load_config(RECIPE, [f"run_dir={run_dir}", f"steps={steps}", f"ray.placement={placement}",
                             f"ray.rollout_workers={workers}", f"ray.transport={transport}", *overrides])
    model = resolve_model(cfg.model)
    connect(cfg)
    try:
        engine, learner, sync = build_placement(cfg, model)
        timed = Timed(engine)
        run(cfg, timed, learner, sync, run_dir)
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # steps >= 2 (step 1 is warm-up), less the last, whose step time includes the loop's final evaluation
    rows = [r for r in rows if r["step"] >= 2 and "timing/eval" not in r]
    calls = timed.calls[1:]
    figures = {
        "placement": placement,
        "rollout_workers": workers,
        "transport": "in_process" if placement == "colocated" else ("object_store" if transport == "auto" else transport),
        "steps_measured": len(rows),
        "step_s": statistics.mean(r["timing/step"] for r in rows),
        "sync_s": statistics.mean(r["timing/sync"] for r in rows),
        "sync_frac": statistics.mean(r["timing/sync"] / r["timing/step"] for r in rows),
        "loop_generate_tok_s": sum(c["tokens"] for c in calls) / sum(c["seconds"] for c in calls),
    }
    return figures, calls


def bare_vllm(model: str, cfg_overrides: list[str]):
    """A bare vLLM LLM in this process, built as VLLMEngine builds it (every core), caches warm."""
    from rlreason.config import load_config
    from rlreason.rollout.vllm_engine import VLLMEngine

    cfg = load_config(RECIPE, cfg_overrides)
    llm = VLLMEngine(model, cfg.engine_dtype, cfg.rollout.max_model_len, cfg.rollout.kv_cache_gib, cfg.rollout.seed,
                     enforce_eager=cfg.rollout.enforce_eager).llm
    llm.generate(["1+2>"] * 8, use_tqdm=False)
    return llm


def bare_tok_s(llm, calls: list[dict]) -> tuple[float, int]:
    """Bare `LLM.generate` on the loop's prompts, asking vLLM for what VLLMEngine.generate asks
    (no detokenization, flat logprobs of the sampled tokens, the same per-request seeds)."""
    from vllm import SamplingParams

    tokens = seconds = 0.0
    for c in calls:
        params = [SamplingParams(n=c["n"], temperature=c["temperature"], top_p=c["top_p"], max_tokens=c["max_tokens"],
                                 logprobs=0, seed=c["seed"] + j * c["n"], detokenize=False, flat_logprobs=True)
                  for j in range(len(c["prompts"]))]
        t0 = time.perf_counter()
        outs = llm.generate(c["prompts"], params, use_tqdm=False)
        seconds += time.perf_counter() - t0
        tokens += sum(len(o.token_ids) for out in outs for o in out.outputs)
    return tokens / seconds, int(tokens)


def run_bare(model: str, overrides: list[str], call_sets: list[list[dict]], tmp: Path) -> list[tuple[float, int]]:
    """(tokens/s, tokens) of bare vLLM on each set of recorded calls, in a fresh child process of
    this script (one built in a driver process after Ray ran ~4x slower than the same engine in
    an actor), with the environment the actors have."""
    spec = tmp / "bare.json"
    spec.write_text(json.dumps({"model": model, "overrides": overrides, "calls": call_sets}))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "ERROR"}
    out = subprocess.run([sys.executable, __file__, "--bare", str(spec)], check=True, capture_output=True, text=True, env=env)
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=7, help="loop steps per layout; steps >= 2 are measured")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="runs/placement_bench.json")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides for every layout")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/rlreason/trl_bench"), help="the warm-start cache (trl_bench's)")
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # internal: the bare-vLLM child process
    args = ap.parse_args()
    if args.bare:
        spec = json.loads(Path(args.bare).read_text())
        llm = bare_vllm(spec["model"], spec["overrides"])
        bare_tok_s(llm, spec["calls"][0][:1])  # untimed: the first seeded call pays one-off costs, as step 1 did in the loop
        print(json.dumps([bare_tok_s(llm, calls) for calls in spec["calls"]]))
        return
    from host import provenance
    from trl_bench import default_warm_model

    saved = {**provenance(), "steps": args.steps, "repeats": args.repeats, "load_avg_start": os.getloadavg()}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    warm_dir = default_warm_model(work)
    # optim.lr=1e-30: every update is computed in full (the groups are mixed) but moves no fp32
    # weight, so every step samples from the warm-started weights, as bare vLLM does: the same
    # completions, token for token (checked: the token counts must match)
    overrides = [f"model.path={warm_dir}", "warm_start.enabled=false", "optim.lr=1e-30", "eval.size=32", "eval.every=0",
                 "ray.num_cpus=4", "rollout.kv_cache_gib=1", *args.set]
    saved["overrides"] = overrides
    per_layout: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        k = r % len(LAYOUTS)
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for placement, workers, transport in LAYOUTS[k:] + LAYOUTS[:k]:
                t0 = time.time()
                figures, calls = run_layout(placement, workers, transport, args.steps, overrides, Path(tmp))
                figures["wall_s"] = time.time() - t0
                runs.append((figures, calls))
            # after every actor is gone, on each layout's measured calls (the same prompts and
            # seeds: the same config seed)
            bare = run_bare(str(warm_dir), overrides, [calls for _, calls in runs], Path(tmp))
        for (figures, calls), (tok_s, tokens) in zip(runs, bare):
            figures["bare_vllm_tok_s"] = tok_s
            figures["loop_tokens"], figures["bare_tokens"] = sum(c["tokens"] for c in calls), tokens
            figures["rollout_ratio"] = figures["loop_generate_tok_s"] / tok_s
            figures["round"] = r
            print(json.dumps(figures), flush=True)
            per_layout.setdefault(f"{figures['placement']}-{figures['rollout_workers']}-{figures['transport']}", []).append(figures)
    saved["layouts"] = per_layout
    saved["load_avg_end"] = os.getloadavg()
    print(report(saved))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {args.out}")


def report(saved: dict) -> str:
    from trl_bench import med_range

    lines = [f"{saved['host']}, {saved['date']}, commit {saved['commit']}: {saved['command']}",
             "same completions, token for token: " + ("yes" if all(r["loop_tokens"] == r["bare_tokens"] for runs in saved["layouts"].values() for r in runs) else "NO"),
             f"{'layout':28s} {'step s':>18s} {'sync share':>18s} {'loop tok/s':>22s} {'bare tok/s':>22s} {'rollout ratio':>18s}"]
    for name, runs in saved["layouts"].items():
        col = lambda k, f=".2f": med_range([r[k] for r in runs], f)  # noqa: E731
        lines.append(f"{name:28s} {col('step_s'):>18s} {col('sync_frac', '.3f'):>18s} {col('loop_generate_tok_s', '.0f'):>22s} "
                     f"{col('bare_vllm_tok_s', '.0f'):>22s} {col('rollout_ratio'):>18s}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
