"""The compiled core: the hot modules of ``protocol/`` and ``sim/`` built with
mypyc, and the choice at import.

``python -m native.build`` (``make core``) compiles them into C extensions
under ``build/core/`` (outside the source tree) and writes a manifest of the
sources it compiled. ``protocol/__init__`` and ``sim/__init__`` ask
``native.select.compiled_dir`` whether to put their compiled folder first on
the package's ``__path__``: they do when the build exists, was made by this
Python, and every compiled source is unchanged since (a stale build is never
used). ``SWARMTWIN_CORE=pure`` forces the pure-Python modules;
``SWARMTWIN_CORE=compiled`` makes an unusable build an import error.

Both worlds import the same ``protocol`` package, so the asyncio system and
the SimPy model always run the same core, compiled or not.

``native.heap`` is the other half of running Python fast here: the cyclic
garbage collector paused around bulk work (compiling a plan, the model's run,
summarizing and filing a run's records), one rule for every layer.
"""
