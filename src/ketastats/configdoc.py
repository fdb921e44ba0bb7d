"""The configuration reference, ``config/README.md``, generated from the config schema.

Every key of ``config/config.yaml`` is described once, in the schema
(``src/ketastats/data/config.schema.yaml``, which ``config/schema.yaml`` links to); this module
turns the schema into a readable Markdown reference: one table per level with each key's
type, whether it is required, its default and allowed values, and its description. Model
specifications also list the defaults of each kind (:data:`ketastats.models.specs.KIND_DEFAULTS`).

Regenerate it after editing the schema (``tests/test_config_doc.py`` fails until you do)::

    ketastats config-doc > config/README.md        # or: python -m ketastats.configdoc > ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

__all__ = ["COMMAND", "schema_markdown", "undocumented", "main"]

#: the command that regenerates config/README.md
COMMAND = "ketastats config-doc > config/README.md"

#: placeholder written for the user-chosen names of a mapping, by the mapping's key
_NAMES = {
    "cohorts": "<cohort>",
    "models": "<model>",
    "recovery": "<cohort>",
    "columns": "<column>",
    "recode": "<column>",
}

#: defaults the code fills in that a literal schema default cannot express
_DEFAULT_NOTES = {
    "model_spec.label": "the model's name, `_` read as spaces",
    "cohorts.format": "from the file extension",
    "cohorts.sheet": "the first sheet",
    "cohorts.redcap_session_forms": "repeating instruments, and forms filled in at more than one event",
}


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``node`` with its ``$ref`` merged in (the node's own keys win), and the $defs name."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is None:
        return node, None
    name = ref.rsplit("/", 1)[-1]
    target, _ = _resolve(root["$defs"][name], root)
    return {**target, **node}, name


def _is_record(node: Mapping[str, Any]) -> bool:
    """An object with named keys (a table of its own)."""
    return "properties" in node


def _map_values(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of a mapping's values, when ``node`` is a mapping of user-chosen names."""
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, Mapping) and "properties" not in node else None


def _yaml(value: Any) -> str:
    """``value`` as YAML flow text in a code span (``null``, ``true``, ``[a, b]``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[:-3].strip()
    return f"`{text}`"


def _cell(text: str) -> str:
    """One table cell: on one line, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _text(description: str) -> str:
    """A schema description as Markdown prose: ``<`` outside code spans escaped (not an HTML tag)."""
    parts = _cell(description).split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


