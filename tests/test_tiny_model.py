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


def test_resolve_model_passes_hub_ids_and_paths_through(tmp_path):
    from rlreason.config import ModelConfig

    assert resolve_model(ModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct")) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_model(ModelConfig(path=str(tmp_path))) == str(tmp_path)


def test_whitespace_survives_the_qwen2_tokenizer(tiny_model_dir):
    """transformers loads a qwen2 model's tokenizer as Qwen2Tokenizer (byte-level): spaces,
    newlines and tabs must round-trip one token per character, or code completions lose them."""
    from transformers import AutoTokenizer

    path, _ = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    for text in ["def f(a,b):\n return 3*a-2*b+7", "a\tb  c\r\n", "347+586>7+6+0=13;\\boxed{933}"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text) and tok.decode(ids) == text
