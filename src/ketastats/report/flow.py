"""The data-flow diagram (STROBE item 13c, CONSORT style) as a figure.

Records and patients received, excluded with reasons, and analysed by the primary model,
drawn from ``results["data_flow"]`` alone: every count in it is the value results.json
releases (a number, ``"<11"``, a range such as ``"190-199"`` or ``"suppressed"``), printed as
is; nothing is counted again from the data. The figure's text stays text in its SVG (font
type ``none``), so the SVG can be searched, read by a screen reader and checked against
results.json; the report embeds that SVG.

Each count's line carries an SVG id (``flow-<key>``, ``flow-excluded-<i>``) so that a test or
a reader can find it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

__all__ = ["flow_figure", "flow_lines", "FLOW_RC"]

#: matplotlib settings the flow figure is saved with: text stays text in the SVG
FLOW_RC = {"svg.fonttype": "none"}

_LINE = 0.2  # inches per line of text
_PAD = 0.12  # inches between a box's edge and its text
_WRAP = 50  # characters per line of an exclusion reason


def _n(value: Any) -> str:
    """A released count as the figure prints it: exactly as results.json holds it."""
    return "n/a" if value is None else str(value)


def flow_lines(flow: Mapping[str, Any], unit: str = "session") -> dict[str, list[tuple[str, str, bool]]]:
    """The text of each box: ``box -> [(svg id or "", line, bold)]``.

    Boxes: ``received``, ``excluded`` (one entry per reason, wrapped; the patients without an
    analysed record last) and ``analysed``. Each count is on the first line of its entry.
    """
    records = f"{unit} records"
    excluded: list[tuple[str, str, bool]] = [("", "Excluded from the primary analysis", True)]
    for i, e in enumerate(flow.get("excluded") or []):
        line = f"{_n(e.get('records'))} records: {e.get('reason', '')}"
        wrapped = textwrap.wrap(line, _WRAP, break_on_hyphens=False) or [""]
        excluded.append((f"flow-excluded-{i}", wrapped[0], False))
        excluded += [("", "    " + w, False) for w in wrapped[1:]]
    if len(excluded) == 1:
        excluded.append(("", "no record excluded", False))
    excluded.append(
        (
            "flow-patients_excluded",
            f"{_n(flow.get('patients_excluded'))} patients without any analysed record",
            False,
        )
    )
    return {
        "received": [
            ("", "Received", True),
            ("flow-records_received", f"{_n(flow.get('records_received'))} {records}", False),
            ("flow-patients_received", f"{_n(flow.get('patients_received'))} patients", False),
        ],
        "excluded": excluded,
        "analysed": [
            ("", "Analysed (primary model)", True),
            ("flow-records_analysed", f"{_n(flow.get('records_analysed'))} {records}", False),
            ("flow-patients_analysed", f"{_n(flow.get('patients_analysed'))} patients", False),
        ],
    }


def _box(ax, x0: float, y_top: float, width: float, lines, *, dashed: bool = False) -> float:
    """Draw a box of ``lines`` with its top-left corner at (x0, y_top); return its height."""
    height = 2 * _PAD + _LINE * len(lines)
    ax.add_patch(
        FancyBboxPatch(
            (x0, y_top - height), width, height, boxstyle="round,pad=0,rounding_size=0.05",
            linewidth=1.2 if dashed else 1.6, linestyle="--" if dashed else "-",
            edgecolor="#333333", facecolor="white" if dashed else "#fafafa",
        )
    )  # fmt: skip
    for k, (gid, text, bold) in enumerate(lines):
        t = ax.text(
            x0 + _PAD, y_top - _PAD - (k + 0.5) * _LINE, text, ha="left", va="center",
            fontsize=9, fontweight="bold" if bold else "normal", parse_math=False,
        )  # fmt: skip
        if gid:
            t.set_gid(gid)
    return height


def flow_figure(flow: Mapping[str, Any], *, unit: str = "session") -> Figure:
    """The data-flow diagram: received -> excluded (reasons) -> analysed, counts as released.

    Parameters
    ----------
    flow : mapping
        ``results["data_flow"]``: ``records_received``, ``patients_received``, ``excluded``
        (``reason``, ``records``), ``patients_excluded``, ``records_analysed``,
        ``patients_analysed``.
    unit : str
        What a record is ("session").

    Returns
    -------
    matplotlib.figure.Figure
        With ``ketastats_rc`` (:data:`FLOW_RC`) and ``ketastats_embed = "svg"``, which
        :func:`ketastats.report.figures.save_figure` honours.

    Examples
    --------
    >>> fig = flow_figure({"records_received": 480, "patients_received": 80, "excluded":
    ...     [{"reason": "no outcome rating", "records": "<11"}], "patients_excluded": 0,
    ...     "records_analysed": "470-479", "patients_analysed": 80})
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "flow-records_analysed"]
    ['470-479 session records']
    """
    boxes = flow_lines(flow, unit)
    main_w, side_w, gap_x = 3.0, 4.0, 0.6
    width = main_w + gap_x + side_w + 0.2
    h_main = 2 * _PAD + _LINE * 3
    h_side = 2 * _PAD + _LINE * len(boxes["excluded"])
    middle = max(h_side + 0.5, 0.9)
    height = 0.1 + h_main + middle + h_main + 0.1
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    x_main = 0.1
    top_received = height - 0.1
    _box(ax, x_main, top_received, main_w, boxes["received"])
    top_analysed = 0.1 + h_main
    _box(ax, x_main, top_analysed, main_w, boxes["analysed"])
    # the main arrow, received -> analysed, and the branch to the exclusions
    x_arrow = x_main + main_w / 2
    y_from, y_to = top_received - h_main, top_analysed
    arrow = {"arrowstyle": "-|>", "color": "#333333", "lw": 1.4, "shrinkA": 0, "shrinkB": 0}
    ax.annotate("", xy=(x_arrow, y_to), xytext=(x_arrow, y_from), arrowprops=arrow)
    y_mid = (y_from + y_to) / 2
    x_side = x_main + main_w + gap_x
    ax.annotate("", xy=(x_side, y_mid), xytext=(x_arrow, y_mid), arrowprops=arrow)
    _box(ax, x_side, y_mid + h_side / 2, side_w, boxes["excluded"], dashed=True)
    fig.ketastats_rc = dict(FLOW_RC)
    fig.ketastats_embed = "svg"
    return fig
