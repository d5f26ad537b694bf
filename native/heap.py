"""The cyclic garbage collector paused around bulk work, one rule for every layer.

CPython's collector runs a pass every 700 net allocations and, as the heap grows,
passes over the older generations, which touch every tracked object. A run's
bulk phases (compiling a plan, replaying it in the model, summarizing its
millions of completion records) allocate hundreds of thousands of objects and
create no reference cycles, so those passes are pure overhead there: with a
model run's records alive, summarizing the default scenario spent about 12 s of
its 16 s in them (``Enum`` calls and ``numpy.fromiter`` charged 64 µs each). The
real processes have their own policy (``real.gctune``), because their loops
must keep running young passes to stay representative.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block, restoring its state afterwards
    (nested use is fine). Pausing changes no figure: nothing here makes cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
