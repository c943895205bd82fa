"""Command line: `rlreason train RECIPE [key=value ...]`, `rlreason export`, `rlreason eval MODEL --dataset NAME`.
Heavy imports happen inside commands; a command's positionals, overrides and flags come in any order.

One error path for every command (docs/quickstart.md#errors): a mistake the user can fix
(rlreason.errors.UserError: a usage or config error, a path or name that is not there, rows
that do not fit their mapping; a file the OS refuses; no sandbox) is one line on stderr,
`rlreason COMMAND: what`, naming the key, file, path or row, with exit status 2; a run that
started and failed is one line and exit 1. Anything else is a bug in rlreason: its traceback,
then the one line, exit 1. --verbose prints the traceback of every error. The line ends with
the path of the command's full log (CommandLog: what it printed, then the traceback)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from rlreason import console
from rlreason.errors import RunFailed, UsageError, UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KEEP_LOGS = 50  # command logs kept in the log directory (training runs keep theirs in the run directory)
# Errors of the OS that a user's path causes (a directory that exists, no permission): one line, exit 2
USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def say(*parts) -> None:
    """A line of the command's own output: to the terminal (and the log), quiet or not."""
    print(*parts, file=console.out(), flush=True)


def _train(args) -> int:
    from rlreason.config import load_config

    cfg = load_config(args.recipe, args.overrides + (["warm_start.cache=false"] if args.no_cache else []))
    if args.dry_run:
        from rlreason.dryrun import FAIL, dry_run, format_checks

        checks = dry_run(cfg)
        say(format_checks(checks))
        failed = [f"{c.name}: {c.detail}" for c in checks if c.status == FAIL]
        if failed:
            raise RunFailed(f"dry run of {args.recipe} FAILED: {'; '.join(failed)}")
        say(f"dry run of {args.recipe}: no failures (see 'unchecked' lines for what this machine could not check)")
        return 0
    from rlreason.rewards import RewardError
    from rlreason.train import train

    args.log.move_to(cfg.resolved_run_dir / "train.log")
    try:
        result = train(cfg, resume=args.resume)
    except (RewardError, FloatingPointError) as e:  # Ray re-raises an actor's error as a subclass of it
        raise RunFailed(f"training stopped: {one_line(e)}") from e
    if result.get("finished"):
        say(f"rlreason: run already finished at step {result['step']} ({result['checkpoint']}); nothing to do")
        return 0
    if result["stopped"]:
        say(
            f"stopped after step {result['step']}; checkpoint saved in {cfg.resolved_run_dir / 'checkpoints'}; "
            f"continue with: rlreason train {args.recipe} {' '.join(args.overrides)} --resume auto".replace("  ", " ")
        )
        return 128 + result["signal"] if "signal" in result else 0
    for line in summary(cfg, result, time.time() - args.started, args.log.path):
        say(line)
    return 0


