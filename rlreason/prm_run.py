"""`rlreason prm RECIPE [key=value ...] [--resume auto]`: a process reward model from the
policy's own rollouts, in the recipe's run directory (the recipe's `prm:` section).

    1. the policy: the recipe's warm-started one (the warm-start cache, or the warm start run
       here and cached), or prm.policy (a run directory, checkpoint or HF model)
    2. labels: prm.problems of the training stream and prm.heldout_problems held-out ones,
       prm.samples completions each, every step labelled by prm.rollouts continuations
       (rlreason.prm.label_steps, the recipe's engine settings and reward);
       labels/train.jsonl, labels/heldout.jsonl, labels/labels.json
    3. the PRM: trained epoch by epoch from the policy's weights (or prm.base), a complete
       checkpoint after each (checkpoints/step_00000E, as training's); each epoch's loss and the
       held-out step AUC and accuracy go to metrics.jsonl and log.backends' trackers, as training's
    4. prm/ (HF format, prm.json naming the step delimiter): `rlreason eval --scorer prm:DIR`;
       with prm.outcome_model, orm/: an outcome reward model on the same completions' verdicts
       (`--scorer rm:DIR`); with prm.revisions, revision/: a revision model (rlreason.revision)
       on the same completions (`rlreason eval revision/ --search revise:...`);
       prm_report.json with every figure and the wall time of each part

--resume auto goes on from what is there: the labels when they are complete, the newest
complete epoch checkpoint; a finished run says so and does nothing.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from rlreason import checkpoint
from rlreason.config import Config, ConfigError, dump

log = logging.getLogger(__name__)


def local_learner(cfg: Config, model_path: str):
    """A Learner in this process with the run's settings (what the cluster's learner actor gets),
    on every core unless ray.threads says otherwise."""
    from rlreason.config import learner_kwargs
    from rlreason.learner.policy import Learner

    return Learner(**learner_kwargs(cfg, model_path, cfg.ray.threads or os.cpu_count() or 1))


def step_delimiter(cfg: Config) -> str:
    from rlreason.prm import STEP_DELIMITERS

    return cfg.prm.delimiter or STEP_DELIMITERS["addition" if cfg.task.name == "addition" else "math"]


def resolve_policy(cfg: Config, inputs, run_dir: Path) -> tuple[str, dict]:
    """(the policy's HF directory, what was done to get it). 'warm_start': the recipe's warm start
    from the cache, else run here (in this process, with the threads a learner actor would have)."""
    from rlreason.evaluate import resolve_eval_model

    if cfg.prm.policy != "warm_start":
        return resolve_eval_model(cfg.prm.policy, cfg.rollout.max_model_len), {"policy": cfg.prm.policy}
    if not cfg.warm_start.enabled:
        raise ConfigError("key 'prm.policy': 'warm_start' needs warm_start.enabled; give prm.policy=PATH (a run, checkpoint or HF model)")
    from rlreason.data.curriculum import Mixture
    from rlreason.data.stream import demonstrations
    from rlreason.loop import cached_warm_start, warm_start_key

    ws = cfg.warm_start
    teacher = Mixture(inputs.task, ws.difficulties) if ws.difficulties else inputs.task
    pairs = demonstrations(teacher, ws.steps * ws.batch_size, ws.teacher_error, cfg.seed, exclude=inputs.exclude)
    cached = Path(cfg.model.cache_dir).expanduser() / "warm_start" / warm_start_key(cfg, pairs, inputs.model_path) / "policy"
    if ws.cache and cached.is_dir():
        log.info("policy: the recipe's warm start, from the cache (%s)", cached)
        return str(cached), {"policy": "warm_start", "cached": True, "path": str(cached)}
    t0 = time.time()
    learner = local_learner(cfg, inputs.model_path)
    summary = cached_warm_start(cfg, learner, pairs, inputs.model_path)
    path = cached if (ws.cache and cached.is_dir()) else run_dir / "policy"
    if path == run_dir / "policy":
        learner.save(str(path))
    del learner
    gc.collect()
    return str(path), {"policy": "warm_start", "cached": False, "path": str(path), "warm_start_s": time.time() - t0,
                       "loss": summary.get("loss")}


def _write_labels(path: Path, labels) -> None:
    path.write_text("".join(json.dumps(asdict(lab)) + "\n" for lab in labels))


def _read_labels(path: Path):
    from rlreason.prm import StepLabels

    return [StepLabels(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def make_labels(cfg: Config, inputs, policy: str, folder: Path, delimiter: str) -> dict:
    """Label prm.problems training problems and prm.heldout_problems held-out ones; write them,
    then labels.json last (the mark that they are complete). Returns labels.json's content."""
    from rlreason.data.stream import PromptStream
    from rlreason.prm import label_steps
    from rlreason.rollout.vllm_engine import VLLMEngine

    p, ro = cfg.prm, cfg.rollout
    folder.mkdir(parents=True, exist_ok=True)
    heldout = inputs.heldout.problems[: p.heldout_problems]
    if len(heldout) < p.heldout_problems:
        raise ConfigError(f"key 'prm.heldout_problems': {p.heldout_problems}, but the task holds out {len(heldout)} (eval.size / task.heldout_size)")
    train = PromptStream(inputs.task, cfg.seed, exclude=inputs.exclude).next_batch(p.problems)
    t0 = time.time()
    engine = VLLMEngine(policy, cfg.engine_dtype, ro.max_model_len, ro.kv_cache_gib, cfg.seed, cfg.ray.threads)
    t_engine, t0 = time.time() - t0, time.time()
    info = {"delimiter": delimiter, "engine_start_s": t_engine}
    for name, problems, seed in (("train", train, cfg.seed + 1), ("heldout", heldout, cfg.seed)):
        log.info("labelling %d %s problems: %d completions each, %d continuations a step", len(problems), name, p.samples, p.rollouts)
        report = label_steps(engine, inputs.reward_fn, problems, p.samples, p.rollouts, delimiter, ro.max_tokens, ro.temperature, seed)
        _write_labels(folder / f"{name}.jsonl", report.labeled)
        info[name] = {"problems": len(problems), "completions": len(problems) * p.samples, "labelled_completions": len(report.labeled),
                      "no_steps": report.no_steps, "steps": sum(len(lab.steps) for lab in report.labeled),
                      "continuations": report.rollouts, "right_completions": sum(lab.reward > 0 for lab in report.labeled),
                      "label_s": time.time() - t0}
        if report.no_steps:
            log.warning("%s: %d of %d completions have no step delimiter %r: not labelled", name, report.no_steps, len(problems) * p.samples, delimiter)
        t0 = time.time()
    engine.shutdown()  # before any later engine of this process starts (VLLMEngine.shutdown)
    del engine
    gc.collect()
    checkpoint.write_text(folder / "labels.json", json.dumps(info, indent=1))
    return info


def heldout_figures(model, tokenizer, heldout, addition: bool) -> dict:
    """The PRM's step scores on the held-out labels: AUC and accuracy (score > 0.5) against the
    hard labels, and for the addition task AUC against the exact truth of each step."""
    from rlreason.prm import addition_steps_correct, auc, prm_step_scores

    scores = [x for row in prm_step_scores(model, tokenizer, [lab.prompt for lab in heldout], [lab.steps for lab in heldout]) for x in row]
    hard = [h > 0 for lab in heldout for h in lab.hard]
    out = {"steps": len(scores), "auc_vs_labels": auc(scores, hard),
           "accuracy_vs_labels": sum((x > 0.5) == t for x, t in zip(scores, hard)) / max(len(scores), 1)}
    if addition:
        truth = [t for lab in heldout for t in addition_steps_correct(lab.prompt, lab.steps)]
        out |= {"auc_vs_truth": auc(scores, truth), "accuracy_vs_truth": sum((x > 0.5) == t for x, t in zip(scores, truth)) / len(truth),
                "right_steps": sum(truth)}
    return out


def label_noise(labels) -> dict:
    """The labels against the exact truth of each step (the addition task's scratchpad), the
    answer steps aside (their label is the verdict itself): hard-label noise split into wrong
    steps labelled 1 and right steps labelled 0, and the soft labels' mean absolute error."""
    from rlreason.prm import addition_steps_correct

    steps = fp = fn = 0
    soft_error = 0.0
    for lab in labels:
        truth = addition_steps_correct(lab.prompt, lab.steps)
        for t, h, s in zip(truth[:-1], lab.hard[:-1], lab.soft[:-1]):
            steps += 1
            fp += (not t) and h > 0
            fn += t and h == 0
            soft_error += abs(s - float(t))
    return {"steps": steps, "hard_noise": (fp + fn) / max(steps, 1), "wrong_steps_labelled_1": fp,
            "right_steps_labelled_0": fn, "soft_mae": soft_error / max(steps, 1)}


def _save_model(model, tokenizer, out: Path, meta: dict | None) -> None:
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if meta is not None:
        (tmp / "prm.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def train_revision_model(cfg: Config, policy: str, labels, out: Path) -> dict:
    """A revision model (rlreason.revision) from the policy's weights, on the labelled training
    completions: each as a first attempt, and a problem's wrong ones before a right one. Saved in
    `out` (HF format) with revision.json."""
    import random

    from rlreason.config import WarmStartConfig
    from rlreason.revision import SEPARATORS, revision_pairs

    p = cfg.prm
    separator = SEPARATORS["addition" if cfg.task.name == "addition" else "math"]
    by_prompt: dict[str, tuple[list[str], list[bool]]] = {}
    for lab in labels:
        texts, right = by_prompt.setdefault(lab.prompt, ([], []))
        texts.append(lab.completion)
        right.append(lab.reward > 0)
    pairs, n_revisions = revision_pairs([(q, t, r) for q, (t, r) in by_prompt.items()], separator, p.revision_max_previous, random.Random(cfg.seed))
    log.info("revision model: %d pairs (%d revisions, %d first attempts), %d steps from %s", len(pairs), n_revisions,
             len(pairs) - n_revisions, p.revision_steps, policy)
    t0 = time.time()
    learner = local_learner(cfg, policy)
    ws = WarmStartConfig(steps=p.revision_steps, batch_size=p.revision_batch_size, lr=p.revision_lr, warmup_steps=min(10, p.revision_steps - 1))
    summary = learner.warm_start(pairs, ws)
    shutil.rmtree(out, ignore_errors=True)
    learner.save(str(out))
    (out / "revision.json").write_text(json.dumps({"separator": separator, "max_previous": p.revision_max_previous, "policy": policy}, indent=1))
    del learner
    gc.collect()
    return {"path": str(out), "pairs": len(pairs), "revisions": n_revisions, "loss_first": summary["warm_start/loss_first"],
            "loss_last": summary["warm_start/loss_last"], "train_s": time.time() - t0}


def compare(cfg: Config, policy: str, run_dir: Path, orm: bool, revision: dict | None) -> dict:
    """The search strategies with this run's verifiers at prm.compare_budgets (rlreason.search):
    the policy's into search/, the revision model's into search_revision/ (each resumable).
    Returns each one's search.json content."""
    from rlreason.evaluate import EvalSettings
    from rlreason.search import run_search

    p, ro = cfg.prm, cfg.rollout
    dataset = cfg.eval.datasets[0] if cfg.eval.datasets else "addition" if cfg.task.name == "addition" else None
    if dataset is None:
        raise ConfigError("key 'prm.compare_budgets': the comparison runs on eval.datasets[0] (or the addition task's held-out set); set eval.datasets")
    prm = f"prm:{run_dir / 'prm'}"
    common = dict(dataset=dataset, limit=p.compare_problems, temperature=ro.temperature, top_p=ro.top_p, max_tokens=ro.max_tokens,
                  max_model_len=ro.max_model_len, seed=cfg.seed, dtype=cfg.engine_dtype, kv_cache_gib=ro.kv_cache_gib,
                  threads=cfg.ray.threads, budgets=p.compare_budgets, beam_width=p.compare_beam_width, template=cfg.eval.template or None)
    strategies = ["majority", *([f"best_of_n:rm:{run_dir / 'orm'}"] if orm else []), f"best_of_n:{prm}", f"weighted:{prm}",
                  f"beam:{prm}", f"dvts:{prm}", "best_of_n:verifier"]
    out = {"policy": run_search(EvalSettings(model=policy, search=strategies, out=str(run_dir / "search"), **common))}
    if revision:
        out["revision"] = run_search(EvalSettings(model=revision["path"], search=[f"revise:{prm}", "revise:verifier"], chain=4,
                                                  out=str(run_dir / "search_revision"), **common))
    return out


def run_prm(cfg: Config, resume: str | None = None) -> dict:
    """The whole command (see the module's docstring). Returns prm_report.json's content, with
    'finished': True when a resumed run had nothing left to do."""
    import torch

    from rlreason.loop import resolve_inputs
    from rlreason.models import resolve_model
    from rlreason.prm import train_orm, train_prm

    run_dir = cfg.resolved_run_dir
    report_path = run_dir / "prm_report.json"
    started = (run_dir / "labels").exists() or checkpoint.latest(run_dir / "checkpoints") is not None
    if resume is None and started:
        raise FileExistsError(f"{run_dir} already holds a PRM run; continue it with --resume auto, or pick another name= or run_dir=, or delete it")
    if resume is not None and resume != "auto":
        raise ConfigError(f"rlreason prm: --resume takes 'auto' (the run directory's own labels and checkpoints), got {resume!r}")
    if resume and report_path.is_file():
        return json.loads(report_path.read_text()) | {"finished": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.clean_partial(run_dir / "checkpoints")
    dump(cfg, run_dir / "config.yaml")
    t_start = time.time()
    delimiter = step_delimiter(cfg)
    inputs = resolve_inputs(cfg, resolve_model(cfg.model))
    policy, policy_info = resolve_policy(cfg, inputs, run_dir)
    labels_dir = run_dir / "labels"
    if (labels_dir / "labels.json").is_file():
        label_info = json.loads((labels_dir / "labels.json").read_text())
        if label_info["delimiter"] != delimiter:
            raise ConfigError(f"key 'prm.delimiter': {delimiter!r}, but {labels_dir} holds labels by {label_info['delimiter']!r}")
        log.info("labels: reusing %s", labels_dir)
    else:
        label_info = make_labels(cfg, inputs, policy, labels_dir, delimiter)
    train, heldout = _read_labels(labels_dir / "train.jsonl"), _read_labels(labels_dir / "heldout.jsonl")
    addition = cfg.task.name == "addition" and delimiter == ";"

    import io

    from rlreason.metrics import MetricsLogger, read_metrics
    from rlreason.trackers import open_trackers

    p = cfg.prm
    last = checkpoint.latest(run_dir / "checkpoints")
    first_epoch = checkpoint.checkpoint_step(last) if last else 0
    # a resumed run goes on with its epochs' rows, in metrics.jsonl and in the trackers' runs
    history = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["epoch"] <= first_epoch] if last and (run_dir / "metrics.jsonl").is_file() else None
    metrics = MetricsLogger(run_dir, p.epochs, stream=io.StringIO(), history=history, trackers=open_trackers(cfg, run_dir, history))
    t_fit = time.time()

    def on_epoch(epoch: int, model, tokenizer, optimizer, loss: float) -> None:
        figures = heldout_figures(model, tokenizer, heldout, addition)
        metrics.log({"step": epoch, "epoch": epoch, "loss": loss, **{f"heldout/{k}": v for k, v in figures.items()}, "time": time.time() - t_fit})
        tmp = checkpoint.begin(run_dir / "checkpoints", epoch)
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        torch.save({"optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state()}, tmp / "optimizer.pt")
        checkpoint.commit(tmp, epoch, cfg.checkpoint.keep_last)
        truth = f", AUC vs the exact truth {figures['auc_vs_truth']:.3f}" if addition else ""
        log.info("PRM epoch %d/%d | loss %.4f | held-out step AUC vs labels %.3f%s", epoch, p.epochs, loss, figures["auc_vs_labels"], truth)

    base = p.base or policy
    start_from = str(last / "model") if last else base
    state = torch.load(last / "optimizer.pt", weights_only=False) if last else {}
    if first_epoch < p.epochs:
        model, tokenizer, _ = train_prm(start_from, train, p.epochs, p.lr, p.batch_size, cfg.seed, start_epoch=first_epoch,
                                        optimizer_state=state.get("optimizer"), rng_state=state.get("rng"), on_epoch=on_epoch)
    else:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        model, tokenizer = AutoModelForTokenClassification.from_pretrained(start_from).eval(), AutoTokenizer.from_pretrained(start_from)
    prm_s = time.time() - t_fit
    rows = list(metrics.rows)
    metrics.close()
    _save_model(model, tokenizer, run_dir / "prm", {"step_delimiter": delimiter, "policy": policy, "base": base, "labels": str(labels_dir)})
    final = heldout_figures(model, tokenizer, heldout, addition)
    del model
    gc.collect()
    orm = None
    if p.outcome_model:
        from rlreason.evaluate import RewardModelScorer
        from rlreason.prm import auc

        t0 = time.time()
        omodel, otok, olosses = train_orm(base, [(lab.prompt, lab.completion, lab.reward > 0) for lab in train], p.epochs, p.lr, p.batch_size, cfg.seed)
        _save_model(omodel, otok, run_dir / "orm", None)
        del omodel
        scores = RewardModelScorer(str(run_dir / "orm"))([lab.prompt for lab in heldout], [lab.completion for lab in heldout])
        orm = {"path": str(run_dir / "orm"), "losses": olosses, "train_s": time.time() - t0,
               "heldout_auc_vs_verdicts": auc(scores, [lab.reward > 0 for lab in heldout])}
    revision = train_revision_model(cfg, policy, train, run_dir / "revision") if p.revisions else None
    search = compare(cfg, policy, run_dir, orm is not None, revision) if p.compare_budgets else None
    report = {
        "search": search,
        "run_dir": str(run_dir), "policy": policy_info | {"path": policy}, "delimiter": delimiter, "labels": label_info,
        "label_noise": {"train": label_noise(train), "heldout": label_noise(heldout)} if addition else None,
        "continuations_per_label": p.rollouts, "epochs": rows, "heldout": final, "prm": str(run_dir / "prm"), "orm": orm, "revision": revision,
        "prm_train_s": prm_s, "wall_s": time.time() - t_start,
    }
    checkpoint.write_text(report_path, json.dumps(report, indent=1, default=str))
    return report
