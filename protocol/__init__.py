"""swarmtwin's sans-IO protocol core: pure, synchronous, deterministic.

Drivers feed state machines (``Coordinator``, ``Agent``) what happened with
``receive(src, msg, now)`` and ``on_timer(now)``, and send what ``drain()``
returns. Nothing in this package does I/O, reads a clock or uses global
randomness; ``tests/test_purity.py`` enforces it.
"""
