"""`ray job submit` works: a local head started the way a user starts one (`ray start --head`),
the tiny recipe submitted through the Jobs API, its outputs found where run_dir points, and a
`ray job stop` that saves, and the same entrypoint resubmitted through the `ray job submit`
CLI, which resumes the run (`--resume auto`, as docs/cluster.md tells users to write it).

Another engineer's Ray clusters may run on this machine at the same time, so this head never
uses `ray stop` (it stops every Ray process of the user): it runs `ray start --head --block`
in its own process group, on ports picked free, with its own temp dir and its own auth token,
and is stopped by signalling that group.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 480
STEPS = 12
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free on the loopback right now (held open together so
    that the kernel cannot hand out the same one twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def processes_under(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line mentions `marker` (this head's temp dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append((int(proc.name), cmd[:200]))
    return found


class Head:
    def __init__(self, gcs_address: str, dashboard_url: str, token: str, temp_dir: str):
        self.gcs_address = gcs_address
        self.dashboard_url = dashboard_url
        self.token = token
        self.temp_dir = temp_dir

    def client_env(self) -> dict:
        # What a user's shell needs to talk to a token-auth cluster: the mode and the token
        # (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token on the head node).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}


@pytest.fixture
def ray_head():
    # A short temp dir: Ray's Unix socket paths under it must stay below 108 bytes.
    temp_dir = tempfile.mkdtemp(prefix="rlrj-", dir="/tmp")
    gcs, dash, agent, agent_grpc, env_agent, metrics, client_srv, node_mgr, obj_mgr = free_ports(9)
    token = secrets.token_hex(32)  # this cluster's own token: ~/.ray/auth_token is left alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    cmd = [
        RAY, "start", "--head", "--block", "--disable-usage-stats", "--num-cpus=4",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--temp-dir={temp_dir}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client_srv}", f"--node-manager-port={node_mgr}",
        f"--object-manager-port={obj_mgr}",
        # workers on OS-assigned ports, not Ray's default 10002-19999 that other clusters share
        "--min-worker-port=0", "--max-worker-port=0",
    ]
    log = open(Path(temp_dir) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", token, temp_dir)
    try:
        wait_for_dashboard(head, proc)
        yield head
    finally:
        stop_group(proc)
        log.close()
        survivors = processes_under(temp_dir)
        for pid, _ in survivors:  # do not leave them running even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not survivors, f"Ray processes of this head outlived its process group: {survivors}"


def wait_for_dashboard(head: Head, proc: subprocess.Popen, timeout: float = 120) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited {proc.returncode}: {Path(head.temp_dir, 'ray-start.log').read_text()[-3000:]}")
        try:
            JobSubmissionClient(head.dashboard_url, headers=auth_header(head)).list_jobs()
            return
        except Exception as e:  # not up yet
            if time.time() > deadline:
                raise AssertionError(f"the Jobs API did not answer within {timeout}s: {e}") from e
            time.sleep(1)


def stop_group(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM to the head's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the group leader is gone; its children may still be shutting down
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def auth_header(head: Head) -> dict:
    return {"Authorization": f"Bearer {head.token}"}


def train_cmd(run_dir: Path, model_cache: str, *extra: str) -> list[str]:
    """The job's entrypoint: the tiny recipe, shortened as in test_e2e_cli, into an absolute
    run_dir (a relative one would land in the job's unpacked working_dir copy), with
    `--resume auto` so that a resubmitted job continues the run."""
    return [
        sys.executable, "-m", "rlreason", "train", "recipes/addition_grpo.yaml",
        f"steps={STEPS}", "warm_start.steps=20", "rollout.prompts_per_step=4", "rollout.group_size=4",
        "eval.size=20", "eval.every=4", "checkpoint.every=1",
        f"run_dir={run_dir}", f"model.cache_dir={model_cache}", "--resume", "auto", *extra,
    ]


def wait_for_job(client, job_id: str, timeout: float = JOB_TIMEOUT_S, until: str | None = None):
    """Poll until the job ends (or, with `until`, until that text shows in its logs first).
    Returns (status, logs)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status, client.get_job_logs(job_id)
        if until is not None:
            logs = client.get_job_logs(job_id)
            if until in logs:
                return status, logs
        time.sleep(0.5)
    client.stop_job(job_id)
    raise AssertionError(f"job {job_id} still {status} after {timeout}s; logs:\n{client.get_job_logs(job_id)[-6000:]}")


def metric_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ray_job_submit_stop_and_resubmit(tmp_path, tiny_model_dir, ray_head):
    """Submit through the Jobs API; `ray job stop` saves a checkpoint; the same entrypoint
    resubmitted through the `ray job submit` CLI resumes and finishes; the outputs are where
    run_dir points."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from rlreason import checkpoint
    from rlreason.config import load_config

    _, model_cfg = tiny_model_dir
    run_dir = tmp_path / "run"  # stands in for a shared filesystem that every node mounts
    client = JobSubmissionClient(ray_head.dashboard_url, headers=auth_header(ray_head))
    # token auth is on: the Jobs API refuses a client without this cluster's token
    with pytest.raises(Exception, match="uthentication"):
        JobSubmissionClient(ray_head.dashboard_url, headers={"Authorization": "Bearer not-the-token"}).list_jobs()

    # 1. submit; stop it once step 1 is done (it goes on for a step or three before it saves)
    t0 = time.time()
    job_id = client.submit_job(
        entrypoint=shlex.join(train_cmd(run_dir, model_cfg.cache_dir)),
        runtime_env={
            # the repository (less what .gitignore names) travels with the job: its recipes
            # and this checkout of the package are what the driver sees, on any node
            "working_dir": str(ROOT),
            # `ray job stop` sends SIGTERM, then SIGKILL after 3 s by default: give the run
            # time to finish its step and save
            "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "120"},
        },
    )
    status, logs = wait_for_job(client, job_id, until=f"step    1/{STEPS}")
    assert status == JobStatus.RUNNING, f"job {job_id} ended {status} before step 1; logs:\n{logs[-6000:]}"
    to_step1 = time.time() - t0
    # stopped and read back through the CLI that docs/cluster.md shows
    stop = subprocess.run([RAY, "job", "stop", "--address", ray_head.dashboard_url, job_id],
                          env=ray_head.client_env(), capture_output=True, text=True, timeout=300)
    assert stop.returncode == 0, stop.stdout[-3000:] + stop.stderr[-3000:]
    status, _ = wait_for_job(client, job_id)
    logs = subprocess.run([RAY, "job", "logs", "--address", ray_head.dashboard_url, job_id],
                          env=ray_head.client_env(), capture_output=True, text=True, timeout=120).stdout
    assert status == JobStatus.STOPPED, f"job {job_id} ended {status}; logs:\n{logs[-6000:]}"
    m = re.search(r"stopped after step (\d+)", logs)
    assert m, f"no 'stopped after step' in the logs of job {job_id}:\n{logs[-6000:]}"
    stopped = int(m.group(1))
    assert 1 <= stopped < STEPS
    assert checkpoint.checkpoint_step(checkpoint.latest(run_dir / "checkpoints")) == stopped
    assert metric_steps(run_dir) == list(range(stopped + 1))
    # the driver joined this head (the job sets RAY_ADDRESS to its GCS, named by the node's
    # own IP) instead of starting a cluster of its own: Ray's own line, in the run's log (the
    # console, hence the job's logs, has the run's own lines only)
    train_log = (run_dir / "train.log").read_text()
    joined = re.search(r"Connecting to existing Ray cluster at address: [\w.-]+:(\d+)", train_log)
    assert joined and joined.group(1) == ray_head.gcs_address.rsplit(":", 1)[1], train_log[-3000:]
    assert "Connecting to existing Ray cluster" not in logs
    assert "joining Ray cluster at " in logs  # rlreason.cluster.actors.connect took the RAY_ADDRESS path

    # 2. the same entrypoint again, through the CLI that docs/cluster.md shows, from the
    # repository root: it resumes from the checkpoint and finishes
    t1 = time.time()
    cli = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", ".",
         "--runtime-env-json", json.dumps({"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "120"}}), "--",
         *train_cmd(run_dir, model_cfg.cache_dir)],
        cwd=ROOT, env=ray_head.client_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
    )
    out = cli.stdout + cli.stderr
    assert cli.returncode == 0 and "succeeded" in out, out[-6000:]
    print(f"\nray job: {to_step1:.1f}s from submit to step 1; resubmitted job {time.time() - t1:.1f}s "
          f"(resumed at step {stopped}, {STEPS} steps)")
    assert f"step_{stopped:06d}" in out and "resumed from" in out, out[-3000:]
    assert f"step   {STEPS}/{STEPS}" in out and "  held-out accuracy " in out

    assert metric_steps(run_dir) == list(range(STEPS + 1))  # every step logged exactly once
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "eval/accuracy" in rows[0] and "eval/accuracy" in rows[4]  # eval.every=4, across the stop
    assert rows[0]["warm_start/loss_last"] < rows[0]["warm_start/loss_first"]  # the warm start ran in the job
    assert checkpoint.checkpoint_step(checkpoint.latest(run_dir / "checkpoints")) == STEPS
    resolved = load_config(run_dir / "config.yaml")
    assert resolved.steps == STEPS and resolved.run_dir == str(run_dir)
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(run_dir / "final").model_type == "qwen2"
    assert AutoTokenizer.from_pretrained(run_dir / "final")("347+586>").input_ids
