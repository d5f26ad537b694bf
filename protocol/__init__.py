"""swarmtwin's sans-IO protocol core: pure, synchronous, deterministic.

Drivers feed state machines (``Coordinator``, ``Agent``) what happened with
``receive(src, msg, now)`` and ``on_timer(now)``, and send what ``drain()``
returns. Nothing in this package does I/O, reads a clock or uses global
randomness; ``tests/core/test_purity.py`` enforces it.

The hot modules may run compiled by mypyc: ``native.select`` (outside this
package, since it reads files) says whether a fresh build exists, and if so
its folder is searched first for this package's modules. The sources here
stay the definition and the fallback.
"""

from native.select import compiled_dir  # packaging only: no protocol logic there

_compiled = compiled_dir(__path__[0])
if _compiled is not None:
    __path__.insert(0, _compiled)
