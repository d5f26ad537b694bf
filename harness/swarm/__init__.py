"""A live swarm: a tcp coordinator, and a console agent of the harness's own that
speaks to it as any agent does (``console``: the portal's System tab).
"""
