"""Job entry: resolve the model, prepare the run directory, start the Ray workers, run the loop."""

from __future__ import annotations

import logging
from pathlib import Path

from rlreason.config import Config, dump

log = logging.getLogger(__name__)


def prepare_run_dir(cfg: Config) -> Path:
    run_dir = cfg.resolved_run_dir
    if (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run (metrics.jsonl); pick another name= or run_dir=, or delete it"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    dump(cfg, run_dir / "config.yaml")  # the fully resolved config
    return run_dir


def train(cfg: Config) -> dict:
    import ray

    from rlreason.cluster.ray_workers import RayEngine, RayLearner, connect
    from rlreason.data.tiny_model import resolve_model
    from rlreason.loop import run

    run_dir = prepare_run_dir(cfg)
    model_path = resolve_model(cfg.model)
    log.info("model: %s; run dir: %s", model_path, run_dir)
    connect(cfg)
    try:
        learner = RayLearner(cfg, model_path)
        engine = RayEngine(cfg, model_path)
        return run(cfg, engine, learner, run_dir)
    finally:
        ray.shutdown()
