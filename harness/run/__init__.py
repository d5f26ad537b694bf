"""Running a scenario: the runner, the run folder, the history database and the
machine it ran on.
"""
