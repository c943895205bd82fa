"""Experiment trackers: TensorBoard, Weights & Biases and MLflow, selected by `log.backends`.

Each is a thin adapter over the tracker's own package with three calls: `log(record, step)`
once per step, `add_file(path)` for an artifact (progress.png at the end), `close()`.

    open_trackers(cfg, run_dir, history) -> list of adapters

A resumed run continues the tracker runs it started: their ids are kept in
run_dir/trackers.json, written when a run starts fresh and read when it resumes from a
checkpoint (`history` is the checkpoint's metric rows; None for a fresh start).
- TensorBoard drops its events after the checkpoint's last step (purge_step), so the steps
  trained again after a resume appear once.
- W&B resumes the same run (`resume="allow"`). W&B keeps the first value it got for a step:
  the steps between the checkpoint and the crash keep their values from before the crash,
  and the run goes on from the first step after them (see WandB).
- MLflow reopens the same run; a step trained again is stored a second time (MLflow keeps
  every value of a metric at a step).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from rlreason.errors import UserError

STATE_FILE = "trackers.json"


def _numbers(record: dict) -> dict[str, float]:
    """The record's finite numbers, without 'step'."""
    return {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}


class TensorBoard:
    def __init__(self, run_dir: Path, purge_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def log(self, record: dict, step: int) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def add_file(self, path: Path) -> None:
        pass  # TensorBoard shows its own plots

    def close(self) -> None:
        self.writer.close()


class WandB:
    """W&B's steps only increase: a step at or below one it has is dropped. The last step sent is
    kept in trackers.json, so that a resumed run skips the steps W&B already has, online or
    offline alike (online, W&B would drop them with a warning; offline it cannot know)."""

    def __init__(self, cfg, run_dir: Path, state: dict, save):
        import wandb

        lc, run_id = cfg.log, state.get("wandb")
        self.run = wandb.init(
            project=lc.project, entity=lc.wandb_entity, name=cfg.name, tags=list(lc.tags), mode=lc.wandb_mode,
            config=dataclasses.asdict(cfg), dir=str(run_dir), id=run_id, resume="allow" if run_id else None,
        )
        self.id, self.state, self.save = self.run.id, state, save
        state["wandb"] = self.id

    def log(self, record: dict, step: int) -> None:
        if step <= self.state.get("wandb_step", -1):
            return
        self.run.log(_numbers(record), step=step)
        self.state["wandb_step"] = step
        self.save()

    def add_file(self, path: Path) -> None:
        import wandb

        self.run.log({path.stem: wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


class MLflow:
    def __init__(self, cfg, run_dir: Path, state: dict):
        import mlflow

        lc, run_id = cfg.log, state.get("mlflow")
        uri = lc.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir.resolve().parent / 'mlflow.db'}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(lc.project)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(lc.project, artifact_location=_artifacts_beside(uri))
            run = self.client.create_run(experiment_id, run_name=cfg.name, tags={t: "" for t in lc.tags})
            run_id = run.info.run_id
            from rlreason.config import flatten

            params = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in flatten(dataclasses.asdict(cfg)).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a request
                self.client.log_batch(run_id, params=params[i : i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.id = state["mlflow"] = run_id

    def log(self, record: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in _numbers(record).items()]
        self.client.log_batch(self.id, metrics=metrics)

    def add_file(self, path: Path) -> None:
        self.client.log_artifact(self.id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.id)


def _artifacts_beside(uri: str) -> str | None:
    """A SQLite store's artifacts go in `mlartifacts/` beside its file; MLflow's own default is ./mlruns in
    whatever directory the process runs from. Other stores (a directory, a server) choose their own place."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def open_trackers(cfg, run_dir: Path, history: list[dict] | None) -> list:
    """The adapters `cfg.log.backends` names, continuing the tracker runs of run_dir when
    resuming (history is not None), else starting new ones (and recording their ids)."""
    run_dir = Path(run_dir)
    state_path = run_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if history is not None and state_path.exists() else {}

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state) + "\n")
        tmp.replace(state_path)

    makers = {
        "tensorboard": lambda: TensorBoard(run_dir, history[-1]["step"] + 1 if history else None),
        "wandb": lambda: WandB(cfg, run_dir, state, save),
        "mlflow": lambda: MLflow(cfg, run_dir, state),
    }
    out = []
    try:
        for backend in cfg.log.backends:
            out.append(_start(backend, makers[backend]))
    except UserError:
        for tracker in out:
            tracker.close()
        raise
    if state:
        save()
    return out


# What to check when a tracker does not start
_HINTS = {
    "tensorboard": "the run directory must be writable",
    "wandb": "set WANDB_API_KEY or run `wandb login`, or set log.wandb_mode=offline",
    "mlflow": "check log.mlflow_tracking_uri (or MLFLOW_TRACKING_URI)",
}


def _start(backend: str, make):
    """make(), or a UserError naming log.backends: a missing package, a login, a server that
    does not answer are the user's to fix, in one line (the traceback goes to the log)."""
    try:
        return make()
    except ImportError as e:
        raise UserError(f"key 'log.backends': {backend} needs its package ({e.name or e}): pip install -e '.[trackers]'") from e
    except Exception as e:  # noqa: BLE001  a tracker's own error, whatever its type
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(f"key 'log.backends': {backend} did not start: {first[:300]}; {_HINTS[backend]}") from e
