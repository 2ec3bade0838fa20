"""What a job's code is: the library definitions its script reaches, compared by meaning.

A rule's code is fingerprinted when the workflow is parsed (``code_of`` in
workflow/rules/common.smk). The fingerprint covers what can change the job's outputs and
nothing else:

* **by meaning**: every piece of code enters as its normalised syntax tree (:func:`normalised`:
  parsed, docstrings and other bare strings dropped, written back with :func:`ast.unparse`), so
  comments, docstrings, formatting and file times do not count;
* **by definition reached**, not by file: a module is cut into *units*, its top-level functions,
  classes and assignments (one unit per name; statements that mutate a module-level name, such
  as ``TABLES.update(...)``, belong to that name's unit). Starting from the job's script, a unit
  reaches the units its names and attribute chains resolve to (``from .x import f``, ``mod.f``,
  re-exports, imports inside functions), the module-level code of every module it imports
  (calls such as ``matplotlib.use``: :attr:`Module.effects`) and the external names it binds
  (``import numpy as np``). Editing ``sgld_step`` therefore changes the fingerprints of the
  jobs that sample an LLC only;
* **registries by key**: a module-level dict looked up by name holds one entry per stage, so a
  job reaches the entries it declares (``keys``), or those looked up with a literal key
  (``TABLES["llc_difference"]``); a lookup with a computed key and nothing declared reaches
  every entry. The table schemas (:data:`SCHEMA_REGISTRY`) are data: each table's entry enters
  as its value (columns and dtypes, in order), so a job holds exactly the schemas of the tables
  it writes. The lazy-training runners are code: each experiment reaches its runner only.

Resolution is conservative: a name that may be a module-level one counts (a local variable
named like a function adds that function); a module used as a value (``getattr(mod, name)``)
reaches all of it; a name the module does not define reaches all of it. Modules imported by a
computed name (:func:`importlib.import_module`) are invisible: give them to
:meth:`Library.fingerprint` as extra roots (``"sltgeom.analysis.hessian.measure_hessian"``).

Snakemake sees a fingerprint as a file (:func:`write_fingerprint`: one line per unit and
table, rewritten only when its text changes) that the jobs list as an input, so that Snakemake's
checksums of inputs make a reverted edit rerun nothing. Rules run their scripts through
launchers (:func:`write_launcher`) whose text never changes and whose modification time is the
epoch: Snakemake reruns a script rule whenever its script file is newer than its outputs.

Nothing here imports torch: only the schema module is executed, to read its tables.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "sltgeom"
#: The library folder, workflow/sltgeom.
LIBRARY = Path(__file__).resolve().parent
#: The registry of table schemas, entries compared by value (a torch-free, self-contained module).
SCHEMA_REGISTRY = ("sltgeom.schemas", "TABLES")


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


def _is_string(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def strip_strings(tree: ast.AST) -> ast.AST:
    """``tree`` (changed in place) without bare string statements, docstrings among them; the
    body of a block left empty gets a ``pass`` (a module's stays empty)."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and any(isinstance(s, ast.stmt) for s in body):
                kept = [s for s in body if not _is_string(s)]
                block = name == "body" and not isinstance(node, ast.Module)
                setattr(node, name, kept or ([ast.Pass()] if block else []))
    return tree


def normalised(source: str) -> str:
    """``source`` without comments, docstrings and formatting: its syntax tree, bare strings
    dropped, written back by :func:`ast.unparse`."""
    return ast.unparse(strip_strings(ast.parse(source)))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


#: A registry looked up with a computed key (``TABLES[name]``), as the ``key`` of a :class:`Ref`.
COMPUTED = "<computed>"


class _Import(str):
    """A library module that a job imports (its module code runs)."""


@dataclass(frozen=True)
class Ref:
    """A library definition: a unit of a module, or a whole module (``name`` None). On a
    registry, ``key`` is the entry looked up: a literal key, :data:`COMPUTED`, or None for any
    other use of the whole dict."""

    module: str
    name: str | None = None
    key: str | None = None


@dataclass(eq=False)
class Unit:
    """Top-level statements of a module that define ``names`` (or module-level code run on
    import, named ``<module code k>``); what its code uses is filled in on first reach."""

    module: str
    names: list[str]
    nodes: list[ast.stmt]
    refs: set[Ref] = field(default_factory=set)
    imports: set[str] = field(default_factory=set)
    externals: set[str] = field(default_factory=set)
    analysed: bool = False
    cached_digest: str | None = None

    @property
    def digest(self) -> str:
        """sha256 of its code (comments and bare strings are not in the tree) and of the
        external names it binds."""
        if self.cached_digest is None:
            text = "\n".join(ast.unparse(node) for node in self.nodes)
            self.cached_digest = _digest(text + "".join(f"\n{e}" for e in sorted(self.externals)))
        return self.cached_digest

    @property
    def label(self) -> str:
        return f"{self.module}:{','.join(self.names)}"


def _bound_names(node: ast.AST) -> set[str]:
    """Names a (possibly compound) top-level statement binds in the module namespace (not
    those local to the functions, classes and comprehensions inside it)."""
    names = set()
    scopes = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
    todo = [node]
    while todo:
        inner = todo.pop()
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
            names.add(inner.id)
        elif isinstance(inner, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in inner.names)
        if isinstance(inner, scopes):
            names.add(getattr(inner, "name", None))
        elif isinstance(inner, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            continue
        else:
            todo.extend(ast.iter_child_nodes(inner))
    return names - {None}


def _mutated_name(node: ast.stmt) -> str | None:
    """``X`` for ``X.method(...)``, ``X[k] = v``, ``X.a = v`` or ``X[k] += v`` at top level."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        target = node.value.func
    elif isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        target = node.target
    else:
        return None
    if not isinstance(target, ast.Attribute | ast.Subscript):
        return None
    while isinstance(target, ast.Attribute | ast.Subscript):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


class Module:
    """One parsed library module or script: its units, import aliases and module code."""

    def __init__(self, library: Library, name: str, path: Path):
        self.library, self.name, self.path = library, name, path
        self.is_package = path.name == "__init__.py"
        self.aliases: dict[str, Ref | str] = {}  # top-level import alias -> Ref or external
        self.imports: set[str] = set()  # library modules its top-level imports run
        self.units: dict[str, Unit] = {}
        self.effects: list[Unit] = []
        tree = strip_strings(ast.parse(path.read_text(), filename=str(path)))
        for node in tree.body:
            self._add(node)

    def _add(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            self.aliases.update(self.library.import_targets(node, self))
            self.imports.update(self.library.imported_modules(node, self))
            return
        mutated = _mutated_name(node)
        if mutated in self.units:
            self.units[mutated].nodes.append(node)
            return
        names = []
        definitions = ast.Assign | ast.AnnAssign | ast.AugAssign | ast.If | ast.Try | ast.With
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, definitions | ast.For | ast.While):
            names = sorted(_bound_names(node))
        if not names:
            self.effects.append(Unit(self.name, [f"<module code {len(self.effects) + 1}>"], [node]))
            return
        unit = Unit(self.name, [], [])
        for old in {id(self.units[n]): self.units[n] for n in names if n in self.units}.values():
            unit.names += old.names  # a name bound again: one unit of all its statements
            unit.nodes += old.nodes
        unit.names = sorted(set(unit.names) | set(names))
        unit.nodes.append(node)
        for name in unit.names:
            self.units[name] = unit

    def resolve(self, name: str, local: Mapping[str, Ref | str]) -> Ref | str | None:
        """What ``name`` means inside one of this module's units (None: builtin or local)."""
        if name in local:
            return local[name]
        if name in self.units:
            return Ref(self.name, name)
        return self.aliases.get(name)


class _Collector(ast.NodeVisitor):
    """The refs and external names a unit's code uses."""

    def __init__(self, module: Module, local: Mapping[str, Ref | str]):
        self.module, self.local = module, local
        self.refs: set[Ref] = set()
        self.externals: set[str] = set()

    def _target(self, node: ast.AST) -> Ref | str | None:
        """What a chain of names and attributes refers to (None: nothing of a module's)."""
        if isinstance(node, ast.Name):
            return self.module.resolve(node.id, self.local)
        if isinstance(node, ast.Attribute):
            base = self._target(node.value)
            if isinstance(base, Ref) and base.name is None:
                return self.module.library.member(base.module, node.attr)
            if isinstance(base, str):
                return f"{base}.{node.attr}"
        return None

    def _record(self, target: Ref | str | None) -> None:
        if isinstance(target, Ref):
            self.refs.add(target)
        elif isinstance(target, str):
            self.externals.add(target)

    def visit_Name(self, node: ast.Name) -> None:
        self._record(self._target(node))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        target = self._target(node)
        if target is None:
            self.generic_visit(node)  # self.x, f(...).y, X.method: look inside
        else:
            self._record(target)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        target = self._target(node.value)
        if isinstance(target, Ref) and target.name is not None:
            key = node.slice
            literal = isinstance(key, ast.Constant) and isinstance(key.value, str)
            self.refs.add(Ref(target.module, target.name, key.value if literal else COMPUTED))
        else:
            self.visit(node.value)
        self.visit(node.slice)


class Library:
    """The ``sltgeom`` package under ``root``, parsed on demand. Make one per workflow parse:
    each file is read once."""

    def __init__(self, root: Path = LIBRARY):
        self.root = Path(root).resolve()
        self._modules: dict[str, Module] = {}
        self._entries: dict[tuple[str, str], Unit] = {}
        self._schemas: dict | None = None
        self._is_module: dict[str, bool] = {}

    # ---------------------------------------------------------------- modules and names

    def is_module(self, name: str) -> bool:
        if name not in self._is_module:
            self._is_module[name] = module_file(name, self.root) is not None
        return self._is_module[name]

    def module(self, name: str) -> Module:
        if name not in self._modules:
            path = module_file(name, self.root)
            if path is None:
                raise FileNotFoundError(f"{name}: no such {PACKAGE} module")
            self._modules[name] = Module(self, name, path)
        return self._modules[name]

    def script(self, path: str | os.PathLike) -> Module:
        """A workflow script (or a library file given by path) as a module."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such script")
        name = module_name(path, self.root)
        if name is not None:
            return self.module(name)
        name = f"<script {path.name}>"  # in labels: the same wherever the workflow lies
        if name not in self._modules:
            self._modules[name] = Module(self, name, path)
        elif self._modules[name].path != path:
            raise ValueError(f"two scripts named {path.name}: {self._modules[name].path}, {path}")
        return self._modules[name]

    def member(self, module: str, name: str) -> Ref:
        """``module.name``: a submodule, or a name of the module."""
        if self.is_module(f"{module}.{name}"):
            return Ref(f"{module}.{name}")
        return Ref(module, name)

    def _absolute(self, node: ast.ImportFrom, where: Module) -> str:
        if not node.level:
            return node.module or ""
        if not where.name.startswith(PACKAGE):
            raise ImportError(f"{where.path}: relative import outside the {PACKAGE} package")
        package = where.name.split(".")
        if not where.is_package:
            package.pop()  # a module's relative imports start from its package
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, node.module] if node.module else package)

    def import_targets(self, node: ast.Import | ast.ImportFrom, where: Module) -> dict:
        """Alias -> what an import binds to it (a library Ref, or an external dotted name)."""
        out: dict[str, Ref | str] = {}
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                target = alias.name if alias.asname else bound
                out[bound] = Ref(target) if self.is_module(target) else target
            return out
        base = self._absolute(node, where)
        for alias in node.names:
            if alias.name == "*":
                raise ValueError(f"{where.path}: a star import cannot be followed")
            if self.is_module(base):
                out[alias.asname or alias.name] = self.member(base, alias.name)
            elif base.split(".")[0] == PACKAGE:
                raise FileNotFoundError(f"{where.path}: imports the missing module {base}")
            else:
                out[alias.asname or alias.name] = f"{base}.{alias.name}"
        return out

    def imported_modules(self, node: ast.Import | ast.ImportFrom, where: Module) -> set[str]:
        """Library modules whose code an import statement runs (packages: see :meth:`reach`)."""
        if isinstance(node, ast.Import):
            return {a.name for a in node.names if self.is_module(a.name)}
        base = self._absolute(node, where)
        if not self.is_module(base):
            return set()
        return {base} | {
            f"{base}.{a.name}" for a in node.names if self.is_module(f"{base}.{a.name}")
        }

    def definition(self, ref: Ref) -> Ref | None:
        """The unit a Ref names, followed through re-exports; None for a whole module (a
        module, or a name its own code does not define)."""
        seen = set()
        while ref.name is not None and ref not in seen:
            seen.add(ref)
            module = self.module(ref.module)
            if ref.name in module.units:
                return ref
            target = module.aliases.get(ref.name)
            if not isinstance(target, Ref):
                return None
            ref = Ref(target.module, target.name, ref.key)
        return None

    def _analyse(self, unit: Unit) -> Unit:
        """Fill in what a unit's code uses. Imports inside it bind names for the unit; in a
        top-level ``try`` or ``if`` (not in a function) they define the names it binds, so
        what they import counts as used."""
        if unit.analysed:
            return unit
        module = self.module(unit.module)
        local: dict[str, Ref | str] = {}
        defines: set[Ref | str] = set()
        scopes = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        for node in unit.nodes:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    targets = self.import_targets(inner, module)
                    local.update(targets)
                    unit.imports |= self.imported_modules(inner, module)
                    if not isinstance(node, scopes):
                        defines.update(targets.values())
        collector = _Collector(module, local)
        for node in unit.nodes:
            collector.visit(node)
        unit.refs = collector.refs | {t for t in defines if isinstance(t, Ref)}
        unit.externals = collector.externals | {t for t in defines if isinstance(t, str)}
        unit.analysed = True
        return unit

    def _entry(self, unit: Unit, key: str) -> Unit:
        """The entry ``key`` of a dict-literal registry, as a unit of its own."""
        if (unit.label, key) not in self._entries:
            (node,) = unit.nodes
            value = getattr(node, "value", None)
            if not isinstance(value, ast.Dict) or None in value.keys:
                raise ValueError(f"{unit.label}: a keyed registry must be a dict literal")
            entries = {k.value: v for k, v in zip(value.keys, value.values, strict=True)}
            if key not in entries:
                raise KeyError(f"{unit.label} has no entry {key!r}")
            name = f"{unit.names[0]}[{key!r}]"
            self._entries[unit.label, key] = Unit(unit.module, [name], [ast.Expr(entries[key])])
        return self._entries[unit.label, key]

    def _registry_keys(self, unit: Unit) -> list[str]:
        (node,) = unit.nodes
        return [k.value for k in node.value.keys]

    # ---------------------------------------------------------------- reaching

    def reach(
        self,
        script: str | os.PathLike | None,
        roots: Iterable[str] = (),
        keys: Mapping[str, Iterable[str]] = {},
    ) -> tuple[list[Unit], dict[str, list[str]]]:
        """The units a job runs and the registry entries it reads.

        Args:
            script: The workflow script the job runs (all of its code counts), or None.
            roots: Dotted names of library modules (all of each) or of definitions in them,
                reached by a computed name at run time.
            keys: ``"module.NAME"`` of a registry -> the keys the job looks up with a computed
                key. A registry not named here is an ordinary definition, except the schemas.

        Returns:
            The reached units (sorted by label) and, per registry reached, the keys it reads
            (``"*"``: every key).
        """
        todo: list[Ref | Unit | _Import] = []
        if script is not None:
            module = self.script(script)
            todo += [*module.effects, *module.units.values()]
            todo += [_Import(m) for m in module.imports]
        for root in roots:
            parent, _, attr = root.rpartition(".")
            ref = Ref(root) if self.is_module(root) else Ref(parent, attr)
            if ref.name is not None and not (self.is_module(parent) and self.definition(ref)):
                raise FileNotFoundError(f"{root}: no such {PACKAGE} module or definition")
            todo.append(ref)
        units: dict[int, Unit] = {}
        registries: dict[str, set[str]] = {}
        imported: set[str] = set()
        while todo:
            item = todo.pop()
            if isinstance(item, _Import):  # importing a module runs its (packages') module code
                parts = item.split(".") if item.startswith(PACKAGE) else [str(item)]
                for package in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                    if package not in imported:
                        imported.add(package)
                        todo += self.module(package).effects
                        todo += [_Import(m) for m in self.module(package).imports]
                continue
            if isinstance(item, Unit):
                if id(item) not in units:
                    units[id(item)] = self._analyse(item)
                    todo += [*item.refs, *map(_Import, item.imports)]
                continue
            ref = self.definition(item) or Ref(item.module)
            todo += [_Import(item.module), _Import(ref.module)]
            module = self.module(ref.module)
            if ref.name is None:
                todo += list({id(u): u for u in module.units.values()}.values())
                continue
            unit = module.units[ref.name]
            registry = f"{ref.module}.{ref.name}"
            if registry not in keys and (ref.module, ref.name) != SCHEMA_REGISTRY:
                todo.append(unit)
                continue
            if item.key is None or (item.key == COMPUTED and registry not in keys):
                wanted = ["*"]  # the whole dict, or a computed key of an undeclared job
            elif item.key == COMPUTED:
                wanted = list(keys[registry])
            else:
                wanted = [item.key]
            registries.setdefault(registry, set()).update(wanted)
            if (ref.module, ref.name) != SCHEMA_REGISTRY:
                entries = self._registry_keys(unit) if "*" in wanted else wanted
                todo += [self._entry(unit, key) for key in entries]
        ordered = sorted(units.values(), key=lambda u: (u.label, u.digest))
        return ordered, {name: sorted(found) for name, found in registries.items()}

    # ---------------------------------------------------------------- fingerprints

    def schemas(self) -> dict:
        """The table schemas, read by executing the (self-contained) schema module's file."""
        if self._schemas is None:
            module, name = SCHEMA_REGISTRY
            spec = importlib.util.spec_from_file_location(
                f"_codedeps_{module}", module_file(module, self.root)
            )
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            self._schemas = getattr(loaded, name)
        return self._schemas

    def fingerprint(
        self,
        script: str | os.PathLike | None,
        roots: Iterable[str] = (),
        tables: Iterable[str] = (),
        keys: Mapping[str, Iterable[str]] = {},
    ) -> Fingerprint:
        """The code of a job that runs ``script`` (arguments: :meth:`reach`); ``tables``: those
        it writes, the schema entries its computed lookups read."""
        keys = dict(keys)
        if tables:
            keys[".".join(SCHEMA_REGISTRY)] = list(tables)
        units, registries = self.reach(script, roots, keys)
        lines = [(unit.label, unit.digest) for unit in units]
        wanted = registries.get(".".join(SCHEMA_REGISTRY), [])
        schemas = self.schemas() if wanted else {}
        for name in list(schemas) if "*" in wanted else wanted:
            lines.append((f"table {name}", _digest(json.dumps(schemas[name]))))
        return Fingerprint(lines)


@dataclass
class Fingerprint:
    """A job's code: one (label, sha256 of the normalised code) line per unit and table."""

    lines: list[tuple[str, str]]

    @property
    def digest(self) -> str:
        return _digest("\n".join(f"{label} {h}" for label, h in self.lines))

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.lines]


#: The folder of the launchers and fingerprint files, beside the workflow's scripts (git-ignored,
#: like ``__pycache__``).
GENERATED = ".code"

FINGERPRINT = """\
# The code that the jobs of a rule run, written by sltgeom.codedeps when the workflow is parsed
# (do not edit; git-ignored). The jobs list this file as an input; it is rewritten only when
# that code changes in meaning, so that Snakemake reruns exactly the jobs whose code changed.
# One line per definition reached from the script and per table schema written: the sha256 of
# its normalised code (comments, docstrings and formatting dropped), then its name.
script {script}
{lines}
"""

LAUNCHER = """\
# Runs ../{script} for Snakemake; written by sltgeom.codedeps (do not edit; git-ignored). Its text
# never depends on the code and its modification time is kept at the epoch, so that Snakemake's
# script-time trigger does not fire on a rewritten script: the code's meaning is the business of
# the fingerprint file each job lists as an input (.code/*.fingerprint).
import runpy
import sys
from pathlib import Path

script = Path(__file__).resolve().parents[1] / {script!r}
snakemake.scriptdir = str(script.parent)
sys.path.insert(0, snakemake.scriptdir)
runpy.run_path(str(script), init_globals={{"snakemake": snakemake}}, run_name="__main__")
"""


def _write(path: Path, text: str) -> str | None:
    """Write ``text`` to ``path`` unless the file holds it already; returns the old text."""
    old = path.read_text() if path.is_file() else None
    if old != text:
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)  # atomic: a job that reads it meanwhile sees a whole file
    return old


