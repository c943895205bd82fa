"""The accounting of benchmarks/trl_bench.py (pure code, no Ray, vLLM or TRL run): evaluation
time is kept off the RL clock, and the step breakdowns add up. Timings are never asserted."""

import importlib.util
import random
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "trl_bench.py"
_spec = importlib.util.spec_from_file_location("trl_bench", _path)
trl_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trl_bench)


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


def test_clock_keeps_evaluations_off_the_rl_clock(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(trl_bench.time, "perf_counter", fake.perf_counter)
    spec = {"eval_every": 2, "steps": 4, "target": 0.5, "max_minutes": 10}
    clock = trl_bench.Clock(spec)
    accuracies = iter([0.1, 0.4, 0.6])

    def evaluate():  # each evaluation takes 7 s of wall time
        fake.now += 7.0
        return next(accuracies)

    assert not clock.mark(0, evaluate)  # the warm-started model; the clock starts after it
    for step in (1, 2, 3, 4):
        fake.now += 3.0  # a 3 s RL step
        clock.mark(step, evaluate)
    s = clock.summary()
    assert s["step_s"] == {1: 3.0, 2: 3.0, 3: 3.0, 4: 3.0}
    assert s["rl_s_total"] == 12.0
    assert s["eval_s_total"] == 21.0
    assert (s["target_step"], s["time_to_target_s"]) == (4, 12.0)
    assert [e["step"] for e in s["evals"]] == [0, 2, 4]
    assert s["step_s_median"] == 3.0


def test_clock_stops_at_the_wall_cap(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(trl_bench.time, "perf_counter", fake.perf_counter)
    clock = trl_bench.Clock({"eval_every": 100, "steps": 50, "target": 0.9, "max_minutes": 1})
    clock.mark(0, lambda: 0.0)
    fake.now += 50.0
    assert not clock.mark(1, lambda: 0.0)
    fake.now += 20.0
    assert clock.mark(2, lambda: 0.0)
    assert clock.summary()["time_to_target_s"] is None


def test_ours_breakdown_shares_add_up():
    rows = [{"step": 0}] + [
        {"step": k, "timing/rollout": 1.2, "timing/generate": 1.0, "timing/batch": 0.1, "timing/update": 0.5,
         "timing/sync": 0.05, "timing/checkpoint": 0.0}
        for k in (1, 2, 3)
    ]
    b = trl_bench.ours_breakdown(rows, {1: 9.0, 2: 2.0, 3: 2.0})  # step 1 (warm-up) is left out
    assert b["step_s"] == 2.0
    assert b["generate"] == pytest.approx(0.5)
    assert b["reward"] == pytest.approx(0.1)
    assert sum(v for k, v in b.items() if k != "step_s") == pytest.approx(1.0)


def test_ours_breakdown_separates_the_async_sync_wait():
    rows = [{"step": 0}] + [
        {"step": k, "timing/rollout": 0.01, "timing/generate": 0.9, "timing/batch": 0.01, "timing/update": 0.5,
         "timing/sync_wait": 0.4, "timing/sync": 0.02, "timing/checkpoint": 0.0}
        for k in (1, 2)
    ]
    b = trl_bench.ours_breakdown(rows, {1: 9.0, 2: 1.0})  # async: generation ran ahead, the step waited 0.01 s for it
    assert b["rollout_wait"] == pytest.approx(0.01)
    assert b["sync_wait"] == pytest.approx(0.4)
    assert b["sync"] == pytest.approx(0.02)
    assert b["other"] == pytest.approx(0.06)


def test_trl_breakdown_shares_add_up():
    timers = [(1, "_prepare_inputs", 1.5), (1, "transformers.generate", 1.0), (1, "_calculate_rewards", 0.1),
              (1, "compute_loss", 0.3), (0, "transformers.generate", 9.0)]
    b = trl_bench.trl_breakdown(timers, {1: 10.0, 2: 2.0})  # timers opened at global_step 1 belong to step 2
    assert b["generate"] == pytest.approx(0.5)
    assert b["prepare"] == pytest.approx(0.2)
    assert sum(b.values()) == pytest.approx(1.0)


_lpath = Path(__file__).resolve().parents[1] / "benchmarks" / "learner_bench.py"
_lspec = importlib.util.spec_from_file_location("learner_bench", _lpath)
learner_bench = importlib.util.module_from_spec(_lspec)
_lspec.loader.exec_module(learner_bench)


def test_learner_bench_counts_flops_by_hand():
    # rows of 2 and 3 tokens, N = 10 matmul weights, 1 layer, d_attn = 4:
    # 6*10*2 + 6*1*4*2*2 = 216 and 6*10*3 + 6*1*4*3*3 = 396
    assert learner_bench.update_flops([2, 3], 10, 1, 4) == 612.0
    assert learner_bench.peak_tflops("NVIDIA H200") == 989.0
    assert learner_bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert learner_bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert learner_bench.peak_tflops("Tesla T4") is None


def test_learner_bench_runs_the_real_update_and_reports_its_figures(tiny_model_dir, tmp_path):
    import json

    from transformers import AutoTokenizer

    path, model_cfg = tiny_model_dir
    out = tmp_path / "learner.json"
    learner_bench.main(["--quick", "--prompts", "2", "--group-size", "3", "--warmup", "0", "--updates", "2",
                        "--peak-tflops", "2.0", "--cache-dir", model_cfg.cache_dir, "--out", str(out)])
    r = json.loads(out.read_text())
    # the default tiny model: 4 layers of q, k, v, o (128 x 128 each) and an MLP (3 x 128 x 512), and the tied LM head
    vocab = len(AutoTokenizer.from_pretrained(path))
    assert r["matmul_params"] == 4 * (4 * 128 * 128 + 3 * 128 * 512) + vocab * 128
    assert r["rows"] == 6 and 6 * (24 + 16) <= r["tokens"] <= 6 * (24 + 40)
    assert len(r["update_s"]) == 2 and r["update_s_median"] > 0
    assert r["tflops"] == pytest.approx(r["flops_per_update"] / r["update_s_median"] / 1e12)
    assert r["mfu"] == pytest.approx(r["tflops"] / 2.0)
    assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["update_s_median"])


def test_repeats_are_summarised_as_median_and_range_and_ratios_pair_rounds():
    assert trl_bench.med_range([3.0, 1.0, 2.0]) == "2.00 (1.00-3.00)"
    assert trl_bench.med_range([None, 4.0]) == "4.00"
    assert trl_bench.med_range([None]) == "-"

    def run(step, tta):
        return {"result": {"step_s_median": step, "time_to_target_s": tta}, "memory": {}, "error": None}

    ours = {"runs": [run(1.0, 10.0), run(2.0, None), run(1.5, 12.0)]}
    theirs = {"runs": [run(4.0, 20.0), run(2.0, 30.0), {"result": None, "memory": {}, "error": "exit 1"}]}
    # round 0: 1/4, round 1: 2/2; round 2 has no TRL run, so no ratio
    assert trl_bench.ratios(ours, theirs, "step_s_median") == [0.25, 1.0]
    assert trl_bench.ratios(ours, theirs, "time_to_target_s") == [0.5]  # round 1: ours never reached it


def _tables():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tables.py"
    spec = importlib.util.spec_from_file_location("tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tables_rebuild_only_between_the_markers(monkeypatch):
    tables = _tables()
    monkeypatch.setattr(tables, "TABLES", {"t": lambda: ["| a |", "| 1 |"]})
    doc = "intro\n<!-- table: t -->\nold row\nolder row\n<!-- /table -->\nafter"
    assert tables.rebuild(doc, "d.md") == "intro\n<!-- table: t -->\n| a |\n| 1 |\n<!-- /table -->\nafter"
    with pytest.raises(SystemExit, match="unknown table 'u'"):
        tables.rebuild("<!-- table: u -->\n<!-- /table -->", "d.md")
    with pytest.raises(SystemExit, match="no closing"):
        tables.rebuild("<!-- table: t -->\nrow", "d.md")


def test_the_published_tables_are_the_ones_the_results_give():
    """README.md and docs/benchmarks.md hold exactly what benchmarks/results/*.json give."""
    tables = _tables()
    for doc in tables.DOCS:
        text = doc.read_text()
        assert "<!-- table: " in text or doc.name == "README.md"
        assert tables.rebuild(text, doc.name) == text, f"{doc}: run python benchmarks/tables.py"


def test_learner_bench_runs_through_fsdp_and_records_where(tmp_path):
    """The --fsdp path (FSDP2, one gloo rank) runs end to end, and the JSON names host, commit and command."""
    import json
    import subprocess
    import sys

    out = tmp_path / "lb.json"
    subprocess.run([sys.executable, str(_lpath), "--quick", "--fsdp", "--warmup", "0", "--updates", "1", "--out", str(out)],
                   check=True, capture_output=True, cwd=_lpath.parents[1])
    d = json.loads(out.read_text())
    assert d["learner"] == "FSDPLearner (1 rank)" and len(d["update_s"]) == 1 and d["update_s"][0] > 0
    assert d["host"] and d["commit"] and d["command"].startswith("python benchmarks/learner_bench.py --quick --fsdp")


_npath = Path(__file__).resolve().parents[1] / "benchmarks" / "notation_probe.py"


def _notation_probe():
    spec = importlib.util.spec_from_file_location("notation_probe", _npath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notation_probe_writes_347_plus_586_in_each_notation():
    probe = _notation_probe()
    prompt, completion, answer = probe.indexed(347, 586, 3, random.Random(0), gap=0, shuffle=False)
    w, x, y, z = (prompt[i] for i in (0, 2, 4, 6))  # the sentinel's letter and the three digits'
    assert [ord(c) - ord(w) for c in (x, y, z)] == [1, 2, 3]
    assert prompt == f"{w}#{x}3{y}4{z}7+{w.upper()}#{x.upper()}5{y.upper()}8{z.upper()}6>"
    assert completion == (f"{z}7+{z.upper()}6+0=13;{y}4+{y.upper()}8+1=13;{x}3+{x.upper()}5+1=9;{w}#;"
                          f"\\boxed{{{w}0{x}9{y}3{z}3}}")
    assert answer == f"{w}0{x}9{y}3{z}3"
    carried = probe.indexed(999, 1, 3, random.Random(0), gap=0, shuffle=False)[2]
    assert [c for c in carried if c.isdigit()] == list("1000")  # the sentinel holds the final carry: 999+001

    shuffled, _, _ = probe.indexed(347, 586, 3, random.Random(0), gap=0, shuffle=True)
    a, b = shuffled[:-1].split("+")
    pairs = [a[i:i + 2] for i in range(0, 8, 2)]
    assert "".join(p[1] for p in sorted(pairs)) == "#347" and pairs != sorted(pairs)  # the same lettered digits, another order
    assert "".join(p[1] for p in sorted(b[i:i + 2] for i in range(0, 8, 2))) == "#586"

    spaced, completion, answer = probe.gaps(347, 586, 3, random.Random(0), gap=5, error=0.0)
    assert answer == "933" and completion.endswith("\\boxed{933}")
    assert spaced.replace(" ", "")[1::2][:3] == "347"
