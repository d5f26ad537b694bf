"""Calibrating the model: measuring this machine's costs for sim/."""
