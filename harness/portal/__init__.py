"""``swarmtwin serve``: the web portal, a live dashboard of real and model runs.

How it fits together. ``app`` builds one FastAPI (Starlette) application that
uvicorn serves on loopback. Its HTTP API (``api``) reads what the harness files
(the run history, run folders, scenarios) and starts runs as *jobs*
(``jobs``): each job is a ``python -m harness.jobs.child`` subprocess in its
own session, running ``harness.run.runner.run_scenario`` exactly as
``swarmtwin run`` does, so a run started from the page is filed, summarised
and measured like any other. The job writes JSON lines: progress, live points
(``live``: throughput, latency percentiles, shed ops, reliability and uptime so
far and agents active, from the ``LiveBatch`` es each driver's ``LiveFeed`` handed
over in the last tenth of a second) and at the end the run's
id. The server fans them out over one WebSocket per page (``push``), ten times
a second, through a bounded queue per client that drops the stalest frames.
The page (``static/``) draws them with uPlot, installed from npm by the
project's setup (``web/package.json``), and reports back how long each frame
took from the server's stamp to being drawn.
"""
