"""Find the scenario and suite files shipped with swarmtwin, wherever it is installed.

How it works. A source checkout keeps the scenarios in its top-level
``scenarios/`` folder; a wheel carries the same tree as ``harness/scenario/files/``
(``pyproject.toml``, ``harness.build_mapped``). ``scenarios_dir`` returns the
installed copy when there is one, else the checkout's folder, so an editable
install and a plain checkout use ``scenarios/`` itself.

``resolve`` turns a command-line argument into a file:

1. a path that exists is used as given, relative to the working directory as
   before (so a project's own ``scenarios/default.yaml`` wins);
2. otherwise the argument names a shipped file relative to ``scenarios_dir``:
   ``smoke``, ``faults/partition``, ``faults/partition.yaml`` or
   ``scenarios/default.yaml`` (a leading ``scenarios/`` is dropped, ``.yaml``
   is tried when the name has no such suffix, and a folder stands for the
   ``suite.yaml`` in it);
3. otherwise ``ScenarioError`` (the CLI exits 2), naming the argument, the
   places looked in and what is shipped there.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from harness.scenario.errors import ScenarioError, did_you_mean

PACKAGE_DIR = Path(__file__).resolve().parent
FOLDER = "scenarios"  # the folder's name in the checkout
INSTALLED = "files"  # its name in the package: harness/scenario/files
SUFFIXES = (".yaml", ".yml")
SUITE = "suite.yaml"


def scenarios_dir() -> Path:
    """The shipped scenarios: ``harness/scenario/files`` installed, else
    ``<checkout>/scenarios``."""
    installed = PACKAGE_DIR / INSTALLED
    return installed if installed.is_dir() else PACKAGE_DIR.parent.parent / FOLDER


def shipped_candidates(argument: str | PurePath) -> list[PurePath]:
    """The names under ``scenarios_dir`` that ``argument`` may mean, most literal first."""
    path = PurePath(argument)
    parts = [part for part in path.parts if part != "."]
    if path.is_absolute() or not parts or ".." in parts:
        return []
    if parts[0] == FOLDER and len(parts) > 1:
        parts = parts[1:]
    name = PurePath(*parts)
    names = [name]
    if name.suffix not in SUFFIXES:
        names.append(name.with_name(name.name + SUFFIXES[0]))
    return names


def find_shipped(argument: str | PurePath, root: Path | None = None) -> Path | None:
    """The shipped file ``argument`` names under ``root`` (``scenarios_dir()``), or None."""
    base = scenarios_dir() if root is None else root
    for name in shipped_candidates(argument):
        candidate = base / name
        if candidate.is_file():
            return candidate
        if candidate.is_dir() and (candidate / SUITE).is_file():
            return candidate / SUITE
    return None


def locate(argument: str | Path, root: Path | None = None) -> Path | None:
    """``argument`` if it exists, else the shipped file it names, else None."""
    given = Path(argument)
    return given if given.exists() else find_shipped(argument, root)


def resolve(argument: str | Path, what: str = "scenario", root: Path | None = None) -> Path:
    """``argument`` if it exists, else the shipped file it names; ``ScenarioError`` if neither.

    ``what`` names the kind of file in the error (``scenario``, ``certification
    suite``); ``root`` replaces ``scenarios_dir()`` (for tests).
    """
    found = locate(argument, root)
    if found is not None:
        return found
    base = scenarios_dir() if root is None else root
    raise ScenarioError(str(argument), "(file)", not_found_message(argument, what, base))


def not_found_message(argument: str | Path, what: str, base: Path) -> str:
    """What was looked for, where, and what the nearest shipped folder holds."""
    names = shipped_candidates(argument)
    if not names:
        return f"file not found: no {argument} (a shipped {what} is named by a relative path)"
    tried = " or ".join(str(name) for name in names)
    folder = _nearest_folder(base, names[0])
    inside = folder.relative_to(base)
    listed = listing(folder)
    hint = did_you_mean(str(names[0]), [str(inside / entry.rstrip("/")) for entry in listed])
    where = "there" if folder == base else f"in {inside}/"
    return (
        f"file not found: no {argument} in the working directory {Path.cwd()}, and no "
        f"shipped {what} {tried} in {base}{hint}; shipped {where}: {', '.join(listed) or 'none'}"
    )


def listing(folder: Path) -> list[str]:
    """The scenario names (``smoke``) and subfolders (``faults/``) in ``folder``."""
    if not folder.is_dir():
        return []
    files = sorted(p.stem for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    folders = sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir() and p.name[0] != "_")
    return [*files, *folders]


def _nearest_folder(base: Path, name: PurePath) -> Path:
    folder = base
    for part in name.parent.parts:
        if not (folder / part).is_dir():
            break
        folder = folder / part
    return folder
