"""An attacker of the released report: what can be learnt about small counts from it.

The release is ``results.json`` and the CSV tables beside it (the HTML, PDF and figures are
drawn from ``results.json``). The attacker reads only the release, and knows how the report is
built (which counts add up to which). Each solver returns the leaks it found: a count of 1 to
``threshold`` patients or sessions that the release shows, or that the attacker can compute
from it. A computed count is a leak only if it is right: the solvers' results are checked
against an *oracle*, the same results built without suppression (``threshold 0``, internal).

Solvers (the routes of issue 21):

``direct``
    a count of 1..threshold shown anywhere (results.json, any CSV), including model blocks
    (``fits.*.nobs``, draws, ranges such as ``imputed_ill_ratings_range``).
``additive``
    one unknown in an additive relation (Table 1 rows and columns, illness, cytokines, data
    flow, events + non-events = nobs, per-marker fits adding up to the model), repeated.
``smd``
    SMD inversion: the SMD of a yes/no variable, with the shown totals, solved for the hidden
    cell.
``session_complement``
    per-session n: the patients rated at the first time point taken as the group's size,
    then the other group as the complement of the total.
``mean_denominator``
    a mean of integer ratings shown to full precision reveals its denominator (the hidden
    number of patients rated), and with it the number not rated.
``nobs_differencing``
    nobs of a one-row-per-patient model is its number of patients: the patients it left
    out, and the primary model's patient count, follow.
``between_models``
    the difference between two shown counts of the same unit (sessions: nobs; patients:
    ngroups, nobs of one-row-per-patient models, patients received).
``share``
    a share (``*_fraction``, ``share_*``) times a count of the same block.
``text``
    a count of 1..threshold in free text (skip and failure reasons, messages, sentences).
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

SOLVERS = (
    "direct",
    "additive",
    "smd",
    "session_complement",
    "mean_denominator",
    "nobs_differencing",
    "between_models",
    "share",
    "text",
)

#: keys of model blocks whose integer values are not counts (settings, labels, positions)
NOT_COUNTS = frozenset(
    {
        "seed", "m", "iterations", "donors", "planned_sessions", "n_draws", "n_agq", "max_times",
        "sessions", "days", "delta", "deltas", "min_patients", "min_events", "min_draws",
        "imputations", "threshold", "flag_threshold", "df", "q", "mcid", "level", "n_nodes",
        "session", "day", "degree", "order", "evaluations", "visit", "visits", "max_visits",
    }
)  # fmt: skip
#: subtrees of a model's entry that are configuration, not data
CONFIG_KEYS = frozenset({"spec", "estimands_spec"})

Path_ = tuple  # a path into results.json: keys and list indices


# ------------------------------------------------------------------ helpers
def get(obj: Any, path: Path_) -> Any:
    for p in path:
        try:
            obj = obj[p]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def hidden(v: Any) -> bool:
    return isinstance(v, str)


def small(v: Any, thr: int) -> bool:
    return is_count(v) and 1 <= v <= thr


def walk(obj: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from walk(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, (*path, i))
    else:
        yield path, obj


def _fmt(path: Path_) -> str:
    return ".".join(map(str, path))


class Attack:
    """The attacker's state on one release: what is known, and the leaks found per solver."""

    def __init__(self, results: Mapping[str, Any], oracle: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]):
        self.r = results
        self.o = oracle
        self.tables = tables
        self.thr = int(results["settings"]["small_cell_threshold"])
        self.leaks: dict[str, list[str]] = {s: [] for s in SOLVERS}
        # known values: path -> int (shown counts, then derived ones)
        self.known: dict[Path_, int] = {}
        self.relations: list[tuple[Path_, list[Path_]]] = []
        self._collect()

    # -------------------------------------------------------------- setup
    def truth(self, path: Path_) -> Any:
        return get(self.o, path)

    def _count_paths(self) -> Iterator[Path_]:
        r = self.r
        f = ("data_flow",)
        for k in ("records_received", "patients_received", "records_analysed", "patients_analysed", "patients_excluded"):
            yield (*f, k)
        for i in range(len(r["data_flow"]["excluded"])):
            yield (*f, "excluded", i, "records")
        for k in r["table1"]["n"]:
            yield ("table1", "n", k)
        for i, row in enumerate(r["table1"]["rows"]):
            for k in row["cells"]:
                if row["kind"] == "n_pct":
                    yield ("table1", "rows", i, "cells", k, "n")
                yield ("table1", "rows", i, "missing", k)
        ill = r.get("illness") or {}
        if ill.get("available"):
            for k in ("sessions", "ill_sessions", "patients", "ever_ill", "never_ill"):
                yield ("illness", k)
            for i in range(len(ill["by_type"])):
                yield ("illness", "by_type", i, "sessions")
        for by in ("by_session", "by_day"):
            for i in range(len(r["trajectories"][by])):
                yield ("trajectories", by, i, "n")
        for i in range(len(r["cytokines"])):
            for k in ("measured", "detected", "below_lod"):
                yield ("cytokines", i, k)
        for name in r["models"]:
            yield ("models", name, "nobs")
            yield ("models", name, "ngroups")

    def model_count_paths(self) -> Iterator[Path_]:
        """Integer values of model blocks that are counts (config and settings left out)."""
        for name, m in self.r["models"].items():
            for path, v in walk(m, ("models", name)):
                keys = [p for p in path[2:] if isinstance(p, str)]
                if not keys or set(keys) & CONFIG_KEYS or keys[0] in ("coefficients", "terms", "attempts"):
                    continue
                last = keys[-1]
                if last in NOT_COUNTS or "tipping" in keys and last in ("delta",):
                    continue
                if is_count(v) or (isinstance(v, float) and last in ("imputed_ill_ratings",)):
                    yield path

    def _collect(self) -> None:
        for p in self._count_paths():
            v = get(self.r, p)
            if is_count(v):
                self.known[p] = v
        r = self.r
        # Table 1: levels + missing = N per column; never + ever = overall per cell
        t1 = r["table1"]
        cols = [c["key"] for c in t1["columns"]]
        by_var: dict[str, list[int]] = {}
        for i, row in enumerate(t1["rows"]):
            by_var.setdefault(row["variable"], []).append(i)
        for idx in by_var.values():
            first = idx[0]
            for k in cols:
                if t1["rows"][first]["kind"] == "n_pct":
                    self.relations.append(
                        (
                            ("table1", "n", k),
                            [("table1", "rows", i, "cells", k, "n") for i in idx]
                            + [("table1", "rows", first, "missing", k)],
                        )
                    )
            for i in idx:
                if t1["rows"][i]["kind"] == "n_pct":
                    self.relations.append(
                        (
                            ("table1", "rows", i, "cells", "overall", "n"),
                            [("table1", "rows", i, "cells", "never_ill", "n"), ("table1", "rows", i, "cells", "ever_ill", "n")],
                        )
                    )
            self.relations.append(
                (
                    ("table1", "rows", first, "missing", "overall"),
                    [("table1", "rows", first, "missing", "never_ill"), ("table1", "rows", first, "missing", "ever_ill")],
                )
            )
        self.relations.append((("table1", "n", "overall"), [("table1", "n", "never_ill"), ("table1", "n", "ever_ill")]))
        # the same counts in other sections (identities the attacker assumes, checked by the oracle)
        ill = r.get("illness") or {}
        same = [
            (("illness", "ever_ill"), ("table1", "n", "ever_ill")),
            (("illness", "never_ill"), ("table1", "n", "never_ill")),
            (("illness", "patients"), ("table1", "n", "overall")),
            (("data_flow", "patients_received"), ("table1", "n", "overall")),
            (("data_flow", "records_received"), ("illness", "sessions")),
            (("data_flow", "records_analysed"), ("models", "primary", "nobs")),
            (("data_flow", "patients_analysed"), ("models", "primary", "ngroups")),
        ]
        for a, b in same:
            if get(self.o, a) is not None and get(self.o, a) == get(self.o, b):
                self.relations.append((a, [b]))
        if ill.get("available"):
            self.relations.append((("illness", "patients"), [("illness", "ever_ill"), ("illness", "never_ill")]))
            if ill["by_type"]:
                self.relations.append(
                    (("illness", "ill_sessions"), [("illness", "by_type", i, "sessions") for i in range(len(ill["by_type"]))])
                )
        for i in range(len(r["cytokines"])):
            self.relations.append((("cytokines", i, "measured"), [("cytokines", i, "detected"), ("cytokines", i, "below_lod")]))
        f = r["data_flow"]
        self.relations.append(
            (
                ("data_flow", "records_received"),
                [("data_flow", "excluded", i, "records") for i in range(len(f["excluded"]))] + [("data_flow", "records_analysed")],
            )
        )
        self.relations.append(
            (("data_flow", "patients_received"), [("data_flow", "patients_excluded"), ("data_flow", "patients_analysed")])
        )
        for name, m in r["models"].items():
            base = ("models", name)
            if "events" in m and "non_events" in m:
                self.relations.append(((*base, "nobs"), [(*base, "events"), (*base, "non_events")]))
                for k in ("events", "non_events"):
                    if is_count(m[k]):
                        self.known[(*base, k)] = m[k]
            fits = m.get("fits") or {}
            parts = [(*base, "fits", k, "nobs") for k in fits if isinstance(fits[k], Mapping) and "nobs" in fits[k]]
            if parts and sum(get(self.o, p) or 0 for p in parts) == get(self.o, (*base, "nobs")):
                self.relations.append(((*base, "nobs"), parts))
                for p in parts:
                    if is_count(get(self.r, p)):
                        self.known[p] = get(self.r, p)

    # ------------------------------------------------------------ leaks
    def _leak(self, solver: str, what: str) -> None:
        if what not in self.leaks[solver]:
            self.leaks[solver].append(what)

    def learn(self, solver: str, path: Path_, value: int, *, truth: int | None = None) -> bool:
        """Record a derived value; a right one of 1..threshold that the release hides is a leak."""
        right = (self.truth(path) if truth is None else truth) == value
        if not right:
            return False
        if path not in self.known:
            self.known[path] = value
            if 1 <= value <= self.thr:
                self._leak(solver, f"{_fmt(path)} = {value}")
            return True
        return False

    def propagate(self, solver: str) -> None:
        changed = True
        while changed:
            changed = False
            for total, parts in self.relations:
                members = [total, *parts]
                unknown = [p for p in members if p not in self.known]
                if len(unknown) != 1:
                    continue
                u = unknown[0]
                if u == total:
                    v = sum(self.known[p] for p in parts)
                else:
                    v = self.known[total] - sum(self.known[p] for p in parts if p != u)
                if self.learn(solver, u, v):
                    changed = True

    # ------------------------------------------------------------ solvers
    def direct(self) -> None:
        for p, v in self.known.items():
            if small(v, self.thr):
                self._leak("direct", f"{_fmt(p)} = {v}")
        for p in self.model_count_paths():
            v = get(self.r, p)
            if (is_count(v) or isinstance(v, float)) and 0 < v <= self.thr:
                self._leak("direct", f"{_fmt(p)} = {v}")
        count_cols = re.compile(r"^(n|records|patients|measured|detected|below_lod|Never ill|Ever ill|Overall|Missing: .*)$")
        for name, df in self.tables.items():
            if name == "suppression":
                continue
            for col in df.columns:
                if not count_cols.match(str(col)):
                    continue
                for i, v in enumerate(df[col].tolist()):
                    m = re.fullmatch(r"\s*(\d+)(?:\s*\(.*\))?\s*", str(v))
                    if m and 1 <= int(m[1]) <= self.thr:
                        self._leak("direct", f"tables/{name}.csv row {i} column {col} = {m[1]}")

    def additive(self) -> None:
        self.propagate("additive")

    def smd(self) -> None:
        t1 = self.r["table1"]
        rows = t1["rows"]
        for var in dict.fromkeys(r["variable"] for r in rows):
            idx = [i for i, r in enumerate(rows) if r["variable"] == var]
            if rows[idx[0]]["kind"] != "n_pct" or len(idx) != 2:
                continue
            # the SMD to full precision (results.json), else as tables/table1.csv rounds it
            smd, tol = rows[idx[0]]["smd"], 1e-9
            csv = self.tables.get("table1")
            if smd is None and csv is not None:
                shown = [v for v in csv.loc[csv["variable"] == rows[idx[0]]["label"], "SMD"] if v.strip()]
                smd, tol = (float(shown[0]), 0.005 + 1e-9) if shown else (None, 0)
            if smd is None:
                continue
            cell = {(i, k): ("table1", "rows", i, "cells", k, "n") for i in idx for k in ("never_ill", "ever_ill", "overall")}
            if all(cell[c] in self.known for c in cell):
                continue
            need = [
                ("table1", "n", "never_ill"), ("table1", "n", "ever_ill"),
                ("table1", "rows", idx[0], "missing", "never_ill"), ("table1", "rows", idx[0], "missing", "ever_ill"),
            ]  # fmt: skip
            lv2_total = cell[(idx[1], "overall")]
            if not all(p in self.known for p in need) or lv2_total not in self.known:
                continue
            n0 = self.known[need[0]] - self.known[need[2]]
            n1 = self.known[need[1]] - self.known[need[3]]
            total = self.known[lv2_total]
            fits = []
            for x in range(0, min(n1, total) + 1):
                if total - x > n0:
                    continue
                s = smd_binary(x / n1, (total - x) / n0) if n0 and n1 else None
                if s is not None and abs(s - smd) <= tol:
                    fits.append(x)
            if len(fits) == 1:
                x = fits[0]
                self.learn("smd", cell[(idx[1], "ever_ill")], x)
                self.learn("smd", cell[(idx[1], "never_ill")], total - x)
                self.propagate("smd")

    def session_complement(self) -> None:
        for by in ("by_session", "by_day"):
            rows = self.r["trajectories"][by]
            key = "session" if by == "by_session" else "day"
            for flag, group in ((0, "never_ill"), (1, "ever_ill")):
                pts = [(r[key], i) for i, r in enumerate(rows) if r["ever_ill"] == flag]
                if not pts:
                    continue
                first = min(pts)[1]
                p = ("trajectories", by, first, "n")
                if p in self.known:
                    # everyone is rated at the first time point: the group's size
                    self.learn("session_complement", ("table1", "n", group), self.known[p])
        self.propagate("session_complement")

    def mean_denominator(self) -> None:
        rows = self.r["trajectories"]["by_session"]
        for i, row in enumerate(rows):
            p = ("trajectories", "by_session", i, "n")
            if p in self.known or row.get("mean") is None:
                continue
            group = "never_ill" if row["ever_ill"] == 0 else "ever_ill"
            top = self.known.get(("table1", "n", group)) or self.known.get(("table1", "n", "overall")) or 1000
            m = float(row["mean"])
            cands = [n for n in range(1, top + 1) if abs(m * n - round(m * n)) < 1e-7 * n]
            # the smallest denominator of a reduced fraction, and its multiples up to the group size
            frac = Fraction(m).limit_denominator(top)
            if abs(float(frac) - m) > 1e-9:
                continue
            cands = [n for n in cands if n % frac.denominator == 0]
            if len(cands) == 1:
                if self.learn("mean_denominator", p, cands[0]):
                    g = ("table1", "n", group)
                    if g in self.known:
                        notrated = self.known[g] - cands[0]
                        if 1 <= notrated <= self.thr:
                            self._leak("mean_denominator", f"{group} not rated at session {row['session']} = {notrated}")
        self.propagate("mean_denominator")

    def nobs_differencing(self) -> None:
        received = self.known.get(("data_flow", "patients_received"))
        for name, m in self.r["models"].items():
            if (m.get("spec") or {}).get("level") != "end" or not is_count(m.get("nobs")):
                continue
            n = m["nobs"]
            self.learn("nobs_differencing", ("models", name, "ngroups"), n)
            if received is not None and 1 <= received - n <= self.thr:
                self._leak("nobs_differencing", f"patients left out by {name} = {received - n}")
            # the same patients as the primary model (a guess, checked by the oracle)
            self.learn("nobs_differencing", ("models", "primary", "ngroups"), n)
        self.propagate("nobs_differencing")

    def between_models(self) -> None:
        sessions, patients = {}, {}
        f = self.r["data_flow"]
        for k in ("records_received",):
            if is_count(f[k]):
                sessions[f"data_flow.{k}"] = f[k]
        if is_count(f["patients_received"]):
            patients["data_flow.patients_received"] = f["patients_received"]
        for name, m in self.r["models"].items():
            one_row = (m.get("spec") or {}).get("level") == "end"
            if is_count(m.get("nobs")):
                (patients if one_row else sessions)[f"{name}.nobs"] = m["nobs"]
            if is_count(m.get("ngroups")):
                patients[f"{name}.ngroups"] = m["ngroups"]
            for part, fit in (m.get("fits") or {}).items():
                if isinstance(fit, Mapping):
                    if is_count(fit.get("nobs")):
                        sessions[f"{name}.fits.{part}.nobs"] = fit["nobs"]
                    if is_count(fit.get("ngroups")):
                        patients[f"{name}.fits.{part}.ngroups"] = fit["ngroups"]
        for unit in (sessions, patients):
            for (a, x), (b, y) in itertools.combinations(sorted(unit.items()), 2):
                if 1 <= abs(x - y) <= self.thr:
                    self._leak("between_models", f"{a} - {b} = {abs(x - y)}")

    def share(self) -> None:
        # a percentage shown for a hidden count, times its shown denominator
        r = self.r
        pcts = []
        if (r.get("illness") or {}).get("available"):
            pcts += [
                (("illness", "ever_ill_pct"), ("illness", "ever_ill"), [("illness", "patients")]),
                (("illness", "ill_sessions_pct"), ("illness", "ill_sessions"), [("illness", "sessions")]),
            ]
        for i in range(len(r["cytokines"])):
            pcts.append((("cytokines", i, "below_lod_pct"), ("cytokines", i, "below_lod"), [("cytokines", i, "measured")]))
        for i, row in enumerate(r["table1"]["rows"]):
            if row["kind"] == "n_pct":
                for k in row["cells"]:
                    pcts.append(
                        (
                            ("table1", "rows", i, "cells", k, "pct"),
                            ("table1", "rows", i, "cells", k, "n"),
                            [("table1", "n", k), ("table1", "rows", i, "missing", k)],
                        )
                    )
        for pct_path, count_path, denom in pcts:
            pct = get(r, pct_path)
            if pct is None or isinstance(pct, str) or count_path in self.known:
                continue
            if not all(d in self.known for d in denom):
                continue
            base = self.known[denom[0]] - sum(self.known[d] for d in denom[1:])
            x = pct * base / 100
            if abs(x - round(x)) < 1e-6:
                self.learn("share", count_path, round(x))
        self.propagate("share")
        for name, m in self.r["models"].items():
            for path, v in walk(m, ("models", name)):
                if not path or not isinstance(path[-1], str) or CONFIG_KEYS & set(map(str, path)):
                    continue
                key = path[-1]
                if not (key.endswith("_fraction") or key.startswith("share_")) or not isinstance(v, float):
                    continue
                block = get(self.r, path[:-1])
                for k, c in block.items():
                    if is_count(c) and k not in NOT_COUNTS and c > 0:
                        x = v * c
                        if abs(x - round(x)) < 1e-6 and 1 <= round(x) <= self.thr:
                            self._leak("share", f"{_fmt(path)} x {k} = {round(x)}")

    def text(self) -> None:
        pattern = re.compile(
            r"(?<![\w.\-/])([0-9]+)\s+(?:(?:ill|non-ill|analysed|usable|rated|observed|imputed|more|fewer|other)\s+){0,2}"
            r"(patient|session|draw|event|non-event|row|group|rating|observation|record)",
            re.IGNORECASE,
        )
        texts: list[tuple[str, str]] = []
        for name, m in self.r["models"].items():
            for path, v in walk({k: m.get(k) for k in ("reason", "messages", "skipped_parts", "censoring_flags", "attempts")}, ("models", name)):
                if isinstance(v, str):
                    texts.append((_fmt(path), v))
        for i, s in enumerate(self.r.get("summary") or []):
            texts.append((f"summary.{i}", s))
        for i, s in enumerate((self.r.get("methods") or {}).get("paragraphs") or []):
            texts.append((f"methods.{i}", s))
        for path, v in walk(self.r.get("sensitivity") or {}, ("sensitivity",)):
            if isinstance(v, str):
                texts.append((_fmt(path), v))
        for where, s in texts:
            for mt in pattern.finditer(s):
                if 1 <= int(mt[1]) <= self.thr:
                    self._leak("text", f"{where}: {mt[0]!r}")

    def run(self) -> dict[str, list[str]]:
        self.direct()
        self.additive()
        self.smd()
        self.session_complement()
        self.mean_denominator()
        self.nobs_differencing()
        self.additive()
        self.between_models()
        self.share()
        self.text()
        return self.leaks