_TYPE_WORDS = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
    "array": "list",
    "object": "mapping",
}


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class _Doc:
    def __init__(self, root: Mapping[str, Any]):
        from .models.specs import COMMON_DEFAULTS, DEFAULT_ESTIMANDS, KIND_DEFAULTS, KINDS

        self.root = root
        self.common = COMMON_DEFAULTS
        self.kinds = {k: KIND_DEFAULTS[k] for k in KINDS}
        self.estimand_defaults = DEFAULT_ESTIMANDS
        # A record defined under $defs is documented once, at the top-level key that uses it.
        self.home: dict[str, str] = {}
        for key, prop in root["properties"].items():
            for node in (prop, prop.get("additionalProperties")):
                if isinstance(node, Mapping) and "$ref" in node:
                    name = node["$ref"].rsplit("/", 1)[-1]
                    if _is_record(_resolve(node, root)[0]):
                        self.home.setdefault(name, key)

    # ------------------------------------------------------------------ cells
    def type_of(self, node: Mapping[str, Any], hint: str = "name") -> str:
        """``node``'s type in words; ``hint`` names the keys when it is a mapping."""
        node, ref = _resolve(node, self.root)
        if ref in self.home:
            return f"mapping (see [{self.home[ref]}](#{self.home[ref]}))"
        if "enum" in node:
            kinds = []
            for v in node["enum"]:
                word = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(v), "null")
                if word not in kinds:
                    kinds.append(word)
            return _or(kinds)
        types = node.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        words = []
        for t in types:
            if t == "array":
                item = self.type_of(node.get("items") or {})
                words.append(f"list of {item}s" if item in _TYPE_WORDS.values() else f"list of {item}")
            elif t == "object" and _map_values(node) is not None:
                words.append(f"mapping: {hint} → {self.type_of(_map_values(node), 'value')}")
            else:
                words.append(_TYPE_WORDS.get(t, t))
        return _or(words) if words else "any"

    def allowed(self, node: Mapping[str, Any]) -> str:
        node, ref = _resolve(node, self.root)
        parts = []
        if "enum" in node:
            parts.append(", ".join(_yaml(v) for v in node["enum"]))
        lo, hi = node.get("minimum"), node.get("maximum")
        xlo, xhi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
        if xlo is not None and xhi is not None:
            parts.append(f"{xlo} < x < {xhi}")
        elif lo is not None and hi is not None:
            parts.append(f"{lo} to {hi}")
        else:
            for value, sign in ((lo, "≥"), (hi, "≤"), (xlo, ">"), (xhi, "<")):
                if value is not None:
                    parts.append(f"{sign} {value}")
        if node.get("minLength"):
            parts.append("not empty")
        if node.get("minItems"):
            parts.append(f"at least {node['minItems']} items")
        if node.get("minProperties"):
            parts.append(f"at least {node['minProperties']} entries")
        items = node.get("items")
        if isinstance(items, Mapping) and "enum" in _resolve(items, self.root)[0]:
            parts.append("each one of " + self.allowed(items))
        return "; ".join(parts)

    def default(self, where: str, key: str, node: Mapping[str, Any]) -> str:
        node, _ = _resolve(node, self.root)
        note = _DEFAULT_NOTES.get(f"{where}.{key}")
        if note:
            return note
        if "default" in node:
            return _yaml(node["default"])
        if where == "model_spec":
            values = {k: d.get(key, self.common.get(key, ...)) for k, d in self.kinds.items()}
            values = {k: v for k, v in values.items() if v is not ...}
            if not values:
                return ""
            if len({_yaml(v) for v in values.values()}) == 1 and len(values) == len(self.kinds):
                return _yaml(next(iter(values.values())))
            return "by kind (below)"
        if where == "estimands" and key in self.estimand_defaults:
            return _yaml(self.estimand_defaults[key])
        return ""

    # ------------------------------------------------------------------ blocks
    def table(self, where: str, node: Mapping[str, Any], path: str) -> list[str]:
        """One row per key of the record ``node`` (documented at ``path``)."""
        required = set(node.get("required") or [])
        lines = [
            "| key | type | required | default | allowed values | description |",
            "|---|---|---|---|---|---|",
        ]
        for key, prop in node["properties"].items():
            resolved, ref = _resolve(prop, self.root)
            desc = _text(resolved.get("description", ""))
            if _is_record(resolved) and ref not in self.home:
                desc += f" See [`{path}.{key}`](#{_anchor(f'{path}.{key}')})."
            lines.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        f"`{key}`",
                        self.type_of(prop, _NAMES.get(key, "<name>").strip("<>")),
                        "yes" if key in required else "",
                        self.default(where, key, prop),
                        self.allowed(prop),
                        desc.strip(),
                    )
                )
                + " |"
            )
        return lines

    def record(self, where: str, node: Mapping[str, Any], path: str, level: int) -> Iterator[str]:
        """The table of ``node`` and a subsection for each nested record it holds."""
        yield from self.table(where, node, path)
        yield ""
        for key, prop in node["properties"].items():
            resolved, ref = _resolve(prop, self.root)
            if _is_record(resolved) and ref not in self.home:
                sub = f"{path}.{key}"
                yield f"{'#' * level} `{sub}`"
                yield ""
                if resolved.get("description"):
                    yield _text(resolved["description"])
                    yield ""
                yield from self.record(f"{where}.{key}", resolved, sub, level + 1)

    def section(self, key: str, prop: Mapping[str, Any]) -> Iterator[str]:
        node, ref = _resolve(prop, self.root)
        yield f"## {key}"
        yield ""
        if node.get("description"):
            yield _text(node["description"])
            yield ""
        values = _map_values(node)
        if values is not None:
            name = _NAMES.get(key, "<name>")
            names = (node.get("propertyNames") or {}).get("pattern")
            count = f"at least {node['minProperties']}" if node.get("minProperties") else "any number"
            rule = f" (a name matches `{names}`)" if names else ""
            yield f"One entry `{key}.{name}` per {name.strip('<>')}, {count}{rule}."
            yield ""
            values, ref = _resolve(values, self.root)
            where, path = (ref or key), f"{key}.{name}"
        else:
            where, path = (ref or key), key
        if _is_record(node if values is None else values):
            record = node if values is None else values
            yield from self.record(where, record, path, 3)
        if where == "model_spec":
            yield from self.kind_defaults()

    def kind_defaults(self) -> Iterator[str]:
        yield "### Defaults of each kind"
        yield ""
        yield (
            "A field a specification leaves out takes its kind's default (ketastats.models.specs): "
            "the kind's own, listed here, else the one in the table above."
        )
        yield ""
        for kind, defaults in self.kinds.items():
            own = {k: v for k, v in defaults.items() if k not in self.common or v != self.common[k]}
            items = ", ".join(f"`{k}: {_yaml(v).strip('`')}`" for k, v in own.items())
            yield f"- `{kind}`: {items or '(the common defaults only)'}"
        yield ""


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (lower case, punctuation but - and _ dropped)."""
    text = heading.strip().lower()
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def schema_markdown(sch: Mapping[str, Any] | None = None) -> str:
    """``config/README.md``: the configuration reference generated from the schema."""
    if sch is None:
        from .config import schema

        sch = schema()
    doc = _Doc(sch)
    top = sch["properties"]
    required = set(sch.get("required") or [])
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated from config/schema.yaml by `{COMMAND}`; edit the schema, not this file. -->",
        "",
        "The workflow reads [`config/config.yaml`](config.yaml), a complete example with a comment on every "
        "setting: the bundled demo cohort, the estimands, every model of the analysis, a recovery study and "
        "the report settings. Copy it and edit. Before any job runs, the config is checked against "
        "[`config/schema.yaml`](schema.yaml) (JSON Schema; its descriptions are this page) and against "
        "cross-field rules, and every problem is named by its key, e.g. `cohorts.site_a.formatt: unknown key "
        "'formatt'. Did you mean 'format'?`. Paths are relative to the project root.",
        "",
        "Keys written `<cohort>`, `<model>` or `<name>` are names you choose.",
        "",
        "| key | required | description |",
        "|---|---|---|",
    ]
    for key, prop in top.items():
        desc = _resolve(prop, sch)[0].get("description", "")
        lines.append(f"| [`{key}`](#{key}) | {'yes' if key in required else ''} | {_text(desc)} |")
    lines.append("")
    for key, prop in top.items():
        lines += list(doc.section(key, prop))
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def undocumented(sch: Mapping[str, Any] | None = None) -> list[str]:
    """Dotted paths of the schema's keys that have no description (should be none)."""
    if sch is None:
        from .config import schema

        sch = schema()
    missing: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, prop in (node.get("properties") or {}).items():
                where = f"{path}.{key}" if path else key
                if not _resolve(prop, sch)[0].get("description"):
                    missing.append(where)
                walk(prop, where)
            extra = node.get("additionalProperties")
            if isinstance(extra, Mapping):
                walk(extra, f"{path}.<name>")
            for name, sub in (node.get("$defs") or {}).items():
                walk(sub, f"$defs.{name}")

    walk(sch, "")
    return missing


def main(argv: list[str] | None = None) -> int:
    """``python -m ketastats.configdoc``: print config/README.md."""
    sys.stdout.write(schema_markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
