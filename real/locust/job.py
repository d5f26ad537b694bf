"""The job a Locust worker on another host gets from the master: the plan, where the
coordinator listens, and the clock to stamp on.

How it works. A worker started with ``swarmtwin locust --worker --master-host H``
has no job file. Its locustfile asks the master for the job with Locust's custom
messages, and the master answers with ``encode_job``'s bytes: the compiled plan
(pickled, with the settings' token blanked: a secret never travels with the job;
each host gives its own ``--token``), the coordinator's address (and the portal's
gateway URL when the users join through it), the wall-clock
epoch of the run clock and the plan's digest. ``decode_job`` unpickles with
``PlanUnpickler``, which builds only the plain data classes of ``protocol`` and a
few builtins, so a hostile master cannot make a worker run code through the job.
The worker checks the digest of what it decoded and the swarmtwin version, and
refuses a job from a different build rather than replay another plan.

Clocks. Every record is stamped on the run clock, seconds since ``epoch`` on the
master's wall clock. A worker on another host estimates its clock's offset from
the master's as Cristian's algorithm does: it asks the time ``SYNC_ROUNDS`` times
and keeps the answer with the shortest round trip, taking the master's time as
read in the middle of it. The error is at most half that round trip, which the
worker reports; latencies are unaffected (an op's latency is the difference of two
stamps of one host), only when its ops start relative to the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
from importlib.metadata import version
from typing import Any

from protocol.plan import Plan, rebuild_operation

DEFAULT_MASTER_PORT = 5557  # Locust's own default
JOB_ENV = "SWARMTWIN_LOCUST_JOB"  # the job file of the master and of local workers
SYNC_ROUNDS = 7
_BUILTINS = {"tuple", "frozenset", "set", "list", "dict", "float", "int", "str", "bytes"}


def swarmtwin_version() -> str:
    return version("swarmtwin")


def _blank_token(plan: Plan) -> Plan:
    settings = dataclasses.replace(plan.settings, token="")
    return dataclasses.replace(plan, settings=settings)


def plan_digest(plan: Plan) -> str:
    """A digest of everything in ``plan`` but its token (equal plans, equal digests)."""
    body = pickle.dumps(_blank_token(plan), protocol=5)
    return hashlib.sha256(body).hexdigest()[:16]


def encode_job(job: dict[str, Any]) -> dict[str, Any]:
    """The ``st_job`` message's data, for a worker on another host, from the master's
    ``job`` (``real.locust.run``): ``gateway``, the portal's WebSocket URL when the
    agents join through it; ``portal`` and ``http_users``, its HTTP API's URL and
    how many users send the memory ops there (0: the agents do)."""
    plan: Plan = job["plan"]
    return {
        "plan": pickle.dumps(_blank_token(plan), protocol=5),
        "digest": plan_digest(plan),
        "version": swarmtwin_version(),
        **{name: job.get(name) for name in ("host", "port", "gateway", "portal", "epoch")},
        "http_users": job.get("http_users", 0),
    }


class JobRefused(ValueError):
    """A job this worker will not run (its reason is the message)."""


class PlanUnpickler(pickle.Unpickler):
    """Unpickles plain data only: ``protocol`` classes, a few builtins, and
    ``protocol.plan.rebuild_operation`` (how an ``Operation`` pickles)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module == "copyreg" and name in ("__newobj__", "_reconstructor"):
            return super().find_class(module, name)
        if module == "protocol.plan" and name == "rebuild_operation":  # builds an Operation
            return rebuild_operation
        if module.split(".")[0] == "protocol":
            found = super().find_class(module, name)
            if isinstance(found, type) and (
                dataclasses.is_dataclass(found) or _is_enum(found) or issubclass(found, tuple)
            ):
                return found
        raise pickle.UnpicklingError(f"a job may not contain {module}.{name}")


def _is_enum(cls: type) -> bool:
    import enum

    return issubclass(cls, enum.Enum)


def decode_job(data: dict[str, Any], token: str) -> dict[str, Any]:
    """The job from an ``st_job`` message, with this host's ``token`` in its plan;
    ``JobRefused`` for another build's job or a plan that does not decode."""
    theirs = str(data.get("version", "?"))
    if theirs != swarmtwin_version():
        raise JobRefused(
            f"the master runs swarmtwin {theirs}, this worker {swarmtwin_version()}: "
            "install the same version on every host"
        )
    try:
        plan = PlanUnpickler(io.BytesIO(data["plan"])).load()
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as exc:
        raise JobRefused(f"the job's plan does not decode: {exc}") from None
    if not isinstance(plan, Plan) or plan_digest(plan) != data.get("digest"):
        raise JobRefused("the job's plan does not match its digest")
    settings = dataclasses.replace(plan.settings, token=token)
    return {
        "plan": dataclasses.replace(plan, settings=settings),
        "host": str(data["host"]),
        "port": int(data["port"]),
        "gateway": None if data.get("gateway") is None else str(data["gateway"]),
        "portal": None if data.get("portal") is None else str(data["portal"]),
        "http_users": int(data.get("http_users") or 0),
        "epoch": float(data["epoch"]),
    }


def best_offset(samples: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Cristian's estimate from ``(sent, their_time, received)`` samples on this
    host's clock: (offset to add to this clock, its error bound: half the round trip)."""
    sent, theirs, received = min(samples, key=lambda s: s[2] - s[0])
    return theirs - (sent + received) / 2, (received - sent) / 2
