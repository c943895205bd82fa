"""The killable worker process behind rlreason.rewards.math_reward.MathVerifier.

Run by the parent as a script, never imported by it (see LAUNCH in math_reward.py: runpy with
neither this directory nor the working directory on sys.path, so a local code.py or math.py
cannot shadow the standard library). It loads math-verify and sympy, answers requests over two
pipes and is killed by the parent when a check overruns its deadline. math-verify's own
timeouts (signal.alarm) are turned off here; the parent's kill is the bound.

Protocol (multiprocessing.connection framing, pickled tuples):
    ("verify", pred, gold) -> ("ok", bool)      pred and gold are bare LaTeX answers
    ("parse", text)        -> ("ok", bool)      True when text parses to a sympy object
    any failure            -> ("error", repr(exception))
The worker says ("ready", pid) once warmed up (the first parse builds the grammar).
"""

import functools
import logging
import os
import resource
import sys
import threading
import time
from multiprocessing.connection import Connection


def _watch_parent(ppid: int) -> None:
    """Exit when the parent dies (a hung check would otherwise outlive it until done)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(0)


def _wrap(answer: str) -> str:
    return "\\boxed{" + answer + "}"


def main() -> None:
    rfd, wfd, memory_mb, ppid = (int(a) for a in sys.argv[1:5])
    if memory_mb > 0:  # a power tower that escapes the pre-filters dies of MemoryError, not the host
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    logging.disable(logging.WARNING)  # math-verify warns once that its timeout is off: it is, on purpose

    from math_verify import parse, verify
    from sympy import Basic
    from sympy.matrices import MatrixBase

    def parse_answer(text: str) -> list:
        return parse(_wrap(text), parsing_timeout=None)

    parse_gold = functools.lru_cache(maxsize=4096)(parse_answer)  # golds repeat G times per group

    def is_math(parsed: list) -> bool:
        return any(isinstance(x, (Basic, MatrixBase)) for x in parsed)

    verify(parse_gold("\\frac{1}{2}"), parse_answer("0.5"), timeout_seconds=None)  # warm up the grammar

    rx, tx = Connection(rfd, writable=False), Connection(wfd, readable=False)
    tx.send(("ready", os.getpid()))
    while True:
        try:
            msg = rx.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        try:
            if msg[0] == "verify":
                out = ("ok", bool(verify(parse_gold(msg[2]), parse_answer(msg[1]), timeout_seconds=None)))
            elif msg[0] == "parse":
                out = ("ok", is_math(parse_answer(msg[1])))
            else:
                out = ("error", f"unknown request {msg[0]!r}")
        except BaseException as e:  # noqa: BLE001  MemoryError, RecursionError, sympy internals: the check fails, the worker lives
            out = ("error", repr(e)[:500])
        tx.send(out)


if __name__ == "__main__":
    main()