def fingerprint_text(script: str, fingerprint: Fingerprint) -> str:
    lines = "\n".join(f"{h} {label}" for label, h in fingerprint.lines)
    return FINGERPRINT.format(script=script, lines=lines)


def write_fingerprint(
    script: Path, fingerprint: Fingerprint, variant: str | None = None
) -> tuple[Path, list[str]]:
    """Write the fingerprint file of ``script``'s jobs (``.code/<stem>[.<variant>].fingerprint``
    beside it) if its text changed.

    Returns:
        Its path and the labels whose code changed (empty: unchanged or new).
    """
    name = script.stem + (f".{variant}" if variant else "") + ".fingerprint"
    path = script.parent / GENERATED / name
    old = _write(path, fingerprint_text(script.name, fingerprint))
    if old is None:
        return path, []
    lines = [line.split(" ", 1) for line in old.splitlines() if " " in line]
    before = {label: h for h, label in lines if len(h) == 64}
    now = dict(fingerprint.lines)
    return path, sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


def write_launcher(script: Path) -> Path:
    """The launcher of ``script`` (``.code/<script name>`` beside it), written if missing or
    different, its modification time set to the epoch."""
    path = script.parent / GENERATED / script.name
    _write(path, LAUNCHER.format(script=script.name))
    if path.stat().st_mtime != 0:
        os.utime(path, (0, 0))
    return path
