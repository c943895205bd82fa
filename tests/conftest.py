import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so that `tests.plugins:...` dotted reward paths import

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Qwen2 model + tokenizer, built into a cache private to this test session."""
    from rlreason.config import ModelConfig
    from rlreason.data.tiny_model import ensure_tiny_model

    cfg = ModelConfig(cache_dir=str(tmp_path_factory.mktemp("model-cache")))
    return ensure_tiny_model(cfg), cfg
