"""Math reward: extract the final answer, reject adversarial forms, check equivalence with math-verify.

    math_reward(prompt, completion, answer) -> 1.0 | 0.0

Three layers, each a plain function or a small class:

1. Extraction (pure): EXTRACTORS name functions text -> list of candidate answers, in order.
   `last_boxed` (the default) reads every \\boxed{...} / \\boxed 5 / \\fbox{...}; `gsm8k` reads
   `#### N` lines; `answer_tag` reads <answer>...</answer>. The reward takes the last candidate.
   When the completion closes a <think> block, only the text after the last </think> counts.
2. Guards (pure, `judge`): rules that score 0 before any sympy work. Each rule has a reason name
   that the verifier counts (see GUARD_REASONS and `check`'s docstring for the rules and their limits).
3. Equivalence (`MathVerifier`): math_verify.parse + verify run in worker processes with a hard
   wall-clock limit per call, the wait for a free worker included. math-verify bounds itself
   with signal.alarm, which fails off the main thread and cannot interrupt a long C call; here
   the parent never uses signals: a check that overruns its deadline gets its worker killed
   (SIGKILL) and replaced, and scores 0 (counted as a timeout); a call that finds no free worker
   before its deadline scores 0 too (counted as a queue timeout). Thread-safe, started on first use,
   picklable (the pool is rebuilt in the process that unpickles it, so a reward can be shipped
   to a Ray actor). `set_default_workers(n)` sizes the pools to the caller's scoring threads,
   so that in the loop no call waits for a worker.

Every rejection and timeout is counted: `MathReward.stats()` / `math_reward_stats()` return
{reason: count}; the loop logs each step's timeouts as reward/timeouts and the seconds calls
waited for a worker as reward/queue_wait_s.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

# ---------------------------------------------------------------------------------------------
# 1. Extraction
# ---------------------------------------------------------------------------------------------

Extractor = Callable[[str], list[str]]

_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced(text: str, i: int) -> tuple[str, int] | None:
    """The content of the {...} group opening at text[i] (nested braces balanced) and the index
    after it; None when it never closes. A backslash escapes the next character (\\{ \\})."""
    depth, j = 0, i
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None


def boxed_answers(text: str) -> list[str]:
    """Contents of every \\boxed{...}, \\boxed N and \\fbox{...} in order (outermost only).

    >>> boxed_answers(r"so \\boxed{\\frac{1}{2}} or \\boxed 3$.")
    ['\\\\frac{1}{2}', '3']
    """
    out, pos = [], 0
    while (m := _BOXED.search(text, pos)) is not None:
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            group = _braced(text, j)
            if group is None:  # unclosed: nothing after it can be an answer either
                break
            content, pos = group
            out.append(content.strip())
        elif j > m.end():  # `\boxed 5`: one token up to a space, `$`, or the end of the line
            tok = re.match(r"[^\s$]+", text[j:])
            if tok is None:
                pos = j
                continue
            out.append(tok.group(0).rstrip(".,;"))
            pos = j + tok.end()
        else:
            pos = j
    return [a for a in out if a]


def last_boxed(text: str) -> str | None:
    """The last boxed answer, or None."""
    answers = boxed_answers(text)
    return answers[-1] if answers else None


_GSM8K = re.compile(r"####[ \t]*([^\n]*)")


def gsm8k_answers(text: str) -> list[str]:
    """Every `#### N` line's answer, in order: GSM8K's gold format (`#### 1,234` -> '1,234')."""
    return [a for a in (m.group(1).strip().rstrip(".").strip() for m in _GSM8K.finditer(text)) if a]


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_tag_answers(text: str) -> list[str]:
    """Every <answer>...</answer> content; a boxed answer inside the tag is unwrapped."""
    out = []
    for m in _ANSWER_TAG.finditer(text):
        inner = m.group(1).strip()
        boxed = boxed_answers(inner)
        inner = boxed[-1] if boxed else inner.strip("$ ").strip()
        if inner:
            out.append(inner)
    return out


EXTRACTORS: dict[str, Extractor] = {
    "last_boxed": boxed_answers,
    "gsm8k": gsm8k_answers,
    "answer_tag": answer_tag_answers,
}


def final_section(completion: str) -> str:
    """The text after the last </think> (the whole text when there is none): boxes drafted while
    thinking are not the answer and must not count as conflicting ones."""
    i = completion.rfind("</think>")
    return completion if i < 0 else completion[i + len("</think>") :]


def gold_text(answer) -> str:
    """A data set's answer field as a bare LaTeX answer: GSM8K's `...#### N` -> N, a worked
    solution -> its last boxed answer, anything else (MATH '\\frac{1}{2}', AMC 27.0) as a string."""
    text = str(answer).strip()
    if "####" in text:
        found = gsm8k_answers(text)
        return found[-1] if found else ""
    found = boxed_answers(text)
    return found[-1] if found else text.strip("$ ").strip()


# ---------------------------------------------------------------------------------------------
# 2. Guards: pure rules that score 0 before any sympy work
# ---------------------------------------------------------------------------------------------

MAX_COMPLETION_CHARS = 200_000  # ~50k tokens; longer completions score 0 without being read
MAX_ANSWER_CHARS = 300  # MATH-500's longest gold is 53 characters
MAX_DEPTH = 8  # MATH-500 golds nest 2 deep; parse time grows fast with depth (20 parens: 2 s)
# Non-ASCII characters allowed in an answer; anything else is junk unless the gold has it too.
MATH_UNICODE = set("π√×÷−·°∞≤≥≠±∪∩∈")

GUARD_REASONS = (
    "too_long", "no_answer", "conflicting_answers", "bad_chars", "too_deep",
    "power_tower", "list_answer", "not_final_form", "echo",
)  # fmt: skip

_SPACING = re.compile(r"\\[,!;: ]|\\left|\\right|\\displaystyle|~|\$|\s")
_THOUSANDS = re.compile(r"(?<=\d),(?:\\!|\\,|\s)*(?=\d{3}(?!\d))")


def normalize(answer: str) -> str:
    """A canonical spelling for string comparisons (not for equivalence): no spacing commands or
    whitespace, \\dfrac/\\tfrac -> \\frac, integer a/b -> \\frac{a}{b}, no trailing period."""
    s = _THOUSANDS.sub("", answer)
    s = _SPACING.sub("", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"(?<![\w}])(\d+)/(\d+)(?![\w{])", r"\\frac{\1}{\2}", s)
    return s.rstrip(".")


def nesting_depth(s: str) -> int:
    """Deepest nesting of (), [] and {} (escaped \\{ \\} count too)."""
    depth = best = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth -= 1
    return best


def has_nested_power(s: str) -> bool:
    """An exponent that itself holds an exponent: 2^{2^{100}}, 2^2^2, 9^{(9^9)}."""
    for m in re.finditer(r"\^", s):
        j = m.end()
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] == "{":
            group = _braced(s, j)
            exponent = group[0] if group else s[j:]
            if "^" in exponent or "\\exp" in exponent:
                return True
        elif re.match(r"\\?\w+\s*\^", s[j:]):  # 2^2^2
            return True
    return False


_LIST_SEP = re.compile(r",|;|\\cup|\\pm|\\mp|\\lor|\\vee|\\land|\\wedge|\\quad|\\qquad|\bor\b|\band\b")


def is_multi_valued(answer: str) -> bool:
    """Whether an answer lists several values or is a set/tuple/interval: it has a separator other
    than a thousands comma (`,` `;` \\cup \\pm `or` `and`)."""
    return _LIST_SEP.search(_THOUSANDS.sub("", answer)) is not None


_DECORATION = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}(?:\^\{?\d\}?)?"
)
_NUMBER = re.compile(
    r"-?(?:\d+(?:\.\d*)?|\.\d+)"  # 12, 1.5, .5, 27.0 (thousands commas are already gone)
    r"|-?\d+/\d+"  # 3/4
    r"|-?\\frac(?:\{-?\d+(?:\.\d+)?\}|\d)(?:\{\d+(?:\.\d+)?\}|\d)"  # \frac{3}{4}, \frac34
)


def bare_number(answer: str) -> str | None:
    """The number an answer states, stripped of units and decorations, or None when it is not a
    plain number: '\\$1,234' -> '1234', '5\\text{ cm}' -> '5', '10\\%' -> '10', 'x = -3' -> '-3',
    '\\frac{1}{2}' -> '\\frac{1}{2}', but '3+4\\cdot2' -> None and '2^{10}' -> None."""
    s = _DECORATION.sub(lambda m: m.group(1) if re.fullmatch(r"[\d.,\s-]+", m.group(1)) else " ", answer)
    s = re.sub(r"\^\s*\{?\\circ\}?|\\circ|\\%|%|\\\$", "", s)
    s = normalize(s)
    s = re.sub(r"^[A-Za-z]\w*=", "", s)  # x=5
    s = re.sub(r"(?:[A-Za-z]+\.?)+(?:\^\{?\d\}?)?$", "", s)  # a trailing unit word: 5cm, 12 dollars, 3 m^2
    return s if _NUMBER.fullmatch(s) else None


_OPERATOR = re.compile(r"[+*/^!=<>]|(?<=.)-|\\(?!pi\b|infty\b)[A-Za-z]+")


def is_echo(pred: str, gold: str, prompt: str) -> bool:
    """The prediction is an expression (it has an operator or a command) copied verbatim from the
    prompt, and not the gold's own spelling: 'compute 3+4*2' answered \\boxed{3+4*2}."""
    p = normalize(pred)
    return bool(_OPERATOR.search(p)) and p != normalize(gold) and p in normalize(prompt)


