"""Test-time search (rlreason/search.py): beam search and DVTS by hand through a scripted engine,
the sampling strategies at a budget, compute-optimal allocation by hand, the checks made before
any work, and `rlreason eval --search` on the real vLLM engine, killed and rerun into its --out."""

from __future__ import annotations

import json

import pytest

from rlreason.config import ConfigError
from rlreason.search import (
    Strategy,
    allocate,
    check_budgets,
    parse_strategy,
    sample_strategy_row,
    summarize,
    tree_search,
)
from rlreason.types import Sample


class ScriptedEngine:
    """A fake engine for this pure unit test of the search around it: each request for a prompt
    takes the next n texts of that prompt's script (one token a character)."""

    def __init__(self, script: dict[str, list[str]]):
        self.script, self.used, self.calls = script, {}, []

    def generate(self, prompts, n, temperature, top_p, max_tokens, seed, stop=None):
        self.calls.append((list(prompts), n, max_tokens, stop))
        out = []
        for p in prompts:
            first = self.used.get(p, 0)
            self.used[p] = first + n
            texts = [self.script[p][(first + j) % len(self.script[p])] for j in range(n)]
            out.append([Sample([], list(range(len(t))), t, [0.0] * len(t), "stop", 0) for t in texts])
        return out


SCORES = {"a;": 0.9, "b;": 0.85, "c;": 0.1, "d;": 0.2, "a;1": 0.3, "a;2": 0.4, "b;3": 0.5, "b;4": 0.45, "d;5": 0.9, "d;6": 0.1,
          "c;7": 0.0, "c;8": 0.0}


def scorer(prompts, texts):
    """A fake scorer: a fixed score per completion; it reads the prompt and the completion."""
    return [SCORES[t] for t in texts], [len(p) + len(t) for p, t in zip(prompts, texts)]


def script():
    return {"P": ["a;", "b;", "c;", "d;"], "Pa;": ["1", "2"], "Pb;": ["3", "4"], "Pc;": ["7", "8"], "Pd;": ["5", "6"]}


def search(subtrees: bool, **kw):
    engine = ScriptedEngine(script())
    args = dict(temperature=1.0, top_p=1.0, step_tokens=8, max_tokens=48, max_steps=40) | kw
    return engine, tree_search(engine, scorer, ["P"], 4, 2, ";", subtrees, **args)[0]


def test_beam_search_keeps_the_top_budget_over_width_of_all_candidates():
    """Budget 4, width 2: the first step samples a; b; c; d; and keeps the best 2 (a; 0.9, b; 0.85),
    each continued twice; every continuation ends the solution (no ';'); the pick is b;3 (0.5)."""
    engine, res = search(subtrees=False)
    assert [c.text for c in res.finished] == ["a;1", "a;2", "b;3", "b;4"]
    assert res.pick.text == "b;3" and res.pick.score == 0.5
    assert res.generated_tokens == 4 * 2 + 4 * 1  # 4 first steps of 2 tokens, 4 last steps of 1
    assert res.scorer_tokens == 4 * 3 + 4 * 4  # each candidate scored once, the prompt read with it
    assert (res.iterations, res.no_steps) == (2, 0)
    # one engine call a step: the root fanned out 4 times, then each kept candidate 2 times, stopping at ';'
    assert [(p, n, stop) for p, n, _, stop in engine.calls] == [(["P"], 4, [";"]), (["Pa;", "Pb;"], 2, [";"])]


def test_beam_search_shares_the_budget_among_the_candidates_it_kept():
    """When one unfinished candidate is left it gets all 4 continuations of the step."""
    engine = ScriptedEngine({"P": ["a;", "1", "2", "3"], "Pa;": ["4", "5"]})
    scores = {"a;": 0.1, "1": 0.9, "2": 0.9, "3": 0.9, "a;4": 0.5, "a;5": 0.5}
    res = tree_search(engine, lambda p, t: ([scores[x] for x in t], [0] * len(t)), ["P"], 4, 2, ";", False, 1.0, 1.0, 8, 48, 40)[0]
    assert [(p, n) for p, n, _, _ in engine.calls] == [(["P"], 4), (["Pa;"], 4)] and len(res.finished) == 7


def test_dvts_keeps_the_best_of_each_subtree():
    """The same script as DVTS: 2 subtrees of width 2. Subtree 0 samples a; b; and keeps a;,
    subtree 1 samples c; d; and keeps d; (0.2), which beam search dropped; d;5 (0.9) wins."""
    _, res = search(subtrees=True)
    assert [c.text for c in res.finished] == ["a;1", "a;2", "d;5", "d;6"]
    assert res.pick.text == "d;5" and res.pick.score == 0.9
    assert (res.generated_tokens, res.scorer_tokens, res.iterations) == (12, 28, 2)


