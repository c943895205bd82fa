"""Run an untrusted Python program in a sandbox that is isolated for real.

The program is hostile: code written by a policy under RL pressure finds every
shortcut that scores, and some that break things. Each run gets, with
bubblewrap (the default, probed at start-up by `probe()`):

- a fresh mount namespace whose root is empty: /usr and the Python prefix
  bound read-only, a size-capped tmpfs as /scratch (the working directory and
  HOME: the only writable place besides an equally capped /tmp), a minimal
  /dev and a fresh /proc. Nothing of /root, /home, /etc or the host's /tmp;
- new pid, network (loopback only), ipc, uts and cgroup namespaces, a new
  session, `--die-with-parent`;
- a fresh random unprivileged uid with no capabilities and no_new_privs.
  bwrap runs privileged (as root) so that it can bind the Python prefix, then
  `setpriv` drops to that uid: RLIMIT_NPROC is counted per uid and root is
  exempt from it, so the fork limit only holds because the program is not root;
- rlimits on address space, CPU seconds, processes, file size, open files and
  core size, set by a trusted bootstrap before any untrusted byte runs;
- a scrubbed environment (PATH, HOME, TMPDIR, LANG) and `python -I -S -B`:
  the standard library only, no site-packages, no bytecode written;
- a wall-clock deadline: bwrap's process group is SIGKILLed, bwrap's child
  dies with it and the kernel kills the whole pid namespace, grandchildren
  that called setsid() included;
- a trusted reaper above bwrap (`_REAPER`, a child subreaper that does the kill
  above when the supervisor sends it SIGTERM): it waits for every process of
  the run, so a run leaves no zombie for pid 1 to reap;
- stdout/stderr kept up to `Limits.keep_bytes` each; a run that writes more
  than `Limits.drain_bytes` in all is killed (status fail).

Statuses: pass (exit 0), fail (non-zero exit, death by signal, output over the
limit), timeout (wall deadline or the CPU limit), error. `error` is an
infrastructure failure and never a verdict on the program: the bootstrap
writes "ready" on a private channel before it runs anything untrusted, so a run
without "ready" (bwrap or the interpreter could not start) is an error, and a
program cannot turn itself into an error once it runs.

Not defended: kernel exploits (bwrap shares the host kernel; use gVisor or a
VM for adversaries with kernel 0-days); timing side channels; CPU contention
while a run lasts. Total memory of one run is bounded by nproc x address_space
plus the two tmpfs (about 8.1 GiB with the defaults), not by a cgroup; and
bwrap caps the tmpfs in bytes, not in inodes: empty files cost ~1 KiB of kernel
memory each, ~90k files per CPU-second here (~1-2 GB at worst in a 10 s run),
freed when the run ends. Code inside may create nested user namespaces;
inherited mounts stay locked there.

Without bubblewrap, `Sandbox(unsafe=True)` runs the program directly with the
same rlimits, bootstrap, scrubbed environment, temporary directory and
process-group kill, and warns loudly: no filesystem, network or pid isolation,
the program runs as the calling user (root ignores RLIMIT_NPROC), and a
grandchild that calls setsid() survives the kill. Never for untrusted models.
"""

from __future__ import annotations

import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Literal

log = logging.getLogger(__name__)

Status = Literal["pass", "fail", "timeout", "error"]

INSTALL_HINT = "apt-get install -y bubblewrap"
SCRATCH = "/scratch"
UIDS = range(2_000_000, 3_000_000)  # per-run uids, far from any real account
_READY = b"ready\n"
STOP_GRACE_S = 5.0  # after the deadline: the reaper's time to kill bwrap and reap, before it is killed too

# The trusted bootstrap: limits, then "ready" on the channel, then the script as __main__
# (what runpy does, without its import cost).
_BOOT = """\
import os, resource, sys
fd, keep, script = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
for name, value in zip(("AS", "CPU", "NPROC", "FSIZE", "NOFILE", "CORE"), map(int, sys.argv[4].split(","))):
    hard = value + 1 if name == "CPU" else value  # SIGXCPU at the soft limit, SIGKILL one second later
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, hard))
os.write(fd, b"ready\\n")
if keep:
    sys.argv = [script, str(fd)]
else:
    os.close(fd)
    sys.argv = [script]
with open(script, "rb") as f:
    code = compile(f.read(), script, "exec")
main = sys.modules["__main__"] = type(sys)("__main__")
main.__file__, main.__builtins__ = script, __builtins__
del os, resource, sys, fd, keep, script, name, value, hard, f
exec(code, main.__dict__)
"""


