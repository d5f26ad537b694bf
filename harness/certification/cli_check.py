"""Security check: the CLI will not start a public coordinator with the public token.

How it works. ``cli_check`` calls ``harness.cli.main`` in this process with
``coordinator --host 0.0.0.0`` and the default (public) token, with
``real.server.coordinator_command`` replaced for the duration by a stub that
records the call, so a regression could never open a public port. It must
return 2 without reaching the stub; two controls (a loopback host, and a
public host with a secret token) must reach it, which shows the stub is
really in the path. It lives in ``harness`` because it drives the harness's
CLI; ``certify`` adds its check to the security report.
"""

from __future__ import annotations

import contextlib
import io

import real.server as server_module
from harness.cli import main as cli_main
from protocol.settings import ProtocolSettings
from real.security_base import SecurityCheck


def cli_check() -> list[SecurityCheck]:
    calls: list[tuple[object, ...]] = []

    def stub(*args: object, **kwargs: object) -> int:
        calls.append(args)
        return 0

    default_token = ProtocolSettings().token
    runs = {
        "public host, default token": ["coordinator", "--host", "0.0.0.0"],
        "public host, default token given": [
            "coordinator",
            "--host",
            "0.0.0.0",
            "--token",
            default_token,
        ],
        "loopback host (control)": ["coordinator", "--host", "127.0.0.1"],
        "public host, secret token (control)": [
            "coordinator",
            "--host",
            "0.0.0.0",
            "--token",
            "a-secret-token",
        ],
    }
    results: dict[str, tuple[int, bool]] = {}
    original = server_module.coordinator_command
    server_module.coordinator_command = stub
    try:
        for label, argv in runs.items():
            before = len(calls)
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                code = cli_main(argv)
            results[label] = (code, len(calls) > before)
    finally:
        server_module.coordinator_command = original
    refused = [results[k] == (2, False) for k in list(runs)[:2]]
    controls = [results[k] == (0, True) for k in list(runs)[2:]]
    passed = all(refused) and all(controls)
    detail = "; ".join(
        f"{label}: exit {code}, {'would start' if started else 'did not start'}"
        for label, (code, started) in results.items()
    )
    return [
        SecurityCheck(
            "cli_refuses_public_bind_with_default_token",
            passed,
            detail,
            "swarmtwin's CLI was called in this process with real.server.coordinator_command "
            "replaced by a stub that records whether the server would have started.",
        )
    ]
