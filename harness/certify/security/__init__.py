"""Security checks: attacks on a live coordinator (they attack the system; they
are not part of it).
"""
