"""Learner throughput and MFU: the real RL update (rlreason.learner.policy.Learner.update, or
FSDPLearner with --fsdp) on a locally built Qwen2-architecture model, timed update by update.

    python benchmarks/learner_bench.py                 # ~104M parameters, 32 x 8 rows of 128 + 256..1024 tokens (a GPU's size; on 2 CPU cores about 10 min an update)
    PYTHONPATH=. python3 benchmarks/learner_bench.py   # where rlreason is not installed (run from the repo root)
    python benchmarks/learner_bench.py --fsdp          # the same through FSDP2 (FSDPLearner, one rank)
    python benchmarks/learner_bench.py --quick         # addition_grpo_1m's 1.1M model and lengths: seconds on a CPU
    python benchmarks/learner_bench.py --set optim.micro_batch_size=32 optim.gradient_checkpointing=true
    python benchmarks/learner_bench.py --quick --warm-start   # the recipe's supervised warm start, timed in pieces of 10 steps
    python benchmarks/learner_bench.py --quick --compile      # the learner's model through torch.compile (dynamic shapes);
                                                              # the compile is paid in the first (untimed) update, and printed

It needs torch, transformers and pyyaml only (no vLLM, no Ray), so it runs on a machine where
those cannot be installed. The batch is what make_batch builds from sampled groups: P prompts
x G completions, each a prompt of --prompt-tokens random tokens and a completion whose length
is drawn uniformly from --completion-tokens LO HI, with non-zero advantages (no row is
skipped). The learner is configured by --recipe's (addition_grpo_1m) algo/optim sections plus --set
(optim.mixed_precision 'auto' = bf16 on a GPU; the recipe's loss: token-mean PPO-clip,
one update per batch, no KL: one forward and one backward per row).

FLOPs per update, counted on the real tokens (padding is not counted):
    sum over rows of  6 * N * T  +  6 * L * d_attn * T^2
N = the weights of every matmul (the linear layers and the LM head; the embedding lookup is
not a matmul), T = the row's tokens, L layers, d_attn = heads x head_dim; the second term is
attention's QK^T and AV, forward and backward, over a causal mask (half of T^2). Activation
recomputation (optim.gradient_checkpointing) is not counted: this is MFU, not HFU.
MFU = FLOPs / median update seconds / peak. Peak: --peak-tflops, else the GPU's dense bf16
figure from its data sheet when its name is known (H100 SXM and H200: 989, A100: 312); on a CPU
none, and only the achieved TFLOP/s is printed.

Prints a table, writes JSON (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # appended: a PYTHONPATH tree (benchmarks/ab.sh) comes first
from benchmarks.host import host, provenance

SIZE_100M = [
    "model.tiny.hidden_size=768",
    "model.tiny.num_layers=12",
    "model.tiny.num_heads=12",
    "model.tiny.num_kv_heads=4",
    "model.tiny.intermediate_size=3072",
    "model.tiny.max_position_embeddings=2048",
    "optim.micro_batch_size=64",  # 64 rows of up to 1152 tokens a forward/backward: activations in tens of GiB, not 100+
]

# dense bf16 tensor TFLOP/s from the data sheets, by a substring of torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0)]


def matmul_params(model) -> int:
    """Weights that take part in a matmul per token: every nn.Linear (the LM head too, tied or not)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def update_flops(lengths: list[int], n_matmul: int, layers: int, d_attn: int) -> float:
    """Training FLOPs (forward + backward) of one update over rows of these token counts."""
    return float(sum(6 * n_matmul * t + 6 * layers * d_attn * t * t for t in lengths))


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return value
    return None


def synthetic_batch(vocab: list[int], prompts: int, group_size: int, prompt_tokens: int, completion: tuple[int, int], seed: int):
    """A Batch as make_batch builds it from sampled groups: random tokens, lengths drawn in
    [LO, HI], advantages from N(0, 1) (never exactly zero: no row is skipped)."""
    import torch

    from rlreason.learner.batch import make_batch
    from rlreason.types import Sample

    g = torch.Generator().manual_seed(seed)
    pick = lambda n: [vocab[i] for i in torch.randint(len(vocab), (n,), generator=g).tolist()]
    groups = []
    for _ in range(prompts):
        prompt = pick(prompt_tokens)
        lens = torch.randint(completion[0], completion[1] + 1, (group_size,), generator=g).tolist()
        groups.append([Sample(prompt, pick(n), "", [-1.0] * n, "length", 0) for n in lens])
    return make_batch(groups, torch.randn(prompts, group_size, generator=g), pad_id=0)


