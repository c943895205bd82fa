"""Metrics sinks: a console progress line, metrics.jsonl, the trackers (trackers.py), and the final plot."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlreason import console


class MetricsLogger:
    """One JSON object per step in run_dir/metrics.jsonl, mirrored to the trackers (TensorBoard,
    W&B, MLflow: rlreason/trackers.py), and a progress line on the console.

    `history` (the rows a checkpoint carries) continues a resumed run: metrics.jsonl is
    rewritten to exactly those rows, and the trackers continue their runs (see trackers.py).
    """

    def __init__(self, run_dir: Path, total_steps: int, stream=None, history: list[dict] | None = None, trackers: list | None = None):
        self.run_dir, self.total_steps = Path(run_dir), total_steps
        self.stream = stream if stream is not None else console.out()
        self.path = self.run_dir / "metrics.jsonl"
        self.rows: list[dict] = list(history or [])
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        tmp.replace(self.path)
        self._file = self.path.open("a")
        self.trackers = list(trackers or [])
        self.t0 = time.time()
        accuracies = [r["eval/accuracy"] for r in self.rows if "eval/accuracy" in r]
        self.last_accuracy: float | None = accuracies[-1] if accuracies else None

    def log(self, record: dict) -> None:
        self.rows.append(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for tracker in self.trackers:
            tracker.log(record, record["step"])
        self.last_accuracy = record.get("eval/accuracy", self.last_accuracy)
        line = progress_line(record, self.total_steps, time.time() - self.t0, self.last_accuracy)
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, files: list[Path] = ()) -> None:
        """Close metrics.jsonl and the trackers, after giving them `files` (the final plot)."""
        self._file.close()
        for tracker in self.trackers:
            for f in files:
                tracker.add_file(Path(f))
            tracker.close()


def progress_line(r: dict, total: int, elapsed: float, accuracy: float | None = None) -> str:
    """step, reward, held-out accuracy (the latest; '*' marks a fresh evaluation), tokens/s."""
    parts = [f"step {r['step']:>4}/{total}"]
    if "reward/mean" in r:
        parts.append(f"reward {r['reward/mean']:.3f}")
    if accuracy is not None:
        parts.append(f"heldout acc {accuracy:.3f}{'*' if 'eval/accuracy' in r else ' '}")
    if "throughput/tokens_per_s" in r:
        parts.append(f"{r['throughput/tokens_per_s']:.0f} tok/s")
    if "loss" in r:
        parts.append(f"loss {r['loss']:+.4f}")
    parts.append(f"{elapsed:.0f}s")
    return " | ".join(parts)


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot(metrics_path: Path, out_png: Path) -> Path:
    """Reward and held-out accuracy against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    reward = [(r["step"], r["reward/mean"]) for r in rows if "reward/mean" in r]
    acc = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    if reward:
        ax.plot(*zip(*reward), label="train reward (mean)", alpha=0.7)
    if acc:
        ax.plot(*zip(*acc), "o-", label="held-out greedy accuracy")
    ax.set_xlabel("RL step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(metrics_path.parent.name)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def rl_elapsed(rows: list[dict]):
    """(RL seconds so far, record) for each record: the sum of timing/step over steps >= 1
    (step 0, the warm-started model's evaluation, counts none)."""
    elapsed = 0.0
    for r in rows:
        if r["step"] >= 1:
            elapsed += r.get("timing/step", 0.0)
        yield elapsed, r


def curriculum_table(rows: list[dict]) -> tuple[list, list[tuple[float, int, dict]]]:
    """Held-out greedy accuracy per difficulty over RL wall time, from a curriculum run's
    records: (difficulties, [(RL seconds so far, step, {difficulty: accuracy}), ...]), one
    entry per evaluation (step 0: before any RL)."""
    import re

    levels: set = set()
    out = []
    for elapsed, r in rl_elapsed(rows):
        acc = {}
        for k, v in r.items():
            m = re.fullmatch(r"eval/d(.+)/accuracy", k)
            if m:
                d = float(m.group(1))
                acc[int(d) if d.is_integer() else d] = v
        if acc:
            levels |= set(acc)
            out.append((elapsed, r["step"], acc))
    return sorted(levels), out


def plot_curriculum(metrics_path: Path, out_png: Path) -> Path | None:
    """curriculum.png: held-out greedy accuracy per difficulty against RL wall time, and the
    frontier; None for a run without a curriculum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    levels, table = curriculum_table(rows)
    if not table:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for d in levels:
        points = [(t / 60, acc[d]) for t, _, acc in table if d in acc]
        ax.plot(*zip(*points), "o-", ms=3, label=f"difficulty {d}")
    frontier = [(t / 60, r["curriculum/frontier"]) for t, r in rl_elapsed(rows) if "curriculum/frontier" in r]
    if frontier:
        right = ax.twinx()
        right.step(*zip(*frontier), where="post", color="black", alpha=0.4, label="frontier")
        right.set_ylabel("frontier (difficulty), grey")
        right.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("RL wall time (minutes)")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncol=2)
    ax.set_title(f"{metrics_path.parent.name}: accuracy per difficulty")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