def summary(cfg, result: dict, wall_s: float, log_path: Path) -> list[str]:
    """The lines a finished training run ends with: accuracy from the start to the end, steps,
    times, where the model, metrics and log are, and how to evaluate the model."""
    from rlreason.data.datasets import SPECS

    run_dir = cfg.resolved_run_dir
    dataset = cfg.task.name if cfg.task.name in SPECS else (cfg.task.dataset.source if cfg.task.name == "dataset" else None)
    dataset = dataset or (cfg.eval.datasets[0] if cfg.eval.datasets else None)
    rows = [
        ("held-out accuracy", f"{result['eval/accuracy_start']:.3f} at step 0 -> {result['eval/accuracy']:.3f} at step {result['step']}"),
        ("time", f"{_minutes(wall_s)} in all: warm start {_minutes(result['warm_start_s'])}"
                 f"{' (from the cache)' if result['warm_start_cached'] else ''}, {result['step']} RL steps {_minutes(result['rl_s'])}"),
        ("final model", str(result["final_model"])),
        ("metrics", f"{run_dir / 'metrics.jsonl'}, {run_dir / 'progress.png'}"),
    ]
    if cur := result.get("curriculum"):
        by_difficulty = ", ".join(f"{d}: {a:.2f}" for d, a in cur["accuracy"].items())
        rows[1:1] = [("curriculum", f"frontier {cur['frontier_first']} -> {cur['frontier_last']}; held-out accuracy by difficulty {by_difficulty}")]
        rows[-1] = ("metrics", f"{run_dir / 'metrics.jsonl'}, {run_dir / 'progress.png'}, {run_dir / 'curriculum.png'}")
    rows.append(("log", str(log_path)))
    if dataset:
        rows.append(("evaluate it", f"rlreason eval {result['final_model']} --dataset {dataset}"))
    return ["done."] + [f"  {k:<18} {v}" for k, v in rows]


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _prm(args) -> int:
    from rlreason.config import load_config
    from rlreason.prm_run import run_prm

    cfg = load_config(args.recipe, args.overrides + (["warm_start.cache=false"] if args.no_cache else []))
    if args.dry_run:
        from rlreason.dryrun import FAIL, dry_run, format_checks, prm_checks

        checks = dry_run(cfg) + prm_checks(cfg)
        say(format_checks(checks))
        if failed := [f"{c.name}: {c.detail}" for c in checks if c.status == FAIL]:
            raise RunFailed(f"dry run of {args.recipe} FAILED: {'; '.join(failed)}")
        say(f"dry run of {args.recipe}: no failures (see 'unchecked' lines for what this machine could not check)")
        return 0
    args.log.move_to(cfg.resolved_run_dir / "prm.log")
    report = run_prm(cfg, resume=args.resume)
    if report.get("finished"):
        say(f"rlreason: PRM run already finished ({report['prm']}); nothing to do")
        return 0
    lab, held = report["labels"], report["heldout"]
    rows = [
        ("labels", f"{lab['train']['steps']} training steps of {lab['train']['labelled_completions']} completions, "
                   f"{lab['heldout']['steps']} held-out; {report['continuations_per_label']} continuations a label "
                   f"({lab['train']['continuations'] + lab['heldout']['continuations']} in all), "
                   f"{lab['train']['label_s'] + lab['heldout']['label_s']:.0f} s"),
        *([("label noise", "hard labels against the exact truth of each step: {hard_noise:.3f} ({right_steps_labelled_0} right steps "
                           "labelled 0, {wrong_steps_labelled_1} wrong ones labelled 1); soft labels' mean error {soft_mae:.3f}".format(
                               **report["label_noise"]["heldout"]))] if report.get("label_noise") else []),
        ("PRM", f"{len(report['epochs'])} epochs, loss {report['epochs'][0]['loss']:.3f} -> {report['epochs'][-1]['loss']:.3f}, "
                f"{report['prm_train_s']:.0f} s" if report["epochs"] else "no epochs"),
        ("held-out steps", f"{held['steps']}: AUC {held['auc_vs_labels']:.3f} and accuracy {held['accuracy_vs_labels']:.3f} against the labels"
                           + (f"; AUC {held['auc_vs_truth']:.3f} against the exact truth" if "auc_vs_truth" in held else "")),
        ("PRM model", f"{report['prm']} (step delimiter {report['delimiter']!r})"),
    ]
    if report["orm"]:
        rows.append(("outcome RM", f"{report['orm']['path']}: held-out AUC {report['orm']['heldout_auc_vs_verdicts']:.3f} against the verdicts"))
    if rev := report.get("revision"):
        rows.append(("revision model", f"{rev['path']}: {rev['revisions']} revisions and {rev['pairs'] - rev['revisions']} first attempts, "
                                       f"loss {rev['loss_first']:.3f} -> {rev['loss_last']:.3f}, {rev['train_s']:.0f} s"))
    rows += [("time", f"{_minutes(report['wall_s'])}"), ("log", str(args.log.path)),
             ("search with it", f"rlreason eval {report['policy']['path']} --dataset addition --search weighted:prm:{report['prm']} "
                                f"beam:prm:{report['prm']} --budget 4 16" if report["delimiter"] == ";" else
                                f"rlreason eval {report['policy']['path']} --dataset DATASET --search weighted:prm:{report['prm']} --budget 4 16")]
    if report.get("search"):
        from rlreason.search import format_search

        for name, found in report["search"].items():
            say(f"search with the {name}, {found['n_problems']} problems ({found['out']}/search.png):")
            say(format_search(found))
    say("done.")
    for k, v in rows:
        say(f"  {k:<16} {v}")
    return 0


