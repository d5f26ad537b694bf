"""``swarmtwin certify``: the certification tests, scored, with a report.

``suite`` loads a suite file, ``catalog`` names the twelve tests and how each
figure is taken from the runs, ``scoring`` turns figures into a score and a
level, ``run`` runs everything, ``plots`` draws the report's pictures and
``report``/``html`` write ``report.json``, ``report.md`` and ``report.html``.
``render`` turns the HTML into a PNG in headless Chromium. ``cli_check`` and
the ``security`` package are the security checks: attacks on a live
coordinator (they attack the system; they are not part of it).
"""
