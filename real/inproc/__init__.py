"""The in-process transport: the coordinator and every agent on one event loop."""
