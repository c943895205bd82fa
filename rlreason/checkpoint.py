"""Checkpoints on disk: atomic, complete, and pruned only behind a newer complete one.

Layout of a run directory:

    runs/<name>/checkpoints/
        step_000010/            a complete checkpoint (it holds COMPLETE)
            COMPLETE            written last: the step and every file's size
            trainer_state.json  step, policy version, data sampler position, reference identity
            driver_rng.pt       the driver's python / numpy / torch RNG states
            config.yaml         the resolved config of the run that wrote it
            metrics.jsonl       the metrics history up to this step (to continue plots)
            policy/             the policy in HF format (with its tokenizer)
            learner.pt          optimizer, LR scheduler, learner RNG states, critic (+ optimizer)
            reference/          the frozen KL reference, when it is not the base model
        .tmp-step_000020-<id>/  a save in progress (or killed): ignored and cleaned up

A save writes into a fresh `.tmp-*` directory, fsyncs every file, writes COMPLETE last,
fsyncs, and renames the directory into place (rename is atomic on POSIX). Only then are
checkpoints beyond `keep_last` deleted, oldest first, each by an atomic rename to
`.deleting-*` before the rmtree. So a kill -9 at any moment leaves the previous complete
checkpoint untouched, even with keep_last=1.

This module never imports ray or vllm.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from rlreason.errors import NotFound

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def fsync_tree(path: Path) -> None:
    """fsync every file under path, then every directory (so the names are durable too)."""
    path = Path(path)
    for root, dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for root, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            _fsync_dir(Path(root) / name)
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Write and fsync one file."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def begin(root: Path, step: int) -> Path:
    """A fresh temporary directory to write checkpoint `step` into."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{step_dir_name(step)}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def _manifest(path: Path) -> dict[str, int]:
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def commit(tmp: Path, step: int, keep_last: int) -> Path:
    """Seal `tmp` (fsync, COMPLETE marker last, rename into place), then prune. Returns the path."""
    tmp = Path(tmp)
    root = tmp.parent
    fsync_tree(tmp)
    write_text(tmp / MARKER, json.dumps({"step": step, "files": _manifest(tmp)}, indent=1))
    _fsync_dir(tmp)
    final = root / step_dir_name(step)
    if final.exists():  # an older attempt at this step (e.g. a resume from an earlier checkpoint)
        _remove(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    prune(root, keep_last)
    return final


def is_complete(path: Path) -> bool:
    """COMPLETE is present, names this step, and every file it lists is there with its size."""
    path = Path(path)
    m = _STEP_DIR.match(path.name)
    try:
        marker = json.loads((path / MARKER).read_text())
        if m is None or marker["step"] != int(m.group(1)):
            return False
        return all((path / f).is_file() and (path / f).stat().st_size == size for f, size in marker["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under root, or None. Partial ones are ignored."""
    found = complete_checkpoints(root)
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    return json.loads((Path(path) / MARKER).read_text())["step"]


def prune(root: Path, keep_last: int) -> None:
    """Delete complete checkpoints beyond the newest `keep_last` (keep_last <= 0 keeps all)."""
    if keep_last <= 0:
        return
    for old in complete_checkpoints(root)[:-keep_last]:
        _remove(old)


def clean_partial(root: Path) -> list[str]:
    """Remove what killed saves and deletions left behind. Call only when no save is running."""
    root = Path(root)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            partial_step = _STEP_DIR.match(p.name) and not is_complete(p)
            if p.name.startswith((".tmp-", ".deleting-")) or partial_step:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def _remove(path: Path) -> None:
    """Atomically take `path` out of view, then delete it."""
    trash = path.parent / f".deleting-{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    _fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def resolve_resume(run_dir: Path, resume: str) -> Path | None:
    """`--resume auto`: the newest complete checkpoint of run_dir, or None to start fresh.
    `--resume PATH`: PATH itself if it is a complete checkpoint, else the newest complete
    checkpoint of the run directory PATH. Raises NotFound naming PATH otherwise."""
    if resume == "auto":
        return latest(Path(run_dir) / "checkpoints")
    path = Path(resume)
    if _STEP_DIR.match(path.name):
        if is_complete(path):
            return path
        raise NotFound(f"{resume}: not a complete checkpoint (no valid {MARKER} marker)")
    found = latest(path / "checkpoints")
    if found is None:
        raise NotFound(f"{resume}: neither a checkpoint nor a run directory with a complete checkpoint")
    return found


# ---- state that is not a file of its own ----


def rng_state() -> dict:
    """Every RNG this process may draw from: python, numpy, torch (and CUDA when present)."""
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(state_dict: dict) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes: a model's identity."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def export(ckpt: Path, out: Path, replace: bool = False) -> str:
    """Copy a complete checkpoint's policy (plain HF format: config, safetensors, tokenizer)
    to `out`, atomically (temp dir, fsync, rename). Refuses an existing `out` unless replace."""
    ckpt, out = Path(ckpt), Path(out)
    if not is_complete(ckpt):
        raise NotFound(f"{ckpt}: not a complete checkpoint (no valid {MARKER} marker)")
    if out.exists() and not replace:
        raise FileExistsError(f"{out} already exists")
    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ckpt / "policy", tmp)
    fsync_tree(tmp)
    if out.exists():
        _remove(out)
    os.rename(tmp, out)
    _fsync_dir(out.parent)
    return str(out)
