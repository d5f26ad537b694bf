"""The harness: scenarios, metrics, CLI, reports, regression, certification,
packaging and the architecture.
"""
