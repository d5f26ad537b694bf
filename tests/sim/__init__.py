"""Tier 2: the SimPy model, asserting on the simulated clock."""
