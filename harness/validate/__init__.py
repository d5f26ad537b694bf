"""Validating the model against the real system: suites, fidelity reports and
what-ifs.
"""
