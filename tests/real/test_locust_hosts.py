"""Three hosts on one machine: network namespaces joined by a bridge, with the
coordinator and Locust's master on host A and Locust workers on hosts B and C
(``swarmtwin locust --master`` / ``--worker``). Host C's link is cut for a moment
while the load runs. Nothing acknowledged may be lost, every agent's records must
reach the master, and the run folder must be complete.

The hosts exist only while the test runs (names carry this process's id) and all
traffic stays inside them. The test skips, saying why, where the machine does not
allow namespaces (not root, no ``ip``, or no ``CAP_NET_ADMIN``). The kernel here has
no ``sch_netem``, so the link fault is the link going down and up again (a
partition with both ends kept), not netem's delay or loss.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
SUBNET = "10.231.0"  # inside the test's own namespaces only
TOKEN = "netns-test-secret"
MASTER_PORT = 5557
SCENARIO = """\
name: three-hosts
description: Thirty agents on two worker hosts, publishes and memory, one link cut.
seed: 23
duration: 8.0
warmup: 1.0
backends: [real]
transport: tcp
agents:
  count: 30
topics:
  count: 6
  fanout: 3
workload:
  - kind: publish
    arrival: {process: poisson, rate: 600}
    size: 128
  - kind: memory
    arrival: {process: poisson, rate: 300}
    size: 64
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _namespaces_allowed() -> str:
    """Why this machine cannot make the hosts ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "needs ip and ss (iproute2)"
    probe = f"stprobe{os.getpid()}"
    try:  # everything the fixture does, once, on a namespace of its own
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
        _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "v1")
        _ip("-n", probe, "link", "set", "v0", "master", "br0", "up")
        _ip("netns", "exec", probe, "ip", "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, OSError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        return f"network namespaces not usable here: {exc} {stderr.decode(errors='replace')}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return ""


@pytest.fixture
def hosts() -> Iterator[dict[str, str]]:
    """Namespaces a, b and c; a bridge in a; b and c each wired to it by a veth pair."""
    why = _namespaces_allowed()
    if why:
        pytest.skip(why)
    names = {h: f"st{os.getpid()}{h}" for h in "abc"}
    try:
        for name in names.values():
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        a = names["a"]
        _ip("-n", a, "link", "add", "br0", "type", "bridge")
        _ip("-n", a, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        _ip("-n", a, "link", "set", "br0", "up")
        for number, host in ((2, "b"), (3, "c")):
            port = f"to{host}"  # the bridge's port for that host, in a
            _ip(
                "link",
                "add",
                port,
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "eth0",
                "netns",
                names[host],
            )
            _ip("-n", a, "link", "set", port, "master", "br0", "up")
            _ip("-n", names[host], "addr", "add", f"{SUBNET}.{number}/24", "dev", "eth0")
            _ip("-n", names[host], "link", "set", "eth0", "up")
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _in(namespace: str, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _cut_when_loaded(a: str, c_address: str, cut: float, log: list[str]) -> None:
    """Once host c's agents are connected to the coordinator, wait for the load to
    start, then take c's link down for ``cut`` seconds and bring it up again."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["ip", "netns", "exec", a, "ss", "-tn", "state", "established"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if shown.count(c_address + ":") >= 2:  # c's agents' links (beside Locust's own)
            break
        time.sleep(0.1)
    time.sleep(3.0)  # every agent registers, then the load starts half a second later
    _ip("-n", a, "link", "set", "toc", "down")
    log.append(f"cut at {time.monotonic():.3f}")
    time.sleep(cut)
    _ip("-n", a, "link", "set", "toc", "up")
    log.append(f"healed at {time.monotonic():.3f}")


def test_a_run_across_three_namespaced_hosts_survives_a_cut_link(
    hosts: dict[str, str], tmp_path: Path
) -> None:
    scenario = tmp_path / "three-hosts.yaml"
    scenario.write_text(SCENARIO)
    reports = tmp_path / "reports"
    master_address = f"{SUBNET}.1"
    env = {**os.environ, "SWARMTWIN_TOKEN": TOKEN}
    master = _in(
        hosts["a"],
        str(BIN / "swarmtwin"),
        "--reports",
        str(reports),
        "locust",
        str(scenario),
        "--backend",
        "real",
        "--master",
        "--host",
        master_address,
        "--token",
        TOKEN,
        "--workers",
        "2",
        "--wait-workers",
        "60",
    )
    worker = [str(BIN / "swarmtwin"), "locust", "--worker", "--master-host", master_address]
    worker += ["--timeout", "150"]
    workers = [_in(hosts[h], *worker, env=env) for h in "bc"]
    log: list[str] = []
    cutter = threading.Thread(
        target=_cut_when_loaded, args=(hosts["a"], f"{SUBNET}.3", 0.4, log), daemon=True
    )
    cutter.start()
    try:
        out, _ = master.communicate(timeout=180)
        worker_out = [w.communicate(timeout=30)[0] for w in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    cutter.join(timeout=10)
    print(out, *worker_out, *log, sep="\n")
    assert master.returncode == 0, out
    assert all(w.returncode == 0 for w in workers), worker_out
    assert len(log) == 2  # the link was cut and healed while the run went on

    [run_dir] = list((reports / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    real = summary["backends"]["real"]
    assert summary["valid"] is True and real["valid"] is True, real["invalid_reasons"]
    reliability = real["reliability"]
    assert reliability["lost_acked"] == 0 and reliability["expected"] > 0
    assert real["integrity"]["acked_writes_lost"] == 0
    notes = " ".join(real["notes"])
    assert "on 2 Locust worker processes elsewhere" in notes
    assert "clock offsets from the master's" in notes
    for name in (
        "scenario.yaml",
        "timeline-real.csv",
        "locust/locust_stats.csv",
        "locust/locust.html",
    ):
        assert (run_dir / name).exists(), name


def _master_and_worker(tmp_path: Path, master_token: str, worker_token: str):  # type: ignore[no-untyped-def]
    """``run_plan`` with a master on loopback and one ``run_worker`` beside it, as a
    worker host would run it (on any machine: no namespaces needed)."""
    from harness.scenario.compile import compile_plan
    from harness.scenario.schema import parse_scenario
    from real.locust.run import Master, free_port, run_plan, run_worker

    plan = compile_plan(parse_scenario(yaml.safe_load(SCENARIO), "three-hosts.yaml"))
    port = free_port()
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(run_worker("127.0.0.1", port, 0, worker_token, 120.0)),
        daemon=True,
    )
    worker.start()
    result = run_plan(plan, out_dir=tmp_path, master=Master("127.0.0.1", 1, master_token, port, 60))
    worker.join(timeout=60)
    return plan, result, codes


def test_a_master_and_a_worker_process_on_loopback_cover_the_plan(tmp_path: Path) -> None:
    plan, result, codes = _master_and_worker(tmp_path, "same-secret", "same-secret")
    assert result.errors == [] and codes == [0]
    assert set(result.registered) == {spec.agent_id for spec in plan.agents}
    assert any("clock offsets from the master's" in note for note in result.notes)


def test_a_worker_with_the_wrong_token_ends_the_run_at_once_and_invalid(tmp_path: Path) -> None:
    _plan, result, codes = _master_and_worker(tmp_path, "the-secret", "a-wrong-one")
    # the reason comes from the master's own file, written when the first rejected
    # agent reported: had the run lasted to Locust's --run-time, there would be none
    assert any("rejected" in e and "token" in e for e in result.errors), result.errors
    assert codes == [0]  # the worker ended with the master's run
