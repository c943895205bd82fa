"""The host a benchmark figure was measured on: the CPU's model name and the flag that sets its
speed class (AMX, AVX512-BF16, AVX2). The build machine changes from day to day, so every
benchmark that writes figures records it."""

from __future__ import annotations

import platform
from pathlib import Path


def host() -> str:
    """'AMD EPYC (avx512_bf16)', 'Intel Xeon ... (amx_tile)', '... (avx2)' or '... (no avx2)'."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "cpu"
    lines = info.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return f"{name} ({next((f for f in ('amx_tile', 'avx512_bf16', 'avx2') if f in flags), 'no avx2')})"


def provenance(argv: list[str] | None = None) -> dict:
    """Where and when a figure was measured, for its JSON: the host, the UTC time, the commit
    (with `+dirty` when the working tree differed from it) and the command."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "rlreason", "benchmarks", "recipes"))
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    script = str(script.relative_to(root)) if script.is_relative_to(root) else argv[0]
    return {"host": host(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit + ("+dirty" if dirty else ""), "command": " ".join(["python", script, *argv[1:]])}
