"""Command line: `rlreason train RECIPE [key=value ...]`. Heavy imports happen inside commands."""

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
    from rlreason.cluster.job import train
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
    p.set_defaults(fn=_train)
    e = sub.add_parser("export", help="write a checkpoint's policy as a plain HF model directory")
    e.add_argument("checkpoint", help="a checkpoint directory (runs/NAME/checkpoints/step_N) or a run directory (its newest)")
    e.add_argument("out", help="output directory (must not exist)")
    e.set_defaults(fn=_export)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
