"""What several test modules share: fixed tokens, comparisons, test configs, a recording engine,
and placements that free their Ray resources when a test is done with them."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from rlreason.config import load_config

ROOT = Path(__file__).resolve().parents[1]
IDS = [6, 7, 10, 75, 8, 11, 9, 84, 10, 75, 9, 75, 3, 83, 4, 6, 81]  # fixed tokens: "347+586>7+6+0=13;4+"
PROMPTS = ["347+586>", "12+34>", "905+17>", "1+2>", "66+66>"]  # 5: uneven shards over 2 workers
ADV = [[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]  # advantages for 2 prompts x 4 samples

# A short real run: an untrained model gets mixed groups from the parity reward
SHORT_RUN = [
    "warm_start.enabled=false", "reward=tests.plugins:parity_reward", "rollout.prompts_per_step=4",
    "rollout.group_size=4", "eval.size=8", "optim.lr=1e-2", "optim.warmup_steps=1",
]


def max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def make_config(model_cfg, *overrides, recipe: str | None = None):
    """A config over the session's tiny model (and a recipe of recipes/ by name), 1 GiB of KV cache.
    The session model's shape overrides a recipe's (addition_grpo.yaml's is smaller), so that a
    learner built from the config matches the shared engine's weights."""
    from dataclasses import asdict

    path = ROOT / "recipes" / f"{recipe}.yaml" if recipe else None
    shape = [f"model.tiny.{k}={v}" for k, v in asdict(model_cfg.tiny).items()]
    return load_config(path, [f"model.cache_dir={model_cfg.cache_dir}", *shape, "rollout.kv_cache_gib=1", *overrides])




def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def serve_model_on_disk(engine, model_path) -> int:
    """Put the model's own weights back into a shared engine (another test may have left its
    own), as version 0. The full state dict: a tied lm_head.weight included."""
    from transformers import AutoModelForCausalLM

    return engine.load_weights(AutoModelForCausalLM.from_pretrained(str(model_path)).state_dict(), 0)


def engine_state(engine):
    """Run inside an engine actor: the vLLM model's parameters (vLLM's own names), on CPU."""
    return engine.llm.apply_model(lambda m: {k: v.detach().to("cpu", copy=True) for k, v in m.named_parameters()})[0]


def held_weight_dtypes(state) -> set:
    """The dtypes of the weight matrices and vectors an engine still holds. vLLM-CPU repacks bf16
    linear weights for oneDNN on CPUs with AVX512-BF16 (an empty tensor is left in the
    parameter), and on CPUs with AMX it also keeps the qkv bias in float32 for that kernel."""
    return {v.dtype for k, v in state.items() if k.endswith(".weight") and v.numel()}


class Recording:
    """Delegates to the real engine and records what the loop asked of it, in order: each
    generate (prompts, seed, texts and versions) and, through `sync`, each push."""

    def __init__(self, engine, log):
        self.engine, self.log = engine, log

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed):
        groups = self.engine.generate(prompts, n, temperature, top_p, max_tokens, seed)
        self.log.append(("generate", list(prompts), seed, [[(s.text, s.version) for s in g] for g in groups]))
        return groups

    def sync(self, sync):
        """`sync`, its pushes recorded in this log as ('push', version)."""
        push, log = sync._push, self.log

        def recorded(version):
            log.append(("push", version))
            return push(version)

        sync._push = recorded
        return sync


@contextlib.contextmanager
def placed(cfg, model_path):
    """build_placement(cfg, model_path) -> (engine, learner, sync); on exit every actor is killed
    and every placement group removed, so the session's Ray cluster is free for the next test."""
    from rlreason.cluster.placement import build_placement, shutdown_placement

    engine, learner, sync = build_placement(cfg, str(model_path))
    try:
        yield engine, learner, sync
    finally:
        shutdown_placement(engine, learner)


def free(*parts) -> None:
    """Shut down rollout pools and learners: their actors killed, their placement groups removed."""
    for part in parts:
        part.shutdown()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """A .jsonl data set file of `rows`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def addition_rows(n: int) -> list[dict]:
    """n addition problems as data set rows: question q, gold answer, worked solution."""
    import random

    from rlreason.data.addition import scratchpad

    rng = random.Random(0)
    rows = []
    for _ in range(n):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        rows.append({"q": f"{a}+{b}>", "gold": str(a + b), "work": scratchpad(a, b, 3)})
    return rows


def mixed_groups_batch(advantages):
    """Three groups of two samples, of different lengths; `advantages` (3, 2)."""
    import torch

    from rlreason.learner.batch import make_batch
    from rlreason.types import Sample

    def sample(completion, logprob):
        return Sample([10, 11, 12], completion, "", [logprob] * len(completion), "stop", 0)

    groups = [
        [sample([13, 14, 2], -1.0), sample([15, 2], -1.0)],
        [sample([16, 17, 18, 2], -30.0), sample([19, 2], -30.0)],  # far from the learner's ~-4.6
        [sample([13, 2], -1.5), sample([14, 15, 2], -1.5)],
    ]
    return make_batch(groups, torch.tensor(advantages), pad_id=0)


def assert_same_weights(a: dict, b: dict, start: dict, rel=1e-3, worst=1e-3):
    """Weights `a` and `b`, both trained from `start`, made the same update: the difference of the
    two updates is within `rel` of the update's norm, and no single weight differs by `worst` or
    more (None: not checked). Adam divides by sqrt(v), so float noise in a near-zero gradient moves
    single weights by a fair part of lr: one process with micro-batches of 1 vs 8 rows ends these
    updates ~1e-5 apart in this norm, up to 5e-5 in one weight; 2 ranks vs 1 process, 7e-5 and
    7e-4 after two updates on an AMX host (its kernels sum in another order)."""
    assert a.keys() == b.keys() == start.keys()
    diff = sum(((a[k] - b[k]).double() ** 2).sum() for k in a).sqrt()
    update = sum(((b[k] - start[k]).double() ** 2).sum() for k in a).sqrt()
    assert update > 0 and diff / update < rel, f"updates differ by {diff / update:.2e} of their norm"
    if worst is not None:
        most = max((a[k] - b[k]).abs().max().item() for k in a)
        assert most < worst, f"one weight differs by {most}"
