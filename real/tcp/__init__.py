"""The tcp transport: a coordinator server process, agent worker processes, and
what a run needs around them (children, record logs, persistence, faults).
"""
