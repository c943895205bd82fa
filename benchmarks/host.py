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
