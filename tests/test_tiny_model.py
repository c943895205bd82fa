import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlreason.models import ensure_tiny_model, resolve_model


def test_tokenizer_is_character_level_with_chat_template(tiny_model_dir):
    path, _ = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("347+586>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 8
    assert tok.decode(ids) == "347+586>"
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == "347+586>"
    assert tok.eos_token == "<|im_end|>"
    chat = tok.apply_chat_template([{"role": "user", "content": "1+1"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n"


def test_model_is_qwen2_with_tied_head_and_is_cached(tiny_model_dir):
    path, cfg = tiny_model_dir
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "qwen2"
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert ensure_tiny_model(cfg) == path  # reused, not rebuilt
    assert (path / "config.json").stat().st_mtime_ns == stamp
    assert resolve_model(cfg) == str(path)


def test_resolve_model_passes_cached_hub_ids_and_model_directories_through(tmp_path, monkeypatch):
    """A model directory and a hub id found in the HF cache resolve to themselves (transformers
    and vLLM load them); a hub id in neither place, with the hub offline, is an error that says
    where it looked; a path that is not a model directory is never taken for a hub id."""
    from huggingface_hub import constants

    from rlreason.config import ModelConfig
    from rlreason.errors import HubUnreachable, NotFound

    cache = tmp_path / "hub"
    snapshot = cache / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert resolve_model(ModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct")) == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(HubUnreachable, match=r"model 'Qwen/Qwen2.5-7B': not a local path, not in the HF cache .*, and the hub is offline"):
        resolve_model(ModelConfig(path="Qwen/Qwen2.5-7B"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert resolve_model(ModelConfig(path=str(tmp_path / "model"))) == str(tmp_path / "model")
    with pytest.raises(NotFound, match="not a model directory"):
        resolve_model(ModelConfig(path=str(tmp_path)))


def test_whitespace_survives_the_qwen2_tokenizer(tiny_model_dir):
    """transformers loads a qwen2 model's tokenizer as Qwen2Tokenizer (byte-level): spaces,
    newlines and tabs must round-trip one token per character, or code completions lose them."""
    from transformers import AutoTokenizer

    path, _ = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    for text in ["def f(a,b):\n return 3*a-2*b+7", "a\tb  c\r\n", "347+586>7+6+0=13;\\boxed{933}"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text) and tok.decode(ids) == text