def test_the_last_step_continues_to_the_end_and_long_candidates_finish():
    engine, res = search(subtrees=False, max_steps=1)  # one step: no stop string, all finished
    assert engine.calls[0][3] is None and engine.calls[0][2] == 48
    assert [c.text for c in res.finished] == ["a;", "b;", "c;", "d;"] and res.pick.text == "a;"
    assert res.no_steps == 0  # each holds its delimiter
    _, res = search(subtrees=False, max_tokens=2)  # the first steps use up max_tokens: finished
    assert len(res.finished) == 4 and res.iterations == 1


def test_the_weighted_pick_sums_each_answers_scores():
    from rlreason.search import Node, weighted_pick

    nodes = [Node("x", 1, 0.9), Node("y", 1, 0.5), Node("z", 1, 0.6), Node("w", 1, 0.99)]
    assert weighted_pick(nodes, ["5", "6", "6", None]).text == "y"  # 6: 1.1 against 5: 0.9; no answer: no vote
    assert weighted_pick(nodes, [None] * 4) is None


def test_a_finished_candidate_without_a_delimiter_is_counted():
    engine = ScriptedEngine({"P": ["a;", "1"], "Pa;": ["2"]})
    scores = {"a;": 0.5, "1": 0.9, "a;2": 0.1}
    res = tree_search(engine, lambda p, t: ([scores[x] for x in t], [0] * len(t)), ["P"], 2, 2, ";", False, 1.0, 1.0, 8, 48, 40)[0]
    assert res.no_steps == 1 and res.pick.text == "1"


def test_strategies_parse_and_refuse_what_they_cannot_do():
    assert parse_strategy("beam:prm:/x/prm") == Strategy("beam", "prm:/x/prm")
    assert parse_strategy("weighted", "prm:/p:min") == Strategy("weighted", "prm:/p:min")
    assert parse_strategy("majority").label == "majority" and parse_strategy("best_of_n:verifier").label == "best_of_n:verifier"
    with pytest.raises(ConfigError, match="unknown strategy 'greedy'"):
        parse_strategy("greedy")
    with pytest.raises(ConfigError, match="its scorer must be a PRM"):
        parse_strategy("dvts:rm:/x")
    with pytest.raises(ConfigError, match="needs a scorer"):
        parse_strategy("best_of_n", "none")
    with pytest.raises(ConfigError, match="majority takes no scorer"):
        parse_strategy("majority:verifier")


def test_a_budget_smaller_than_the_beam_width_is_refused():
    beam = [Strategy("beam", "prm:/p")]
    check_budgets(beam, [4, 16], 4)
    check_budgets([Strategy("best_of_n", "verifier")], [2, 3], 4)  # no tree search: any budget
    with pytest.raises(ConfigError, match="--budget 2 is smaller than --beam-width 4"):
        check_budgets(beam, [2, 16], 4)
    with pytest.raises(ConfigError, match="--budget 6 is not a multiple of --beam-width 4"):
        check_budgets(beam, [6], 4)


def test_sampling_strategies_at_a_budget_by_hand():
    correct = [False, True, False, True]
    answers = ["5", "6", "5", "6"]
    scores = [0.9, 0.8, 0.7, 0.1]
    gen, read = [10, 20, 30, 40], [15, 25, 35, 45]
    row = lambda name, scorer, b: sample_strategy_row(Strategy(name, scorer), b, correct, answers, scores, gen, read)
    assert row("majority", None, 3) == {"correct": 0.0, "generated_tokens": 60, "scorer_tokens": 0}  # 5 twice, 6 once
    assert row("best_of_n", "prm:/p", 2) == {"correct": 0.0, "generated_tokens": 30, "scorer_tokens": 40}  # 0.9 wins
    assert row("weighted", "prm:/p", 4)["correct"] == 0.0  # 5: 1.6 against 6: 0.9
    assert row("weighted", "prm:/p", 2)["correct"] == 0.0  # 5: 0.9 against 6: 0.8
    assert row("best_of_n", "verifier", 4) == {"correct": 0.0, "generated_tokens": 100, "scorer_tokens": 0}  # ties: the first