# The trusted reaper between this process and bwrap (isolated runs only). bwrap's outer process
# exits as soon as it reads the program's exit status, before its child (the pid namespace's
# init) has exited: that child was orphaned, and every run left a zombie for pid 1 to reap, one
# a sample where pid 1 is this program or a shell. The reaper is a child subreaper: it adopts
# what bwrap leaves, waits for every descendant, and exits with bwrap's status. SIGTERM (the
# supervisor's stop at the deadline) makes it SIGKILL bwrap's process group and reap the rest.
_REAPER = """\
import ctypes, os, signal, sys
child = []
def stop(*_):
    if not child:
        os._exit(137)
    try:
        os.killpg(child[0], signal.SIGKILL)
    except OSError:
        pass
signal.signal(signal.SIGTERM, stop)
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("sandbox reaper: prctl(PR_SET_CHILD_SUBREAPER) failed: " + os.strerror(ctypes.get_errno()))
try:
    child.append(os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, setpgroup=0))
except OSError as e:
    sys.exit(f"cannot start the sandbox: {e}")
code = 1
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child[0]:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class SandboxError(RuntimeError):
    """Infrastructure failure of the sandbox itself: never a verdict on the program."""


class IsolationUnavailable(SandboxError):
    """No isolation layer on this machine and unsafe mode was not asked for."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. Worst-case memory of a run ~ nproc * address_space + 2 * scratch_bytes."""

    wall_s: float = 10.0  # deadline for the whole run; everything in it is killed
    cpu_s: int = 10  # RLIMIT_CPU per process (SIGXCPU -> status timeout)
    address_space: int = 512 << 20  # RLIMIT_AS per process
    nproc: int = 16  # RLIMIT_NPROC for the run's private uid: processes and threads
    file_size: int = 16 << 20  # RLIMIT_FSIZE: the largest file a process may write
    open_files: int = 64  # RLIMIT_NOFILE
    scratch_bytes: int = 64 << 20  # size of the /scratch and of the /tmp tmpfs, each
    keep_bytes: int = 64 << 10  # stdout and stderr kept in the result, each
    drain_bytes: int = 8 << 20  # output read in all before the run is killed

    def rlimits(self) -> str:
        return ",".join(map(str, (self.address_space, self.cpu_s, self.nproc, self.file_size, self.open_files, 0)))


@dataclass(frozen=True)
class RunResult:
    status: Status
    returncode: int | None  # the program's exit status; 128+N when killed by signal N; None if not started
    stdout: str  # decoded with errors="replace", at most Limits.keep_bytes
    stderr: str
    report: bytes  # what a trusted harness wrote on its channel (run(report=True)), else b""
    truncated: bool  # some stdout/stderr was dropped
    duration_s: float
    detail: str = ""  # why, for anything but a clean exit


@dataclass(frozen=True)
class Isolation:
    """What `probe()` found: whether runs can be isolated, and with which tools."""

    available: bool
    detail: str
    bwrap: str | None = None
    setpriv: str | None = None


@cache
def probe() -> Isolation:
    """Find bubblewrap and check, with one real run, that it isolates. Cached per process."""
    if sys.platform != "linux":
        return Isolation(False, f"bubblewrap needs Linux, not {sys.platform}")
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap is None:
        return Isolation(False, f"bubblewrap (bwrap) not found; install it: {INSTALL_HINT}")
    if setpriv is None:
        return Isolation(False, "setpriv (util-linux) not found")
    if os.geteuid() != 0:
        return Isolation(False, "the bwrap sandbox runs as root (privileged bwrap, then a fresh uid per run); this process is not root")
    candidate = Isolation(True, f"bubblewrap at {bwrap}", bwrap, setpriv)
    run = Sandbox(isolation=candidate).run("probe.py", {"probe.py": _PROBE}, limits=Limits(wall_s=30.0))
    if run.status != "pass":
        return Isolation(False, f"bubblewrap at {bwrap} failed its self-test ({run.status}: {run.detail} {run.stdout} {run.stderr})".strip())
    return candidate


# Exits 0 only when the run is isolated: not root, no network, read-only system, private home.
_PROBE = """\
import os, socket, sys
assert os.getuid() != 0 and os.geteuid() != 0, "runs as root"
assert os.environ.get("HOME") == "/scratch" and os.getcwd() == "/scratch"
assert not os.access("/usr", os.W_OK) and not os.path.exists("/root/.bashrc")
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    sys.exit("network reachable")
except OSError:
    pass
open("/scratch/ok", "w").write("ok")
"""


