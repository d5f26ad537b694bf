"""Long jobs (runs, certifications, regression checks) in subprocesses, one at a time.

``manager`` starts and follows them (``Jobs``); ``child`` is the subprocess
(``python -m harness.jobs.child run|certify|regress ...``), which writes what it
does as JSON lines. The portal (``swarmtwin serve``) and the MCP server
(``swarmtwin mcp``) share this: one ``Jobs`` per server, so a run started from
either is measured alone.
"""
