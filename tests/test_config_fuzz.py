"""A fuzz of the configuration schema: every key that config/schema.yaml declares, given bad values
of each kind (wrong type, out of range, NaN, ±inf, empty, unknown enum member, unknown key), is
refused with one message that names that key and the value.

The keys and their bad values come from walking the schema itself (from the tiny test config,
with a valid example inserted where a key is unset and for each branch of a ``oneOf``), so a key
added to the schema later is fuzzed without new test code."""

import copy
import math

import pytest
import yaml
from conftest import REPO, SCHEMA

from sltgeom.config import ConfigError, load_schema, validate_config
from sltgeom.config_errors import (
    admitted_types,
    alternatives,
    chosen_branch,
    json_types,
    key,
    schema_at,
)
from sltgeom.config_errors import resolved as _resolved

ROOT = load_schema(SCHEMA)
UNKNOWN = "no_such_key"
# One value of each JSON type; those a key does not admit are its wrong-type values.
PROBES = ("fast", 2.5, True, ["x"], {"x": 1})


def resolved(node):
    return _resolved(node, ROOT)


def base_config() -> dict:
    """The tiny test config with its first study only (the walk fills in the rest)."""
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())
    config["studies"] = {"tiny": config["studies"]["tiny"]}
    return config


def get(config, path):
    for part in path:
        config = config[part]
    return config


def with_value(config, path, value) -> dict:
    config = copy.deepcopy(config)
    parent = get(config, path[:-1])
    if isinstance(parent, list) and path[-1] == len(parent):
        parent.append(value)
    else:
        parent[path[-1]] = value
    return config


def _kinds(node) -> set[str]:
    branches = alternatives(node, ROOT) or [node]
    return set().union(*(admitted_types(b) for b in branches))


def example(node):
    """A valid value of ``node`` (its default where that is not null)."""
    node = resolved(node)
    if node.get("default") is not None:
        return copy.deepcopy(node["default"])
    if alternatives(node, ROOT):
        return example(alternatives(node, ROOT)[0])
    if "const" in node or "enum" in node:
        return node.get("const", (node.get("enum") or [None])[0])
    kind = next(k for k in ("object", "array", "integer", "number", "string", "boolean", "null")
                if k in _kinds(node))  # fmt: skip
    return _EXAMPLES[kind](node)


def _example_number(node, integer=False):
    low = node.get("minimum", node.get("exclusiveMinimum", 0))
    high = node.get("maximum", node.get("exclusiveMaximum", low + 2))
    value = low if "minimum" in node else (low + high) / 2
    if integer:
        step = node.get("multipleOf", 1)
        value = math.ceil(value / step) * step + (step if "exclusiveMinimum" in node else 0)
    return value


_EXAMPLES = {
    "object": lambda n: {name: example(n["properties"][name]) for name in n.get("required", [])},
    "array": lambda n: [example(n.get("items", {}))] * max(n.get("minItems", 1), 1),
    "integer": lambda n: _example_number(n, integer=True),
    "number": _example_number,
    "string": lambda n: "x",
    "boolean": lambda n: False,
    "null": lambda n: None,
}


def walk(config, path, node, seen=None):
    """Yield (path, schema, config) for every key under ``path``, the config holding a valid
    value of each parent (inserted where unset, one per branch of a ``oneOf``). The keys of a
    mapping defined once in ``$defs`` and used at several places (``llc``, ``lazy_data``...)
    are walked where it is first reached, the mapping itself everywhere."""
    seen = set() if seen is None else seen
    reference = node.get("$ref")
    node = resolved(node)
    yield path, node, config
    if "properties" in node and reference is not None:
        if reference in seen:
            return
        seen.add(reference)
    branches = alternatives(node, ROOT)
    for i, branch in enumerate(branches or [node]):
        if not {"properties", "items", "additionalProperties"} & set(branch):
            continue
        value = get(config, path)
        if branches and chosen_branch(branches, value) != i:
            config = with_value(config, path, example(branch))
        yield from _children(config, path, branch, seen)


def _children(config, path, node, seen):
    value = get(config, path)
    if "properties" in node:
        if not isinstance(value, dict):  # a nullable block left at null
            config = with_value(config, path, example({**node, "type": "object"}))
        for name, child in node["properties"].items():
            if name not in get(config, path):
                config = with_value(config, [*path, name], example(child))
            yield from walk(config, [*path, name], child, seen)
    elif isinstance(node.get("additionalProperties"), dict):
        first = next(iter(value))
        yield from walk(config, [*path, first], node["additionalProperties"], seen)
    if "items" in node and isinstance(value, list):
        if not value:
            config = with_value(config, [*path, 0], example(node["items"]))
        yield from walk(config, [*path, 0], node["items"], seen)


