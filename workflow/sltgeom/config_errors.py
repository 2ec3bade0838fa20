"""Configuration errors that say what is allowed: one message per bad value, naming its key.

:func:`explain` turns the first error of the JSON-schema validation into ``config key `<path>`:
<value> is not allowed; expected <what the schema allows there>``, the allowed set written out
from the schema itself (:func:`describe`: type, range, enum members, list and mapping shapes),
so a key added to ``config/schema.yaml`` gets its message without code here. A ``oneOf`` (an
architecture, a value-or-sweep, ``burn_in``'s integer or ``auto``) reports the error of the
branch the value was meant for: the one whose ``type`` key lists the value's ``type`` (an unknown
``type`` lists the known ones), else the one that admits the value's own JSON type; a value no
branch admits gets all the alternatives. Numbers must be finite everywhere (:data:`TYPE_CHECKER`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

import jsonschema
import yaml

_BASE = jsonschema.Draft202012Validator.TYPE_CHECKER

#: JSON-schema types with ``number`` restricted to finite values: NaN and ±inf are refused at
#: every numeric key (YAML reads ``.nan``, ``.inf`` as floats).
TYPE_CHECKER = _BASE.redefine(
    "number", lambda checker, value: _BASE.is_type(value, "number") and math.isfinite(value)
)
_ALTERNATIVES = ("oneOf", "anyOf")
_LONGEST_VALUE = 80


def key(path: Sequence) -> str:
    return ".".join(str(p) for p in path) or "<config>"


def show(value) -> str:
    """A config value as YAML writes it: "fast" (quoted), -0.1, .nan, [0, 0], null."""
    if isinstance(value, str):
        return json.dumps(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= _LONGEST_VALUE else text[: _LONGEST_VALUE - 1] + "…"


def _plain(value) -> str:
    return value if isinstance(value, str) else show(value)


def merged(base: Mapping, extra: Mapping) -> dict:
    """``base`` updated by ``extra``, nested mappings (``items``, ``properties``) merged too."""
    out = dict(base)
    for name, value in extra.items():
        both = isinstance(out.get(name), Mapping) and isinstance(value, Mapping)
        out[name] = merged(out[name], value) if both else value
    return out


def resolved(node: Mapping, root: Mapping) -> dict:
    """``node`` with its ``$ref`` target merged in (the node's own keys win)."""
    while "$ref" in node:
        target = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = merged(target, {k: v for k, v in node.items() if k != "$ref"})
    return dict(node)


def alternatives(node: Mapping, root: Mapping) -> list[dict]:
    """The branches of a ``oneOf``/``anyOf`` node, each narrowed by the node's own constraints
    (e.g. a range beside a ``$ref`` to a value-or-sweep, which wins over the branch's own)."""
    shared = {k: v for k, v in node.items() if k not in (*_ALTERNATIVES, "description", "default")}
    branches = next((node[k] for k in _ALTERNATIVES if k in node), [])
    return [merged(resolved(branch, root), shared) for branch in branches]


def json_types(value) -> set[str]:
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return {"integer", "number"}
    names = {float: "number", str: "string", list: "array", dict: "object", type(None): "null"}
    return {name for kind, name in names.items() if isinstance(value, kind)}


def admitted_types(branch: Mapping) -> set[str]:
    if "const" in branch:
        return json_types(branch["const"])
    if "enum" in branch:
        return set().union(*map(json_types, branch["enum"]))
    kinds = branch.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def _type_names(branch: Mapping) -> list:
    return branch.get("properties", {}).get("type", {}).get("enum", [])


def chosen_branch(branches: Sequence[Mapping], value) -> int | None:
    """The branch ``value`` was meant for: by its ``type`` key where the branches have one (the
    branch sharing most of the value's keys among several), else by its JSON type; None if no
    branch or several fit."""
    fits = [i for i, b in enumerate(branches) if json_types(value) & admitted_types(b)]
    if isinstance(value, Mapping) and any(_type_names(b) for b in branches):
        fits = [i for i in fits if value.get("type") in _type_names(branches[i])]
        fits = sorted(fits, key=lambda i: len(set(value) - set(branches[i]["properties"])))[:1]
    return fits[0] if len(fits) == 1 else None


def _narrowed(node: dict, value, root: Mapping) -> dict:
    if not any(k in node for k in _ALTERNATIVES):
        return node
    branches = alternatives(node, root)
    index = chosen_branch(branches, value)
    return node if index is None else branches[index]


def _child(node: Mapping, part) -> Mapping | None:
    if isinstance(part, int):
        return node.get("items")
    if part in node.get("properties", {}):
        return node["properties"][part]
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def schema_at(root: Mapping, config, path: Sequence) -> dict | None:
    """The schema of the key at ``path`` of ``config``, through $refs and the chosen branches."""
    node, value = resolved(root, root), config
    for part in path:
        child = _child(_narrowed(node, value, root), part)
        if child is None:
            return None
        node = resolved(child, root)
        value = value[part] if _has(value, part) else None
    return node


def _has(value, part) -> bool:
    if isinstance(part, int):
        return isinstance(value, list) and part < len(value)
    return isinstance(value, Mapping) and part in value


def describe(node: Mapping, root: Mapping) -> str:
    """What ``node`` allows, in words: "a finite number in [0, 1)", "one of sgd, ngd"..."""
    node = resolved(node, root)
    if any(k in node for k in _ALTERNATIVES):
        return ", or ".join(describe(branch, root) for branch in alternatives(node, root))
    if "const" in node:
        return _plain(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(map(_plain, node["enum"]))
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return " or ".join(_DESCRIBE[kind](node, root) for kind in kinds) or "a value"


def _range(node: Mapping) -> str:
    low = ("[", node["minimum"]) if "minimum" in node else None
    low = ("(", node["exclusiveMinimum"]) if "exclusiveMinimum" in node else low
    high = (node["maximum"], "]") if "maximum" in node else None
    high = (node["exclusiveMaximum"], ")") if "exclusiveMaximum" in node else high
    if low and high:
        text = f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
    elif low:
        text = f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    elif high:
        text = f" {'<=' if high[1] == ']' else '<'} {high[0]}"
    else:
        text = ""
    multiple = node.get("multipleOf")
    return text + (f", a multiple of {multiple}" if multiple else "")


def _array(node: Mapping, root: Mapping) -> str:
    least, most = node.get("minItems", 0), node.get("maxItems")
    if least == most:
        text = f"a list of {least} items"
    elif most is not None:
        text = f"a list of {least} to {most} items"
    else:
        text = {0: "a list", 1: "a non-empty list"}.get(least, f"a list of {least} or more items")
    text += " of distinct values" if node.get("uniqueItems") else ""
    return text + (f", each {describe(node['items'], root)}" if "items" in node else "")


def _object(node: Mapping, root: Mapping) -> str:
    text = "a non-empty mapping" if node.get("minProperties") else "a mapping"
    if node.get("properties"):
        return f"{text} with keys {', '.join(node['properties'])}"
    return f"{text} of names to settings"


_DESCRIBE = {
    "integer": lambda node, root: "an integer" + _range(node),
    "number": lambda node, root: "a finite number" + _range(node),
    "string": lambda node, root: (
        "a string" + (f" matching {node['pattern']}" if "pattern" in node else "")
    ),
    "boolean": lambda node, root: "true or false",
    "null": lambda node, root: "null",
    "array": _array,
    "object": _object,
}


def explain(error: jsonschema.ValidationError, root: Mapping, config) -> str:
    """One message for ``error``: the key path, the value and what is allowed there."""
    path = list(error.absolute_path)
    if error.validator in _ALTERNATIVES:
        inner = _branch_error(error, root)
        if isinstance(inner, str):
            return inner
        if inner is not None and (list(inner.absolute_path) != path or inner.validator in _NAMED):
            return explain(inner, root, config)
    if "propertyNames" in error.relative_schema_path:
        where = key([*path, error.instance])
        pattern = error.schema["pattern"]
        return f"config key `{where}`: the name is not allowed; expected a name matching {pattern}"
    if error.validator in _NAMED:
        return _NAMED[error.validator](error, root, config, path)
    allowed = describe(schema_at(root, config, path) or error.schema, root)
    return f"config key `{key(path)}`: {show(error.instance)} is not allowed; expected {allowed}"


def _branch_error(error, root: Mapping):
    """The first error of the branch the value was meant for; a message for an unknown
    ``type``; None when no branch is the one."""
    branches = alternatives(error.schema, root)
    value = error.instance
    known = list(dict.fromkeys(name for branch in branches for name in _type_names(branch)))
    if isinstance(value, Mapping) and known and value.get("type") not in known:
        where, expected = key([*error.absolute_path, "type"]), ", ".join(known)
        if "type" not in value:
            return f"config key `{where}` is missing; expected one of {expected}"
        got = show(value["type"])
        return f"config key `{where}`: {got} is not a known type; expected one of {expected}"
    index = chosen_branch(branches, value)
    inner = [e for e in error.context if e.relative_schema_path[0] == index]
    return min(inner, key=lambda e: [str(p) for p in e.absolute_path], default=None)


def _missing(error, root, config, path) -> str:
    name = next(n for n in error.validator_value if n not in error.instance)
    allowed = describe(schema_at(root, config, [*path, name]) or {}, root)
    return f"config key `{key([*path, name])}` is missing; expected {allowed}"


def _unknown(error, root, config, path) -> str:
    known = error.schema.get("properties", {})
    patterns = list(error.schema.get("patternProperties", {}))
    name = next(n for n in error.instance if n not in known and not _matches_any(n, patterns))
    allowed = ", ".join(known) + "".join(f", or a name matching {p}" for p in patterns)
    return f"config key `{key([*path, name])}` is unknown; expected one of the keys {allowed}"


def _matches_any(name: str, patterns: Sequence[str]) -> bool:
    return any(re.search(pattern, name) for pattern in patterns)


_NAMED = {"required": _missing, "additionalProperties": _unknown}
