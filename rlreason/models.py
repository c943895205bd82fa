"""Build (or reuse from a cache) a tiny Qwen2-architecture model and a character tokenizer.

Both are saved in ordinary HF format, with a ChatML chat template, so every loader in
the project (transformers, vLLM, `rlreason` itself) treats them like any hub model.
No download is needed: the tokenizer is built with `tokenizers`, the weights are random.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import asdict
from pathlib import Path

from rlreason.config import ModelConfig, TinyModelConfig
from rlreason.errors import NotFound, is_local_path, nowhere

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
VOCAB_CHARS = string.printable  # digits, letters, punctuation, whitespace: 100 characters
FORMAT_VERSION = 2  # bump when the files written here change shape (2: byte-level whitespace)


def byte_level(ch: str) -> str:
    """GPT-2 / Qwen2 byte-level spelling of an ASCII character: printable ones stand for
    themselves, the others (space, newline, tab ...) are shifted to 256 + n (' ' -> 'Ġ')."""
    b = ord(ch)
    printable = 33 <= b <= 126
    return ch if printable else chr(256 + sum(1 for x in range(b) if not 33 <= x <= 126))


def build_tokenizer():
    """A character-level byte-level BPE (no merges): one token per character, EOS = <|im_end|>.

    The vocabulary is spelled byte-level, as Qwen2's is: transformers loads any tokenizer of
    a qwen2 model as Qwen2Tokenizer, whose byte-level pre-tokenizer turns ' ' into 'Ġ', so
    a vocabulary with a literal ' ' would silently drop every space and newline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in VOCAB_CHARS:
        vocab.setdefault(byte_level(ch), len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )


def build_model(tiny: TinyModelConfig, vocab_size: int, eos_id: int, pad_id: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_kv_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": tiny.rope_theta},
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    torch.manual_seed(tiny.seed)
    return Qwen2ForCausalLM(config)


def tiny_model_dir(model_cfg: ModelConfig) -> Path:
    key = json.dumps({"tiny": asdict(model_cfg.tiny), "v": FORMAT_VERSION, "chars": VOCAB_CHARS}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(os.path.expanduser(model_cfg.cache_dir)) / f"tiny-qwen2-{digest}"


def ensure_tiny_model(model_cfg: ModelConfig) -> Path:
    """Return the cached tiny model directory, building it first if missing.

    The directory is written under a temporary name and renamed into place, so a
    killed build never leaves a half-written model that a later run would trust.
    """
    target = tiny_model_dir(model_cfg)
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    tokenizer = build_tokenizer()
    model = build_model(model_cfg.tiny, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race: use its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model_cfg: ModelConfig) -> str:
    """The path or hub id that transformers and vLLM should load: the built tiny model, or locate_model's."""
    if model_cfg.path == "tiny":
        return str(ensure_tiny_model(model_cfg))
    return locate_model(model_cfg.path)


def locate_model(name: str) -> str:
    """The local directory or hub id to load for `name`, tried in order: a local path (a name that
    looks like one is never a hub id: rlreason.errors.is_local_path), the HF cache, the hub (its
    config.json is fetched into the cache, where transformers and vLLM then find it).
    Raises NotFound, or HubUnreachable when the hub could not be asked, saying what was tried."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError

    if is_local_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise NotFound(f"no such model directory: {name}")
        if not (path / "config.json").is_file():
            raise NotFound(f"{name}: not a model directory (no config.json)")
        return str(path)
    tried = ["not a local path", f"not in the HF cache ({constants.HF_HUB_CACHE})", "not the built-in 'tiny'"]
    try:
        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            hf_hub_download(name, "config.json")
    except HFValidationError as e:
        raise NotFound(f"model {name!r}: {', '.join(tried)}, and not a hub id ({e})") from None
    except LocalEntryNotFoundError as e:  # offline, or no network
        raise nowhere("model", name, tried, e) from e
    except RepositoryNotFoundError as e:  # also a gated repository without access
        raise NotFound(f"model {name!r}: {', '.join(tried)}, and the hub has no such model, or it is gated ({type(e).__name__})") from e
    except RemoteEntryNotFoundError:
        raise NotFound(f"model {name!r}: the hub has it, but no config.json: not a transformers model") from None
    return name
