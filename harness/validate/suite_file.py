"""A validation suite file's fields, validated by pydantic (docs/validation.md lists them).

Apart from ``harness.validate.suite``, which sweeps them, so that reading what a
suite covers (``harness.validate.validated``) needs none of the sweep's machinery.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Axes(_Strict):
    """What to sweep around the base. An empty list leaves an axis out."""

    load: list[float] = Field(default=[0.1, 0.25, 0.5, 0.75, 0.9])
    overload: list[float] = Field(default=[1.5, 3.0, 10.0])
    agents: list[int] = Field(default=[10, 1000])
    size: list[int] = Field(default=[64, 16384, 65536])
    fanout: list[int] = Field(default=[1, 20, 100])


class Mix(_Strict):
    """A whole scenario checked as it is: its capacity, its load points, its own rates."""

    file: str = Field(min_length=1)
    load: list[float] = Field(default=[0.5, 0.9])
    nominal: bool = True


class SuiteFile(_Strict):
    """The suite file's fields (see docs/validation.md)."""

    name: str = Field(min_length=1)
    base: str = Field(min_length=1)
    transport: Literal["inproc", "tcp"] | None = None
    repetitions: int = Field(default=5, ge=1, le=100)
    replications: int = Field(default=3, ge=1, le=100)
    duration: float = Field(default=4.0, gt=0, le=600)
    warmup: float = Field(default=1.0, ge=0)
    saturation_factor: float = Field(default=2.0, gt=1)
    axis_load: float = Field(default=0.5, gt=0, le=1.5)
    axes: Axes = Field(default_factory=Axes)
    mixes: list[Mix] = Field(default_factory=list)
