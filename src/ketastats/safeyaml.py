"""Read configuration YAML as data, and only as data.

:func:`load_yaml` is PyYAML's safe loader (no Python objects, no code) with three more
refusals, each a :class:`~ketastats.exceptions.ConfigError` that names the file and line:

- a key given twice in one mapping (plain YAML keeps the last one silently, so a second
  ``report:`` block would replace the first without a word);
- aliases that expand to more than :data:`MAX_EXPANDED_NODES` nodes, or refer to
  themselves ("billion laughs": a few lines that expand to billions of values and hang
  whatever walks them, a schema check included);
- a top-level ``__use_yte__`` key, which makes Snakemake evaluate Python code written in
  the file (YTE templating) while it loads the config, before any check.

Merge keys (``<<: *defaults``) keep their YAML meaning: keys they bring in may be
overridden by keys written in the mapping itself.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .exceptions import ConfigError

__all__ = ["MAX_EXPANDED_NODES", "load_yaml", "load_yaml_file"]

#: Most nodes (mappings, lists, values, keys) a document may hold once every alias is
#: expanded. The shipped config has about 600; a bomb of nine nested aliases has 10**9.
MAX_EXPANDED_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(Exception):
    """A document the loader refuses; ``mark`` is where (a yaml Mark or None)."""

    def __init__(self, message: str, mark=None):
        super().__init__(message)
        self.mark = mark


class _DataLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader (libyaml's parser when available) refusing duplicate keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: the base class says so
                    continue
                if first is not None:
                    raise _Refused(
                        f"the key {_show_key(key)} appears twice in the same mapping (first on line "
                        f"{first.start_mark.line + 1}); YAML would silently keep only the last one. "
                        "Merge the two into one.",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _show_key(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_expansion(root: Node, limit: int) -> None:
    """Refuse a node graph that expands to more than ``limit`` nodes or contains a cycle."""
    size: dict[int, int] = {}
    # iterative depth-first walk (a deeply nested document must not overflow the stack)
    stack: list[tuple[Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > limit:
                raise _Refused(
                    f"the aliases (*name) expand the document to more than {limit:,} values; a "
                    "configuration is a few hundred. Write the values out instead of nesting aliases.",
                    node.start_mark,
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Refused("an alias (*name) refers to the value that contains it; remove the loop.",
                           node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused("an alias (*name) refers to the value that contains it; remove the loop.",
                               child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, *, source: str = "<config>", max_nodes: int = MAX_EXPANDED_NODES) -> Any:
    """Parse one YAML (or JSON) document as plain data.

    Parameters
    ----------
    text : str
        The document.
    source : str, default "<config>"
        File name for messages.
    max_nodes : int, default MAX_EXPANDED_NODES
        Most nodes the document may hold with every alias expanded.

    Returns
    -------
    object
        Mappings, lists, strings, numbers, booleans, dates, None (None for an empty text).

    Raises
    ------
    ConfigError
        If the text is not valid YAML, has a key twice in one mapping, expands beyond
        ``max_nodes`` through aliases, contains a self-referring alias, uses a tag that
        builds a Python object, or asks for YTE evaluation (a top-level ``__use_yte__``).

    Examples
    --------
    >>> load_yaml("report: {pdf: true}\\nmodels: {}")
    {'report': {'pdf': True}, 'models': {}}
    >>> load_yaml("report: {pdf: true}\\nreport: {pdf: false}", source="c.yaml")
    Traceback (most recent call last):
    ...
    ketastats.exceptions.ConfigError: c.yaml, line 2: the key 'report' appears twice in the same mapping (first on line 1); YAML would silently keep only the last one. Merge the two into one.
    """
    stream = io.StringIO(text)
    stream.name = source  # marks in messages name the file, not "<unicode string>"
    loader = _DataLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, max_nodes)
        data = loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{source}{_where(exc.mark)}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the document is nested too deeply to be a configuration.") from None
    finally:
        loader.dispose()
    if isinstance(data, dict) and "__use_yte__" in data:
        raise ConfigError(
            f"{source}: the top-level key '__use_yte__' asks Snakemake to evaluate Python code written "
            "in the config (YTE templating). ketastats configs are data only: remove the key and write "
            "the values out."
        )
    return data


def _where(mark) -> str:
    return "" if mark is None else f", line {mark.line + 1}"


def load_yaml_file(
    path: str | os.PathLike, *, max_nodes: int = MAX_EXPANDED_NODES, missing_hint: str = "check the path"
) -> Any:
    """:func:`load_yaml` of a UTF-8 file (a missing or unreadable file is a ConfigError whose
    message ends with ``missing_hint``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} not found; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {str(p)!r} as UTF-8 text ({exc}).") from None
    return load_yaml(text, source=str(p), max_nodes=max_nodes)
