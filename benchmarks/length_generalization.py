"""Does a warm-started tiny model write sums longer than it was shown? The signal a curriculum
needs at its next difficulty, measured before any RL.

    python benchmarks/length_generalization.py --demos 3 --test 3 4 5             # 3-digit demonstrations only
    python benchmarks/length_generalization.py --demos 1 2 3 --hints --test 3 4 5  # 1-3 digits, index hints
    python benchmarks/length_generalization.py --demos 1 2 3 4 5 6 --hints --steps 2000 --test 6 7 8
    python benchmarks/length_generalization.py --demos 1 2 3 --set model.tiny.rope_theta=1e9 --test 4   # RoPE slowed (its fastest pair still turns 1 rad a token)

Warm start: Learner.warm_start on the teacher's demonstrations (its carry blind spot, the
settings of recipes/addition_grpo_1m.yaml, --steps steps), each digit count of --demos equally often. Then for
each digit count of --test, 40 problems: 8 samples each at temperature 1 (sample accuracy and
pass@8) and one greedy completion, by HF generate (no vLLM: the warm start and the sampling are
the same code on any machine). Prints a table with the host, writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # appended: a PYTHONPATH tree comes first
from benchmarks.host import host


def sample_and_score(model, tok, problems: list[tuple[str, str]], samples: int, budget: int, strip: bool = False) -> dict:
    """For each (prompt, final answer): `samples` completions at temperature 1 and one greedy, by
    HF generate, each right when it ends with the final answer (after strip() with strip=True).
    Sample accuracy, pass@samples, greedy accuracy, and the last greedy completion."""
    import torch

    right = anyright = greedy = 0
    example = ""
    for prompt, final in problems:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            sampled = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=budget,
                                     num_return_sequences=samples, pad_token_id=tok.eos_token_id)
            first = model.generate(ids, do_sample=False, max_new_tokens=budget, pad_token_id=tok.eos_token_id)
        texts = tok.batch_decode(sampled[:, ids.shape[1]:], skip_special_tokens=True)
        ok = [(t.strip() if strip else t).endswith(final) for t in texts]
        right, anyright = right + sum(ok), anyright + any(ok)
        text = tok.decode(first[0, ids.shape[1]:], skip_special_tokens=True)
        greedy += (text.strip() if strip else text).endswith(final)
        example = f"{prompt} {text}"
    return {"sample_acc": right / (len(problems) * samples), f"pass@{samples}": anyright / len(problems),
            "greedy": greedy / len(problems), "greedy_example": example}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demos", type=int, nargs="+", default=[3], help="digit counts the teacher demonstrates")
    ap.add_argument("--hints", action="store_true", help="task.hints: index hints before each digit and column")
    ap.add_argument("--steps", type=int, default=1000, help="warm-start steps (batch 64)")
    ap.add_argument("--test", type=int, nargs="+", default=[3, 4, 5], help="digit counts to sample")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides (model.tiny.*, warm_start.*)")
    ap.add_argument("--out", default="runs/bench/length_generalization.json")
    args = ap.parse_args(argv)

    import torch

    from rlreason.config import load_config
    from rlreason.data.addition import AdditionTask
    from rlreason.data.curriculum import Mixture
    from rlreason.data.stream import demonstrations
    from rlreason.learner.policy import Learner
    from rlreason.models import resolve_model

    cfg = load_config("recipes/addition_grpo_1m.yaml", [f"warm_start.steps={args.steps}", *args.set])
    path = resolve_model(cfg.model)
    learner = Learner(path, cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, 0, 10)
    ws = cfg.warm_start
    pairs = demonstrations(Mixture(AdditionTask(3, args.hints), args.demos), ws.steps * ws.batch_size, ws.teacher_error, cfg.seed)
    t0 = time.time()
    summary = learner.warm_start(pairs, ws)
    warm_s = time.time() - t0

    model, tok = learner.model.eval(), learner.tokenizer
    torch.manual_seed(0)
    rows = []
    for d in args.test:
        task, rng = AdditionTask(d, args.hints), random.Random(5)
        problems = [(p.prompt, f"\\boxed{{{p.answer}}}") for p in (task.sample(rng) for _ in range(args.problems))]
        rows.append({"digits": d, **sample_and_score(model, tok, problems, args.samples, 10 * d + 16)})
    result = {"host": host(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "demos": args.demos, "hints": args.hints,
              "steps": args.steps, "warm_start_s": warm_s, "loss_last": summary["warm_start/loss_last"], "rows": rows}
    print(f"{result['host']}, {result['date']}: warm start on {args.demos}-digit demonstrations{' with index hints' if args.hints else ''}, "
          f"{args.steps} steps in {warm_s:.0f} s (loss {summary['warm_start/loss_last']:.4f}); {args.problems} problems a digit count")
    print(f"{'digits':>7}{'sample acc':>12}{f'pass@{args.samples}':>9}{'greedy':>8}  greedy example")
    for r in rows:
        print(f"{r['digits']:>7}{r['sample_acc']:>12.3f}{r[f'pass@{args.samples}']:>9.3f}{r['greedy']:>8.3f}  {r['greedy_example']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
