"""Every mistake a user can make gets one clear line and no traceback: a table of bad
invocations of `rlreason train`, `train --dry-run`, `eval` and `export`, run in-process through
rlreason.cli.main with the hub offline. Each row asserts the exit status (2: usage or config
error, 1: a failed run), that no traceback is printed, that the last line of stderr names the
offending key, file, path or row, and that the log it points to holds the traceback.

Nothing here may start Ray or vLLM: the fixture makes both fail loudly if a row gets that far."""

import json
import re
import shutil
from pathlib import Path

import pytest

from rlreason.cli import main, parse_args

ROOT = Path(__file__).resolve().parents[1]
R = str(ROOT / "recipes" / "addition_grpo.yaml")

# (arguments, exit status, text the last line must contain); {tmp}: the test's files (see `files`)
ROWS = [
    # config: ranges (each section's check), types, keys, files
    (["train", R, "optim.lr=nan"], 2, "optim.lr"),
    (["train", R, "optim.lr=-1e-4"], 2, "optim.lr"),
    (["train", R, "rollout.temperature=.inf"], 2, "rollout.temperature"),
    (["train", R, "rollout.group_size=0"], 2, "rollout.group_size"),
    (["train", R, "rollout.top_p=1.5"], 2, "rollout.top_p"),
    (["train", R, "rollout.max_tokens=300"], 2, "rollout.max_tokens"),
    (["train", R, "rollout.max_model_len=512"], 2, "rollout.max_model_len"),
    (["train", R, "algo.minibatches=1000"], 2, "algo.minibatches"),
    (["train", R, "algo.std_eps=0"], 2, "algo.std_eps"),
    (["train", R, "algo.clip_low=1.5"], 2, "algo.clip_low"),
    (["train", R, "algo.dual_clip=.nan"], 2, "algo.dual_clip"),
    (["train", R, "optim.betas=[0.9,1.5]"], 2, "optim.betas[1]"),
    (["train", R, "optim.grad_clip=0"], 2, "optim.grad_clip"),
    (["train", R, "warm_start.teacher_error=2"], 2, "warm_start.teacher_error"),
    (["train", R, "critic.gamma=-0.1"], 2, "critic.gamma"),
    (["train", R, "scoring.max_error_frac=1.5"], 2, "scoring.max_error_frac"),
    (["train", R, "ray.learner_gpus=-1"], 2, "ray.learner_gpus"),
    (["train", R, "model.tiny.num_heads=3"], 2, "model.tiny.num_heads"),
    (["train", R, "eval.size=0"], 2, "eval.size"),
    (["train", R, "eval.size=600"], 2, "eval.size"),
    (["train", R, "steps=0"], 2, "steps"),
    (["train", R, "seed=-1"], 2, "seed"),
    (["train", R, "steps=many"], 2, "steps"),
    (["train", R, "rollout.nope=1"], 2, "rollout.nope"),
    (["train", R, "steps"], 2, "steps"),
    (["train", R, "reward=nope"], 2, "nope"),
    (["train", "{tmp}/broken.yaml"], 2, "broken.yaml"),
    (["train", "{tmp}/missing.yaml"], 2, "missing.yaml"),
    (["train", R, "eval.datasets=[{tmp}/missing.jsonl]"], 2, "missing.jsonl"),
    (["train", R, "task.name=dataset", "task.dataset.source={tmp}/missing.jsonl"], 2, "file not found: {tmp}/missing.jsonl"),
    # train: what the config cannot know, found before any work
    (["train", R, "model.path={tmp}/no-model"], 2, "no such model directory: {tmp}/no-model"),
    (["train", R, "model.path=./no-such-model-dir"], 2, "no such model directory: ./no-such-model-dir"),
    (["train", R, "model.path=someone/missing-model"], 2, "'someone/missing-model'"),
    (["train", R, "--resume", "{tmp}/nope"], 2, "{tmp}/nope"),
    (["train", R, "--resume", "{tmp}/run/checkpoints/step_000003"], 2, "step_000003"),
    (["train", R, "run_dir={tmp}/held"], 2, "{tmp}/held"),
    # train --dry-run: a config error is still 2; a FAIL line is 1 and is named last
    (["train", R, "optim.lr=nan", "--dry-run"], 2, "optim.lr"),
    (["train", "--dry-run", R, "algo.advantage=grpoo"], 2, "grpoo"),
    (["train", R, "--dry-run", "model.path={tmp}/no-model"], 1, "no such model directory: {tmp}/no-model"),
    (["train", R, "task.name=dataset", "task.dataset.source={tmp}/rows.jsonl", "task.dataset.question=nope",
      "warm_start.enabled=false", "task.heldout_size=10", "eval.size=10", "--dry-run"], 1, "row 0 lacks field 'nope'"),
    # usage
    ([], 2, "command"),
    (["trian", R], 2, "trian"),
    (["train"], 2, "recipe"),
    (["train", R, "--resum", "auto"], 2, "--resum"),
    (["train", R, "--resume"], 2, "--resume"),
    # eval
    (["eval", "./runs/nope", "--dataset", "addition"], 2, "no such model directory: ./runs/nope"),
    (["eval", "someone/missing-model", "--dataset", "addition"], 2, "'someone/missing-model'"),
    (["eval", "{tmp}/run", "--dataset", "addition"], 2, "{tmp}/run"),
    (["eval", "tiny", "--dataset", "no_such_set"], 2, "no_such_set"),
    (["eval", "tiny", "--dataset", "{tmp}/missing.jsonl"], 2, "file not found: {tmp}/missing.jsonl"),
    (["eval", "tiny", "--dataset", "{tmp}/bad.jsonl"], 2, "{tmp}/bad.jsonl"),
    (["eval", "tiny", "--dataset", "{tmp}/rows.jsonl", "--field", "question=nope"], 2, "row 0 lacks field 'nope'"),
    (["eval", "tiny"], 2, "--dataset"),
    (["eval", "tiny", "--dataset", "addition", "--n", "0"], 2, "--n"),
    (["eval", "tiny", "--dataset", "addition", "--n", "4", "--k", "8"], 2, "--k"),
    (["eval", "tiny", "--dataset", "addition", "--top-p", "0"], 2, "--top-p"),
    (["eval", "tiny", "--dataset", "addition", "--temperature", "nan"], 2, "--temperature"),
    (["eval", "tiny", "--dataset", "addition", "--max-tokens", "4096"], 2, "--max-tokens"),
    (["eval", "tiny", "--dataset", "addition", "--scorer", "best"], 2, "--scorer"),
    (["eval", "tiny", "--dataset", "addition", "--scorer", "rm:{tmp}/no-rm"], 2, "{tmp}/no-rm"),
    (["eval", "tiny", "--dataset", "addition", "--field", "color=red"], 2, "color=red"),
    (["eval", "tiny", "--dataset", "addition", "--reward", "nope"], 2, "nope"),
    (["eval", "tiny", "--dataset", "addition", "--dtype", "int8"], 2, "--dtype"),
    (["eval", "--n", "x", "tiny", "--dataset", "addition"], 2, "--n"),
    # eval --search: refused before any sampling
    (["eval", "tiny", "--dataset", "addition", "--budget", "4"], 2, "--budget sweeps the strategies of --search"),
    (["eval", "tiny", "--dataset", "addition", "--search", "greedy"], 2, "unknown strategy 'greedy'"),
    (["eval", "tiny", "--dataset", "addition", "--search", "beam:rm:{tmp}/rm"], 2, "its scorer must be a PRM"),
    (["eval", "tiny", "--dataset", "addition", "--search", "beam:prm:{tmp}/p", "--budget", "2", "--beam-width", "4"], 2,
     "--budget 2 is smaller than --beam-width 4"),
    (["eval", "tiny", "--dataset", "addition", "--search", "beam:prm:{tmp}/no-prm", "--budget", "4"], 2, "prm:{tmp}/no-prm: no prm.json"),
    (["eval", "tiny", "--dataset", "addition", "--search", "revise", "--budget", "4"], 2, "not a revision model (no revision.json)"),
    # prm
    (["prm", R, "prm.rollouts=0"], 2, "prm.rollouts"),
    (["prm", R, "--resume", "{tmp}/run"], 2, "--resume takes 'auto'"),
    (["prm", R, "prm.policy={tmp}/no-policy"], 2, "no such model directory: {tmp}/no-policy"),
    (["prm", R, "prm.heldout_problems=50", "eval.size=10", "--dry-run"], 1, "lower prm.heldout_problems"),
    # export
    (["export", "runs/nope", "{tmp}/out"], 2, "runs/nope"),
    (["export", "{tmp}/run", "{tmp}/out"], 2, "{tmp}/run"),
    (["export", "{tmp}/run/checkpoints/step_000003", "{tmp}/out"], 2, "step_000003"),
    (["export", "{tmp}/done", "{tmp}/exists"], 2, "{tmp}/exists"),
    (["export", "{tmp}/done"], 2, "out"),
]


