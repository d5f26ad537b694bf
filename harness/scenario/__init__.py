"""Scenarios: the schema, reading YAML, errors that name the file and field,
faults, targets, and compiling a scenario into a plan.
"""
