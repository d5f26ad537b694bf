"""Regression checks: baselines, decisions, reports."""
