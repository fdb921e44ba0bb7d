"""Read the numbers of a SAS PROC MIXED listing (tests/data/mmrm/sas_*.txt) as printed.

Each value is returned with its printed text, so a test can compare at the precision SAS prints:
``decimals`` is the number of digits after the point (0 for an integer such as a df).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NUM = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class Printed:
    value: float
    text: str

    @property
    def decimals(self) -> int:
        return len(self.text.split(".")[1]) if "." in self.text else 0

    @property
    def unit(self) -> float:
        """One unit of the last printed digit."""
        return 10.0 ** (-self.decimals)


def _p(text: str) -> Printed:
    return Printed(float(text), text)


def _lines(path: Path) -> list[str]:
    return [ln.rstrip() for ln in path.read_text().splitlines()]


def _block(lines: list[str], title: str) -> list[str]:
    """Lines after ``title`` up to the next section title of the listing."""
    out: list[str] = []
    inside = False
    enders = ("Fit Statistics", "Type 3 Tests", "Least Squares Means", "Null Model", "Covariance Parameter",
              "Solution for Fixed", "Estimated R", "Iteration History", "Convergence")
    for ln in lines:
        s = ln.strip()
        if s.startswith(title):
            inside = True
            continue
        if inside and any(s.startswith(e) for e in enders) and not s.startswith(title):
            if out:  # a title repeated on the next page continues the block
                if s.startswith(title):
                    continue
                break
        if inside:
            out.append(ln)
    return out


def m2loglik(path: Path) -> Printed:
    """-2 (Res) Log Likelihood of the Fit Statistics, as printed."""
    for ln in _lines(path):
        m = re.search(r"-2 (Res )?Log Likelihood\s+(-?[\d.]+)$", ln.strip())
        if m:
            return _p(m.group(2))
    raise ValueError(f"no -2 log likelihood in {path}")


def last_iteration(path: Path) -> float:
    """The criterion of SAS's last iteration (printed to 8 decimals in the Iteration History)."""
    last = None
    for ln in _block(_lines(path), "Iteration History"):
        toks = ln.split()
        if len(toks) >= 3 and toks[0].isdigit() and _NUM.match(toks[2]):
            last = float(toks[2])
    if last is None:
        raise ValueError(f"no iteration history in {path}")
    return last


def covariance_parameters(path: Path) -> dict[str, Printed]:
    """Cov Parm -> estimate; with a GROUP= effect the key is ``"<level> <parm>"`` (e.g. ``"PBO CS"``)."""
    out: dict[str, Printed] = {}
    for ln in _block(_lines(path), "Covariance Parameter Estimates"):
        toks = ln.split()
        if not toks or toks[0] in ("Cov", "Parm") or "USUBJID" not in toks and toks[0] != "Residual":
            continue
        if toks[0] == "Residual":
            out["Residual"] = _p(toks[1])
            continue
        parm = toks[0]
        rest = toks[2:]
        if rest and rest[0] == "ARMCD":  # group level
            out[f"{rest[1]} {parm}"] = _p(rest[2])
        else:
            out[parm] = _p(rest[0])
    return out


def fixed_effects(path: Path) -> dict[str, dict[str, Printed]]:
    """Solution for Fixed Effects: key = effect and levels joined by spaces (``"AVISIT*ARMCD VIS2 TRT"``),
    value = {estimate, se, df}; rows SAS sets to zero (reference levels) are left out."""
    out: dict[str, dict[str, Printed]] = {}
    for ln in _block(_lines(path), "Solution for Fixed Effects"):
        fields = [f for f in re.split(r"\s{2,}", ln.strip()) if f]
        if len(fields) < 4 or fields[0] in ("Effect", "Standard"):
            continue
        nums: list[str] = []
        while fields and (_NUM.match(fields[-1]) or fields[-1] in (".", "<.0001")):
            nums.insert(0, fields.pop())
        if len(nums) < 5 or nums[1] == ".":
            continue
        label = " ".join(fields)
        out[label] = {"estimate": _p(nums[0]), "se": _p(nums[1]), "df": _p(nums[2])}
    return out
