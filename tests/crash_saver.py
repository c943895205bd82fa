"""Subprocess for the crash-during-save test: a real learner that resumes from the run's newest
complete checkpoint (like `--resume auto`), then trains and saves full checkpoints (the loop's
own save_checkpoint) back to back, forever, until it is killed.

    python tests/crash_saver.py MODEL_DIR RUN_DIR
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlreason import checkpoint  # noqa: E402
from rlreason.config import load_config  # noqa: E402
from rlreason.data.addition import AdditionTask
from rlreason.data.stream import PromptStream  # noqa: E402
from rlreason.learner.batch import make_batch  # noqa: E402
from rlreason.learner.policy import Learner  # noqa: E402
from rlreason.loop import restore_checkpoint, save_checkpoint  # noqa: E402
from rlreason.metrics import MetricsLogger  # noqa: E402
from rlreason.types import Sample  # noqa: E402


def main(model_dir: str, run_dir: str) -> None:
    run_dir = Path(run_dir)
    cfg = load_config(None, ["steps=100000", "checkpoint.keep_last=1", "algo.kl_coef=0.05", "task.train_size=10", f"run_dir={run_dir}"])
    learner = Learner(model_dir, cfg.algo, cfg.optim, threads=1, total_steps=cfg.steps)
    stream = PromptStream(AdditionTask(cfg.task.digits), cfg.seed, size=cfg.task.train_size)
    ckpt = checkpoint.latest(run_dir / "checkpoints")
    step, history = restore_checkpoint(ckpt, learner, stream) if ckpt else (0, [])
    checkpoint.clean_partial(run_dir / "checkpoints")
    metrics = MetricsLogger(run_dir, cfg.steps, stream=open(os.devnull, "w"), history=history)
    print(f"resumed {step}", flush=True)
    while True:
        step += 1
        problems = stream.next_batch(2)
        groups = [[Sample([10, 11], [12 + i, 2], p.prompt, [-1.0, -1.0], "stop", step) for i in range(2)] for p in problems]
        stats = learner.update(make_batch(groups, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), pad_id=0))
        metrics.log({"step": step, "loss": stats.loss})
        save_checkpoint(cfg, run_dir, step, learner, stream, metrics)
        print(f"saved {step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
