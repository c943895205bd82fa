"""Process-supervision labels (rlreason.prm.label_steps) from the warm-started policy of a
recipe on the addition task, and their noise against the exact truth of each step.

    python -m rlreason train recipes/addition_grpo.yaml     # first: it caches the warm start
    python3 benchmarks/prm_labels_bench.py [--recipe recipes/addition_grpo.yaml] [--problems 100]
        [--samples 4] [--rollouts 4] [--out runs/prm_labels_bench.json]

The policy is the recipe's warm start, read from the warm-start cache (the key the loop would
compute: rlreason.loop.warm_start_key), so it is exactly the model at step 0 of that recipe.
Problems: the first --problems of the recipe's held-out set. Completions and continuations are
sampled by one in-process vLLM engine at the recipe's temperature, scored by the recipe's
reward. The exact truth of a step: rlreason.prm.addition_steps_correct. Reported:
- how many steps were labelled, and what a label costs (continuations);
- hard-label noise: the share of steps whose hard label (any continuation accepted) differs from
  the truth, split into false positives (a wrong step labelled 1) and false negatives (a right
  step labelled 0); and the soft labels' mean absolute error;
- the wall time of sampling and labelling.
With --train-problems N it also labels N problems of the recipe's training stream the same way,
trains a PRM on them from the policy's weights (rlreason.prm.train_prm), saves it (HF format,
with prm.json naming its step delimiter) and reports, on the held-out completions' steps (the
answer steps included), the PRM's AUC and accuracy (score > 0.5) against the exact truth, beside
the AUC of the held-out soft labels themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host import host


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/addition_grpo.yaml")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--samples", type=int, default=4, help="completions per problem")
    ap.add_argument("--rollouts", type=int, default=4, help="continuations per step label")
    ap.add_argument("--train-problems", type=int, default=0, help="label this many training problems and train a PRM on them (0: no PRM)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--prm-out", default="runs/prm_bench/prm")
    ap.add_argument("--out", default="runs/prm_labels_bench.json")
    args = ap.parse_args()

    from rlreason.config import load_config
    from rlreason.data.stream import PromptStream, demonstrations
    from rlreason.loop import resolve_inputs, warm_start_key
    from rlreason.models import resolve_model
    from rlreason.prm import (
        STEP_DELIMITERS,
        addition_steps_correct,
        auc,
        label_steps,
        prm_step_scores,
        train_prm,
    )
    from rlreason.rollout.vllm_engine import VLLMEngine

    cfg = load_config(args.recipe, [])
    if cfg.task.name != "addition":
        sys.exit(f"{args.recipe}: the exact step truth exists for the addition task only, not {cfg.task.name!r}")
    model_path = resolve_model(cfg.model)
    inputs = resolve_inputs(cfg, model_path)
    ws = cfg.warm_start
    pairs = demonstrations(inputs.task, ws.steps * ws.batch_size, ws.teacher_error, cfg.seed, exclude=inputs.exclude)
    policy = Path(cfg.model.cache_dir).expanduser() / "warm_start" / warm_start_key(cfg, pairs, model_path) / "policy"
    if not policy.is_dir():
        sys.exit(f"no cached warm start at {policy}: run `python -m rlreason train {args.recipe}` first")

    t0 = time.time()
    ro = cfg.rollout
    engine = VLLMEngine(str(policy), cfg.engine_dtype, ro.max_model_len, ro.kv_cache_gib, cfg.seed, 0)
    t_engine = time.time() - t0
    problems = inputs.heldout.problems[: args.problems]
    t0 = time.time()
    report = label_steps(engine, inputs.reward_fn, problems, args.samples, args.rollouts, STEP_DELIMITERS["addition"],
                         ro.max_tokens, ro.temperature, cfg.seed)
    t_label = time.time() - t0

    steps = fp = fn = 0
    soft_error = 0.0
    right_completions = sum(lab.reward > 0 for lab in report.labeled)
    for lab in report.labeled:
        truth = addition_steps_correct(lab.prompt, lab.steps)
        for t, h, s in zip(truth[:-1], lab.hard[:-1], lab.soft[:-1]):  # the last step's label is the verdict itself
            steps += 1
            fp += (not t) and h > 0
            fn += t and h == 0
            soft_error += abs(s - float(t))
    result = {
        "host": host(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
        "recipe": args.recipe, "policy": str(policy), "problems": len(problems), "samples": args.samples, "rollouts": args.rollouts,
        "completions": len(problems) * args.samples, "labelled_completions": len(report.labeled), "no_steps": report.no_steps,
        "right_completions": right_completions, "labelled_steps": steps, "continuations": report.rollouts,
        "continuations_per_label": args.rollouts,
        "hard_noise": (fp + fn) / max(steps, 1), "false_positive_steps": fp, "false_negative_steps": fn,
        "soft_mae": soft_error / max(steps, 1), "engine_start_s": t_engine, "label_s": t_label,
    }
    print(f"{result['host']}, {result['cores']} cores, {result['date']}; {args.recipe}'s warm start ({policy})")
    print(f"{len(problems)} problems x {args.samples} completions ({right_completions} right, {report.no_steps} without a step), "
          f"{steps} steps labelled (the answer steps aside) by {args.rollouts} continuations each: {report.rollouts} continuations")
    print(f"hard-label noise {result['hard_noise']:.3f} ({fp} wrong steps labelled 1, {fn} right steps labelled 0); "
          f"soft labels' mean absolute error {result['soft_mae']:.3f}")
    print(f"engine start {t_engine:.1f} s; sampling and labelling {t_label:.1f} s")
    if args.train_problems:
        t0 = time.time()
        train = PromptStream(inputs.task, cfg.seed, exclude=inputs.exclude).next_batch(args.train_problems)
        train_report = label_steps(engine, inputs.reward_fn, train, args.samples, args.rollouts, STEP_DELIMITERS["addition"],
                                   ro.max_tokens, ro.temperature, cfg.seed + 1)
        t_train_labels, t0 = time.time() - t0, time.time()
        model, tokenizer, losses = train_prm(str(policy), train_report.labeled, epochs=args.epochs, lr=args.lr, seed=cfg.seed)
        t_fit = time.time() - t0
        model.save_pretrained(args.prm_out)
        tokenizer.save_pretrained(args.prm_out)
        Path(args.prm_out, "prm.json").write_text(json.dumps({"step_delimiter": STEP_DELIMITERS["addition"], "base": str(policy)}))
        held = report.labeled
        scores = prm_step_scores(model, tokenizer, [lab.prompt for lab in held], [lab.steps for lab in held])
        truth = [t for lab in held for t in addition_steps_correct(lab.prompt, lab.steps)]
        flat = [x for row in scores for x in row]
        soft = [x for lab in held for x in lab.soft]
        result.update({
            "train_problems": len(train), "train_labelled_steps": sum(len(lab.steps) for lab in train_report.labeled),
            "prm_losses": losses, "prm_auc": auc(flat, truth), "prm_accuracy": sum((x > 0.5) == t for x, t in zip(flat, truth)) / len(truth),
            "soft_label_auc": auc(soft, truth), "heldout_steps": len(truth), "heldout_right_share": sum(truth) / len(truth),
            "train_labels_s": t_train_labels, "prm_train_s": t_fit, "prm": args.prm_out,
        })
        print(f"PRM: {len(train)} training problems ({result['train_labelled_steps']} steps labelled in {t_train_labels:.1f} s), "
              f"{args.epochs} epochs in {t_fit:.1f} s (loss {losses[0]:.3f} -> {losses[-1]:.3f}); on the {len(truth)} held-out steps "
              f"({result['heldout_right_share']:.2f} right): AUC {result['prm_auc']:.3f}, accuracy {result['prm_accuracy']:.3f} "
              f"(the soft labels themselves: AUC {result['soft_label_auc']:.3f}); saved to {args.prm_out}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