def smd_binary(p1: float, p0: float) -> float | None:
    """|p1 - p0| / sqrt((p1 (1 - p1) + p0 (1 - p0)) / 2), as Table 1 computes it."""
    v = (p1 * (1 - p1) + p0 * (1 - p0)) / 2
    if v <= 0:
        return 0.0 if p1 == p0 else None
    return abs(p1 - p0) / math.sqrt(v)


def read_tables(directory: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(Path(directory).glob("*.csv"))}


def tables_of(results: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The CSV tables of a release, as written (``write_tables``) and read back as text."""
    from ketastats.report.render import _tables

    out = {}
    for name, df in _tables(results).items():
        out[name] = pd.read_csv(io.StringIO(df.to_csv(index=False)), dtype=str, keep_default_na=False)
    return out


def attack(results: Mapping[str, Any], oracle: Mapping[str, Any], tables: Mapping[str, pd.DataFrame] | None = None):
    return Attack(results, oracle, tables if tables is not None else tables_of(results)).run()


# ----------------------------------------------------------------- cohorts
#: the models the attacked cohorts fit: one of each kind whose counts the report shows
ATTACK_MODELS = (
    "primary",
    "exclude_acute",
    "complete_case",
    "response_end",
    "illness_slopes",
    "cytokine_illness_lod",
    "mediation_il6",
    "tipping_point",
)


@functools.cache
def demo_raw(patients: int = 200) -> pd.DataFrame:
    """The shipped demo cohort's input (seed and scenario of config/config.yaml)."""
    from ketastats.simulate import simulate_cohort

    return simulate_cohort(patients, seed=20261125, scenario="sickness").sessions


def with_ill_patients(raw: pd.DataFrame, n_ill: int) -> pd.DataFrame:
    """``raw`` with acute illness kept for its first ``n_ill`` ever-ill patients only."""
    ill = pd.to_numeric(raw["ill"], errors="coerce").fillna(0) > 0
    ever = sorted(raw.loc[ill, "patient_id"].unique())
    assert len(ever) >= n_ill
    drop = raw["patient_id"].isin(ever[n_ill:]) & ill
    out = raw.copy()
    out.loc[drop, "ill"] = 0
    for col in ("illness_type", "illness_severity", "days_since_onset"):
        if col in out:
            out.loc[drop, col] = None
    for col in ("nsaid", "antibiotic", "steroid", "antipyretic"):
        if col in out:
            out.loc[drop, col] = 0
    return out


def attack_config() -> dict:
    """The tiny test config (tests/config/tiny.yaml over config/config.yaml), checked, with the
    imputation-based models made cheaper still."""
    from conftest import tiny_config

    from ketastats.config import check_config

    cfg = tiny_config()
    cfg["models"]["tipping_point"].update(imputations=2, iterations=2)
    cfg["models"]["illness_slopes"]["min_patients"] = 10  # shipped value: fewer patients, a skip with the count
    cfg["report"]["pdf"] = False
    return check_config(cfg)


def build_release(root: Path, raw: pd.DataFrame, models=ATTACK_MODELS, *, threshold: int = 10) -> dict:
    """The demo cohort's release built in-process from ``raw``: typed, prepared, the models
    fitted, results.json (and the oracle: the same without suppression) and tables."""
    import json

    from ketastats.config import cohort_estimands, model_spec
    from ketastats.io import read_cohort, sha256_file
    from ketastats.pipeline import step_fit
    from ketastats.prepare import prepare_sessions
    from ketastats.report import build_results
    from ketastats.simulate.output import format_sessions_csv
    from ketastats.validate import coerce_sessions

    cfg = attack_config()
    cohort = cfg["cohorts"]["demo"]
    src = root / cohort["input"]
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(format_sessions_csv(raw))
    proc = root / "data/processed/demo"
    (proc / "models").mkdir(parents=True, exist_ok=True)
    # the typed table as rule validate writes it (the demo passes validation; checking it again
    # here would cost a second per cohort and is tests/test_validate.py's business)
    table = coerce_sessions(read_cohort(cohort, root=root))
    sessions = prepare_sessions(table)
    info = {
        "cohort": "demo", "file": cohort["input"], "sha256": sha256_file(src),
        "records": int(len(table)), "patients": int(table["patient_id"].nunique()), "warnings": 0,
    }  # fmt: skip
    fitted = {}
    for name in models:
        fitted[name] = step_fit(
            sessions, model_spec(cfg, "demo", name), proc / "models" / f"{name}.json",
            name=name, estimands=cohort_estimands(cfg, "demo"),
        )  # fmt: skip
    fitted = {k: json.loads(json.dumps(v)) for k, v in fitted.items()}
    prov = {"input": {"file": info["file"], "sha256": info["sha256"]}}
    settings = {**cfg["report"], "small_cell_threshold": threshold}
    results = json.loads(json.dumps(build_results("demo", sessions, info, fitted, prov, settings)))
    oracle_settings = {**settings, "small_cell_threshold": 0, "disclosure": "internal"}
    oracle = json.loads(json.dumps(build_results("demo", sessions, info, fitted, prov, oracle_settings)))
    return {"results": results, "oracle": oracle, "tables": tables_of(results), "sessions": sessions, "models": fitted}