def build_learner(cfg, path: str, fsdp: bool, total_steps: int):
    from rlreason.learner.policy import Learner

    args = (path, cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, cfg.ray.threads, total_steps)
    if not fsdp:
        return Learner(*args)
    from rlreason.learner.fsdp import FSDPLearner
    from rlreason.weight_transfer import free_address

    return FSDPLearner(0, 1, free_address(), *args)


def peak_memory_gib(device) -> dict:
    import torch

    out = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        out["gpu_peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["gpu_peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="addition_grpo_1m's 1.1M model and task lengths (CPU, seconds)")
    ap.add_argument("--fsdp", action="store_true", help="FSDPLearner (FSDP2) with one rank, in place of Learner")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--completion-tokens", type=int, nargs=2, default=[256, 1024], metavar=("LO", "HI"))
    ap.add_argument("--warmup", type=int, default=None, help="updates before the timed ones (default 2; --quick: 1)")
    ap.add_argument("--updates", type=int, default=None, help="timed updates (default 5; --quick: 3)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (default: from the GPU's name)")
    ap.add_argument("--warm-start", action="store_true",
                    help="time the recipe's warm start (Learner.warm_start on its teacher's demonstrations) in pieces of "
                         "10 steps, in place of the RL update; --warmup and --updates count pieces")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over the last timed update (or piece): the top ops by self time")
    ap.add_argument("--compile", action="store_true", help="torch.compile the learner's model (dynamic shapes) before the first update")
    ap.add_argument("--recipe", default="recipes/addition_grpo_1m.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides (optim.*, algo.*, model.*), applied last")
    ap.add_argument("--cache-dir", default=None, help="where the model is built (default: model.cache_dir)")
    ap.add_argument("--out", default="runs/bench/learner.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompt_tokens, args.completion_tokens = 24, [16, 40]
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.updates = args.updates if args.updates is not None else (3 if args.quick else 5)

    import torch

    from rlreason.config import load_config
    from rlreason.models import resolve_model

    overrides = ([] if args.quick else SIZE_100M) + ([f"model.cache_dir={args.cache_dir}"] if args.cache_dir else []) + args.set
    cfg = load_config(args.recipe, overrides)
    t0 = time.time()
    path = resolve_model(cfg.model)
    build_s = time.time() - t0
    learner = build_learner(cfg, path, args.fsdp, args.warmup + args.updates)
    model, device = learner.model, learner.device
    n_matmul = matmul_params(model)
    n_params = sum(p.numel() for p in model.parameters())
    mc = model.config
    d_attn = mc.num_attention_heads * (getattr(mc, "head_dim", None) or mc.hidden_size // mc.num_attention_heads)
    tok = learner.tokenizer
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    batch = synthetic_batch(vocab, args.prompts, args.group_size, args.prompt_tokens, tuple(args.completion_tokens), cfg.seed)
    lengths = batch.attention_mask.sum(-1).tolist()
    flops = update_flops(lengths, n_matmul, mc.num_hidden_layers, d_attn)

    if args.compile:
        model.compile(dynamic=True)  # compiles on the first forward: the first warm-up update or piece pays it
    if args.warm_start:
        return warm_start_bench(args, cfg, learner, overrides)

    times, warmup_s, stats = [], [], None
    for i in range(args.warmup + args.updates):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with profiled(args.profile and i == args.warmup + args.updates - 1):
            stats = learner.update(batch, cfg.rollout.temperature)  # its .item() calls wait for the device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        (times if i >= args.warmup else warmup_s).append(time.perf_counter() - t)
    median = statistics.median(times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else host()
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    tflops = flops / median / 1e12
    result = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "learner": "FSDPLearner (1 rank)" if args.fsdp else "Learner",
        "params": n_params,
        "matmul_params": n_matmul,
        "layers": mc.num_hidden_layers,
        "d_attn": d_attn,
        "compute_dtype": str(learner.compute_dtype or learner.dtype),
        "attn_implementation": getattr(mc, "_attn_implementation", None),
        "rows": len(lengths),
        "tokens": int(sum(lengths)),
        "padded_tokens": int(batch.attention_mask.numel()),
        "flops_per_update": flops,
        "update_s": times,
        "warmup_update_s": warmup_s,  # with --compile, the first one includes the compile
        "compile": args.compile,
        "update_s_median": median,
        "tokens_per_s": sum(lengths) / median,
        "tflops": tflops,
        "peak_tflops": peak,
        "mfu": tflops / peak if peak else None,
        "model_build_s": build_s,
        "overrides": overrides,
        "loss_last": stats.loss,
        **peak_memory_gib(device),
        **provenance(),  # host, date, commit, command
    }
    if args.fsdp:
        import torch.distributed as dist

        dist.destroy_process_group()
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "-"
    print(f"device {name} ({device.type}, {result['threads']} threads), torch {torch.__version__}, {result['learner']}, "
          f"compute {result['compute_dtype']}, attention {result['attn_implementation']}")
    print(f"model {n_params / 1e6:.1f}M parameters ({n_matmul / 1e6:.1f}M in matmuls), {mc.num_hidden_layers} layers; "
          f"batch {len(lengths)} rows, {result['tokens']} tokens ({result['padded_tokens']} padded)")
    print(f"{'update s (median)':>18}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}{'peak mem GiB':>14}")
    mem = result.get("gpu_peak_allocated_gib", result["peak_rss_gib"])
    print(f"{median:>18.3f}{result['tokens_per_s']:>12.0f}{tflops:>10.2f}{mfu:>8}{mem:>14.2f}")
    print("untimed warm-up updates (s): " + " ".join(f"{t:.3f}" for t in warmup_s) + ("  (the first compiles)" if args.compile else ""))
    print("updates (s): " + " ".join(f"{t:.3f}" for t in times) + ("" if peak else "; MFU needs a peak: --peak-tflops"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


WARM_PIECE = 10


@contextlib.contextmanager
def profiled(on: bool):
    """torch.profiler around the block when `on`; prints the top 15 ops by self CPU time (the
    profiler's own overhead is in that run's time)."""
    if not on:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yield
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def warm_start_bench(args, cfg, learner, overrides) -> int:
    """Seconds per warm-start step: the recipe's warm start (its task's teacher, its batch size,
    lr and schedule), run in pieces of WARM_PIECE steps; the first --warmup pieces not timed."""
    import torch

    from rlreason.data.stream import demonstrations, make_task

    ws = cfg.warm_start
    pieces = args.warmup + args.updates
    if pieces * WARM_PIECE > ws.steps:
        raise SystemExit(f"--warmup + --updates = {pieces} pieces of {WARM_PIECE} steps: more than warm_start.steps={ws.steps}")
    task = make_task(cfg.task.name, cfg.task.digits, cfg.task.hints)
    pairs = demonstrations(task, ws.steps * ws.batch_size, ws.teacher_error, cfg.seed)
    times, warmup_s, out = [], [], {}
    for i in range(pieces):
        t = time.perf_counter()
        with profiled(args.profile and i == pieces - 1):
            out = learner.warm_start(pairs if i == 0 else None, ws, i * WARM_PIECE, (i + 1) * WARM_PIECE)
        (times if i >= args.warmup else warmup_s).append((time.perf_counter() - t) / WARM_PIECE)
    median = statistics.median(times)
    result = {
        "device": host(), "torch": torch.__version__, "threads": torch.get_num_threads(), "mode": "warm_start",
        "batch_size": ws.batch_size, "steps_timed": len(times) * WARM_PIECE, "step_s": times, "step_s_median": median,
        "warmup_step_s": warmup_s, "compile": args.compile,
        "overrides": overrides, "loss_last": out["losses"][-1], **peak_memory_gib(learner.device), **provenance(),
    }
    print(f"device {result['device']} ({result['threads']} threads), torch {torch.__version__}; warm start of {cfg.task.name}, "
          f"batch {ws.batch_size}, micro-batches: {cfg.optim.micro_batch_size} rows, {cfg.optim.micro_batch_tokens or 'any'} tokens")
    print(f"warm-start step s, median of {len(times)} pieces of {WARM_PIECE}: {median:.4f} "
          f"[{min(times):.4f}-{max(times):.4f}]; loss after {pieces * WARM_PIECE} steps {result['loss_last']:.4f}")
    print(f"untimed pieces: {' '.join(f'{t * WARM_PIECE:.2f}' for t in warmup_s)} s" + ("  (the first compiles)" if args.compile else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