@pytest.fixture
def files(tmp_path, offline, monkeypatch, tiny_model_dir):
    """The files the rows name, logs in tmp_path, and Ray and vLLM that fail if a row reaches them."""
    from rlreason import checkpoint, evaluate
    from rlreason.cluster import actors

    def started(*args, **kwargs):
        raise AssertionError("a bad invocation got as far as starting Ray or vLLM")

    monkeypatch.setattr(actors, "connect", started)
    monkeypatch.setattr(evaluate, "_sample", started)
    monkeypatch.setattr(evaluate, "start_engine", started)
    monkeypatch.setenv("RLREASON_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(ROOT)  # ./runs/nope, ./no-such-model-dir: relative to the checkout
    (tmp_path / "broken.yaml").write_text("steps: [1,\n")
    (tmp_path / "bad.jsonl").write_text('{"q": "1+1", "gold": "2"}\n{broken\n')
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"q": f"{i}+1", "gold": str(i + 1)}) + "\n" for i in range(40)))
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "run" / "checkpoints" / "step_000003").mkdir(parents=True)  # incomplete: no marker
    (tmp_path / "exists").mkdir()
    tmp = checkpoint.begin(tmp_path / "done" / "checkpoints", 1)
    shutil.copytree(tiny_model_dir[0], tmp / "policy")
    checkpoint.commit(tmp, 1, keep_last=0)
    return tmp_path, tiny_model_dir[1].cache_dir