def judge(prompt: str, completion: str, answer, extractor: Extractor = boxed_answers) -> tuple[str | None, str, str]:
    """Apply the guards: (reason, pred, gold). reason is None when the pair should go to
    math-verify, else the name of the rule that scores it 0. The rules, in order:

    too_long            completion over MAX_COMPLETION_CHARS or answer over MAX_ANSWER_CHARS.
    no_answer           the extractor finds nothing (or the gold is empty).
    conflicting_answers the final section (after the last </think>) states several different
                        answers (different after `normalize`). Limit: the same value written two
                        ways (\\boxed{1/2} ... \\boxed{0.5}) and multi-part answers boxed one by
                        one score 0.
    bad_chars           a control character, or a non-ASCII one outside MATH_UNICODE that the gold
                        lacks (fullwidth or Arabic digits, zero-width spaces, emoji). Limit: an
                        answer in another script (units in Chinese) scores 0.
    too_deep            brackets nest deeper than MAX_DEPTH (and deeper than the gold).
    power_tower         an exponent holds an exponent (2^{2^{100}}) and the gold has none.
    list_answer         the gold is one value and the prediction lists several: a separator
                        (`,` `;` or, and, \\cup, \\pm) other than a thousands comma. Set, tuple
                        and interval golds (they have commas) keep math-verify's comparison.
    not_final_form      the gold is a plain number (integer, decimal, a/b, \\frac{a}{b}, with
                        units, \\$ or \\% allowed) and the prediction is not one: 3+4\\cdot2,
                        2^{10}, \\sqrt{4}. Limit: 1.2\\times10^3, mixed numbers 1\\frac12 and
                        unsimplified forms like \\sqrt{4} score 0 against a numeric gold.
    echo                the prediction is an expression copied verbatim from the prompt and not
                        the gold's spelling (\\frac{6}{12} for 'simplify \\frac{6}{12}', gold
                        \\frac12). Limit: a multiple-choice prompt that lists the right value in a
                        spelling other than the gold's scores 0 for that spelling.
    """
    gold = gold_text(answer)
    if len(completion) > MAX_COMPLETION_CHARS:
        return "too_long", "", gold
    found = extractor(final_section(completion))
    if not found or not gold:
        return "no_answer", "", gold
    pred = found[-1]
    if len(pred) > MAX_ANSWER_CHARS:
        return "too_long", "", gold
    if len({normalize(a) for a in found}) > 1:
        return "conflicting_answers", pred, gold
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in pred) or any(
        ord(ch) > 127 and ch not in MATH_UNICODE and ch not in gold for ch in pred
    ):
        return "bad_chars", pred, gold
    if nesting_depth(pred) > max(MAX_DEPTH, nesting_depth(gold)):
        return "too_deep", pred, gold
    if has_nested_power(pred) and not has_nested_power(gold):
        return "power_tower", pred, gold
    if not is_multi_valued(gold) and is_multi_valued(pred):
        return "list_answer", pred, gold
    if bare_number(gold) is not None and bare_number(pred) is None:
        return "not_final_form", pred, gold
    if is_echo(pred, gold, prompt):
        return "echo", pred, gold
    return None, pred, gold


