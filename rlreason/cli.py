"""Command line: `rlreason train RECIPE [key=value ...]`, `rlreason export`, `rlreason eval MODEL --dataset NAME`.
Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import logging
import sys


def _train(args) -> int:
    from rlreason.config import ConfigError, load_config

    try:
        cfg = load_config(args.recipe, args.overrides)
    except ConfigError as e:
        print(f"rlreason: config error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from rlreason.dryrun import FAIL, dry_run, format_checks

        checks = dry_run(cfg)
        print(format_checks(checks))
        failed = [c.name for c in checks if c.status == FAIL]
        print(f"dry run of {args.recipe}: " + (f"FAILED: {', '.join(failed)}" if failed else "no failures (see 'unchecked' lines for what this machine could not check)"))
        return 1 if failed else 0
    from rlreason.train import train
    from rlreason.rewards import RewardError
    from rlreason.rewards.sandbox import IsolationUnavailable

    try:
        result = train(cfg, resume=args.resume)
    except (FileExistsError, FileNotFoundError, ConfigError, IsolationUnavailable) as e:
        print(f"rlreason: {e}", file=sys.stderr)
        return 2
    except (RewardError, FloatingPointError) as e:  # Ray re-raises an actor's error as a subclass of it
        print(f"rlreason: training stopped: {str(e).strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    if result.get("finished"):
        print(f"rlreason: run already finished at step {result['step']} ({result['checkpoint']}); nothing to do")
        return 0
    if result["stopped"]:
        print(
            f"stopped after step {result['step']}; checkpoint saved in {cfg.resolved_run_dir / 'checkpoints'}; "
            f"continue with: rlreason train {args.recipe} {' '.join(args.overrides)} --resume auto".replace("  ", " ")
        )
        return 128 + result["signal"] if "signal" in result else 0
    print(
        f"done: held-out accuracy {result['eval/accuracy_start']:.3f} -> {result['eval/accuracy']:.3f}; "
        f"final model in {result['final_model']}; metrics in {cfg.resolved_run_dir / 'metrics.jsonl'}"
    )
    return 0


def _export(args) -> int:
    from pathlib import Path

    from rlreason import checkpoint

    try:
        ckpt = checkpoint.resolve_resume(Path(args.checkpoint), args.checkpoint)
        out = checkpoint.export(ckpt, Path(args.out))
    except (FileExistsError, FileNotFoundError) as e:
        print(f"rlreason: {e}", file=sys.stderr)
        return 2
    print(f"exported {ckpt} to {out} (HF format)")
    return 0


def _eval(args) -> int:
    from rlreason.data.datasets import parse_field_overrides
    from rlreason.evaluate import EvalSettings, format_table, run_eval
    from rlreason.rewards.sandbox import IsolationUnavailable

    try:
        settings = EvalSettings(
            model=args.model, dataset=args.dataset, split=args.split, fields=parse_field_overrides(args.field),
            answer_extract=args.answer_extract, reward=args.reward, template=args.template, hub=args.hub,
            n=args.n, ks=args.k or [1, args.n], temperature=args.temperature, top_p=args.top_p,
            max_tokens=args.max_tokens, max_model_len=args.max_model_len, limit=args.limit, scorer=args.scorer,
            seed=args.seed, dtype=args.dtype, kv_cache_gib=args.kv_cache_gib, threads=args.threads, unsafe_code=args.unsafe_code, out=args.out,
        )
        report = run_eval(settings)
    except (ValueError, FileNotFoundError, IsolationUnavailable) as e:
        print(f"rlreason: {e}", file=sys.stderr)
        return 2
    t = report["timing"]
    print(f"{report['model']} on {report['dataset']['name'] or report['dataset']['source']}: {report['n_problems']} problems x "
          f"{settings.n} samples, temperature {settings.temperature}, scorer {settings.scorer}")
    print(format_table(report["metrics"]))
    print(f"time {t['total_s']:.1f} s (generate {t['generate_s']:.1f} s, {t['tokens_per_s']:.0f} tok/s; score {t['score_s']:.1f} s); "
          f"reward errors {report['reward_errors']}; prompts left out as too long {report['prompts_left_out_too_long']}")
    print(f"wrote {report['out']}/eval.json, samples.jsonl, problems.jsonl")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlreason", description="RL fine-tuning for verifiable reasoning")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run a recipe: rlreason train recipes/NAME.yaml [key=value ...]")
    p.add_argument("recipe", help="YAML recipe (sparse: only what differs from the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.kl_coef=0.01 rollout.group_size=4")
    p.add_argument(
        "--resume", metavar="auto|PATH",
        help="'auto': continue from the run's newest complete checkpoint (start fresh if there is none); "
        "PATH: a checkpoint directory, or a run directory (its newest complete checkpoint)",
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="check the recipe (config, reward, model config and tokenizer, data mapping, placement) without weights or training",
    )
    p.set_defaults(fn=_train)
    e = sub.add_parser("export", help="write a checkpoint's policy as a plain HF model directory")
    e.add_argument("checkpoint", help="a checkpoint directory (runs/NAME/checkpoints/step_N) or a run directory (its newest)")
    e.add_argument("out", help="output directory (must not exist)")
    e.set_defaults(fn=_export)
    v = sub.add_parser("eval", help="pass@k / maj@k / best-of-N of a model on a data set, sampled with vLLM")
    v.add_argument("model", help="'tiny', an HF model directory or hub id, a run directory (final/ or its newest checkpoint) or a checkpoint")
    v.add_argument("--dataset", required=True, help="gsm8k, math500, aime2024, amc2023, humaneval, addition; a hub id; or a .jsonl/.json/.parquet file")
    v.add_argument("--split", help="hub split (default: the data set's, 'test' for the built-ins)")
    v.add_argument("--hub", action="store_true", help="read a built-in data set from the hub even when its local file is there")
    v.add_argument("--field", action="append", default=[], metavar="KEY=FIELD", help="map a field: question, answer, tests, entry_point, id, subject, level (repeatable)")
    v.add_argument("--answer-extract", choices=["gsm8k", "boxed", "field"], help="how the gold is read from the answer field")
    v.add_argument("--reward", help="the reward that judges samples (default: the data set's: math, or code for humaneval)")
    v.add_argument("--template", choices=["chat", "r1_zero", "plain", "raw"], help="prompt template (default: the data set's)")
    v.add_argument("--n", type=int, default=4, help="samples per problem")
    v.add_argument("--k", type=int, nargs="+", help="k values for pass@k / maj@k / best_of_k (default: 1 and n)")
    v.add_argument("--temperature", type=float, default=0.6)
    v.add_argument("--top-p", type=float, default=1.0)
    v.add_argument("--max-tokens", type=int, default=256)
    v.add_argument("--max-model-len", type=int, default=2048, help="context length (capped at the model's); longer prompts are left out")
    v.add_argument("--limit", type=int, help="evaluate the first N problems only")
    v.add_argument("--scorer", default="verifier", help="best-of-N selector: 'verifier' (the data set's reward), 'rm:PATH' (HF sequence-classification reward model) or 'none'")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--dtype", default="float32")
    v.add_argument("--kv-cache-gib", type=float, default=1.0)
    v.add_argument("--threads", type=int, default=0, help="CPU threads for vLLM on a CPU-only machine (0: all cores)")
    v.add_argument("--unsafe-code", action="store_true", help="run code without the bubblewrap sandbox (loud warning)")
    v.add_argument("--out", help="output directory (default runs/eval-DATASET-TIME)")
    v.set_defaults(fn=_eval)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