@pytest.mark.parametrize("argv, code, needle", ROWS, ids=[" ".join(a).replace(R, "RECIPE") or "(none)" for a, _, _ in ROWS])
def test_a_bad_invocation_gets_one_clear_line(files, capsys, argv, code, needle):
    tmp, cache = files
    argv = [a.format(tmp=tmp) for a in argv]
    if recipe := next((i for i, a in enumerate(argv) if a.endswith(".yaml")), None):  # after it, so a row's own keys win
        argv[recipe + 1 : recipe + 1] = [f"model.cache_dir={cache}", f"run_dir={tmp}/runs/r"]  # the session's tiny model
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    last = err.strip().splitlines()[-1]
    assert needle.format(tmp=tmp) in last
    assert last.startswith("rlreason")
    if (log := re.search(r"\(full log: (.+)\)$", last)) is not None:  # usage errors: nothing ran, no log
        text = Path(log.group(1)).read_text()
        assert "Traceback" in text and last in text


def test_the_table_is_long_enough():
    assert len(ROWS) >= 40
    assert {a[0] for a, _, _ in ROWS if a} >= {"train", "eval", "export"}
    assert sum("--dry-run" in a for a, _, _ in ROWS) >= 4


def test_verbose_prints_the_traceback_before_or_after_the_command(files, capsys):
    for argv in (["--verbose", "train", R, "optim.lr=nan"], ["train", R, "--verbose", "optim.lr=nan"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "optim.lr" in err.strip().splitlines()[-1]


def test_a_bug_shows_its_traceback_and_exits_1(files, capsys, monkeypatch):
    from rlreason import checkpoint

    monkeypatch.setattr(checkpoint, "resolve_resume", lambda *a: {}["oops"])
    assert main(["export", "somewhere", str(files[0] / "out")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err
    assert "internal error (a bug in rlreason" in err.strip().splitlines()[-1]


def test_overrides_and_flags_in_any_order():
    expect = (R, ["name=x", "steps=3"], "auto", True)
    for argv in (
        ["train", R, "name=x", "steps=3", "--resume", "auto", "--dry-run"],
        ["train", R, "--resume", "auto", "name=x", "--dry-run", "steps=3"],
        ["train", "--dry-run", "--resume", "auto", R, "name=x", "steps=3"],
        ["--verbose", "train", R, "--resume", "auto", "name=x", "steps=3", "--dry-run"],
    ):
        args = parse_args(argv)
        assert (args.recipe, args.overrides, args.resume, args.dry_run) == expect, argv
    args = parse_args(["eval", "--n", "8", "tiny", "--k", "1", "8", "--dataset", "addition"])
    assert (args.model, args.n, args.k, args.dataset) == ("tiny", 8, [1, 8], "addition")
