"""Tier 1: the sans-IO core alone, through in-memory clusters (Hypothesis where
it finds bugs).
"""
