"""Placement figures on this machine: a few real loop steps for each layout (split with 1 and
2 rollout workers through the object store, and 2 through a gloo broadcast; colocated), the tiny model, then bare vLLM on the same prompts.

For each layout it reports
- sync_frac: weight-sync time over step time (the loop's timing/sync and timing/step), and
- rollout_ratio: rollout throughput inside the loop (tokens / wall time of the loop's
  engine.generate calls, Ray and sharding included) over bare vLLM `LLM.generate` on the same
  prompts with the same sampling parameters, in a fresh child process of the same run, after
  the loop's actors are gone (one engine with every core, as VLLMEngine builds it).

    python benchmarks/placement_bench.py [--steps 4] [--out placement_bench.json]
    python benchmarks/placement_bench.py --set reward=tests.plugins:parity_reward   # mixed groups

The untrained tiny model earns no math reward, so by default no group carries a signal and
the update is cheap; the parity reward (a test plug-in) gives every step a real update.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so that tests.plugins:... rewards import

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


def run_layout(placement: str, workers: int, transport: str, steps: int, overrides: list[str], root: Path) -> tuple[dict, list[dict], str]:
    import ray

    from rlreason.cluster.actors import connect
    from rlreason.cluster.placement import build_placement
    from rlreason.config import load_config
    from rlreason.loop import run
    from rlreason.models import resolve_model

    run_dir = root / f"{placement}-{workers}-{transport}"
    cfg = load_config(None, [f"run_dir={run_dir}", f"steps={steps}", f"ray.placement={placement}",
                             f"ray.rollout_workers={workers}", f"ray.transport={transport}", *overrides])
    model = resolve_model(cfg.model)
    connect(cfg)
    try:
        engine, learner, sync = build_placement(cfg, model)
        timed = Timed(engine)
        run(cfg, timed, learner, sync, run_dir)
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][2:]  # steps >= 2: warm
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
    return figures, calls, str(run_dir / "final")


def bare_vllm(model: str, cfg_overrides: list[str]):
    """A bare vLLM LLM in this process, built as VLLMEngine builds it (every core), caches warm."""
    from rlreason.config import load_config
    from rlreason.rollout.vllm_engine import VLLMEngine

    cfg = load_config(None, cfg_overrides)
    llm = VLLMEngine(model, cfg.engine_dtype, cfg.rollout.max_model_len, cfg.rollout.kv_cache_gib, cfg.rollout.seed,
                     enforce_eager=cfg.rollout.enforce_eager).llm
    llm.generate(["1+2>"] * 8, use_tqdm=False)
    return llm


def bare_tok_s(llm, calls: list[dict]) -> float:
    """Bare `LLM.generate` on the loop's prompts and sampling parameters (the same per-request seeds)."""
    from vllm import SamplingParams

    tokens = seconds = 0.0
    for c in calls:
        params = [SamplingParams(n=c["n"], temperature=c["temperature"], top_p=c["top_p"], max_tokens=c["max_tokens"],
                                 logprobs=0, seed=c["seed"] + j * c["n"]) for j in range(len(c["prompts"]))]
        t0 = time.perf_counter()
        outs = llm.generate(c["prompts"], params, use_tqdm=False)
        seconds += time.perf_counter() - t0
        tokens += sum(len(o.token_ids) for out in outs for o in out.outputs)
    return tokens / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="placement_bench.json")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides for every layout")
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # internal: the bare-vLLM child process
    args = ap.parse_args()
    if args.bare:
        spec = json.loads(Path(args.bare).read_text())
        llm = bare_vllm(spec["model"], spec["overrides"])
        bare_tok_s(llm, spec["calls"][0][:1])  # untimed: the first seeded call pays one-off costs, as step 1 did in the loop
        print(json.dumps([bare_tok_s(llm, calls) for calls in spec["calls"]]))
        return
    overrides = ["warm_start.enabled=false", "eval.size=32", "eval.every=0", "ray.num_cpus=4", "rollout.kv_cache_gib=1",
                 *args.set]
    runs, load0 = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for placement, workers, transport in LAYOUTS:
            t0 = time.time()
            figures, calls, final = run_layout(placement, workers, transport, args.steps, overrides, Path(tmp))
            figures["wall_s"] = time.time() - t0
            runs.append((figures, calls))
        # after every actor is gone: bare vLLM in a fresh process of this run (one built in this
        # driver process, after Ray, ran ~4x slower than the same engine in an actor), on every
        # layout's prompts (they are the same prompts and seeds: same config seed)
        spec = Path(tmp) / "bare.json"
        spec.write_text(json.dumps({"model": final, "overrides": overrides, "calls": [calls for _, calls in runs]}))
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "ERROR"}  # as the actors have them
        out = subprocess.run([sys.executable, __file__, "--bare", str(spec)], check=True, capture_output=True, text=True, env=env)
        bare = json.loads(out.stdout.strip().splitlines()[-1])
        results = []
        for (figures, _), tok_s in zip(runs, bare):
            figures["bare_vllm_tok_s"] = tok_s
            figures["rollout_ratio"] = figures["loop_generate_tok_s"] / tok_s
            print(json.dumps(figures), flush=True)
            results.append(figures)
    # other work on the machine skews every figure: record how busy it was
    machine = {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(), "steps": args.steps,
               "overrides": overrides}
    Path(args.out).write_text(json.dumps({"machine": machine, "layouts": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
