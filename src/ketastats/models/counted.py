"""Text that quotes counts of patients or sessions, kept with the counts themselves.

A skip reason such as "3 patient(s) have both ill and non-ill sessions" is exact in the model
JSON (internal, under ``data/processed``), but in the report it would show a small count. So
model code does not only format counts into strings: it keeps each such text as a template
and its counts (:class:`CountedText`), records it in the model JSON's ``counted_text`` (plain
text -> ``{"text": template, "counts": {...}}``), and the report renders the text again from
the counts after small-cell suppression (:mod:`ketastats.report.suppression`). Text the model
did not record this way (an exception's message, an optimizer's note) is untrusted: the report
withholds every number in it (:func:`mask_numbers`).

Templates name their counts ``{name}``; other braces are doubled (:func:`escape`), so that
labels and column names from the config can be quoted safely.

Examples
--------
>>> t = CountedText(escape("Model {x}") + ": {n} patient(s)", {"n": 3})
>>> str(t)
'Model {x}: 3 patient(s)'
>>> t.render(lambda n: "fewer than 11")
'Model {x}: fewer than 11 patient(s)'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CountedText", "escape", "fill", "remember", "mask_numbers", "NUMBER_WITHHELD"]

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: a number in untrusted text: not part of a name (il6, P001, x2), a version or a date
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?(?![\w])")
#: what a withheld number is shown as
NUMBER_WITHHELD = "#"


def escape(text: str) -> str:
    """``text`` as a template with no fields: its braces doubled."""
    return str(text).replace("{", "{{").replace("}", "}}")


def fill(template: str, counts: Mapping[str, Any], say: Callable[[Any], str] = str) -> str:
    """``template`` with each ``{name}`` replaced by ``say(counts[name])`` and ``{{``, ``}}`` undone.

    Unlike :meth:`str.format` no attribute or index is looked up, whatever the template holds.
    """

    def sub(m: re.Match) -> str:
        if m[0] == "{{":
            return "{"
        if m[0] == "}}":
            return "}"
        return say(counts[m[1]]) if m[1] in counts else m[0]

    return _FIELD.sub(sub, template)


@dataclass(frozen=True)
class CountedText:
    """A text with counts: ``template`` (fields ``{name}``) and ``counts`` (name -> count)."""

    template: str
    counts: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return fill(self.template, self.counts)

    def render(self, say: Callable[[Any], str]) -> str:
        """The text with every count shown as ``say(count)`` says."""
        return fill(self.template, self.counts, say)

    def renamed(self, prefix: str) -> CountedText:
        """The same text with every count's name prefixed (to join texts without clashes)."""

        def sub(m: re.Match) -> str:
            return m[0] if m[1] is None else "{" + prefix + m[1] + "}"

        return CountedText(_FIELD.sub(sub, self.template), {prefix + k: v for k, v in self.counts.items()})

    @staticmethod
    def join(texts: list[CountedText], sep: str) -> CountedText:
        """The texts one after the other, ``sep`` (plain text) between them, counts kept apart."""
        parts = [t.renamed(f"p{i}_") for i, t in enumerate(texts)]
        counts: dict[str, int] = {}
        for p in parts:
            counts.update(p.counts)
        return CountedText(escape(sep).join(p.template for p in parts), counts)

    def prefixed(self, prefix: str) -> CountedText:
        """The same text after ``prefix`` (plain text, escaped here)."""
        return CountedText(escape(prefix) + self.template, dict(self.counts))

    def to_json(self) -> dict[str, Any]:
        return {"text": self.template, "counts": {k: int(v) for k, v in self.counts.items()}}


def remember(out: MutableMapping[str, Any], text: CountedText | str) -> str:
    """Record ``text`` in ``out["counted_text"]`` (when it has a template) and return it as plain text.

    A plain string is recorded as a template without counts: text written by the package
    (numbers in it are settings, not counts), trusted as it is.
    """
    if isinstance(text, str):
        text = CountedText(escape(text))
    plain = str(text)
    out.setdefault("counted_text", {})[plain] = text.to_json()
    return plain


def mask_numbers(text: str) -> str:
    """``text`` with every number that is not part of a name replaced by :data:`NUMBER_WITHHELD`.

    Examples
    --------
    >>> mask_numbers("ModelError: 1105 rows for 3 groups (il6_pg_ml, x2)")
    'ModelError: # rows for # groups (il6_pg_ml, x2)'
    """
    return _NUMBER.sub(NUMBER_WITHHELD, str(text))
