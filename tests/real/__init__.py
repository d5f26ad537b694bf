"""Tier 3: the real asyncio system: inproc, loopback tcp, processes, and
differential tests against the model.
"""
