"""THE loop: warm start, then sample -> score -> advantages -> update -> sync, with held-out evals.

The engine, learner and sync are whatever the caller built (Ray actors and a transport in
`rlreason train`: rlreason.cluster.placement; plain objects and rlreason.sync.DirectSync in a
unit test); the loop only calls their methods. It never imports ray or vllm, and it has no
branches on the algorithm, the placement or the transport: each piece is what the config names.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlreason import checkpoint
from rlreason.algos import ADVANTAGES, GROUP_FILTERS, keep_mixed, overlong_penalty
from rlreason.config import Config, ConfigError, dumps
from rlreason.data.curriculum import CurriculumStream, Mixture
from rlreason.data.dataset_task import build_task
from rlreason.data.stream import PromptStream, demonstrations, heldout_problems
from rlreason.evaluate import EvalSet, greedy_accuracy, load_eval_sets, majority_label, vote_answer
from rlreason.learner.batch import make_batch
from rlreason.metrics import MetricsLogger, plot, plot_curriculum, read_metrics
from rlreason.progress import Progress
from rlreason.rewards import RewardError, ScoringPool, Scores, resolve_reward, reward_names, score_parallel
from rlreason.rewards.math_reward import math_reward_stats, normalize
from rlreason.sync import WeightSync
from rlreason.trackers import open_trackers
from rlreason.types import Problem, Sample

log = logging.getLogger(__name__)


def score_groups(cfg: Config, reward_fn, problems: list[Problem], groups: list[list[Sample]], scores: Scores | None = None):
    """Rewards (P, G): sample j of problem i scored against problem i's answer, rows in parallel
    (or `scores`, already computed, row-major). Also returns a (P, G) bool mask of the samples
    whose reward failed (they score 0) and the failures as 'row i (prompt ...): why'."""
    pairs = [(p, s) for p, g in zip(problems, groups, strict=True) for s in g]
    if scores is None:
        scores = score_parallel(
            reward_fn, [p.prompt for p, _ in pairs], [s.text for _, s in pairs], [p.answer for p, _ in pairs], cfg.scoring.workers
        )
    failed = [f"row {i} (prompt {pairs[i][0].prompt[:80]!r}): {e}" for i, e in enumerate(scores.errors) if e is not None]
    shape = (len(problems), -1)
    return torch.tensor(scores.values).view(shape), torch.tensor([e is not None for e in scores.errors]).view(shape), failed


def group_label(cfg: Config, problem: Problem, group: list[Sample], extractor: str) -> str | None:
    """What a group's samples are scored against: the problem's gold answer; with
    task.labels=majority, the answer at least task.majority_min of the group's own samples give
    (read by `extractor`: no verifier label), or None when none does (the group then scores 0)."""
    if cfg.task.labels == "gold":
        return problem.answer
    return majority_label([vote_answer(s.text, extractor) for s in group], cfg.task.majority_min)


def generate_and_score(cfg: Config, engine, reward_fn, problems: list[Problem], n, temperature, top_p, max_tokens, seed, labels=None):
    """Sample n completions per problem and score them against each group's label (group_label,
    or `labels` when given): (groups, (rewards, failed, why) as score_groups returns them, seconds
    until the last group was sampled, the labels). With an engine that streams (generate_stream),
    each group is scored as soon as it is sampled, while the rest are still generating."""
    t0, prompts, args = time.time(), [p.prompt for p in problems], (n, temperature, top_p, max_tokens, seed)
    stream = getattr(engine, "generate_stream", None)
    # an engine that does not stream: one chunk, the whole batch
    chunks = stream(prompts, *args) if stream else [list(enumerate(engine.generate(prompts, *args)))]
    pool, groups = ScoringPool(reward_fn, cfg.scoring.workers), [None] * len(problems)
    majority = cfg.task.labels == "majority"
    labels = list(labels) if labels is not None else [None] * len(problems)
    fixed = [x is not None for x in labels]
    extractor = cfg.task.extractor() if majority else ""

    def scored(i: int) -> bool:  # a group without a majority is not scored; a gold answer may be None (the reward decides)
        return not (majority and labels[i] is None)

    for chunk in chunks:
        for i, group in chunk:
            groups[i] = group
            if not fixed[i]:
                labels[i] = group_label(cfg, problems[i], group, extractor)
            if scored(i):
                for j, s in enumerate(group):
                    pool.submit((i, j), problems[i].prompt, s.text, labels[i])
    generate_s = time.time() - t0
    keys = [(i, j) for i, g in enumerate(groups) for j in range(len(g))]
    done = pool.scores([k for k in keys if scored(k[0])])
    values, errors = iter(done.values), iter(done.errors)
    rows = [(next(values), next(errors)) if scored(i) else (0.0, None) for i, _ in keys]  # no majority: 0, not a failure
    scores = Scores([v for v, _ in rows], [e for _, e in rows])
    return groups, score_groups(cfg, reward_fn, problems, groups, scores), generate_s, labels


def sample_groups(cfg: Config, engine, reward_fn, problems: list[Problem], seed: int):
    """generate_and_score with rollout.group_size samples a problem. With rollout.probe = k, each
    problem gets k first; only those whose k are scored unevenly get the other group_size - k
    (seeds after the probe's; scored against the probe's labels). Returns (the problems with whole
    groups, their groups, (rewards, failed, why), seconds of generation, their labels, and the
    probe-only groups as (problem, group, rewards, label))."""
    ro = cfg.rollout
    args = (ro.temperature, ro.top_p, ro.max_tokens)
    if not ro.probe:
        groups, scored, generate_s, labels = generate_and_score(cfg, engine, reward_fn, problems, ro.group_size, *args, seed)
        return problems, groups, scored, generate_s, labels, []
    groups, (r, failed, why), generate_s, labels = generate_and_score(cfg, engine, reward_fn, problems, ro.probe, *args, seed)
    more = keep_mixed(r) & ~failed.any(1)
    rows = list(zip(problems, groups, r.tolist(), labels, more.tolist(), strict=True))
    probed = [(p, g, row, lab) for p, g, row, lab, m in rows if not m]
    kept = [(p, g, lab) for p, g, _, lab, m in rows if m]
    if not kept:
        return [], [], (torch.zeros(0, ro.group_size), torch.zeros(0, ro.group_size, dtype=torch.bool), why), generate_s, [], probed
    extra, (r2, failed2, why2), generate2_s, _ = generate_and_score(
        cfg, engine, reward_fn, [p for p, _, _ in kept], ro.group_size - ro.probe, *args, seed + len(problems) * ro.probe,
        labels=[lab for _, _, lab in kept],
    )
    groups = [g + e for (_, g, _), e in zip(kept, extra, strict=True)]
    scored = (torch.cat([r[more], r2], 1), torch.cat([failed[more], failed2], 1), why + why2)
    return [p for p, _, _ in kept], groups, scored, generate_s + generate2_s, [lab for _, _, lab in kept], probed


def collect_groups(cfg: Config, engine, stream: PromptStream, reward_fn, step: int):
    """Sample P prompts x G completions and score them (reward + overlong shaping). Groups the
    config's group filter rejects, and groups with a sample whose reward failed, are dropped and
    refilled with new prompts, for up to algo.max_sampling_rounds rounds (DAPO dynamic sampling
    with 'mixed'; rollout.probe first samples a few of each, sample_groups). Returns (problems,
    groups, rewards (P', G), info), P' <= P, info = {'rounds', 'reward_errors', ..., 'record': the
    step's sampling metrics}. If no group passes, the last round is kept whole, failed groups
    zeroed (with a probe: its groups, zeroed): their advantages are then zero, so the update
    changes nothing but its KL/entropy terms. More than scoring.max_error_frac failed samples
    raise RewardError naming one."""
    ro, algo, P = cfg.rollout, cfg.algo, cfg.rollout.prompts_per_step
    keep_fn = GROUP_FILTERS[algo.group_filter]
    problems: list[Problem] = []
    groups: list[list[Sample]] = []
    rewards: list[torch.Tensor] = []
    n_scored, failures = 0, []
    t_generate = t_score = 0.0
    sampled: list[tuple] = []  # every group, kept or not: (problem, rewards, tokens, label)
    last_probe: list = []
    for rnd in range(algo.max_sampling_rounds):
        batch_problems = stream.next_batch(P - len(problems))
        # fixed per (step, round): reproducible; P * G seeds per call, one per sample, never reused
        seed = ro.seed + (step * algo.max_sampling_rounds + rnd) * P * ro.group_size
        t0 = time.time()
        batch_problems, batch_groups, (r, failed, why), generate_s, labels, probed = sample_groups(cfg, engine, reward_fn, batch_problems, seed)
        # scoring that overlapped a streamed generation is not counted again
        t_generate, t_score = t_generate + generate_s, t_score + time.time() - t0 - generate_s
        lengths = torch.tensor([[len(s.completion_ids) for s in g] for g in batch_groups], dtype=torch.long).view(len(batch_groups), ro.group_size)
        n_scored, failures = n_scored + failed.numel() + sum(len(g) for _, g, _, _ in probed), failures + why
        if len(failures) > cfg.scoring.max_error_frac * n_scored:
            raise RewardError(
                f"step {step}: the reward failed on {len(failures)} of {n_scored} samples "
                f"(more than scoring.max_error_frac={cfg.scoring.max_error_frac}); first: {failures[0]}"
            )
        r = r + overlong_penalty(lengths, ro.max_tokens, algo.overlong_buffer, algo.overlong_penalty)
        sampled += [(p, row, n, lab) for p, row, n, lab in zip(batch_problems, r.tolist(), lengths.sum(1).tolist(), labels, strict=True)]
        sampled += [(p, row, sum(len(s.completion_ids) for s in g), lab) for p, g, row, lab in probed]
        keep = keep_fn(r) & ~failed.any(1)
        problems += [p for p, k in zip(batch_problems, keep) if k]
        groups += [g for g, k in zip(batch_groups, keep) if k]
        rewards.append(r[keep])
        last_probe = probed
        if len(problems) == P:
            break
    if failures:
        log.warning("step %d: the reward failed on %d samples (their groups sit out this update); first: %s", step, len(failures), failures[0])
    if not problems and batch_problems:
        r[failed.any(1)] = 0.0
        problems, groups, rewards = batch_problems, batch_groups, [r]
    elif not problems:  # rollout.probe: every prompt of the last round stopped at its probe; keep those groups
        problems, groups = [p for p, _, _, _ in last_probe], [g for _, g, _, _ in last_probe]
        rewards = [torch.zeros(len(last_probe), ro.probe)]
    # a curriculum (rlreason.data.curriculum) reads every sampled group, and may move its frontier
    observe = getattr(stream, "observe", None)
    curriculum = observe([x[0] for x in sampled], [x[1] for x in sampled], [x[2] for x in sampled]) if observe else {}
    record = {"sampling/tokens": sum(x[2] for x in sampled), "sampling/prompts": len(sampled)}  # every round, probes included
    if ro.probe:
        record["sampling/probe_stopped"] = sum(len(x[1]) == ro.probe for x in sampled)
    if cfg.task.labels == "majority":  # no verifier in training; the gold is read here for the record only
        labelled = [(p, lab) for p, _, _, lab in sampled if lab is not None]
        record["labels/labelled_frac"] = len(labelled) / len(sampled)
        record["labels/gold_agree"] = sum(lab == normalize(p.answer) for p, lab in labelled) / max(1, len(labelled))
    return problems, groups, torch.cat(rewards), {
        "rounds": rnd + 1, "reward_errors": len(failures), "epoch": stream.epoch, "generate_s": t_generate, "score_s": t_score,
        "curriculum": curriculum, "record": record,
    }


class Rollouts:
    """Each step's scored batch. rollout.max_staleness = 0: collected when asked for. N > 0
    (async mode): the batches of the next N steps are sampled and scored in a background
    thread while the learner trains, so a batch may come from a policy up to N versions old
    (each Sample carries its version; algo.tis_cap corrects the difference). Batch seeds and
    prompts are the same as in the synchronous mode; only the sampling policy lags."""

    def __init__(self, cfg: Config, engine, sync: WeightSync, stream: PromptStream, reward_fn, last_step: int):
        self.cfg, self.stream, self.reward_fn, self.last_step = cfg, stream, reward_fn, last_step
        self.ahead = cfg.rollout.max_staleness
        # async: the rollout thread and the main thread (sync, evaluation) share the engine, one call at a time
        self.engine = sync.serialized(engine) if self.ahead else engine
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rollout") if self.ahead else None
        self._pending: deque = deque()  # (step, future), oldest first
        self._before: dict[int, dict] = {}  # step -> the stream's state before its batch was drawn
        self._lock = threading.Lock()

    def _collect(self, step: int):
        with self._lock:
            self._before[step] = self.stream.state_dict()
        return collect_groups(self.cfg, self.engine, self.stream, self.reward_fn, step)

    def batch(self, step: int):
        """(problems, groups, rewards (P', G), info) for `step`."""
        if not self.ahead:
            return collect_groups(self.cfg, self.engine, self.stream, self.reward_fn, step)
        nxt = self._pending[-1][0] + 1 if self._pending else step
        while nxt <= min(step + self.ahead, self.last_step):
            self._pending.append((nxt, self._pool.submit(self._collect, nxt)))
            nxt += 1
        queued, future = self._pending.popleft()
        assert queued == step, (queued, step)
        return future.result()

    def stream_state(self, step: int) -> dict:
        """The sampler state to checkpoint after training on `step`: before step + 1's batch was
        drawn, so that a resume draws it again (batches in flight are not saved)."""
        with self._lock:
            for done in [s for s in self._before if s <= step]:
                del self._before[done]
            return self._before.get(step + 1, self.stream.state_dict())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # the batch being sampled finishes first


@dataclass
class Inputs:
    """What a run reads, resolved once (rlreason.train passes the model it resolved)."""

    task: object  # rlreason.data.stream.Task
    exclude: list[Problem]  # every held-out problem: never trained on
    heldout: EvalSet  # the first eval.size of them: eval/accuracy
    reward_fn: object  # the training reward
    eval_sets: list[EvalSet]  # eval.datasets: eval/<name>/accuracy
    model_path: str = ""  # the resolved model (the warm-start cache's key)
    # task.curriculum: a held-out set per difficulty it climbs, the first frontier first (eval/d<D>/accuracy)
    curriculum_sets: dict = field(default_factory=dict)


def resolve_inputs(cfg: Config, model_path: str) -> Inputs:
    """The task, its held-out problems, the rewards and eval.datasets (a missing file or field
    stops the run here, before any work). The tokenizer is loaded only when a data set needs it."""
    tokenizer = None
    if cfg.task.name == "dataset" or cfg.eval.datasets:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
    task = build_task(cfg, tokenizer)
    exclude = heldout_problems(task, cfg.task.heldout_size, cfg.task.seed)
    heldout = exclude[: cfg.eval.size]
    eval_fn = resolve_reward(cfg.eval.reward or reward_names(cfg.reward)[0])  # correctness only, no shaping terms
    sets = {}
    if cfg.task.curriculum.enabled:
        for d in curriculum_levels(cfg, task):
            problems = heldout_problems(task.at(d), cfg.task.curriculum.eval_size, cfg.task.seed)
            sets[d] = EvalSet(f"d{d}", problems, [p.prompt for p in problems], eval_fn)
            exclude = exclude + problems
    return Inputs(
        task, exclude, EvalSet("heldout", heldout, [p.prompt for p in heldout], eval_fn),
        resolve_reward(cfg.reward), load_eval_sets(cfg, tokenizer) if cfg.eval.datasets else [], model_path, sets,
    )


def curriculum_levels(cfg: Config, task) -> list:
    """The difficulties task.curriculum climbs: from its first frontier (task.curriculum.start;
    null: addition's task.digits, what the warm start demonstrates, or a data set's lowest
    difficulty) to task.curriculum.top (null: the task's hardest)."""
    cc, levels = cfg.task.curriculum, task.difficulties()
    if not levels:
        raise ConfigError("key 'task.curriculum.enabled': the task's problems carry no difficulty")
    start = cc.start if cc.start is not None else (cfg.task.digits if cfg.task.name == "addition" else levels[0])
    if start not in levels:
        raise ConfigError(f"key 'task.curriculum.start': {start} is not a difficulty of the task (it has {levels})")
    top = cc.top if cc.top is not None else levels[-1]
    return [d for d in levels if start <= d <= top]


def make_stream(cfg: Config, inputs: Inputs):
    """The run's prompt stream: a CurriculumStream under task.curriculum, else a PromptStream."""
    if cfg.task.curriculum.enabled:
        return CurriculumStream(inputs.task, cfg.task.curriculum, cfg.seed, list(inputs.curriculum_sets), exclude=inputs.exclude)
    return PromptStream(inputs.task, cfg.seed, exclude=inputs.exclude, size=cfg.task.train_size)


def evaluate(cfg: Config, engine, inputs: Inputs, frontier=None) -> dict:
    """Greedy accuracy on the held-out problems (eval/accuracy), on each of eval.datasets, and
    under a curriculum on each difficulty's held-out set from the start to `frontier` +
    task.curriculum.eval_ahead difficulties (eval/d<D>/accuracy)."""
    ro, workers, t0 = cfg.rollout, cfg.scoring.workers, time.time()
    accuracy, errors = greedy_accuracy(engine, inputs.heldout, ro.max_tokens, workers)
    out = {"eval/accuracy": accuracy, "eval/reward_errors": errors}
    sets = list(inputs.eval_sets)
    if inputs.curriculum_sets:
        levels = list(inputs.curriculum_sets)
        last = (levels.index(frontier) if frontier is not None else 0) + cfg.task.curriculum.eval_ahead
        sets += [inputs.curriculum_sets[d] for d in levels[: last + 1]]
    for es in sets:
        out[f"eval/{es.name}/accuracy"], out[f"eval/{es.name}/reward_errors"] = greedy_accuracy(engine, es, ro.max_tokens, workers)
    out["timing/eval"] = time.time() - t0
    return out


def save_checkpoint(
    cfg: Config, run_dir: Path, step: int, learner, stream: PromptStream, metrics: MetricsLogger, stream_state: dict | None = None
) -> Path:
    """The whole run state at the end of `step` (see rlreason.checkpoint for the layout)."""
    tmp = checkpoint.begin(run_dir / "checkpoints", step)
    learner.save_checkpoint(str(tmp))  # policy, optimizer, scheduler, learner RNGs, critic, reference
    state = {"step": step, "policy_version": step, "stream": stream_state or stream.state_dict(), "finished": step >= cfg.steps}
    checkpoint.write_text(tmp / "trainer_state.json", json.dumps(state, indent=1))
    torch.save(checkpoint.rng_state(), tmp / "driver_rng.pt")
    checkpoint.write_text(tmp / "config.yaml", dumps(cfg))
    checkpoint.write_text(tmp / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in metrics.rows))
    return checkpoint.commit(tmp, step, cfg.checkpoint.keep_last)


def restore_checkpoint(path: Path, learner, stream: PromptStream) -> tuple[int, list[dict]]:
    """Load a checkpoint into the learner, the prompt stream and this process's RNGs.
    Returns (step, metrics history)."""
    state = json.loads((path / "trainer_state.json").read_text())
    learner.load_checkpoint(str(path))
    stream.load_state_dict(state["stream"])
    checkpoint.set_rng_state(torch.load(path / "driver_rng.pt", weights_only=False))
    return state["step"], read_metrics(path / "metrics.jsonl")


def run(cfg: Config, engine, learner, sync: WeightSync, run_dir: Path, resume: Path | None = None,
        should_stop=lambda step: False, inputs: Inputs | None = None) -> dict:
    """Train from scratch, or from the checkpoint `resume`. After each step, `should_stop(step)`
    may ask to save and return early (SIGTERM). `inputs`: resolve_inputs(cfg, model), resolved
    here from cfg.model when not given. Returns the final record: 'eval/accuracy_start',
    'eval/accuracy', 'final_model', 'step', 'stopped'."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if inputs is None:
        from rlreason.models import resolve_model

        inputs = resolve_inputs(cfg, resolve_model(cfg.model))
    stream = make_stream(cfg, inputs)

    if resume is None:
        metrics = MetricsLogger(run_dir, cfg.steps, trackers=open_trackers(cfg, run_dir, None))
        # Cold start: imitate an imperfect teacher, then put those weights into the engine.
        start = {"step": 0}
        if cfg.warm_start.enabled:
            ws = cfg.warm_start
            teacher_task = Mixture(inputs.task, ws.difficulties) if ws.difficulties else inputs.task
            pairs = demonstrations(teacher_task, ws.steps * ws.batch_size, ws.teacher_error, cfg.seed, exclude=inputs.exclude)
            start.update(cached_warm_start(cfg, learner, pairs, inputs.model_path))
            sync.push(version=0)
            log.info("the rollout engines serve the warm-started policy; evaluating it")
        start.update(evaluate(cfg, engine, inputs))
        metrics.log(start)
        first_step = 1
        if cfg.checkpoint.every or should_stop(0):
            save_checkpoint(cfg, run_dir, 0, learner, stream, metrics)  # the warm start is worth keeping
        if should_stop(0):
            return _result(metrics, run_dir, 0, stopped=True)
    else:
        done, history = restore_checkpoint(resume, learner, stream)
        metrics = MetricsLogger(run_dir, cfg.steps, history=history, trackers=open_trackers(cfg, run_dir, history))
        sync.push(version=done)  # the restored policy, before the first generation
        first_step = done + 1
        log.info("resumed from %s at step %d", resume, done)

    rollouts = Rollouts(cfg, engine, sync, stream, inputs.reward_fn, cfg.steps)
    try:
        return _train(cfg, rollouts, learner, sync, run_dir, metrics, first_step, inputs, should_stop)
    finally:
        rollouts.close()


def warm_start(learner, pairs: list[tuple[str, str]], ws, pieces: int = 50) -> dict:
    """The learner's warm start in `pieces` calls, with a progress display between them (step,
    loss, elapsed time, ETA). Returns the learner's summary of the whole warm start."""
    step = max(1, -(-ws.steps // pieces))
    out: dict = {}
    with Progress(ws.steps, "warm start") as bar:
        for first in range(0, ws.steps, step):
            last = min(first + step, ws.steps)
            out = learner.warm_start(pairs if first == 0 else None, ws, first, last)
            bar.update(last - first, loss=out["losses"][-1])
    return {k: v for k, v in out.items() if k != "losses"}


WARM_CACHE_VERSION = 2  # bump when what a cached warm start holds, or how it is made, changes


def warm_start_key(cfg: Config, pairs: list[tuple[str, str]], model_path: str) -> str:
    """What determines a warm start's outcome on a machine, hashed: the demonstrations (they carry
    the task, the teacher's error, the held-out exclusion and the seed), the warm-start settings,
    the starting weights (the model; a local directory's files by name, size and time), the
    learner's dtype, kernels, micro-batches, threads and device, the seed, and torch's version."""
    import hashlib

    ws = {k: v for k, v in asdict(cfg.warm_start).items() if k != "cache"}
    files = []
    if Path(model_path).is_dir():
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(model_path).iterdir() if f.is_file())
    parts = {
        "v": WARM_CACHE_VERSION, "pairs": hashlib.sha256(json.dumps(pairs).encode()).hexdigest(), "warm_start": ws,
        "model": model_path, "model_files": files, "dtype": cfg.model.dtype, "mixed_precision": cfg.optim.mixed_precision,
        "attn": cfg.optim.attn_implementation, "micro_batch": [cfg.optim.micro_batch_size, cfg.optim.micro_batch_tokens],
        "learner_cpus": cfg.ray.learner_cpus, "learner_gpus": cfg.ray.learner_gpus,
        # the learner's torch threads (rlreason.cluster.actors.node_threads): ray.threads, else the cores split by placement
        "threads": cfg.ray.threads, "placement": cfg.ray.placement, "cores": os.cpu_count(),
        "seed": cfg.seed, "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_warm_start(cfg: Config, learner, pairs: list[tuple[str, str]], model_path: str) -> dict:
    """The warm start, or its outcome from the cache (warm_start.cache, one learner rank): a hit
    loads the weights and the learner's generator that the same warm start left, and says so."""
    ws = cfg.warm_start
    path = None
    if ws.cache and cfg.ray.learner_workers == 1:
        path = str(Path(cfg.model.cache_dir).expanduser() / "warm_start" / warm_start_key(cfg, pairs, model_path))
        t0 = time.time()
        summary = learner.load_warm_start(path)
        if summary is not None:
            log.info("warm start: reused from the cache, %s (the same demonstrations, settings and model; --no-cache runs it again)", path)
            return {**summary, "timing/warm_start": time.time() - t0, "warm_start/cached": 1.0}
    summary = warm_start(learner, pairs, ws)
    if path is not None:
        learner.save_warm_start(path, summary)
    return summary


def _math_limits() -> tuple[int, float]:
    """(math checks that scored 0 past their time limit, seconds math checks waited for a
    worker), over every math reward of this process since it started."""
    stats = math_reward_stats()
    return stats.get("timeout", 0) + stats.get("queue_timeout", 0), stats.get("queue_wait_s", 0.0)


def _train(cfg: Config, rollouts: Rollouts, learner, sync: WeightSync, run_dir: Path, metrics, first_step, inputs: Inputs, should_stop) -> dict:
    """Steps first_step .. cfg.steps: the RL step, top to bottom."""
    ro, every, engine, stream = cfg.rollout, cfg.checkpoint.every, rollouts.engine, rollouts.stream
    advantage_fn = ADVANTAGES[cfg.algo.advantage]
    t_checkpoint = 0.0
    timeouts, queue_wait = _math_limits()
    rl_s = sum(r.get("timing/step", 0.0) for r in metrics.rows if r["step"] >= 1)  # a resumed run's earlier steps
    for step in range(first_step, cfg.steps + 1):
        t0 = time.time()
        _, groups, rewards, info = rollouts.batch(step)  # rewards (P, G); sampled ahead in async mode
        t_rollout = time.time()
        advantages = advantage_fn(rewards, cfg.algo.std_eps)  # (P, G)
        batch = make_batch(groups, advantages, pad_id=0)  # padding is masked out; any id works
        t_batch = time.time()
        stats = learner.update(batch, ro.temperature)
        t_update = time.time()
        pushed = sync.push(version=step)  # self-improvement: the engines sample from the new policy
        t_sync = time.time()

        n_tokens = sum(len(s.completion_ids) for g in groups for s in g)
        n_samples = sum(len(g) for g in groups)
        math_now = _math_limits()
        record = {
            "step": step,
            "reward/mean": rewards.mean().item(),
            "reward/std": rewards.std(unbiased=False).item(),
            "reward/mixed_group_frac": keep_mixed(rewards).float().mean().item(),  # groups that carry signal
            "response/mean_length": n_tokens / n_samples,
            "response/truncated_frac": sum(s.finish_reason == "length" for g in groups for s in g) / n_samples,
            "reward/errors": info["reward_errors"],  # samples whose reward failed (their groups sat out)
            # math checks past their time limit, the wait for a worker included (they score 0), since
            # the last record, evaluations included; and the seconds math checks waited for a worker
            "reward/timeouts": math_now[0] - timeouts,
            "reward/queue_wait_s": math_now[1] - queue_wait,
            "sampling/rounds": info["rounds"],
            "sampling/groups": len(groups),
            "data/epoch": info["epoch"],
            "async/policy_lag_mean": sum(step - 1 - s.version for g in groups for s in g) / n_samples,  # learner versions behind the sampler
            "async/policy_lag_max": max(step - 1 - s.version for g in groups for s in g),
            **{k if k in ("loss", "lr") else f"train/{k}": v for k, v in asdict(stats).items()},
            **info["curriculum"],  # the frontier, and pass rate, prompts and tokens per difficulty
            **info["record"],  # tokens sampled in all (probes included); majority labels' share and agreement
            "timing/rollout": t_rollout - t0,  # waiting for the batch: sampling (all rounds) and scoring, less what ran ahead
            "timing/generate": info["generate_s"],  # the engine's time on this batch (in the background in async mode)
            "timing/score": info["score_s"],
            "timing/batch": t_batch - t_rollout,
            "timing/update": t_update - t_batch,
            "timing/sync_wait": pushed.wait_s,  # async mode: the sync waiting for the engine's generation in flight to end
            "timing/sync": t_sync - t_update - pushed.wait_s,  # the weights' transfer and load
            "timing/checkpoint": t_checkpoint,  # the save after the previous step (0 if none)
            "throughput/tokens_per_s": n_tokens / max(info["generate_s"], 1e-9),  # sampled tokens per second of generation
            "policy_version": step,
            "rollout/worker_restarts": getattr(engine, "worker_restarts", 0),  # dead rollout workers replaced so far
        }
        # max_minutes: this step ends the run as the last step would
        out_of_time = bool(cfg.max_minutes) and rl_s + time.time() - t0 >= cfg.max_minutes * 60
        last = step == cfg.steps or out_of_time
        if last or (cfg.eval.every and step % cfg.eval.every == 0):
            record.update(evaluate(cfg, engine, inputs, getattr(stream, "frontier", None)))
        record["timing/step"] = time.time() - t0
        rl_s += record["timing/step"]
        metrics.log(record)
        timeouts, queue_wait = timeouts + record["reward/timeouts"], queue_wait + record["reward/queue_wait_s"]

        stop = should_stop(step)
        t_checkpoint = 0.0
        if last or stop or (every and step % every == 0):
            t = time.time()
            save_checkpoint(cfg, run_dir, step, learner, stream, metrics, rollouts.stream_state(step))
            t_checkpoint = time.time() - t
        if out_of_time and step < cfg.steps:
            log.info("max_minutes=%g: %.1f minutes of RL after step %d; the run ends here", cfg.max_minutes, rl_s / 60, step)
            return _result(metrics, run_dir, step, stopped=False)
        if stop and step < cfg.steps:
            return _result(metrics, run_dir, step, stopped=True)
    return _result(metrics, run_dir, cfg.steps, stopped=False)


def _result(metrics: MetricsLogger, run_dir: Path, step: int, stopped: bool) -> dict:
    """Plot, close the sinks (the trackers get the plot); when the run is done, export final/
    from its last checkpoint."""
    png = plot(metrics.path, run_dir / "progress.png")
    curriculum_png = plot_curriculum(metrics.path, run_dir / "curriculum.png")  # None without a curriculum
    metrics.close(files=[png] + ([curriculum_png] if curriculum_png else []))
    final = None
    if not stopped:
        final = checkpoint.export(checkpoint.latest(run_dir / "checkpoints"), run_dir / "final", replace=True)
    accuracies = [r["eval/accuracy"] for r in metrics.rows if "eval/accuracy" in r]
    return {
        "eval/accuracy_start": accuracies[0], "eval/accuracy": accuracies[-1], "final_model": final, "step": step, "stopped": stopped,
        "warm_start_s": metrics.rows[0].get("timing/warm_start", 0.0) if metrics.rows else 0.0,
        "warm_start_cached": bool(metrics.rows and metrics.rows[0].get("warm_start/cached")),
        "rl_s": sum(r.get("timing/step", 0.0) for r in metrics.rows if r["step"] >= 1),  # resumed runs: every session's steps
        "curriculum": _curriculum_result(metrics.rows),
    }


def _curriculum_result(rows: list[dict]) -> dict | None:
    """A curriculum run's first and last frontier and its last held-out accuracy per difficulty."""
    from rlreason.metrics import curriculum_table

    frontiers = [r["curriculum/frontier"] for r in rows if "curriculum/frontier" in r]
    _, table = curriculum_table(rows)
    if not frontiers or not table:
        return None
    return {"frontier_first": frontiers[0], "frontier_last": frontiers[-1], "accuracy": table[-1][2]}