class Sandbox:
    """Runs Python programs in isolation; safe to call from many threads at once.

    `Sandbox()` probes and raises IsolationUnavailable when there is no isolation
    layer; `Sandbox(unsafe=True)` then falls back to rlimits + process group only.
    """

    def __init__(self, *, unsafe: bool = False, isolation: Isolation | None = None, limits: Limits = Limits()):
        self.isolation = probe() if isolation is None else isolation
        self.limits = limits
        self.python = os.path.realpath(sys.executable)
        self.isolated = self.isolation.available
        if not self.isolated:
            if not unsafe:
                raise IsolationUnavailable(
                    f"no sandbox for model-written code: {self.isolation.detail}. "
                    f"Install bubblewrap ({INSTALL_HINT}) or say `unsafe` to run it with rlimits only."
                )
            log.warning(
                "!" * 78 + "\nUNSAFE CODE EXECUTION: %s.\nModel-written code will run WITHOUT filesystem, network or "
                "process isolation, as this user (uid %d), with rlimits and a process-group kill only.\n" + "!" * 78,
                self.isolation.detail,
                os.geteuid(),
            )

    def run(
        self,
        script: str,
        files: Mapping[str, str | bytes],
        *,
        stdin: bytes = b"",
        limits: Limits | None = None,
        report: bool = False,
    ) -> RunResult:
        """Run files[script] as __main__ in a fresh scratch directory holding `files` (read-only).

        With report=True the script is trusted: it gets the channel's fd number as
        sys.argv[1] and what it writes there comes back as RunResult.report.
        """
        limits = limits or self.limits
        for name in files:
            if "/" in name or name.startswith("."):
                raise ValueError(f"sandbox file names are plain names, not {name!r}")
        start = time.monotonic()
        with ExitStack() as stack:
            chan_r, chan_w = os.pipe()
            stack.callback(os.close, chan_r)
            boot = ["-I", "-S", "-B", "-c", _BOOT, str(chan_w), "1" if report else "0", script, limits.rlimits()]
            try:
                if self.isolated:
                    uid = _lease_uid()
                    stack.callback(_release_uid, uid)
                    fds = [stack.enter_context(_memfd(name, body)) for name, body in files.items()]
                    argv = [self.python, "-I", "-S", "-B", "-c", _REAPER, *self._bwrap_argv(uid, list(zip(fds, files)), limits), self.python, *boot]
                    cwd, env, pass_fds = "/", {"PATH": "/usr/bin:/bin"}, (chan_w, *fds)
                else:
                    cwd = tempfile.mkdtemp(prefix="rlreason-sandbox-")
                    stack.callback(shutil.rmtree, cwd, True)
                    for name, body in files.items():
                        with open(os.path.join(cwd, name), "wb") as f:
                            f.write(_bytes(body))
                    argv, env, pass_fds = [self.python, *boot], _env(home=cwd, tmp=cwd), (chan_w,)
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pass_fds=pass_fds, cwd=cwd, env=env, start_new_session=True,
                )
            except OSError as e:
                return RunResult("error", None, "", "", b"", False, time.monotonic() - start, f"cannot start the sandbox: {e}")
            finally:
                os.close(chan_w)  # the child holds its copy; EOF on chan_r then means every holder is gone
            return _supervise(proc, stdin, chan_r, start, limits, uid if self.isolated else None)

    def _bwrap_argv(self, uid: int, files: list[tuple[int, str]], limits: Limits) -> list[str]:
        iso = self.isolation
        argv = [
            iso.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
            # bwrap runs as root: keep only what setpriv needs to drop to the run's uid
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        ]
        for key, value in _env(home=SCRATCH, tmp="/tmp").items():
            argv += ["--setenv", key, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "lib", "lib64", "lib32", "sbin"):  # merged /usr: symlinks; else bind
            path = "/" + top
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        for root in _python_roots(self.python):
            for parent in _ancestors(root):  # bwrap would create them 0700: unreadable for the uid
                argv += ["--perms", "0755", "--dir", parent]
            argv += ["--ro-bind", root, root]
        argv += ["--dev", "/dev", "--proc", "/proc"]
        for mount in (SCRATCH, "/tmp"):
            argv += ["--perms", "1777", "--size", str(limits.scratch_bytes), "--tmpfs", mount]
        for fd, name in files:
            argv += ["--perms", "0444", "--ro-bind-data", str(fd), f"{SCRATCH}/{name}"]
        argv += ["--chdir", SCRATCH, "--"]
        argv += [iso.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
        return argv


def _supervise(proc: subprocess.Popen, stdin: bytes, chan_r: int, start: float, limits: Limits, uid: int | None) -> RunResult:
    """Feed stdin, collect output with caps until exit or deadline, kill the group, classify."""
    deadline = start + limits.wall_s
    streams = {"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno(), "channel": chan_r}
    kept, truncated, why = _pump(proc, stdin, streams, deadline, limits)
    exited = why is None and _wait_exit(proc.pid, deadline)
    if uid is not None and not exited:  # the reaper kills bwrap's group and reaps what is left
        _signal(proc.pid, signal.SIGTERM)
        _wait_exit(proc.pid, time.monotonic() + STOP_GRACE_S)
    _killpg(proc.pid)  # always: a leftover in the group dies with the run (the leader is still unreaped)
    returncode = proc.wait()
    if uid is not None and not exited:
        _sweep_uid(uid)  # bwrap's pid namespace dies with it; make sure before the uid is reused
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    if returncode < 0:  # unsafe mode: killed by a signal
        returncode = 128 - returncode
    if why is None and not exited:
        why = "timeout"
    out = kept["stdout"].decode(errors="replace")
    err = kept["stderr"].decode(errors="replace")
    chan = bytes(kept["channel"])
    elapsed = time.monotonic() - start

    def result(status: Status, detail: str = "") -> RunResult:
        return RunResult(status, returncode, out, err, chan[len(_READY):], truncated, elapsed, detail)

    if not chan.startswith(_READY):
        late = " within the deadline" if why == "timeout" else ""
        return result("error", f"the sandbox did not start{late} (exit {returncode}): {err[-500:]}".strip())
    if why == "timeout":
        return result("timeout", f"killed at the {limits.wall_s:g} s deadline")
    if why == "output":
        return result("fail", f"killed: wrote more than {limits.drain_bytes} bytes of output")
    if returncode == 128 + signal.SIGXCPU:
        return result("timeout", f"CPU limit of {limits.cpu_s} s")
    return result("pass" if returncode == 0 else "fail", "" if returncode == 0 else f"exit status {returncode}")


def _pump(proc, stdin: bytes, streams: dict[str, int], deadline: float, limits: Limits):
    """Move bytes until every output stream is closed; returns (kept, truncated, why) with why in
    {None, "timeout", "output"}."""
    kept = {name: bytearray() for name in streams}
    truncated, total = False, 0
    sel = selectors.DefaultSelector()
    with sel:
        pending = memoryview(stdin)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        for name, fd in streams.items():
            sel.register(fd, selectors.EVENT_READ, name)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return kept, truncated, "timeout"
            for key, _ in sel.select(left):
                if key.data == "stdin":
                    try:
                        pending = pending[os.write(key.fd, pending[: 1 << 16]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the program stopped reading: fine
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(key.fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = kept[key.data]
                cap = limits.drain_bytes if key.data == "channel" else limits.keep_bytes
                room = cap - len(buf)
                buf += chunk[: max(room, 0)]
                truncated |= len(chunk) > room and key.data != "channel"
                total += len(chunk)
                if total > limits.drain_bytes:
                    return kept, truncated, "output"
    return kept, truncated, None


def _wait_exit(pid: int, deadline: float) -> bool:
    """Wait for pid to exit without reaping it (its process group stays killable); False at the deadline."""
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def uid_processes(uids: range | set[int]) -> list[int]:
    """Host pids whose real, effective or saved uid is in uids."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                line = next(ln for ln in f if ln.startswith("Uid:"))
        except (OSError, ValueError, StopIteration):  # not a pid, or gone
            continue
        if any(int(u) in uids for u in line.split()[1:4]):
            pids.append(int(entry))
    return pids


def _sweep_uid(uid: int, wait_s: float = 5.0) -> None:
    """SIGKILL every process of the run's private uid until none is left."""
    give_up = time.monotonic() + wait_s
    while pids := uid_processes({uid}):
        if time.monotonic() > give_up:
            log.error("sandbox: processes of uid %d survive a SIGKILL: %s", uid, pids)
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _env(*, home: str, tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _python_roots(python: str) -> list[str]:
    """Directories the interpreter needs, outside /usr: its prefix and its binary's directory."""
    roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix), os.path.dirname(python)}
    roots = {r for r in roots if r != "/usr" and not r.startswith("/usr/")}
    return sorted(r for r in roots if not any(r.startswith(o + "/") for o in roots))


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


@contextmanager
def _memfd(name: str, body: str | bytes):
    """An in-memory file holding body, for bwrap --ro-bind-data."""
    fd = os.memfd_create(name)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(_bytes(body))
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _lease_uid() -> int:
    """A random uid no other run of this process holds (other processes: 1 in a million to collide)."""
    with _uid_lock:
        while (uid := UIDS.start + secrets.randbelow(len(UIDS))) in _uids_in_use:
            pass
        _uids_in_use.add(uid)
        return uid


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)