def bad_values(node) -> list[tuple[str, object]]:
    """(kind, value) of the bad values of one key."""
    kinds = _kinds(node)
    wrong = [("wrong type", p) for p in PROBES if not json_types(p) & kinds][:1]
    bad = [*wrong, ("NaN", math.nan), ("inf", math.inf)]
    if kinds & {"integer", "number"}:
        bad.append(("-inf", -math.inf))
    if "null" not in kinds:
        bad.append(("empty", None))
    for branch in alternatives(node, ROOT) or [node]:
        bad += _out_of_range(branch) + _empty(branch)
        if "enum" in branch:
            bad.append(("unknown enum member", "no_such_member"))
    if node.get("additionalProperties") is False:
        bad.append(("unknown key", {UNKNOWN: 1}))
    return bad


def _out_of_range(node) -> list[tuple[str, object]]:
    bounds = [("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)]
    kinds = admitted_types(node)
    if not kinds & {"integer", "number"}:
        return []
    out = []
    for name, shift in bounds:
        if name in node:
            shift = shift * (1 if "integer" in kinds else 0.5) if shift else 0
            out.append(("out of range", node[name] + shift))
    if node.get("multipleOf"):
        out.append(("out of range", _example_number(node, integer=True) + 1))
    return out


def _empty(node) -> list[tuple[str, object]]:
    if node.get("minItems"):
        return [("empty", [])]
    if node.get("required") or node.get("minProperties"):
        return [("empty", {})]
    return []


def pruned(config, path) -> dict:
    """``config`` with the blocks beside ``path`` that may be null set to null (fewer defaults
    to fill: a few milliseconds a validation)."""
    config = copy.deepcopy(config)
    for depth in range(len(path)):
        node = schema_at(ROOT, config, path[:depth])
        block = get(config, path[:depth])
        for name, child in node.get("properties", {}).items():
            if name != path[depth] and name in block and "null" in _kinds(resolved(child)):
                block[name] = None
    return config


def _fuzz_cases():
    for path, node, config in walk(base_config(), [], ROOT):
        config = pruned(config, path)
        for kind, value in bad_values(node) if path else []:
            if kind == "unknown key":
                yield [*path, UNKNOWN], kind, with_value(config, [*path, UNKNOWN], 1)
            else:
                yield path, kind, with_value(config, path, value)


@pytest.fixture(scope="module")
def cases() -> list[tuple[list, str, dict]]:
    """(key path, kind of bad value, config holding it)."""
    return list(_fuzz_cases())


def declared_keys(node, seen=None) -> set[str]:
    """Every property name declared anywhere in the schema."""
    if isinstance(node, dict):
        names = set(node.get("properties", {}))
        return names.union(*(declared_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(declared_keys(v) for v in node))
    return set()


def test_the_walk_reaches_every_declared_key(cases):
    walked = [path for path, _, _ in walk(base_config(), [], ROOT) if path]
    assert declared_keys(ROOT) - {str(path[-1]) for path in walked} == set()
    print(f"\n{len(cases)} (key, bad value) pairs over {len(walked)} keys")
    assert len(cases) > 1000


def test_every_bad_value_is_refused_with_one_message_naming_its_key(cases):
    wrong = []
    for path, kind, config in cases:
        where = key(path)
        try:
            validate_config(config, SCHEMA)
        except ConfigError as error:
            message = str(error)
            if not (message.startswith(f"config key `{where}`") or f"`{where}." in message):
                wrong.append(f"{where} ({kind}): {message}")
            elif "\n" in message or "expected" not in message:
                wrong.append(f"{where} ({kind}): not one message saying what is allowed: {message}")
        else:
            wrong.append(f"{where} ({kind}): accepted")
    assert not wrong, "\n".join(wrong[:20]) + f"\n... {len(wrong)} of {len(cases)}"


@pytest.mark.parametrize("kind", ["NaN", "inf", "wrong type", "unknown key", "out of range"])
def test_each_kind_of_bad_value_is_tried(cases, kind):
    assert sum(k == kind for _, k, _ in cases) > 20
