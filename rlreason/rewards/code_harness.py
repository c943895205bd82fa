"""Trusted test harness for assert-style code tests. It runs INSIDE the sandbox.

Standard library only, no rlreason imports: the sandbox runs this file as a
script. Two processes, so that nothing the solution does in its own process
can reach the verdict:

- the harness (this file, trusted) reads the job from stdin (the tests, the
  trusted prefix, the solution's source, a nonce), marks itself non-dumpable
  (so a same-uid process cannot read its /proc/<pid>/fd, mem or environ),
  starts the worker, runs the tests and writes {"nonce", "verdict"} on the
  report channel, which the worker never holds;
- the worker (this file with --worker, untrusted) executes the solution and
  answers calls over a pipe. `candidate(*args)` in the tests is a proxy: its
  arguments go to the worker as data and the result comes back as data,
  decoded here into exact built-in types (None, bool, int, float, complex,
  str, bytes, list, tuple, dict, set, frozenset). An object whose __eq__
  always returns True, or an int or str subclass, cannot cross; the trusted
  helpers of the prefix (HumanEval's `poly`, `encode_cyclic`) run here, so a
  solution that redefines them changes nothing in the tests.

So `exit(0)`/`os._exit(0)` in the solution only ends the worker (the tests
then fail on a missing answer), printed "passed" is just output, and patching
builtins, `sys.exit`, `AssertionError` or `check` patches the worker only.

Limits of the proxy: results must be plain data as above; tests that check
in-place mutation of an argument, identity, or call methods on a returned
object do not work (HumanEval's 164 problems need none of that).
"""

# ruff: noqa: S102, BLE001  (a harness execs code and must catch whatever it throws)

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import sys

MAX_REPLY = 16 << 20  # bytes of one worker reply


class SolutionError(Exception):
    """The solution raised, exited, or sent back something that is not plain data."""


class SolutionTimeout(SolutionError):
    """The solution's process hit its CPU limit."""


def encode(value):
    """Plain data -> JSON-able, keeping types exact (tuples, sets, bytes, int dict keys)."""
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t is list:
        return [encode(v) for v in value]
    if t is dict:
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if t in (tuple, set, frozenset):
        return {t.__name__: [encode(v) for v in value]}
    if t is bytes:
        return {"bytes": value.hex()}
    if t is complex:
        return {"complex": [value.real, value.imag]}
    raise TypeError(f"a {t.__name__} cannot leave the sandbox (plain data only)")


def decode(data):
    """The inverse of encode, strict: anything else is an error, so only exact built-in types come out."""
    t = type(data)
    if data is None or t in (bool, int, float, str):
        return data
    if t is list:
        return [decode(v) for v in data]
    if t is dict and len(data) == 1:
        ((tag, body),) = data.items()
        if tag == "dict" and type(body) is list:
            return {decode(k): decode(v) for k, v in body}
        if tag in ("tuple", "set", "frozenset") and type(body) is list:
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](decode(v) for v in body)
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "complex" and type(body) is list and len(body) == 2 and all(type(v) in (int, float) for v in body):
            return complex(*body)
    raise ValueError("malformed value from the worker")


def describe(e: BaseException) -> str:
    try:
        return f"{type(e).__name__}: {e}"[:500]
    except BaseException:
        return "an exception that cannot be printed"


# ---- worker: untrusted side ------------------------------------------------


def worker(rfd: int, wfd: int) -> None:
    inp, out = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")

    def reply(message: dict) -> None:
        for stream in (sys.stdout, sys.stderr):  # the harness kills us at the end: print now
            with contextlib.suppress(BaseException):
                stream.flush()
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    load = json.loads(inp.readline())
    ns = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        exec(compile(load["program"], "<solution>", "exec"), ns)
    except BaseException as e:
        reply({"id": load["id"], "raised": describe(e)})
        return
    reply({"id": load["id"], "ok": None})
    for line in inp:
        call = json.loads(line)
        try:
            result = ns[call["call"]](*decode(call["args"]), **decode(call["kwargs"]))
            reply({"id": call["id"], "ok": encode(result)})
        except BaseException as e:
            reply({"id": call["id"], "raised": describe(e)})