# ---------------------------------------------------------------------------------------------
# 3. Equivalence in killable worker processes
# ---------------------------------------------------------------------------------------------

_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_worker.py")
# Run the worker file with an empty sys.path head: neither its own directory (rewards/ holds
# code.py) nor the working directory can shadow a standard-library module in the worker.
LAUNCH = "import runpy, sys; del sys.path[0]; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


class _Worker:
    """One math-verify process and its two pipes. Not thread-safe: the pool lends it to one
    thread at a time."""

    def __init__(self, memory_mb: int):
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, _WORKER_SCRIPT, str(p2c_r), str(c2p_w), str(memory_mb), str(os.getpid())],
                pass_fds=(p2c_r, c2p_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is the parent's business
            )
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
        self.tx = Connection(p2c_w, readable=False)
        self.rx = Connection(c2p_r, writable=False)
        self.ready = False
        self.started = time.monotonic()

    def wait_ready(self, timeout_s: float) -> bool:
        if not self.ready:
            try:
                if self.rx.poll(max(0.0, self.started + timeout_s - time.monotonic())):
                    self.ready = self.rx.recv()[0] == "ready"
            except (EOFError, OSError):
                self.ready = False
        return self.ready

    def request(self, msg: tuple, timeout_s: float) -> tuple[str, object]:
        """('ok', value) | ('error', text) | ('timeout', None) | ('crash', text)."""
        try:
            self.tx.send(msg)
            if not self.rx.poll(timeout_s):
                return "timeout", None
            return self.rx.recv()
        except (EOFError, OSError) as e:
            return "crash", f"worker died: {e!r} (exit code {self.proc.poll()})"

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        self.tx.close()
        self.rx.close()


