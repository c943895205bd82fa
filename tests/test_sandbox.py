"""The sandbox, with real runs: statuses, limits, isolation, the unsafe fallback, and the attack corpus.

These tests need the isolation layer (`apt-get install -y bubblewrap`, run as
root); without it they fail with IsolationUnavailable rather than skip.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import string
import sys
import threading
import time
from pathlib import Path

import pytest

from rlreason.rewards import sandbox as sandbox_module
from rlreason.rewards.code import CodeReward
from rlreason.rewards.sandbox import (
    UIDS,
    Isolation,
    IsolationUnavailable,
    Limits,
    Sandbox,
    uid_processes,
)
from tests.sandbox_attacks import ATTACKS

FAST = Limits(wall_s=5, cpu_s=3)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def run(sandbox: Sandbox, code: str, stdin: bytes = b"", limits: Limits = FAST, **kw):
    return sandbox.run("main.py", {"main.py": code}, stdin=stdin, limits=limits, **kw)


# ---- statuses and plumbing -------------------------------------------------------


def test_probe_finds_bubblewrap():
    iso = sandbox_module.probe()
    assert iso.available, iso.detail
    assert iso.bwrap and iso.setpriv


def test_exit_status_decides_pass_or_fail(sandbox):
    ok = run(sandbox, "print('hello')")
    assert (ok.status, ok.returncode, ok.stdout) == ("pass", 0, "hello\n")
    bad = run(sandbox, "import sys; print('PASSED'); sys.exit(3)")
    assert (bad.status, bad.returncode) == ("fail", 3)
    crash = run(sandbox, "raise ValueError('boom')")
    assert crash.status == "fail" and "ValueError: boom" in crash.stderr


def test_stdin_reaches_the_program_and_large_input_does_not_block(sandbox):
    data = b"x" * (3 << 20) + b"\nend"
    r = run(sandbox, "import sys; d = sys.stdin.buffer.read(); print(len(d), d[-3:].decode())", stdin=data)
    assert r.stdout == f"{len(data)} end\n"


def test_program_that_ignores_its_stdin_is_fine(sandbox):
    assert run(sandbox, "print(1)", stdin=b"y" * (1 << 20)).status == "pass"


def test_wall_clock_timeout(sandbox):
    r = run(sandbox, "import time; time.sleep(60)", limits=Limits(wall_s=1, cpu_s=3))
    assert r.status == "timeout" and "deadline" in r.detail


def test_cpu_limit_is_a_timeout(sandbox):
    r = run(sandbox, "while True: pass", limits=Limits(wall_s=20, cpu_s=1))
    assert r.status == "timeout" and "CPU" in r.detail


def test_output_is_kept_up_to_a_cap_and_flagged(sandbox):
    r = run(sandbox, "import sys; sys.stdout.write('a' * 200_000); sys.stderr.write('b' * 10)")
    assert r.status == "pass" and r.truncated
    assert r.stdout == "a" * FAST.keep_bytes and r.stderr == "b" * 10


def test_endless_output_is_killed(sandbox):
    r = run(sandbox, "import sys\nwhile True: sys.stdout.write('x' * 65536)")
    assert r.status == "fail" and "output" in r.detail and len(r.stdout) == FAST.keep_bytes


def test_limits_hold(sandbox):
    probe = """
import os, resource, sys
lim = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n))[0] for n in ("AS", "CPU", "NPROC", "FSIZE", "NOFILE", "CORE")}
print(lim)
try:
    bytearray(1 << 30)
    sys.exit("allocated 1 GiB")
except MemoryError:
    pass
"""
    r = run(sandbox, probe)
    assert r.status == "pass", r.stderr
    assert eval(r.stdout) == {"AS": FAST.address_space, "CPU": FAST.cpu_s, "NPROC": FAST.nproc, "FSIZE": FAST.file_size, "NOFILE": FAST.open_files, "CORE": 0}


def test_isolation_seen_from_inside(sandbox, monkeypatch):
    monkeypatch.setenv("RLR_TEST_SECRET", "hunter2")
    r = run(sandbox, """
