"""Evaluation: hand-computed pass@k, maj@k, best-of-N and aggregation; model resolution;
and (slow) `rlreason eval` through the command line on the tiny model."""

import json
import os
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

from rlreason.evaluate import (
    aggregate,
    best_of_n,
    format_table,
    maj_at_k,
    majority,
    pass_at_k,
    problem_metrics,
    resolve_eval_model,
    vote_answer,
)

ROOT = Path(__file__).resolve().parents[1]


def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c/n
    assert pass_at_k(10, 3, 4) == pytest.approx(5 / 6)  # 1 - C(7,4)/C(10,4) = 1 - 35/210
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k: every draw of 3 holds a correct one
    assert pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(200, 13, 10) == pytest.approx(1 - comb(187, 10) / comb(200, 10))
    for bad in ((5, 6, 1), (5, 2, 0), (5, 2, 6)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_maj_at_k_hand_computed():
    answers = ["1", "2", "2", None, "1"]
    correct = [True, False, False, False, True]
    assert maj_at_k(answers, correct, 1) == 1.0  # '1'
    assert maj_at_k(answers, correct, 3) == 0.0  # '2' twice beats '1' once
    assert maj_at_k(answers, correct, 4) == 0.0  # None does not vote
    assert maj_at_k(answers, correct, 5) == 1.0  # 2-2 tie: '1' was seen first
    assert majority(answers) == 0 and majority(answers[1:]) == 0  # index of the first sample holding the winner
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    assert maj_at_k(["3", "4"], [False, True], 2) == 0.0  # tie: first seen
    assert maj_at_k([None, "4", "4"], [False, True, True], 3) == 1.0


def test_vote_answer_normalises_and_reads_after_think():
    assert vote_answer(r"<think>\boxed{9}</think> so \boxed{1/2}.", "last_boxed") == r"\frac{1}{2}"
    assert vote_answer(r"\boxed{\dfrac{1}{2}}", "last_boxed") == r"\frac{1}{2}"
    assert vote_answer("x\n#### 1,234", "gsm8k") == "1234"
    assert vote_answer("no answer", "last_boxed") is None


def test_best_of_n_and_problem_metrics():
    scores, correct = [0.1, 0.9, 0.9, 0.2], [True, False, True, True]
    assert best_of_n(scores, correct, 1) == 1.0
    assert best_of_n(scores, correct, 4) == 0.0  # 0.9 tie: the first (wrong) one
    assert best_of_n([0, 0, 1, 0], [False, False, True, False], 4) == 1.0
    m = problem_metrics([False, True, False, False], ["5", "7", "5", None], [0.0, 1.0, 0.0, 0.0], [1, 2, 4])
    assert m == {
        "pass@1": pytest.approx(0.25), "pass@2": pytest.approx(0.5), "pass@4": 1.0,  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        "maj@1": 0.0, "maj@2": 0.0, "maj@4": 0.0,  # '5' wins
        "best_of_2": 1.0, "best_of_4": 1.0,
        "wmaj@2": 1.0, "wmaj@4": 1.0,  # '7' carries 1.0 of the weight, '5' 0.0
    }
    assert set(problem_metrics([True], None, None, [1])) == {"pass@1"}  # code: no vote, no scorer


def test_weighted_majority_hand_computed():
    """Two cheap votes for a wrong 7 lose to one confident vote for the right 5."""
    from rlreason.evaluate import weighted_maj_at_k

    answers, scores, correct = ["7", "7", "5", None], [0.1, 0.1, 0.9, 5.0], [False, False, True, False]
    assert maj_at_k(answers, correct, 3) == 0.0 and weighted_maj_at_k(answers, scores, correct, 3) == 1.0
    assert weighted_maj_at_k(answers, scores, correct, 2) == 0.0  # only the 7s
    assert weighted_maj_at_k(answers, scores, correct, 4) == 1.0  # no answer: no vote, whatever its score
    assert weighted_maj_at_k(["5", "7"], [0.5, 0.5], [True, False], 2) == 1.0  # a tie: the answer seen first
    assert weighted_maj_at_k([None, None], [1.0, 1.0], [False, False], 2) == 0.0


def test_prm_scorer_parsing_aggregates_and_a_delimiter_that_differs(tmp_path, tiny_model_dir, offline):
    """prm:PATH[:last|min|prod]; the PRM's per-step scores aggregated; a completion without the
    delimiter is one step and counted; a PRM trained on other steps than the data set's is
    refused before any sampling, naming both delimiters."""
    import math

    from rlreason.config import ConfigError
    from rlreason.evaluate import EvalSettings, PRMScorer, parse_prm_scorer, run_eval
    from rlreason.prm import prm_step_scores, split_steps, train_prm

    assert parse_prm_scorer("prm:/a/b") == ("/a/b", "last") and parse_prm_scorer("prm:/a/b:min") == ("/a/b", "min")
    assert parse_prm_scorer("prm:/a:b/c") == ("/a:b/c", "last")
    model, tok, _ = train_prm(str(tiny_model_dir[0]), [], epochs=0)  # an untrained head: any scores will do
    prm = tmp_path / "prm"
    model.save_pretrained(prm)
    tok.save_pretrained(prm)
    (prm / "prm.json").write_text(json.dumps({"step_delimiter": ";"}))
    text = "7+6+0=13;4+8+1=13;3+5+1=9;\\boxed{933}"
    steps = prm_step_scores(model, tok, ["347+586>"], [split_steps(text, ";")])[0]
    for agg, want in (("last", steps[-1]), ("min", min(steps)), ("prod", math.prod(steps))):
        scorer = PRMScorer(str(prm), agg)
        assert scorer(["347+586>", "1+2>"], [text, "\\boxed{3}"])[0] == pytest.approx(want)
        assert scorer.no_steps == 1
    (prm / "prm.json").write_text(json.dumps({"step_delimiter": "\n\n"}))
    with pytest.raises(ConfigError, match=r"step delimiter '\\n\\n' differs from data set addition's ';'"):
        run_eval(EvalSettings(model="tiny", dataset="addition", scorer=f"prm:{prm}", n=2, ks=[1, 2], out=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_aggregate_per_subject_and_level():
    rows = [
        {"subject": "Algebra", "level": "1", "metrics": {"pass@1": 1.0}},
        {"subject": "Algebra", "level": "2", "metrics": {"pass@1": 0.5}},
        {"subject": "Geometry", "level": "10", "metrics": {"pass@1": 0.0}},
    ]
    agg = aggregate(rows)
    assert agg["overall"] == {"n_problems": 3, "pass@1": pytest.approx(0.5)}
    assert agg["by_subject"] == {"Algebra": {"n_problems": 2, "pass@1": 0.75}, "Geometry": {"n_problems": 1, "pass@1": 0.0}}
    assert list(agg["by_level"]) == ["1", "2", "10"]  # numeric order
    assert "by_subject" not in aggregate([{"metrics": {"pass@1": 1.0}}])
    table = format_table(agg)
    assert "subject=Geometry" in table and "level=10" in table and "0.5000" in table


def test_resolve_eval_model(tmp_path, tiny_model_dir, offline, monkeypatch):
    import shutil

    import huggingface_hub.constants

    from rlreason import checkpoint
    from rlreason.errors import HubUnreachable, NotFound

    hf_dir, _ = tiny_model_dir
    assert resolve_eval_model(str(hf_dir), 256) == str(hf_dir)
    # a hub id: from the HF cache, as is; not cached and no hub: says what it tried, in order
    hub_cache = tmp_path / "hub"
    snapshot = hub_cache / "models--Qwen--Qwen2.5-Math-1.5B" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub_cache / "models--Qwen--Qwen2.5-Math-1.5B" / "refs").mkdir()
    (hub_cache / "models--Qwen--Qwen2.5-Math-1.5B" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    assert resolve_eval_model("Qwen/Qwen2.5-Math-1.5B", 256) == "Qwen/Qwen2.5-Math-1.5B"
    with pytest.raises(HubUnreachable, match=r"'Qwen/Nope': not a local path, not in the HF cache .*, not the built-in 'tiny', and the hub is offline"):
        resolve_eval_model("Qwen/Nope", 256)
    # a path is never a hub id
    with pytest.raises(NotFound, match=r"^no such model directory: \./runs/nope$"):
        resolve_eval_model("./runs/nope", 256)
    run = tmp_path / "run"
    root = run / "checkpoints"
    for step in (1, 2):
        tmp = checkpoint.begin(root, step)
        shutil.copytree(hf_dir, tmp / "policy")
        checkpoint.commit(tmp, step, keep_last=0)
    (root / "step_000003").mkdir()  # incomplete: ignored
    assert resolve_eval_model(str(run), 256) == str(root / "step_000002" / "policy")
    assert resolve_eval_model(str(root / "step_000001"), 256) == str(root / "step_000001" / "policy")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_eval_model(str(root / "step_000003"), 256)
    shutil.copytree(hf_dir, run / "final")
    assert resolve_eval_model(str(run), 256) == str(run / "final")  # a finished run: its final model
    with pytest.raises(FileNotFoundError, match="neither"):
        resolve_eval_model(str(tmp_path), 256)


# ---------------------------------------------------------------------------------------------
# End to end: `rlreason eval` on the tiny model through the command line (vLLM on CPU)
# ---------------------------------------------------------------------------------------------


def _eval_cli(args: list[str], out: Path, cache_home: Path | None = None, timeout: int = 600) -> dict:
    cmd = [sys.executable, "-m", "rlreason.cli", "eval", *args, "--out", str(out)]
    env = dict(os.environ)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout and "overall" in proc.stdout, proc.stdout
    report = json.loads((out / "eval.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    problems = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    assert len(samples) == report["n_samples"] == report["n_problems"] * report["settings"]["n"]
    assert len(problems) == report["n_problems"]
    # every number can be audited: the per-problem counts follow from the per-sample rewards
    for p in problems:
        mine = [s for s in samples if s["id"] == p["id"]]
        assert p["correct"] == sum(s["correct"] for s in mine) == sum(s["reward"] >= 1 for s in mine)
    overall = report["metrics"]["overall"]
    assert overall["pass@1"] == pytest.approx(sum(p["correct"] for p in problems) / len(samples))
    return report, samples, problems, proc.stdout


@pytest.mark.slow
def test_cli_eval_math500_slice_tiny(tmp_path):
    report, samples, problems, stdout = _eval_cli(
        ["tiny", "--dataset", "math500", "--limit", "8", "--n", "2", "--max-tokens", "48", "--temperature", "1.0"], tmp_path / "m"
    )
    m = report["metrics"]
    assert set(m) == {"overall", "by_subject", "by_level"}
    assert set(m["overall"]) == {"n_problems", "pass@1", "pass@2", "maj@1", "maj@2", "best_of_2", "wmaj@2"}
    assert sum(v["n_problems"] for v in m["by_level"].values()) == 8 == sum(v["n_problems"] for v in m["by_subject"].values())
    assert report["dataset"]["resolved_source"].endswith("math500.jsonl") and report["dataset"]["template"] == "chat"
    assert samples[0]["prompt"].startswith("<|im_start|>user\nConvert the point") and samples[0]["gold"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert all(s["finish_reason"] in ("stop", "length") and s["tokens"] <= 48 for s in samples)
    assert "level=2" in stdout and "subject=Precalculus" in stdout
    assert m["overall"]["pass@1"] <= 0.25  # a random tiny model: near zero, honestly


@pytest.mark.slow
def test_cli_eval_gsm8k_slice_with_a_reward_model_scorer(tmp_path, tiny_model_dir):
    """GSM8K with the r1_zero template, best-of-N picked by a (random, tiny) HF reward model."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    hf_dir, _ = tiny_model_dir
    config = AutoConfig.from_pretrained(hf_dir, num_labels=1)
    rm = AutoModelForSequenceClassification.from_config(config)
    rm.save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(hf_dir).save_pretrained(tmp_path / "rm")
    report, samples, problems, _ = _eval_cli(
        ["tiny", "--dataset", "gsm8k", "--limit", "4", "--n", "3", "--k", "1", "3", "--max-tokens", "32",
         "--template", "r1_zero", "--max-model-len", "640", "--scorer", f"rm:{tmp_path / 'rm'}"], tmp_path / "g"
    )
    assert report["settings"]["max_model_len"] == 640 and report["dataset"]["answer_extract"] == "gsm8k"
    assert set(report["metrics"]) == {"overall"}  # GSM8K has no subject or level
    assert set(report["metrics"]["overall"]) == {"n_problems", "pass@1", "pass@3", "maj@1", "maj@3", "best_of_3", "wmaj@3"}
    assert report["n_problems"] == 4 and report["prompts_left_out_too_long"] > 0  # long questions do not fit 640 - 32
    assert all(isinstance(s["score"], float) for s in samples)
    for p in problems:  # best_of_3 judged the sample the reward model ranked first
        mine = [s for s in samples if s["id"] == p["id"]]
        top = max(range(3), key=lambda j: (mine[j]["score"], -j))
        assert p["metrics"]["best_of_3"] == float(mine[top]["correct"])
    assert samples[0]["prompt"].endswith("\nAssistant: <think>")


@pytest.mark.slow
def test_cli_eval_humaneval_slice_tiny(tmp_path):
    report, samples, problems, _ = _eval_cli(
        ["tiny", "--dataset", "humaneval", "--limit", "3", "--n", "2", "--max-tokens", "32"], tmp_path / "h"
    )
    assert report["dataset"]["reward"] == "code" and report["reward_errors"] == 0
    assert set(report["metrics"]["overall"]) == {"n_problems", "pass@1", "pass@2", "best_of_2"}  # no vote for code
    assert [p["id"] for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert samples[0]["prompt"].startswith("from typing import List") and samples[0]["answer"] is None
    assert report["metrics"]["overall"]["pass@1"] == 0.0  # random characters do not pass unit tests


@pytest.mark.slow
def test_best_of_n_with_the_verifier_beats_pass_at_1_on_addition(tmp_path):
    """A short warm start from the imperfect teacher gives an imperfect model; at temperature 1,
    the verifier picking among 8 samples beats one sample (the gap RL then closes). The default
    recipe's 138k model (a quarter of the 1.1M session model's warm-start time)."""
    from rlreason.config import AlgoConfig, OptimConfig, WarmStartConfig, load_config
    from rlreason.data.addition import AdditionTask
    from rlreason.data.datasets import SPECS, load_problems
    from rlreason.data.stream import demonstrations
    from rlreason.learner.policy import Learner
    from rlreason.models import ensure_tiny_model

    model_cfg = load_config(ROOT / "recipes" / "addition_grpo.yaml", [f"model.cache_dir={tmp_path / 'cache'}"]).model
    hf_dir = ensure_tiny_model(model_cfg)
    # batch 32: pass@1 0.35, best_of_8 0.82 on the AMD EPYC host (2026-12-06); 300 steps learned nothing (pass@1 0.0)
    ws = WarmStartConfig(steps=600, batch_size=32, lr=3e-3, warmup_steps=20, teacher_error=0.6)
    heldout = load_problems(SPECS["addition"], check_golds=False)  # the 500 held-out problems
    learner = Learner(str(hf_dir), AlgoConfig(), OptimConfig())
    learner.warm_start(demonstrations(AdditionTask(3), ws.steps * ws.batch_size, ws.teacher_error, seed=0, exclude=heldout), ws)
    model_dir = tmp_path / "warm"
    learner.model.save_pretrained(model_dir)
    learner.tokenizer.save_pretrained(model_dir)
    del learner

    report, samples, problems, stdout = _eval_cli(
        [str(model_dir), "--dataset", "addition", "--limit", "40", "--n", "8", "--k", "1", "8",
         "--temperature", "1.0", "--max-tokens", "48", "--max-model-len", "256"], tmp_path / "a"
    )
    m = report["metrics"]["overall"]
    print(stdout)
    assert report["dataset"]["template"] == "raw" and samples[0]["prompt"].endswith(">")
    assert 0.0 < m["pass@1"] < 1.0  # learned something, not everything
    assert m["best_of_8"] > m["pass@1"]  # strictly: the verifier finds the correct sample when one of the 8 has it
    assert m["best_of_8"] == pytest.approx(m["pass@8"])  # with the exact verifier, best-of-8 is pass@8 (the empirical 'any of 8')