# ---- harness: trusted side -------------------------------------------------


class Worker:
    """The solution's process, seen from the harness: load it, then call its functions."""

    def __init__(self):
        import subprocess  # here: the worker does not need it

        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        argv = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), "--worker", str(to_r), str(from_w)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(to_r, from_w))
        os.close(to_r)
        os.close(from_w)
        self.to, self.frm = os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb")

    def load(self, program: str) -> None:
        """Untrusted code runs from here on."""
        self._receive(self._send({"program": program}))

    def call(self, name: str, args: tuple, kwargs: dict):
        return self._receive(self._send({"call": name, "args": encode(args), "kwargs": encode(kwargs)}))

    def proxy(self, name: str):
        def candidate(*args, **kwargs):
            return self.call(name, args, kwargs)

        candidate.__name__ = name
        return candidate

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def _exit_signal(self) -> int | None:
        try:
            code = self.proc.wait(timeout=1)
        except Exception:  # still running: it closed its end of the pipe
            return None
        return -code if code < 0 else None

    def _send(self, message: dict) -> str:
        """Send with a fresh random id: the reply must carry it, so no reply can be written before its call."""
        message["id"] = os.urandom(8).hex()
        try:
            self.to.write(json.dumps(message).encode() + b"\n")
            self.to.flush()
        except OSError as e:
            raise SolutionError(f"the solution's process is gone ({e})") from None
        return message["id"]

    def _receive(self, call_id: str):
        line = self.frm.readline(MAX_REPLY + 1)
        if not line.endswith(b"\n"):
            if self._exit_signal() == signal.SIGXCPU:
                raise SolutionTimeout("the solution hit its CPU time limit")
            raise SolutionError("the solution's process exited or sent a malformed reply")
        try:
            message = json.loads(line)
            if type(message) is not dict or len(message) != 2 or message.pop("id", None) != call_id:
                raise ValueError("not the reply to this call")
            if "raised" in message:
                raise SolutionError(f"the solution raised {str(message['raised'])[:500]}")
            return decode(message["ok"])
        except SolutionError:
            raise
        except Exception as e:
            raise SolutionError(f"bad reply from the solution: {describe(e)}") from None


def make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: a process of the same uid can no longer ptrace us or open /proc/<pid>/fd, mem, environ."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def harness(channel: int) -> int:
    """Writes on the channel: "armed" once set up, then {"nonce", "verdict", "detail"}.

    "armed" comes before the solution's first byte runs: a channel without it is
    the harness's own failure (an infrastructure error), never the solution's.
    """
    job = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()

    def report(verdict: str, detail: str = "") -> None:
        os.write(channel, json.dumps({"nonce": job["nonce"], "verdict": verdict, "detail": detail[:2000]}).encode())

    try:
        make_undumpable()
        tests = {"__name__": "__tests__"}
        exec(compile(job["prefix"], "<prefix>", "exec"), tests)
        worker = Worker()
        os.write(channel, b"armed\n")
    except Exception as e:
        report("error", f"harness setup failed: {describe(e)}")
        return 2
    try:
        worker.load(job["program"])
        candidate = tests[job["entry_point"]] = worker.proxy(job["entry_point"])
        exec(compile(job["test"], "<test>", "exec"), tests)
        if callable(tests.get("check")):
            tests["check"](candidate)
    except SolutionTimeout as e:
        report("timeout", describe(e))
        return 1
    except BaseException as e:
        report("fail", describe(e))
        return 1
    finally:
        worker.close()
    report("pass")
    return 0


def main() -> int:
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big integers cross as JSON text
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    return harness(int(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
