"""Where a rollout's time goes inside the loop, per placement: the engine's `generate` as the
loop's driver waits for it, split into vLLM's `LLM.generate` inside the engine's process, our
decoding of its outputs into Samples (also inside), and the rest (the Ray call, sharding, the
return of the samples). Bare vLLM in a fresh process runs the same calls for the baseline.

    python benchmarks/rollout_overhead.py [--calls 6] [--repeats 3] [--out runs/rollout_overhead.json]

Each call is what a step of recipes/addition_grpo_1m.yaml sends (32 prompts x 8 samples, 48 tokens, the
loop's seeds), from trl_bench's cached warm-started model, and between two calls the learner
takes a real update on the call's samples and the weights are synced, as in the loop
(`optim.lr=1e-30`: the update is computed in full but no fp32 weight moves, so every call
samples the same completions as bare vLLM). Each call runs twice: once from the driver (what
the loop waits for), once timed inside the engine's actor (through Ray's `__ray_call__`), on
the same seeds. The first call of each run is warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "recipes" / "addition_grpo_1m.yaml"
LAYOUTS = ["split", "colocated"]


def inside(worker, prompts, n, temperature, top_p, max_tokens, seed):
    """Runs in the engine's actor: (seconds in LLM.generate, seconds decoding into Samples, tokens)."""
    engine = getattr(worker, "engine", worker)  # ColocatedWorker holds one; EngineWorker is one
    params = engine._params(len(prompts), n, temperature, top_p, max_tokens, seed)
    t0 = time.perf_counter()
    outs = engine.llm.generate(prompts, params, use_tqdm=False)
    t1 = time.perf_counter()
    groups = engine._groups(outs)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sum(len(s.completion_ids) for g in groups for s in g)


def run_layout(placement: str, overrides: list[str], calls: int, root: Path) -> tuple[dict, list[dict]]:
    import ray
    import torch

    from rlreason.algos import ADVANTAGES
    from rlreason.cluster.actors import connect
    from rlreason.cluster.placement import build_placement
    from rlreason.config import load_config
    from rlreason.data.stream import PromptStream, heldout_problems, make_task
    from rlreason.learner.batch import make_batch
    from rlreason.rewards import math_reward

    cfg = load_config(RECIPE, [f"run_dir={root / placement}", f"ray.placement={placement}", *overrides])
    task = make_task(cfg.task.name, cfg.task.digits, cfg.task.hints)
    stream = PromptStream(task, cfg.seed, exclude=heldout_problems(task, cfg.task.heldout_size, cfg.task.seed))
    ro = cfg.rollout
    connect(cfg)
    rows, specs = [], []
    try:
        engine, learner, sync = build_placement(cfg, cfg.model.path)
        actor = engine.group.actors[0] if placement == "colocated" else engine.workers[0]
        for step in range(1, calls + 2):
            problems = stream.next_batch(ro.prompts_per_step)
            prompts = [p.prompt for p in problems]
            seed = ro.seed + step * 1_000_003
            args = (prompts, ro.group_size, ro.temperature, ro.top_p, ro.max_tokens, seed)
            t0 = time.perf_counter()
            groups = engine.generate(*args)
            driver_s = time.perf_counter() - t0
            vllm_s, decode_s, tokens = ray.get(actor.__ray_call__.remote(inside, *args))
            rewards = torch.tensor([[math_reward(p.prompt, s.text, p.answer) for s in g] for p, g in zip(problems, groups)])
            learner.update(make_batch(groups, ADVANTAGES[cfg.algo.advantage](rewards, cfg.algo.std_eps), pad_id=0), ro.temperature)
            sync.push(version=step)
            if step > 1:  # the first call is warm-up
                rows.append({"driver_s": driver_s, "vllm_s": vllm_s, "decode_s": decode_s, "tokens": tokens,
                             "driver_tokens": sum(len(s.completion_ids) for g in groups for s in g)})
                specs.append({"prompts": prompts, "n": ro.group_size, "temperature": ro.temperature, "top_p": ro.top_p,
                              "max_tokens": ro.max_tokens, "seed": seed})
    finally:
        ray.shutdown()
    tok = sum(r["tokens"] for r in rows)
    figures = {
        "placement": placement,
        "calls": len(rows),
        "driver_tok_s": sum(r["driver_tokens"] for r in rows) / sum(r["driver_s"] for r in rows),
        "vllm_tok_s": tok / sum(r["vllm_s"] for r in rows),
        "decode_share": sum(r["decode_s"] for r in rows) / sum(r["driver_s"] for r in rows),
        "vllm_share": sum(r["vllm_s"] for r in rows) / sum(r["driver_s"] for r in rows),
        "same_tokens": all(r["tokens"] == r["driver_tokens"] for r in rows),
    }
    return figures, specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=6, help="measured calls per run (one more is warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="runs/rollout_overhead.json")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/rlreason/trl_bench"), help="the warm-start cache (trl_bench's)")
    args = ap.parse_args()
    from host import provenance
    from placement_bench import run_bare
    from trl_bench import default_warm_model, med_range

    saved = {**provenance(), "calls": args.calls, "repeats": args.repeats}
    warm_dir = default_warm_model(Path(args.work))
    overrides = [f"model.path={warm_dir}", "warm_start.enabled=false", "optim.lr=1e-30", "ray.num_cpus=4", "rollout.kv_cache_gib=1"]
    results: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        order = LAYOUTS[r % 2:] + LAYOUTS[:r % 2]
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for placement in order:
                runs.append(run_layout(placement, overrides, args.calls, Path(tmp)))
            bare = run_bare(str(warm_dir), overrides, [calls for _, calls in runs], Path(tmp))
        for (fig, _), (tok_s, _tokens) in zip(runs, bare):
            fig.update(bare_tok_s=tok_s, round=r, driver_ratio=fig["driver_tok_s"] / tok_s, vllm_ratio=fig["vllm_tok_s"] / tok_s)
            print(json.dumps(fig), flush=True)
            results.setdefault(fig["placement"], []).append(fig)
    saved["layouts"] = results

    print(f"{saved['host']}, {saved['date']}, commit {saved['commit']}: {saved['command']}")
    for name, runs in results.items():
        print(f"{name:10s} loop/bare {med_range([x['driver_ratio'] for x in runs])}  vLLM-in-actor/bare {med_range([x['vllm_ratio'] for x in runs])}  "
              f"vLLM share of the call {med_range([x['vllm_share'] for x in runs])}  decode share {med_range([x['decode_share'] for x in runs], '.3f')}  "
              f"same tokens {all(x['same_tokens'] for x in runs)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
