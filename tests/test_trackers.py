"""Experiment trackers, offline and for real: W&B in offline mode (its run file read back),
MLflow to a SQLite file in tmp_path (read back with its client), TensorBoard's event files;
a resumed run logs into the same tracker runs."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from rlreason.config import ConfigError, load_config
from rlreason.metrics import MetricsLogger, plot
from rlreason.trackers import STATE_FILE, open_trackers


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file: the LevelDB log format (32 KiB blocks,
    7-byte chunk headers) behind W&B's own 7-byte file header (':W&B', magic, version)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4) and pending:  # a whole record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


def wandb_run(run_dir: Path) -> list[dict]:
    """Each offline W&B run file under run_dir: its run record (id, name, tags, project), its
    history rows {key: value} and its config keys."""
    runs = []
    for f in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        info = {"history": [], "config": set()}
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                info.update(id=rec.run.run_id, name=rec.run.display_name, tags=list(rec.run.tags), project=rec.run.project)
                info["config"] |= {item.key for item in rec.run.config.update}
            elif kind == "config":
                info["config"] |= {item.key for item in rec.config.update}
            elif kind == "history":
                info["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        runs.append(info)
    return runs


@pytest.fixture
def cfg(tmp_path):
    return load_config(None, [
        "name=tracked", f"run_dir={tmp_path / 'run'}", "log.backends=[tensorboard,wandb,mlflow]", "log.wandb_mode=offline",
        "log.project=rlreason-test", "log.tags=[ci,tiny]", f"log.mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ])


def steps(metrics: MetricsLogger, numbers, shift: float = 0.0) -> None:
    for step in numbers:
        metrics.log({"step": step, "reward/mean": step / 10 + shift, "loss": 1.0 / (step + 1)})


def test_every_step_reaches_every_tracker_and_a_resume_continues_their_runs(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # MLflow's own default put artifacts in ./mlruns, wherever that was
    from mlflow import MlflowClient

    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True)
    out = io.StringIO()
    metrics = MetricsLogger(run_dir, 4, stream=out, trackers=open_trackers(cfg, run_dir, None))
    steps(metrics, [0, 1, 2])  # then the process dies, after the checkpoint at step 1
    metrics.close()
    ids = json.loads((run_dir / STATE_FILE).read_text())
    assert set(ids) == {"wandb", "mlflow", "wandb_step"} and ids["wandb_step"] == 2

    history = metrics.rows[:2]
    resumed = MetricsLogger(run_dir, 4, stream=out, history=history, trackers=open_trackers(cfg, run_dir, history))
    steps(resumed, [2, 3], shift=0.05)  # trained again from the checkpoint: other values
    png = plot(resumed.path, run_dir / "progress.png")
    resumed.close(files=[png])
    assert json.loads((run_dir / STATE_FILE).read_text()) == {**ids, "wandb_step": 3}  # the same tracker runs

    first, second = wandb_run(run_dir)
    assert first["id"] == second["id"] == ids["wandb"]
    assert (first["name"], first["tags"], first["project"]) == ("tracked", ["ci", "tiny"], "rlreason-test")
    assert {"optim", "log", "name", "seed"} <= first["config"]  # the resolved config is the run's config
    rows = [r for r in first["history"] + second["history"] if "reward/mean" in r]
    # W&B keeps the first value of a step: step 2 from before the crash, then step 3
    assert [(r["_step"], r["reward/mean"]) for r in rows] == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.35)]
    assert any(r.get("progress/_type") == "image-file" for r in second["history"])  # the final plot, as an image

    client = MlflowClient(tracking_uri=cfg.log.mlflow_tracking_uri)
    run = client.get_run(ids["mlflow"])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == str(cfg.optim.lr) and {"ci", "tiny"} <= set(run.data.tags)
    assert client.get_experiment(run.info.experiment_id).name == "rlreason-test"
    history = [(m.step, m.value) for m in client.get_metric_history(ids["mlflow"], "reward/mean")]
    assert sorted(history) == [(0, 0.0), (1, 0.1), (2, 0.2), (2, 0.25), (3, 0.35)]  # step 2 trained twice, both kept
    assert [a.path for a in client.list_artifacts(ids["mlflow"])] == ["progress.png"]
    assert list((tmp_path / "mlartifacts").rglob("progress.png")) and not any((tmp_path / "cwd").iterdir())
    assert len(client.search_runs([run.info.experiment_id])) == 1  # no second run

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run_dir / "tensorboard"))
    tb.Reload()
    # TensorBoard drops what came after the checkpoint: step 2 as trained again
    assert [(e.step, round(e.value, 3)) for e in tb.Scalars("reward/mean")] == [(0, 0.0), (1, 0.1), (2, 0.25), (3, 0.35)]


def test_a_fresh_start_opens_new_tracker_runs(cfg, monkeypatch):
    """A run that starts over (no checkpoint: history None) does not reuse the ids a run killed
    before its first checkpoint left."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True)
    seen = []
    for _ in range(2):
        trackers = open_trackers(cfg, run_dir, None)
        seen.append(json.loads((run_dir / STATE_FILE).read_text()))
        for t in trackers:
            t.close()
    assert seen[0]["wandb"] != seen[1]["wandb"] and seen[0]["mlflow"] != seen[1]["mlflow"]
    assert {r["id"] for r in wandb_run(run_dir)} == {seen[0]["wandb"], seen[1]["wandb"]}


def test_tensorboard_only_by_default(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    trackers = open_trackers(cfg, tmp_path, None)
    assert [type(t).__name__ for t in trackers] == ["TensorBoard"] and not (tmp_path / STATE_FILE).exists()
    for t in trackers:
        t.close()


@pytest.mark.parametrize("override, key", [
    ("log.backends=[tensorboard,wandbb]", "log.backends"),
    ("log.backends=[mlflow,mlflow]", "log.backends"),
    ("log.wandb_mode=offlin", "log.wandb_mode"),
    ("log.project=", "log.project"),
])
def test_bad_log_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(None, [override])


def test_a_tracker_that_does_not_start_is_one_line_naming_the_key(cfg, monkeypatch):
    """No wandb package, an MLflow store that cannot be opened: a UserError naming log.backends
    and what to do (the CLI prints it as one line, exit 2), and the trackers opened so far are closed."""
    import sys

    from rlreason.errors import UserError

    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(UserError, match=r"key 'log.backends': wandb needs its package .*pip install -e '.\[trackers\]'"):
        open_trackers(cfg, run_dir, None)
    bad = load_config(None, [f"run_dir={run_dir}", "log.backends=[tensorboard,mlflow]", "log.mlflow_tracking_uri=nosuchscheme://x"])
    with pytest.raises(UserError, match=r"key 'log.backends': mlflow did not start: .*log.mlflow_tracking_uri"):
        open_trackers(bad, run_dir, None)