def _export(args) -> int:
    from rlreason import checkpoint

    ckpt = checkpoint.resolve_resume(Path(args.checkpoint), args.checkpoint)
    out = checkpoint.export(ckpt, Path(args.out))
    say(f"exported {ckpt} to {out} (HF format)")
    return 0


def _eval(args) -> int:
    from rlreason.data.datasets import parse_field_overrides
    from rlreason.evaluate import EvalSettings, format_table, run_eval

    if not args.search and args.budget:
        raise UsageError("rlreason eval: --budget sweeps the strategies of --search; give --search STRATEGY[:SCORER] ... (docs/search.md)")
    settings = EvalSettings(
        model=args.model, dataset=args.dataset, split=args.split, fields=parse_field_overrides(args.field),
        answer_extract=args.answer_extract, reward=args.reward, template=args.template, hub=args.hub,
        n=args.n, ks=args.k or [1, args.n], temperature=args.temperature, top_p=args.top_p,
        max_tokens=args.max_tokens, max_model_len=args.max_model_len, limit=args.limit, scorer=args.scorer,
        seed=args.seed, dtype=args.dtype, kv_cache_gib=args.kv_cache_gib, threads=args.threads, unsafe_code=args.unsafe_code, out=args.out,
        search=args.search or [], budgets=args.budget or [], beam_width=args.beam_width, chain=args.chain, step_tokens=args.step_tokens,
        max_steps=args.max_steps, difficulty_samples=args.difficulty_samples, bins=args.bins,
    )
    if settings.search:
        from rlreason.search import format_search, run_search

        report = run_search(settings)
        args.log.move_to(Path(report["out"]) / "search.log")
        say(f"{report['model']} on {report['dataset']['name'] or report['dataset']['source']}: {report['n_problems']} problems, "
            f"temperature {settings.temperature}, beam width {settings.beam_width}")
        say(format_search(report))
        say(f"time {report['wall_s']:.1f} s; wrote {report['out']}/search.json, search.jsonl, search.png, search.log")
        return 0
    report = run_eval(settings)
    args.log.move_to(Path(report["out"]) / "eval.log")
    t = report["timing"]
    say(f"{report['model']} on {report['dataset']['name'] or report['dataset']['source']}: {report['n_problems']} problems x "
          f"{settings.n} samples, temperature {settings.temperature}, scorer {settings.scorer}")
    say(format_table(report["metrics"]))
    say(f"time {t['total_s']:.1f} s (generate {t['generate_s']:.1f} s, {t['tokens_per_s']:.0f} tok/s; score {t['score_s']:.1f} s); "
          f"reward errors {report['reward_errors']}; prompts left out as too long {report['prompts_left_out_too_long']}")
    say(f"wrote {report['out']}/eval.json, samples.jsonl, problems.jsonl, eval.log")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors (main's one error path) instead of a usage block and exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="print the traceback of an error (it is always in the log)")
    parser = _Parser(prog="rlreason", description="RL fine-tuning for verifiable reasoning", parents=[common], allow_abbrev=False,
                     epilog="exit status: 0 done, 2 a usage or config error, 1 a failed run (docs/quickstart.md#errors)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("train", parents=[common], allow_abbrev=False, help="run a recipe: rlreason train recipes/NAME.yaml [key=value ...]")
    p.add_argument("recipe", help="YAML recipe (sparse: only what differs from the defaults)")
    p.add_argument("overrides", nargs="*", default=[], help="dotted overrides, e.g. algo.kl_coef=0.01 rollout.group_size=4 (before or after the flags)")
    p.add_argument(
        "--resume", metavar="auto|PATH",
        help="'auto': continue from the run's newest complete checkpoint (start fresh if there is none); "
        "PATH: a checkpoint directory, or a run directory (its newest complete checkpoint)",
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="check the recipe (config, reward, model config and tokenizer, data mapping, placement) without weights or training",
    )
    p.add_argument(
        "--no-cache", action="store_true",
        help="run the warm start even when this machine has its outcome cached (warm_start.cache=false)",
    )
    p.set_defaults(fn=_train)
    r = sub.add_parser("prm", parents=[common], allow_abbrev=False,
                       help="label steps by the policy's own rollouts and train a process reward model: rlreason prm recipes/NAME.yaml [key=value ...]")
    r.add_argument("recipe", help="YAML recipe; its prm: section (docs/search.md)")
    r.add_argument("overrides", nargs="*", default=[], help="dotted overrides, e.g. prm.problems=200 prm.rollouts=8")
    r.add_argument("--resume", metavar="auto", help="'auto': go on from the run directory's labels and newest complete epoch checkpoint")
    r.add_argument("--no-cache", action="store_true", help="run the warm start even when this machine has its outcome cached")
    r.add_argument("--dry-run", action="store_true", help="check the recipe and its prm: section without weights or work")
    r.set_defaults(fn=_prm)
    e = sub.add_parser("export", parents=[common], allow_abbrev=False, help="write a checkpoint's policy as a plain HF model directory")
    e.add_argument("checkpoint", help="a checkpoint directory (runs/NAME/checkpoints/step_N) or a run directory (its newest)")
    e.add_argument("out", help="output directory (must not exist)")
    e.set_defaults(fn=_export)
    v = sub.add_parser("eval", parents=[common], allow_abbrev=False, help="pass@k / maj@k / best-of-N of a model on a data set, sampled with vLLM")
    v.add_argument("model", help="'tiny', an HF model directory or hub id, a run directory (final/ or its newest checkpoint) or a checkpoint")
    v.add_argument("--dataset", required=True, help="gsm8k, math500, aime2024, amc2023, humaneval, addition; a hub id; or a .jsonl/.json/.parquet file")
    v.add_argument("--split", help="hub split (default: the data set's, 'test' for the built-ins)")
    v.add_argument("--hub", action="store_true", help="read a built-in data set from the hub even when its local file is there")
    v.add_argument("--field", action="append", default=[], metavar="KEY=FIELD", help="map a field: question, answer, tests, entry_point, id, subject, level (repeatable)")
    v.add_argument("--answer-extract", choices=["gsm8k", "boxed", "field"], help="how the gold is read from the answer field")
    v.add_argument("--reward", help="the reward that judges samples (default: the data set's: math, or code for humaneval)")
    v.add_argument("--template", choices=["chat", "r1_zero", "plain", "raw"], help="prompt template (default: the data set's)")
    v.add_argument("--n", type=int, default=4, help="samples per problem")
    v.add_argument("--k", type=int, nargs="+", help="k values for pass@k / maj@k / best_of_k, each <= n (default: 1 and n)")
    v.add_argument("--temperature", type=float, default=0.6)
    v.add_argument("--top-p", type=float, default=1.0)
    v.add_argument("--max-tokens", type=int, default=256)
    v.add_argument("--max-model-len", type=int, default=2048, help="context length (capped at the model's); longer prompts are left out")
    v.add_argument("--limit", type=int, help="evaluate the first N problems only")
    v.add_argument("--scorer", default="verifier", help="best-of-N selector: 'verifier' (the data set's reward), 'rm:PATH' (HF sequence-classification reward model), 'prm:PATH[:last|min|prod]' (a process reward model, rlreason.prm; docs/search.md) or 'none'")
    v.add_argument("--search", nargs="+", metavar="STRATEGY[:SCORER]",
                   help="test-time search instead of plain sampling (docs/search.md): majority, best_of_n, weighted, beam, dvts, revise (a revision model's); "
                   "each with a scorer (default --scorer), e.g. beam:prm:PATH best_of_n:rm:PATH weighted:prm:PATH best_of_n:verifier")
    v.add_argument("--budget", type=int, nargs="+", metavar="N", help="--search: candidates generated per problem, each a point of the sweep (default: --n)")
    v.add_argument("--beam-width", type=int, default=4, help="--search beam/dvts: continuations of each kept candidate (M); budget/M are kept")
    v.add_argument("--chain", type=int, default=4, help="--search revise: attempts in a chain of revisions; budget/chain chains")
    v.add_argument("--step-tokens", type=int, default=0, help="--search beam/dvts: tokens one step may take (0: --max-tokens)")
    v.add_argument("--max-steps", type=int, default=40, help="--search beam/dvts: steps before every candidate is continued to its end")
    v.add_argument("--difficulty-samples", type=int, default=4, help="--search: samples whose PRM scores estimate a problem's difficulty (compute-optimal allocation)")
    v.add_argument("--bins", type=int, default=4, help="--search: difficulty bins of the compute-optimal allocation")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--dtype", default="float32")
    v.add_argument("--kv-cache-gib", type=float, default=1.0)
    v.add_argument("--threads", type=int, default=0, help="CPU threads for vLLM on a CPU-only machine (0: all cores)")
    v.add_argument("--unsafe-code", action="store_true", help="run code without the bubblewrap sandbox (loud warning)")
    v.add_argument("--out", help="output directory (default runs/eval-DATASET-TIME)")
    v.set_defaults(fn=_eval)
    return parser, sub.choices


def parse_args(argv: list[str]) -> argparse.Namespace:
    """`rlreason [--verbose] COMMAND ...`, the command's positionals and flags in any order
    (argparse's intermixed parsing; it does not combine with subparsers, so the options before
    the command are read first, then the command's arguments). Raises UsageError."""
    parser, commands = _parsers()
    i = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    args = parser.parse_args(argv[:i])  # the options before the command; --help lists the commands
    if i == len(argv):
        parser.error(f"no command; choose one of {', '.join(commands)}")
    if argv[i] not in commands:
        parser.error(f"unknown command {argv[i]!r}; choose one of {', '.join(commands)}")
    args.command = argv[i]
    return commands[argv[i]].parse_intermixed_args(argv[i + 1 :], args)


class CommandLog:
    """The full log of one command: everything it prints on stdout and stderr (its log records,
    the lines Ray forwards from the actors, progress), then the traceback of an error. It starts
    in $RLREASON_LOG_DIR (default ~/.cache/rlreason/logs, the newest KEEP_LOGS kept); a training
    run moves it into its run directory, an eval into its output directory.

    Quiet (without --verbose): file descriptors 1 and 2 point at the log, so whatever a library,
    a subprocess or Ray's forwarding of the actors' output writes goes there only; the run's own
    lines (rlreason.console) go to the terminal and into the log. Verbose: everything goes to
    the terminal and into the log."""

    def __init__(self, command: str, quiet: bool = False):
        folder = Path(os.environ.get("RLREASON_LOG_DIR") or "~/.cache/rlreason/logs").expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # e.g. a read-only home on a cluster node
            folder = Path(tempfile.gettempdir()) / "rlreason-logs"
            folder.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # another command may be pruning too
            for old in sorted(folder.glob("*.log"), key=os.path.getmtime)[:-KEEP_LOGS]:
                old.unlink(missing_ok=True)
        self.path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        self.file = open(self.path, "a", buffering=1)  # line-buffered: a killed run keeps its lines
        # Ray prints the actors' lines from a thread of its own; reentrant: a signal handler
        # (train's SIGTERM notice) may write while the main thread holds it
        self.lock = threading.RLock()
        self.streams = sys.stdout, sys.stderr
        self.saved_fds: list[int] = []
        self.opened: list = []  # the terminal streams made here (closed with the log)
        if quiet:
            terminal = [_terminal(stream) for stream in self.streams]
            self.opened = [t for t, stream in zip(terminal, self.streams) if t is not stream]
            sys.stdout.flush()
            sys.stderr.flush()
            self.saved_fds = [os.dup(1), os.dup(2)]
            self._point_fds_at_log()
            console.use(_Tee(terminal[0], self), _Tee(terminal[1], self))
        else:
            sys.stdout, sys.stderr = _Tee(sys.stdout, self), _Tee(sys.stderr, self)
            console.use(sys.stdout, sys.stderr)

    def _point_fds_at_log(self) -> None:
        if self.saved_fds:
            os.dup2(self.file.fileno(), 1)
            os.dup2(self.file.fileno(), 2)

    def write(self, text: str) -> None:
        with self.lock:
            if not self.file.closed:  # a handler may still hold the tee after close()
                self.file.write(text)

    def move_to(self, path: Path) -> None:
        """Go on in `path` (appended to: a resumed run keeps one log), with what was logged so far."""
        sys.stdout.flush()
        sys.stderr.flush()
        with self.lock:
            self.file.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(self.path.read_text())
            self.path.unlink()
            self.path, self.file = path, open(path, "a", buffering=1)
            self._point_fds_at_log()

    def add_traceback(self, error: BaseException) -> None:
        """The traceback, in the log only."""
        self.write("".join(traceback.format_exception(error)))

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = self.streams
        if self.saved_fds:
            for fd, saved in zip((1, 2), self.saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
        console.reset()
        for stream in self.opened:
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with self.lock:
            self.file.close()


def _terminal(stream):
    """A stream that writes where `stream` writes now, even after fd 1 and 2 are pointed at the
    log: a new file on a copy of its descriptor, or the stream itself when it has none (pytest's
    capture)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return stream
    return open(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8", errors="replace")


class _Tee:
    """A text stream that also writes to a CommandLog."""

    def __init__(self, stream, log: CommandLog):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding ...: the stream's
        return getattr(self.stream, name)


class _ConsoleFormat(logging.Formatter):
    """The run's own log records on the terminal: the message, with its level when it is a warning or worse."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def _log_handlers(quiet: bool) -> list[logging.Handler]:
    """Every record to stderr (the log, when quiet); when quiet, rlreason's own records to the
    terminal instead."""
    ours = logging.Filter("rlreason")
    everything = logging.StreamHandler(sys.stderr)
    everything.setFormatter(logging.Formatter(LOG_FORMAT))
    if not quiet:
        return [everything]
    everything.addFilter(lambda record: not ours.filter(record))
    terminal = logging.StreamHandler(console.err())
    terminal.setFormatter(_ConsoleFormat())
    terminal.addFilter(ours)
    return [everything, terminal]


def exit_code(e: BaseException) -> int | None:
    """2 for a mistake the user can fix, 1 for a run that failed, None for a bug in rlreason."""
    from rlreason.rewards.sandbox import IsolationUnavailable

    if isinstance(e, UserError):
        return e.exit_code
    if isinstance(e, (*USER_OS_ERRORS, IsolationUnavailable)):
        return 2
    return None


def one_line(e: BaseException) -> str:
    """The error's message on one line; for an error Ray re-raised, its cause's (not the remote traceback)."""
    cause = getattr(e, "cause", None)
    e = cause if isinstance(cause, BaseException) else e
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error ends here as one line on stderr and an exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
    except UsageError as e:  # nothing ran: no log
        print(e, file=sys.stderr)
        return 2
    quiet = not args.verbose
    args.log, args.started = CommandLog(args.command, quiet=quiet), time.time()
    root = logging.getLogger()
    handlers, level = _log_handlers(quiet), root.level
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"rlreason {args.command}: interrupted (full log: {args.log.path})", file=console.err())
        return 130
    except Exception as e:  # noqa: BLE001  the one place errors are reported
        code = exit_code(e)
        if code is None or args.verbose:
            traceback.print_exception(e, file=console.err())
        else:
            args.log.add_traceback(e)
        what = one_line(e) if code is not None else f"internal error (a bug in rlreason, please report it): {type(e).__name__}: {one_line(e)}"
        print(f"rlreason {args.command}: {what} (full log: {args.log.path})", file=console.err())
        return 1 if code is None else code
    finally:
        for h in handlers:
            root.removeHandler(h)
        root.setLevel(level)
        args.log.close()


if __name__ == "__main__":
    sys.exit(main())