def test_summary_and_compute_optimal_allocation_by_hand():
    """Two bins by the difficulty estimate (higher: easier). On the validation problems the cheap
    strategy matches the reference in the easy bin only, so the test's easy problem takes it and
    its hard one the reference: half the reference's tokens plus the probe's, the same accuracy."""
    def r(strategy, budget, id_, correct, tokens):
        return {"strategy": strategy, "budget": budget, "id": id_, "correct": correct, "generated_tokens": tokens, "scorer_tokens": 0}

    rows = [r("ref", 64, "p0", 1.0, 100), r("ref", 64, "p1", 1.0, 100), r("ref", 64, "p2", 1.0, 100), r("ref", 64, "p3", 0.0, 100),
            r("cheap", 4, "p0", 1.0, 10), r("cheap", 4, "p1", 1.0, 10), r("cheap", 4, "p2", 0.0, 10), r("cheap", 4, "p3", 0.0, 10)]
    summary = summarize(rows)
    assert summary["ref"][64] == {"accuracy": 0.75, "generated_tokens": 100.0, "scorer_tokens": 0.0, "n": 4}
    assert summary["cheap"][4]["accuracy"] == 0.5
    difficulty = {"p0": 0.9, "p1": 0.8, "p2": 0.2, "p3": 0.1}
    a = allocate(rows, difficulty, ("ref", 64), ["ref", "cheap"], ["p0", "p2"], ["p1", "p3"], n_bins=2,
                 probe_tokens={i: 2.0 for i in difficulty})
    assert a["bins"]["edges"] == [0.2]
    assert a["bins"]["choice"] == {0: {"strategy": "ref", "budget": 64}, 1: {"strategy": "cheap", "budget": 4}}
    assert a["test"]["allocation"] == {"accuracy": 0.5, "generated_tokens": (12 + 102) / 2}
    assert a["test"]["reference"] == {"accuracy": 0.5, "generated_tokens": 100.0}
    # a sampling strategy whose first samples are the probe's pays for them once
    again = allocate(rows, difficulty, ("ref", 64), ["ref", "cheap"], ["p0", "p2"], ["p1", "p3"], n_bins=2,
                     probe_tokens={i: 20.0 for i in difficulty}, reuse=frozenset({"cheap", "ref"}))
    assert again["test"]["allocation"]["generated_tokens"] == (20 + 100) / 2


@pytest.mark.slow
def test_eval_search_on_the_real_engine_and_a_rerun_skips_what_is_done(tmp_path, tiny_model_dir, offline):
    """Every strategy through vLLM (`rlreason eval --search`, in a process of its own: an
    in-process vLLM engine replaces torch.set_num_threads for the rest of the process) on 6
    addition problems with an (untrained) PRM; each row is there once with its compute; killed
    after the sampling strategies (their rows only), a rerun into the same --out adds the tree
    searches' rows and keeps the others; other settings into that --out are refused, naming the key."""
    import subprocess
    import sys
    from pathlib import Path

    from rlreason.prm import train_prm

    model, tok, _ = train_prm(str(tiny_model_dir[0]), [], epochs=0)
    prm = tmp_path / "prm"
    model.save_pretrained(prm)
    tok.save_pretrained(prm)
    (prm / "prm.json").write_text(json.dumps({"step_delimiter": ";"}))
    out = tmp_path / "search"
    labels = ["majority", f"weighted:prm:{prm}", f"beam:prm:{prm}", f"dvts:prm:{prm}", "best_of_n:verifier"]
    args = ["eval", "tiny", "--dataset", "addition", "--limit", "6", "--temperature", "1.0", "--max-tokens", "24", "--max-model-len", "128",
            "--out", str(out), "--search", *labels, "--budget", "2", "4", "--beam-width", "2", "--step-tokens", "12"]

    def run(extra=()):
        return subprocess.run([sys.executable, "-m", "rlreason.cli", *args, *extra], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=600)

    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "search.json").read_text())
    rows = [json.loads(x) for x in (out / "search.jsonl").read_text().splitlines()]
    assert sorted((r["strategy"], r["budget"]) for r in rows) == sorted((s, b) for s in labels for b in (2, 4) for _ in range(6))
    assert all(r["generated_tokens"] > 0 for r in rows)
    assert all(r["scorer_tokens"] > 0 for r in rows if "prm:" in r["strategy"])
    assert all(r["scorer_tokens"] == 0 for r in rows if r["strategy"] in ("majority", "best_of_n:verifier"))
    assert all(r["any_finished_correct"] >= r["correct"] for r in rows if r["strategy"].startswith(("beam", "dvts")))
    assert set(report["summary"]) == set(labels) and (out / "search.png").stat().st_size > 0
    assert len([json.loads(x) for x in (out / "difficulty.jsonl").read_text().splitlines()]) == 6
    # the oracle picks a right sample whenever one of the first k is right, so it is the ceiling of best-of-N
    first_four = {r["id"]: r for r in rows if r["strategy"] == "best_of_n:verifier" and r["budget"] == 4}
    assert all(first_four[r["id"]]["correct"] >= r["correct"] for r in rows if r["strategy"] == "best_of_n:verifier" and r["budget"] == 2)

    kept = [r for r in rows if r["strategy"] in ("majority", f"weighted:prm:{prm}", "best_of_n:verifier")]
    (out / "search.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"strategy": "beam:prm')  # a cut last line
    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = [json.loads(x) for x in (out / "search.jsonl").read_text().splitlines()[len(kept) + 1 :]]
    assert (out / "search.jsonl").read_text().splitlines()[: len(kept)] == [json.dumps(r) for r in kept]
    assert sorted((r["strategy"], r["budget"], r["id"]) for r in again) == sorted(
        (r["strategy"], r["budget"], r["id"]) for r in rows if r["strategy"].startswith(("beam", "dvts")))
    proc = run(["--temperature", "0.5"])
    assert proc.returncode == 2 and "temperature: 1.0 there, 0.5 now" in proc.stderr