def _kill_all(workers: list[_Worker], owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child must not kill its parent's workers
        return
    for w in list(workers):
        w.kill()
    workers.clear()


_DEFAULT_WORKERS = [max(1, min(4, os.cpu_count() or 1))]  # a list: set_default_workers changes it


def _default_workers() -> int:
    return _DEFAULT_WORKERS[0]


@dataclass
class MathVerifier:
    """math_verify.parse + verify in `workers` processes, each call bounded by `timeout_s` of wall
    clock from the moment it is made: the wait for a free worker counts, and a check that
    overruns gets its worker killed and replaced. Either way the call scores 0 as a timeout.

    Thread-safe: each call borrows an idle worker, waiting for one until its deadline, so at most
    `workers` checks run at once and every call ends within timeout_s (plus a kill's
    milliseconds). The pool starts whole on the first call (or `start()`), before any call's
    clock runs (a worker's start: Python, sympy and math-verify imports, a warm-up parse;
    bounded by start_timeout_s). A killed worker's successor joins the idle ones once ready;
    until then calls wait for a worker as for a busy one. Workers are plain subprocesses running math_worker.py, so no fork of a threaded or
    torch-laden parent and no re-import of __main__. A verifier that is pickled or inherited by
    fork starts its own pool in the new process. `memory_mb` caps each worker's address space
    (0: no cap).
    """

    timeout_s: float = 3.0
    workers: int = field(default_factory=lambda: _default_workers())
    memory_mb: int = 2048
    start_timeout_s: float = 120.0  # a fresh worker on a loaded machine

    def __post_init__(self):
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: list[_Worker] = []
        self._start_lock = threading.Lock()
        self._started_to = 0  # the pool size start() last reached
        self._counts: Counter = Counter()
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill_all, self._all, self._pid)

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("timeout_s", "workers", "memory_mb", "start_timeout_s")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    # -- pool -------------------------------------------------------------------------------

    def _spawn(self) -> _Worker | None:
        """A new worker, counted in the pool; None when the pool is full."""
        with self._lock:
            if len(self._all) >= self.workers:
                return None
            w = _Worker(self.memory_mb)
            self._all.append(w)
        return w

    def _replace(self, w: _Worker) -> None:
        """Kill w and start its successor in the same pool slot. The successor joins the idle
        workers once it is ready (a thread waits for it), so no call's clock runs while it starts:
        meanwhile calls wait for a worker as they would for a busy one."""
        with self._lock:
            if w in self._all:
                self._all.remove(w)
            fresh = _Worker(self.memory_mb)
            self._all.append(fresh)
        w.kill()
        threading.Thread(target=self._join_when_ready, args=(fresh,), daemon=True, name="math-worker-start").start()

    def _join_when_ready(self, w: _Worker) -> None:
        w.wait_ready(self.start_timeout_s)  # one that never starts is found out by its first call
        with self._lock:
            if w in self._all:  # not killed by close() meanwhile
                self._idle.put(w)

    def _ensure_started(self) -> None:
        """Start the pool whole (first use, or after set_default_workers grew it); concurrent
        callers wait here, before their clocks start."""
        if os.getpid() != self._pid:  # forked child: the parent's workers are not ours
            self._reset()
        if self._started_to < self.workers:
            with self._start_lock:
                if self._started_to < self.workers:
                    self.start()

    def _acquire(self, deadline: float) -> _Worker | None:
        """An idle worker, or one freed before the deadline; None when none is free by then."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        t0 = time.monotonic()
        try:
            return self._idle.get(timeout=max(0.0, deadline - t0))
        except queue.Empty:
            return None
        finally:
            self._count("queue_wait_s", time.monotonic() - t0)

    def _call(self, msg: tuple) -> tuple[str, object]:
        """Run one request within timeout_s of now, the wait for a worker included; a worker that
        overruns or dies is replaced (the replacement starts now, in the background). Status
        'queue_timeout' when no worker came free in time."""
        self._ensure_started()
        deadline = time.monotonic() + self.timeout_s
        w = self._acquire(deadline)
        if w is None:
            self._count("queue_timeouts")
            return "queue_timeout", None
        replaced = False
        try:
            if not w.wait_ready(0.0):  # idle workers are ready: this one failed to start
                status, value = "crash", f"math worker did not start in {self.start_timeout_s} s"
            else:
                status, value = w.request(msg, deadline - time.monotonic())
            if status in ("timeout", "crash"):
                self._replace(w)
                replaced = True
        except BaseException:  # interrupted mid-request: the worker's state is unknown
            self._replace(w)
            replaced = True
            raise
        finally:
            if not replaced:
                self._idle.put(w)  # never leak a pool slot
        self._count({"ok": "checks", "error": "check_errors", "timeout": "timeouts", "crash": "worker_errors"}[status])
        return status, value

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[key] += amount

    def start(self) -> MathVerifier:
        """Start every worker now and wait until they are ready (optional: the first call does it)."""
        if os.getpid() != self._pid:
            self._reset()
        target = self.workers
        fresh = [w for w in (self._spawn() for _ in range(target)) if w is not None]
        for w in fresh:
            w.wait_ready(self.start_timeout_s)
            self._idle.put(w)
        self._started_to = max(self._started_to, target)
        return self

    def close(self) -> None:
        """Kill the workers; the verifier stays usable (a later call starts new ones)."""
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.kill()
        self._idle = queue.SimpleQueue()
        self._started_to = 0

    def pids(self) -> list[int]:
        """Process ids of the live workers (started, not yet killed)."""
        with self._lock:
            return [w.proc.pid for w in self._all]

    def stats(self) -> dict[str, float]:
        """Counts since creation: checks (answered), timeouts (killed at the deadline),
        queue_timeouts (no worker came free before the deadline), check_errors (math-verify
        raised), worker_errors (a worker died or did not start); and queue_wait_s, the seconds
        calls spent waiting for a worker when every one was busy."""
        with self._lock:
            return dict(self._counts)

    # -- checks -----------------------------------------------------------------------------

    def verify(self, pred: str, gold: str) -> tuple[str, bool]:
        """(status, equal) for two bare LaTeX answers: status is 'ok', 'timeout', 'queue_timeout',
        'error' or 'crash'; equal is False unless status is 'ok'. No guards: see `judge` for those."""
        status, value = self._call(("verify", pred, gold))
        return status, bool(value) if status == "ok" else False

    def score(self, pred: str, gold: str) -> float:
        """1.0 when math-verify finds pred equivalent to gold within the time limit, else 0.0."""
        return 1.0 if self.verify(pred, gold)[1] else 0.0

    def score_many(self, pairs: list[tuple[str, str]]) -> list[float]:
        """score() over (pred, gold) pairs, `workers` at a time."""
        if not pairs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(pairs))) as ex:
            return list(ex.map(lambda pg: self.score(*pg), pairs))

    def parses(self, text: str) -> bool:
        """Whether math-verify parses a bare LaTeX answer into a sympy object (within the limit)."""
        status, value = self._call(("parse", text))
        return status == "ok" and bool(value)


# ---------------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"-?\d{1,100}")
_VERIFIERS: dict[tuple, MathVerifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def set_default_workers(n: int) -> None:
    """Size the pools of verifiers built without an explicit `workers` (the default `math` reward's
    among them) to n workers: call it with the number of threads that will score at once, so that
    no call waits for a worker (`prepare_rewards` does, with scoring.workers). A pool that is
    already running grows to n on its next call."""
    if n < 1:
        raise ValueError(f"math verifier workers must be >= 1, got {n}")
    with _VERIFIERS_LOCK:
        _DEFAULT_WORKERS[0] = n
        for (_, workers, _), v in _VERIFIERS.items():
            if workers is None:
                v.workers = n


def shared_verifier(timeout_s: float = 3.0, workers: int | None = None, memory_mb: int = 2048) -> MathVerifier:
    """One verifier per configuration per process, so rewards built alike share their workers.
    workers=None: the process default (set_default_workers)."""
    key = (float(timeout_s), workers, memory_mb)
    with _VERIFIERS_LOCK:
        v = _VERIFIERS.get(key)
        if v is None or v._pid != os.getpid():
            kw = {} if workers is None else {"workers": workers}
            v = _VERIFIERS[key] = MathVerifier(timeout_s=timeout_s, memory_mb=memory_mb, **kw)
        return v


_LIVE: weakref.WeakSet = weakref.WeakSet()  # every MathReward of this process (math_reward_stats)


@dataclass(eq=False)  # compared and hashed by identity: kept in a WeakSet
class MathReward:
    """A configured math reward: fn(prompt, completion, answer) -> 1.0 or 0.0.

    Picklable (only its settings travel), so it works as a Ray actor's reward; each process
    builds its own worker pool on first use. `stats()` counts every outcome by reason: correct,
    wrong, each guard in GUARD_REASONS, and the verifier's timeouts / errors.
    """

    extractor: str = "last_boxed"
    timeout_s: float = 3.0
    workers: int | None = None
    memory_mb: int = 2048

    def __post_init__(self):
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {self.extractor!r}; use one of {sorted(EXTRACTORS)}")
        self._outcomes: Counter = Counter()
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def __name__(self) -> str:  # for error messages that name the reward
        return f"math[{self.extractor}]"

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("extractor", "timeout_s", "workers", "memory_mb")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def verifier(self) -> MathVerifier:
        return shared_verifier(self.timeout_s, self.workers, self.memory_mb)

    def check(self, prompt: str, completion: str, answer) -> str:
        """The outcome's name: 'correct', 'wrong', a guard reason, or the verifier's status:
        'timeout' (the check overran), 'queue_timeout' (no worker came free in time), 'error'
        (math-verify raised) or 'crash' (the worker died)."""
        reason, pred, gold = judge(prompt, completion, answer, EXTRACTORS[self.extractor])
        if reason is None and _INTEGER.fullmatch(pred) and _INTEGER.fullmatch(gold):
            reason = "correct" if int(pred) == int(gold) else "wrong"  # what math-verify says, without a worker round trip
        elif reason is None:
            status, equal = self.verifier.verify(pred, gold)
            reason = ("correct" if equal else "wrong") if status == "ok" else status
        with self._lock:
            self._outcomes[reason] += 1
        return reason

    def __call__(self, prompt: str, completion: str, answer) -> float:
        return 1.0 if self.check(prompt, completion, answer) == "correct" else 0.0

    def stats(self) -> dict[str, int]:
        """Outcome counts since creation (in this process)."""
        with self._lock:
            return dict(self._outcomes)


def make_math_reward(extractor: str = "last_boxed", timeout_s: float = 3.0, workers: int | None = None) -> MathReward:
    """A math reward with another extraction or time limit, e.g. make_math_reward('gsm8k')."""
    return MathReward(extractor=extractor, timeout_s=timeout_s, workers=workers)


_DEFAULT = MathReward()


def math_reward(prompt: str, completion: str, answer) -> float:
    """1.0 when the completion's last \\boxed{} answer is equivalent to the gold (math-verify,
    3 s hard limit, adversarial guards: see `judge`), else 0.0."""
    return _DEFAULT(prompt, completion, answer)


def math_reward_stats() -> dict[str, float]:
    """Outcome counts of every MathReward in this process (the default `math_reward` and those
    of make_math_reward), summed, and queue_wait_s, the seconds their calls waited for a worker:
    the loop logs each step's timeouts (both kinds) as reward/timeouts and the wait as
    reward/queue_wait_s."""
    total: Counter = Counter()
    for reward in list(_LIVE):
        total.update(reward.stats())
    with _VERIFIERS_LOCK:
        verifiers = list(_VERIFIERS.values())
    total["queue_wait_s"] = sum(v.stats().get("queue_wait_s", 0.0) for v in verifiers)
    return dict(total)


# ---------------------------------------------------------------------------------------------
# Data set check
# ---------------------------------------------------------------------------------------------


def gold_parse_report(
    answers: list, extractor: Callable[[object], str] = gold_text, verifier: MathVerifier | None = None
) -> tuple[int, list[str]]:
    """(how many gold answers math-verify cannot parse into a sympy object, up to 10 of them).
    Call it when a data set loads: a gold that does not parse can never be matched."""
    v = verifier or shared_verifier()
    golds = [extractor(a) for a in answers]
    with ThreadPoolExecutor(max_workers=v.workers) as ex:
        ok = list(ex.map(lambda g: bool(g) and v.parses(g), golds))
    failed = [g for g, good in zip(golds, ok) if not good]
    return len(failed), failed[:10]
