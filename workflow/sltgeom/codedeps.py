"""The library modules a workflow script runs: its import closure inside ``sltgeom``.

Rules list these files as code inputs (``code_of`` in workflow/rules/common.smk), so that
editing any module a job imports reruns that job and nothing else. The closure is read from
the source with :mod:`ast` (nothing is imported, so this module needs no torch):

* ``import sltgeom.a.b``, ``from sltgeom.a import b`` and relative imports (``from ..a import
  b``) are followed, inside functions too (a lazy import still runs when the job calls it);
* importing a submodule runs every package ``__init__.py`` above it, so those count as well;
* imports of anything outside ``sltgeom`` (torch, the standard library) are ignored: the
  software environment, not the code inputs, covers them;
* a module imported by name at run time (:func:`importlib.import_module`) is invisible to the
  parser: pass its name as an extra entry to :func:`closure`.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

PACKAGE = "sltgeom"
#: The library folder, workflow/sltgeom.
LIBRARY = Path(__file__).resolve().parent


def module_name(path: Path, root: Path = LIBRARY) -> str | None:
    """Dotted name of a library file (``analysis/hvp.py`` -> ``sltgeom.analysis.hvp``)."""
    try:
        parts = list(path.relative_to(root).with_suffix("").parts)
    except ValueError:
        return None  # a script outside the library
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def module_file(name: str, root: Path = LIBRARY) -> Path | None:
    """The file of library module ``name`` (a module or a package's ``__init__.py``)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _absolute(node: ast.ImportFrom, path: Path, root: Path) -> str | None:
    """The module an ``ImportFrom`` names, relative imports resolved against ``path``."""
    if not node.level:
        return node.module
    own = module_name(path, root)
    if own is None:
        raise ImportError(f"{path}: relative import outside the {PACKAGE} package")
    package = own.split(".")
    if path.name != "__init__.py":
        package.pop()  # a module's relative imports start from its package
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imported_modules(path: Path, root: Path = LIBRARY) -> set[str]:
    """Names of the modules (or candidate submodules) a file imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path, root)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # maybe submodules
    return names


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _direct(path: Path, root: Path, mtime_ns: int) -> frozenset[Path]:
    """Library files one file imports directly (cached on the file's modification time)."""
    del mtime_ns  # part of the cache key only
    files = set()
    for name in imported_modules(path, root):
        for package in _with_packages(name):
            found = module_file(package, root)
            if found is not None:
                files.add(found)
    return frozenset(files)


def closure(*entries: str | os.PathLike, root: Path = LIBRARY) -> list[Path]:
    """Library files that running the ``entries`` imports, sorted.

    Args:
        entries: Python files (a workflow script, a library module) or dotted names of library
            modules imported by name at run time (``"sltgeom.analysis.hessian"``).
        root: The library folder.

    Raises:
        FileNotFoundError: An entry is neither an existing file nor a library module.
    """
    todo = []
    for entry in entries:
        path = Path(entry) if str(entry).endswith(".py") else module_file(str(entry), root)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"{entry}: no such script or {PACKAGE} module")
        todo.append(path.resolve())
        name = module_name(path.resolve(), root)
        todo += [module_file(p, root) for p in _with_packages(name)] if name else []
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_direct(path, root, path.stat().st_mtime_ns) - seen)
    library = {p for p in seen if p.is_relative_to(root)}
    return sorted(library)


def code_inputs(
    *entries: str | os.PathLike, root: Path = LIBRARY, start: str | os.PathLike = "."
) -> list[str]:
    """:func:`closure` as paths relative to ``start`` (the working directory), so that the
    inputs Snakemake records do not change when a finished project is moved or copied."""
    return [os.path.relpath(path, start) for path in closure(*entries, root=root)]