import json, os, socket
facts = {"uid": os.getuid(), "home": os.environ["HOME"], "cwd": os.getcwd(), "env": sorted(os.environ),
         "root": sorted(os.listdir("/")), "usr_writable": os.access("/usr", os.W_OK),
         "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "files": os.listdir(".")}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    facts["net"] = True
except OSError:
    facts["net"] = False
print(json.dumps(facts))
""")
    import json

    facts = json.loads(r.stdout)
    assert facts["uid"] in UIDS
    assert facts["home"] == facts["cwd"] == "/scratch"
    assert facts["env"] == ["HOME", "LANG", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "TMPDIR"]
    python_top = Path(os.path.realpath(sys.base_prefix)).parts[1]  # "root" for pyenv, "usr" for a system Python
    assert set(facts["root"]) <= {"bin", "dev", "lib", "lib32", "lib64", "proc", "sbin", "scratch", "tmp", "usr", python_top}
    assert not facts["usr_writable"] and not facts["net"]
    assert facts["pids"][0] == 1 and len(facts["pids"]) <= 3  # own pid namespace
    assert facts["files"] == ["main.py"]
    assert "hunter2" not in r.stdout


def test_each_run_gets_a_fresh_scratch(sandbox):
    assert run(sandbox, "open('left_behind', 'w').write('x')").status == "pass"
    assert run(sandbox, "import os; assert os.listdir('.') == ['main.py'], os.listdir('.')").status == "pass"


def test_safe_from_many_threads(sandbox):
    results = {}

    def one(i):
        results[i] = run(sandbox, f"import os; print({i}, os.getuid())")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == "pass" for r in results.values())
    assert [int(results[i].stdout.split()[0]) for i in range(8)] == list(range(8))
    assert len({results[i].stdout.split()[1] for i in range(8)}) == 8  # a uid per run


def test_report_channel_is_the_scripts_only_when_asked(sandbox):
    r = run(sandbox, "import os, sys; os.write(int(sys.argv[1]), b'verdict')", report=True)
    assert r.status == "pass" and r.report == b"verdict"
    r = run(sandbox, "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'forged')\n    except OSError: pass")
    assert r.report == b""


# ---- infrastructure errors are not wrong answers -----------------------------------------


def test_sandbox_that_cannot_start_is_an_error():
    missing = Sandbox(isolation=Isolation(True, "broken", "/nonexistent/bwrap", "/usr/bin/setpriv"))
    r = run(missing, "print(1)")
    assert r.status == "error" and "cannot start" in r.detail
    dead = Sandbox(isolation=Isolation(True, "broken", "/bin/false", "/usr/bin/setpriv"))
    assert run(dead, "print(1)").status == "error"


def test_a_program_cannot_make_itself_an_error(sandbox):
    for code in ("import os; os._exit(1)", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "import sys; sys.stderr.write('bwrap: failed'); sys.exit(1)"):
        assert run(sandbox, code).status == "fail"


# ---- nothing left behind -------------------------------------------------------------

# Runs `runs` sandboxed programs, 4 at a time, in a process that plays a container's pid 1:
# `runner` is itself a child subreaper that never reaps (what rlreason, or a shell, is as pid 1
# without an init), and prints the children it holds afterwards; `parent` is a subreaper that
# reaps, with a plain runner below it, and prints what it had to adopt and reap.
_LEFT_BEHIND = r"""
import ctypes, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

mode, runs = sys.argv[1], int(sys.argv[2])
if mode != "plain":
    assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER

def children():
    pids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids |= {int(p) for p in f.read().split()}
    return pids

def describe(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read()[:60]  # pid (comm) state ...

if mode == "parent":
    runner = subprocess.Popen([sys.executable, __file__, "plain", str(runs)], stdout=subprocess.PIPE, text=True)
    statuses = runner.communicate()[0]
    time.sleep(0.5)
    adopted = []
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        adopted.append(pid)
    print(json.dumps({"statuses": json.loads(statuses)["statuses"], "left": adopted}))
else:
    from rlreason.rewards.sandbox import Limits, Sandbox
    sandbox = Sandbox()
    programs = ["print(1)", "import sys; sys.exit(3)", "import time; time.sleep(30)", "import os; os.fork(); print(2)"]
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda i: sandbox.run("main.py", {"main.py": programs[i % 4]}, limits=Limits(wall_s=1.0)), range(runs)))
    time.sleep(0.5)
    left = [describe(pid) for pid in children()]
    print(json.dumps({"statuses": sorted({r.status for r in results}), "left": left}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("parent", ["runner", "parent"], ids=["under a parent that does not reap", "under a parent that reaps"])
def test_runs_leave_no_process_behind(parent, tmp_path):
    """200 runs (passing, failing, killed at the deadline, forking) leave no process, zombie or
    live: bwrap's pid-1 process, which bwrap's outer process used to orphan at every run, is
    reaped by the sandbox's own reaper, not by whatever is this process's pid 1 (issue 24)."""
    import json
    import subprocess

    script = tmp_path / "left_behind.py"
    script.write_text(_LEFT_BEHIND)
    out = subprocess.run([sys.executable, str(script), parent, "200"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["statuses"] == ["fail", "pass", "timeout"]
    assert report["left"] == []
    assert uid_processes(UIDS) == []


# ---- fallback without isolation ----------------------------------------------------


def test_no_isolation_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox_module, "probe", lambda: Isolation(False, "forced off for the test"))
    with pytest.raises(IsolationUnavailable, match="forced off.*bubblewrap"):
        Sandbox()
    with pytest.raises(IsolationUnavailable):
        CodeReward()


def test_unsafe_fallback_warns_and_still_limits(caplog):
    with caplog.at_level(logging.WARNING, logger="rlreason.rewards.sandbox"):
        unsafe = Sandbox(isolation=Isolation(False, "forced off for the test"), unsafe=True)
    assert "UNSAFE" in caplog.text
    assert run(unsafe, "import os; print(os.environ['HOME'] == os.getcwd())").stdout == "True\n"
    assert run(unsafe, "bytearray(1 << 30)").status == "fail"  # RLIMIT_AS
    assert run(unsafe, "import time; time.sleep(60)", limits=Limits(wall_s=1)).status == "timeout"
    # the wall-clock kill takes the process group: a child that stays in it dies too
    marker = f"rlrunsafe{secrets.token_hex(4)}"
    r = run(unsafe, f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\ntime.sleep(60)", limits=Limits(wall_s=1))
    assert r.status == "timeout"
    assert _wait_until(lambda: not _marker_processes(marker))


# ---- the attack corpus -------------------------------------------------------------------


class Host:
    """Canaries, listeners and a secret that attacks go after; `check` asserts nothing changed."""

    def __init__(self, tmp: Path):
        token = secrets.token_hex(6)
        self.canaries = {
            "canary_tmp": tmp / "canary.txt",
            "canary_home": Path.home() / f".rlr-canary-{token}",
            "canary_usr": Path(f"/usr/local/share/rlr-canary-{token}"),
            "canary_prefix": Path(sys.base_prefix) / f"rlr-canary-{token}",
        }
        for path in self.canaries.values():
            path.write_text(f"canary {token}")
        self.content = f"canary {token}"
        self.secret_name, self.secret = f"RLR_SECRET_{token.upper()}", secrets.token_hex(16)
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.abstract = f"rlr-{token}"
        self.unix_abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_abstract.bind("\0" + self.abstract)
        self.unix_path = str(tmp / "host.sock")
        self.unix_file = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_file.bind(self.unix_path)
        for s in (self.tcp, self.udp, self.unix_abstract, self.unix_file):
            s.setblocking(False)
        for s in (self.tcp, self.unix_abstract, self.unix_file):
            s.listen()
        self.watched = [Path.home(), Path("/tmp"), tmp, Path("/usr"), Path("/usr/bin"), Path("/usr/local/share"), Path(sys.base_prefix), Path("/")]

    def fill(self, code: str, marker: str) -> str:
        values = {name: str(path) for name, path in self.canaries.items()}
        values.update(
            marker=marker, tcp_port=self.tcp.getsockname()[1], udp_port=self.udp.getsockname()[1], abstract=self.abstract,
            unix_path=self.unix_path, host_pid=os.getpid(), secret_name=self.secret_name,
        )
        return string.Template(code).substitute(values)

    def check(self, marker: str, result) -> None:
        for name, path in self.canaries.items():
            assert path.read_text() == self.content, f"{name} changed"
        for folder in self.watched:
            assert not [p for p in os.listdir(folder) if marker in p], f"a file of the attack in {folder}"
        for listener in (self.tcp, self.unix_abstract, self.unix_file):
            with pytest.raises(BlockingIOError):
                listener.accept()
        with pytest.raises(BlockingIOError):
            self.udp.recvfrom(100)
        assert self.secret not in result.stdout + result.stderr + result.detail
        os.kill(os.getppid(), 0)  # our parent (pytest's runner) and we are alive
        assert _wait_until(lambda: not _marker_processes(marker)), "a process of the attack survived"
        assert _wait_until(lambda: not uid_processes(UIDS)), "a sandbox process survived"

    def close(self) -> None:
        for s in (self.tcp, self.udp, self.unix_abstract, self.unix_file):
            s.close()
        for path in self.canaries.values():
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = Host(tmp_path_factory.mktemp("attack-host"))
    yield h
    h.close()


@pytest.fixture(scope="module")
def attack_reward(sandbox) -> CodeReward:
    return CodeReward(sandbox, limits=Limits(wall_s=4, cpu_s=2))


def test_the_corpus_is_large_and_named():
    names = [a.name for a in ATTACKS]
    assert len(names) >= 40 and len(set(names)) == len(names)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_contained(attack, host, attack_reward, monkeypatch):
    monkeypatch.setenv(host.secret_name, host.secret)
    marker = f"rlrattack{secrets.token_hex(6)}"
    result = attack_reward.evaluate(host.fill(attack.code, marker), attack.answer)
    assert result.status in ("fail", "timeout"), f"{result.status}: {result.detail}"
    host.check(marker, result)


def _marker_processes(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _wait_until(condition, timeout_s: float = 5.0) -> bool:
    """Killed processes take a few ms to be reaped by their dying pid namespace."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True
