"""The training entry (`rlreason train`, and a Ray job's driver): prepare or resume the run
directory, resolve the model and the rewards once, build the placement (Ray), run the loop,
and stop cleanly on SIGTERM / SIGINT. Only `train` touches Ray, through rlreason.cluster."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import yaml

from rlreason import checkpoint
from rlreason.config import Config, ConfigError, dump, resume_changes

log = logging.getLogger(__name__)


def prepare_run_dir(cfg: Config, fresh_ok: bool = False) -> Path:
    """A run directory for a new run. One that already holds a run is refused, unless
    `fresh_ok` (--resume auto found no checkpoint): then its partial metrics are cleared."""
    run_dir = cfg.resolved_run_dir
    if (run_dir / "metrics.jsonl").exists() or checkpoint.latest(run_dir / "checkpoints") is not None:
        if not fresh_ok:
            raise FileExistsError(
                f"{run_dir} already holds a run; continue it with --resume auto, or pick another name= or run_dir=, or delete it"
            )
        log.warning("%s: no complete checkpoint to resume; starting the run again from scratch", run_dir)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.clean_partial(run_dir / "checkpoints")
    dump(cfg, run_dir / "config.yaml")  # the fully resolved config
    return run_dir


def check_resume(cfg: Config, ckpt: Path) -> list[str]:
    """Refuse a resume that changes a frozen key; return the other changed keys (to warn about)."""
    saved = yaml.safe_load((ckpt / "config.yaml").read_text())
    allowed, frozen = resume_changes(saved, cfg)
    if frozen:
        raise ConfigError(f"cannot resume {ckpt} with a changed {', '.join(frozen)} (these keys are fixed for a run)")
    return allowed


class StopFlag:
    """SIGTERM / SIGINT: the first asks the loop to save after the current step and return;
    a second one exits at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __call__(self, step: int) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:
            _say_now(f"\nrlreason: second {signal.Signals(signum).name}: exiting now\n")
            os._exit(128 + signum)
        self.signum = signum
        _say_now(f"\nrlreason: {signal.Signals(signum).name}: saving a checkpoint after this step, then exiting (send again to exit now)\n")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _say_now(text: str) -> None:
    """A line on the terminal from a signal handler (rlreason.console: not the log-only fd 2)."""
    from rlreason import console

    stream = console.err()
    stream.write(text)
    stream.flush()


def train(cfg: Config, resume: str | None = None) -> dict:
    """Run (or resume: 'auto' or a checkpoint / run directory path) a recipe. Returns the loop's
    final record, or {'finished': True, ...} when the checkpoint is already at cfg.steps."""
    run_dir = cfg.resolved_run_dir
    ckpt = checkpoint.resolve_resume(run_dir, resume) if resume else None
    if ckpt is not None:
        changed = check_resume(cfg, ckpt)
        if changed:
            log.warning("resuming %s with changed config keys: %s", ckpt, ", ".join(changed))
        done = checkpoint.checkpoint_step(ckpt)
        if done >= cfg.steps:
            return {"finished": True, "step": done, "checkpoint": str(ckpt)}

    from rlreason.evaluate import eval_specs
    from rlreason.models import resolve_model
    from rlreason.rewards import prepare_rewards

    # Refuse before any work: e.g. no sandbox for a code reward (the training, eval and eval sets'
    # rewards), a model that is nowhere (a local path, the HF cache, 'tiny', the hub)
    specs = [cfg.reward, cfg.eval.reward, *(spec.reward for spec in eval_specs(cfg))]
    prepare_rewards(" + ".join(s for s in specs if s), cfg.scoring.unsafe_code, cfg.scoring.workers)
    model_path = resolve_model(cfg.model)
    if ckpt is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.clean_partial(run_dir / "checkpoints")
        dump(cfg, run_dir / "config.yaml")
    else:
        prepare_run_dir(cfg, fresh_ok=resume == "auto")

    import ray

    from rlreason.cluster.actors import connect
    from rlreason.cluster.placement import build_placement, shutdown_placement
    from rlreason.loop import resolve_inputs, run

    log.info("model: %s; run dir: %s%s", model_path, run_dir, f"; resuming {ckpt}" if ckpt else "")
    started = connect(cfg)  # False: this process was connected already (a notebook, a test), and stays so
    try:
        with StopFlag() as stop:  # after ray.init, which installs a SIGTERM handler of its own
            rc, t0 = cfg.ray, time.time()
            log.info("starting the learner (%d rank(s)) and %s (%s placement)", rc.learner_workers,
                     "1 colocated engine" if rc.placement == "colocated" else f"{rc.rollout_workers} rollout engine(s)", rc.placement)
            engine, learner, sync = build_placement(cfg, model_path)  # ray.placement: split or colocated; ray.transport
            log.info("actors placed in %.0f s; the engines load the model while the warm start runs", time.time() - t0)
            try:
                inputs = resolve_inputs(cfg, model_path)  # while the actors start
                result = run(cfg, engine, learner, sync, run_dir, resume=ckpt, should_stop=stop, inputs=inputs)
            finally:
                shutdown_placement(engine, learner)
    finally:
        if started:
            ray.shutdown()
    if stop.signum is not None:
        result["signal"] = stop.signum
    return result
