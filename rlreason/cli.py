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

    try:
        result = train(cfg)
    except FileExistsError as e:
        print(f"rlreason: {e}", file=sys.stderr)
        return 2
    except (RewardError, FloatingPointError) as e:  # Ray re-raises an actor's error as a subclass of it
        print(f"rlreason: training stopped: {str(e).strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    print(
        f"done: held-out accuracy {result['eval/accuracy_start']:.3f} -> {result['eval/accuracy']:.3f}; "
        f"final model in {result['final_model']}; metrics in {cfg.resolved_run_dir / 'metrics.jsonl'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlreason", description="RL fine-tuning for verifiable reasoning")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run a recipe: rlreason train recipes/NAME.yaml [key=value ...]")
    p.add_argument("recipe", help="YAML recipe (sparse: only what differs from the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.kl_coef=0.01 rollout.group_size=4")
    p.set_defaults(fn=_train)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
