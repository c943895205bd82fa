"""THE loop: warm start, then sample -> score -> advantages -> update -> sync, with held-out evals.

The engine and learner are whatever the caller built (Ray actors in `rlreason train`,
plain objects in a unit test); the loop only calls their methods. It never imports
ray or vllm, and it has no branches on the algorithm: each piece is the function the
config names.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from rlreason.algos import ADVANTAGES
from rlreason.config import Config
from rlreason.data.addition import PromptStream, demonstrations, heldout_problems
from rlreason.learner.batch import make_batch
from rlreason.metrics import MetricsLogger, plot
from rlreason.rewards import resolve_reward, score
from rlreason.types import Problem, Sample


def score_groups(reward_fn, problems: list[Problem], groups: list[list[Sample]]) -> torch.Tensor:
    """Rewards (P, G): sample j of problem i scored against problem i's answer."""
    pairs = [(p, s) for p, g in zip(problems, groups, strict=True) for s in g]
    rewards = score(reward_fn, [p.prompt for p, _ in pairs], [s.text for _, s in pairs], [p.answer for p, _ in pairs])
    return torch.tensor(rewards).view(len(problems), -1)


def evaluate(engine, problems: list[Problem], reward_fn, max_tokens: int) -> dict:
    """Greedy accuracy on held-out problems."""
    t0 = time.time()
    groups = engine.generate([p.prompt for p in problems], 1, 0.0, 1.0, max_tokens, 0)
    return {"eval/accuracy": score_groups(reward_fn, problems, groups).mean().item(), "timing/eval": time.time() - t0}


def run(cfg: Config, engine, learner, run_dir: Path) -> dict:
    """Train; return the final record (with 'eval/accuracy_start' and 'eval/accuracy')."""
    run_dir = Path(run_dir)
    reward_fn = resolve_reward(cfg.reward)
    all_heldout = heldout_problems(cfg.task.digits, cfg.task.heldout_size, cfg.task.seed)
    heldout = all_heldout[: cfg.eval.size]
    stream = PromptStream(cfg.task.digits, cfg.seed, exclude=all_heldout)
    metrics = MetricsLogger(run_dir, cfg.steps)
    P, G, ro = cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout
    advantage_fn = ADVANTAGES[cfg.algo.advantage]

    # Cold start: imitate an imperfect teacher, then put those weights into the engine.
    start = {"step": 0}
    if cfg.warm_start.enabled:
        ws = cfg.warm_start
        pairs = demonstrations(ws.steps * ws.batch_size, cfg.task.digits, ws.teacher_carry_drop, cfg.seed, exclude=all_heldout)
        start.update(learner.warm_start(pairs, ws))
        engine.load_weights(learner.weights(), version=0)
    start.update(evaluate(engine, heldout, reward_fn, ro.max_tokens))
    metrics.log(start)
    first_acc = last_acc = start["eval/accuracy"]

    for step in range(1, cfg.steps + 1):
        t0 = time.time()
        problems = stream.next_batch(P)
        groups = engine.generate([p.prompt for p in problems], G, ro.temperature, ro.top_p, ro.max_tokens, seed=ro.seed + step * P)
        t_gen = time.time()
        rewards = score_groups(reward_fn, problems, groups)  # (P, G)
        advantages = advantage_fn(rewards, cfg.algo.std_eps)  # (P, G)
        batch = make_batch(groups, advantages, pad_id=0)  # padding is masked out; any id works
        t_score = time.time()
        stats = learner.update(batch, ro.temperature)
        t_update = time.time()
        engine.load_weights(learner.weights(), version=step)  # self-improvement: sample from the new policy
        t_sync = time.time()

        n_tokens = sum(len(s.completion_ids) for g in groups for s in g)
        record = {
            "step": step,
            "reward/mean": rewards.mean().item(),
            "reward/std": rewards.std(unbiased=False).item(),
            "reward/mixed_group_frac": (rewards.std(-1) > 0).float().mean().item(),  # groups that carry signal
            "response/mean_length": n_tokens / (P * G),
            "response/truncated_frac": sum(s.finish_reason == "length" for g in groups for s in g) / (P * G),
            **{k if k in ("loss", "lr") else f"train/{k}": v for k, v in asdict(stats).items()},
            "timing/generate": t_gen - t0,
            "timing/score": t_score - t_gen,
            "timing/update": t_update - t_score,
            "timing/sync": t_sync - t_update,
            "throughput/tokens_per_s": n_tokens / (t_gen - t0),
            "policy_version": step,
        }
        if step == cfg.steps or (cfg.eval.every and step % cfg.eval.every == 0):
            record.update(evaluate(engine, heldout, reward_fn, ro.max_tokens))
            last_acc = record["eval/accuracy"]
        record["timing/step"] = time.time() - t0
        metrics.log(record)

    final_dir = learner.save(str(run_dir / "final"))
    metrics.close()
    plot(metrics.path, run_dir / "progress.png")
    return {"eval/accuracy_start": first_acc, "eval/accuracy": last_acc, "final_model": final_dir}

