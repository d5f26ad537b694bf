"""Security check: no entry point starts a public coordinator with the public token.

How it works. ``cli_check`` starts the coordinator's two entry points as
processes, ``swarmtwin coordinator`` and ``python -m real.tcp.server``, with
``--host 0.0.0.0`` and the default (public) token, given or not. Each must
exit 2 without ever printing that it listens (the guard is
``ProtocolSettings.bind_refusal``, checked where the server starts). A
control on a loopback host must listen, which shows the check can see a
server start; it is stopped with SIGINT as soon as it says so (port 0). A
public host with a secret token is allowed, but is checked by the guard
alone (``bind_refusal``), so the check never opens a public port. Every
process is bounded by ``ATTEMPT_TIMEOUT``; databases go to a temporary folder.
``certify`` adds the check to the security report.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.certify.security.base import SecurityCheck
from protocol.settings import DEV_TOKEN, ProtocolSettings

ATTEMPT_TIMEOUT = 30.0
CLI = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())"]
SERVER = [sys.executable, "-m", "real.tcp.server"]


def _attempt(command: list[str]) -> tuple[int | None, bool]:
    """Run ``command``: (exit code, whether it said it listens). A server that
    listens is stopped with SIGINT; one that hangs is killed (code None)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
    )
    listened = False
    deadline = time.monotonic() + ATTEMPT_TIMEOUT
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on" in line:
                listened = True
                process.send_signal(signal.SIGINT)
                break
            if time.monotonic() > deadline:
                break
        return process.wait(timeout=max(deadline - time.monotonic(), 1.0)), listened
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None, listened


def cli_check() -> list[SecurityCheck]:
    with tempfile.TemporaryDirectory(prefix="swarmtwin-cli-check-") as folder:
        db = str(Path(folder) / "coordinator.sqlite")
        public = ["--host", "0.0.0.0", "--port", "0"]
        runs = {
            "swarmtwin coordinator, public host, default token": [
                *CLI,
                "coordinator",
                *public,
                "--db",
                db,
            ],
            "swarmtwin coordinator, public host, default token given": [
                *CLI,
                "coordinator",
                *public,
                "--token",
                DEV_TOKEN,
                "--db",
                db,
            ],
            "python -m real.tcp.server, public host, default token": [*SERVER, *public],
            "loopback host (control)": [*SERVER, "--host", "127.0.0.1", "--port", "0"],
        }
        results = {label: _attempt(command) for label, command in runs.items()}
    labels = list(runs)
    refused = [results[label] == (2, False) for label in labels[:3]]
    controls = [results[label][1] for label in labels[3:]]
    secret_allowed = ProtocolSettings(token="a-secret").bind_refusal("0.0.0.0") == ""
    detail = "; ".join(
        f"{label}: exit {code}, {'listened' if listened else 'never listened'}"
        for label, (code, listened) in results.items()
    )
    detail += f"; public host, secret token: {'allowed' if secret_allowed else 'refused'}"
    return [
        SecurityCheck(
            "cli_refuses_public_bind_with_default_token",
            all(refused) and all(controls) and secret_allowed,
            detail,
            "Each entry point of the coordinator was started as a process with --host "
            "0.0.0.0 and the public default token, and had to exit 2 without listening; "
            "a control on a loopback host had to listen (then stopped by SIGINT), and the "
            "guard had to allow a public host with a secret token.",
        )
    ]
