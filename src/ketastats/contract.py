"""The canonical session table: columns, types, units, ranges, instruments and thresholds.

This module is the single source of truth for what a ketastats session table looks like.
It holds data only (no I/O, no checking); :mod:`ketastats.validate` checks tables against
it, :mod:`ketastats.io` maps files onto it and ``docs/data_contract.md`` explains it for
people.

The table is *long*: one row per patient and infusion session.

References
----------
.. [1] Montgomery SA, Asberg M. A new depression scale designed to be sensitive to change.
   Br J Psychiatry 1979;134:382-389.
.. [2] Hawley CJ, Gale TM, Sivakumaran T. Defining remission by cut off score on the MADRS:
   selecting the optimal value. J Affect Disord 2002;72:177-184.
.. [3] Duru G, Fantino B. The clinical relevance of changes in the MADRS using the minimum
   clinically important difference approach. Curr Med Res Opin 2008;24:1329-1335.
.. [4] Frank E et al. Conceptualization and rationale for consensus definitions of terms in
   major depressive disorder. Arch Gen Psychiatry 1991;48:851-855.
.. [5] Rush AJ et al. The 16-item QIDS, clinician rating and self-report. Biol Psychiatry
   2003;54:573-583; Rush AJ et al. (STAR*D) Am J Psychiatry 2006;163:1905-1917.
.. [6] Kroenke K, Spitzer RL, Williams JB. The PHQ-9. J Gen Intern Med 2001;16:606-613.
.. [7] Beck AT, Steer RA, Brown GK. Manual for the Beck Depression Inventory-II. San
   Antonio: Psychological Corporation; 1996.
.. [8] 45 CFR 164.514(b)(2) (HIPAA Safe Harbor de-identification).

Examples
--------
>>> from ketastats.contract import COLUMNS, INSTRUMENTS
>>> COLUMNS["madrs"].max
60
>>> INSTRUMENTS["madrs"].remission_max
10
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "INPUT_FORMATS",
    "INPUT_EXTENSIONS",
    "AGE_TOP_CODE",
    "BASELINE_COLUMNS",
    "CENSORED_SUFFIX",
    "COLUMNS",
    "CYTOKINES",
    "ILLNESS_TYPES",
    "INSTRUMENTS",
    "LOD_SUFFIX",
    "MADRS_CORE_ITEMS",
    "MADRS_ITEMS",
    "MADRS_SICKNESS_ITEMS",
    "MEDICATION_CLASSES",
    "REQUIRED",
    "SCORE_COLUMNS",
    "SEVERITIES",
    "SEXES",
    "ColumnSpec",
    "Instrument",
]

#: the input formats a cohort may declare (``cohorts.<name>.format``)
INPUT_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "excel", "redcap")

#: file extension -> input format, when a cohort does not declare its format (the one table
#: the config check and the readers both use)
INPUT_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
}

#: The only accepted spelling of a top-coded age (HIPAA Safe Harbor: ages over 89).
AGE_TOP_CODE = "90+"
#: Suffix of the optional per-sample detection-limit column of a cytokine.
LOD_SUFFIX = "_lod"
#: Suffix of the censoring flag column that :func:`ketastats.validate.coerce_sessions` adds.
CENSORED_SUFFIX = "_censored"


@dataclass(frozen=True)
class ColumnSpec:
    """Specification of one column of the canonical session table.

    Attributes
    ----------
    name : str
        Column name in the canonical table.
    kind : str
        One of ``"id"`` (opaque string token), ``"int"`` (whole number), ``"float"``,
        ``"binary"`` (0/1), ``"category"`` (one of ``levels``), ``"cytokine"`` (number or a
        below-detection-limit string such as ``"<0.15"``) or ``"age"`` (whole number or
        ``"90+"``).
    section : str
        Documentation section: ``"keys"``, ``"scores"``, ``"illness"``, ``"cytokines"``,
        ``"treatment"``, ``"medication"``, ``"baseline"``.
    description : str
        Meaning, in plain language.
    unit : str
        Unit of measurement (``""`` when dimensionless).
    min, max : float or None
        Inclusive plausible range; ``None`` means unbounded on that side.
    levels : tuple of str
        Allowed values of a category column (canonical spelling).
    required : bool
        Whether the column must be present (and non-missing in every row).
    """

    name: str
    kind: str
    section: str
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    levels: tuple[str, ...] = ()
    required: bool = False

    @property
    def dtype(self) -> str:
        """The pandas dtype :func:`ketastats.validate.coerce_sessions` gives the column."""
        return {
            "id": "str",
            "int": "Int64",
            "binary": "Int64",
            "float": "float64",
            "category": "category",
            "cytokine": "float64",
            "age": "Int64",
        }[self.kind]


@dataclass(frozen=True)
class Instrument:
    """A depression rating scale and its conventional thresholds.

    Attributes
    ----------
    name : str
        Column holding the total score.
    label : str
        Human-readable name.
    min, max : int
        Range of the total score.
    response_fraction : float
        Response is a reduction from baseline of at least this fraction.
    remission_max : int
        Remission is a total score ``<= remission_max``.
    mcid : float or None
        Minimal clinically important difference in points, where one is established.
    source : str
        Where the range and thresholds come from.
    items : tuple of str
        Item columns whose sum is the total (only MADRS is itemised in the contract).
    short : str
        The abbreviation used in prose, tables and axes ("MADRS", "HAM-D 17").
    """

    name: str
    label: str
    min: int
    max: int
    response_fraction: float
    remission_max: int
    mcid: float | None
    source: str
    items: tuple[str, ...] = field(default=())
    short: str = ""


MADRS_ITEMS: tuple[str, ...] = tuple(f"madrs_{i}" for i in range(1, 11))
#: Items that overlap sickness behaviour (reduced sleep, reduced appetite, concentration
#: difficulties, lassitude, inability to feel); see domain research section 3.3.
MADRS_SICKNESS_ITEMS: tuple[str, ...] = tuple(f"madrs_{i}" for i in (4, 5, 6, 7, 8))
#: The remaining "core mood" items; their sum is the subtotal without sickness-sensitive items.
MADRS_CORE_ITEMS: tuple[str, ...] = tuple(f"madrs_{i}" for i in (1, 2, 3, 9, 10))

INSTRUMENTS: dict[str, Instrument] = {
    "madrs": Instrument(
        "madrs", "Montgomery-Asberg Depression Rating Scale", 0, 60, 0.5, 10, 2.0,
        "Montgomery & Asberg 1979 (range); remission <= 10 as in most ketamine trials "
        "(Hawley et al. 2002; KetECT, Ekstrand 2022); MCID 1.6-1.9 points, rounded to 2 "
        "(Duru & Fantino 2008)",
        MADRS_ITEMS,
        "MADRS",
    ),
    "hamd17": Instrument(
        "hamd17", "Hamilton Depression Rating Scale, 17 items", 0, 52, 0.5, 7, 3.0,
        "Hamilton 1960 (range); remission <= 7 (Frank et al. 1991 consensus definitions); "
        "MCID 3 points (NICE CG23, 2004)",
        short="HAM-D 17",
    ),
    "qids_sr16": Instrument(
        "qids_sr16", "Quick Inventory of Depressive Symptomatology, self-report, 16 items",
        0, 27, 0.5, 5, None,
        "Rush et al. 2003 (range); remission <= 5 (Rush et al. 2006, STAR*D); no "
        "established point MCID",
        short="QIDS-SR16",
    ),
    "phq9": Instrument(
        "phq9", "Patient Health Questionnaire-9", 0, 27, 0.5, 4, 5.0,
        "Kroenke et al. 2001 (range; < 5 = minimal, used as remission e.g. McInnes 2022); "
        "MCID 5 points (Lowe et al. 2004, Med Care 42:1194)",
        short="PHQ-9",
    ),
    "bdi2": Instrument(
        "bdi2", "Beck Depression Inventory-II", 0, 63, 0.5, 13, None,
        "Beck, Steer & Brown 1996 manual (range; 0-13 = minimal, used as remission); MCID "
        "is relative, 17.5% reduction (Button et al. 2015), not a point value",
        short="BDI-II",
    ),
}
SCORE_COLUMNS: tuple[str, ...] = tuple(INSTRUMENTS)

#: Columns that must be present in every session table (plus at least one score: a total
#: from :data:`SCORE_COLUMNS` or all ten MADRS items).
REQUIRED: tuple[str, ...] = ("patient_id", "session", "day")

ILLNESS_TYPES: tuple[str, ...] = (
    "respiratory", "influenza_like", "gastrointestinal", "other_febrile", "other",
)
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
SEXES: tuple[str, ...] = ("female", "male", "other")

#: Cytokine / inflammation marker columns and their units.
CYTOKINES: dict[str, str] = {
    "il6_pg_ml": "pg/mL",
    "tnfa_pg_ml": "pg/mL",
    "il1b_pg_ml": "pg/mL",
    "crp_mg_l": "mg/L",
}

#: Concomitant medication classes, each a 0/1 column (1 = taken around this session).
MEDICATION_CLASSES: tuple[str, ...] = (
    "benzodiazepine", "nsaid", "antibiotic", "steroid", "antipyretic", "antiviral",
    "antihistamine", "decongestant", "opioid", "antidepressant", "antipsychotic",
    "lithium", "lamotrigine", "stimulant",
)


def _build_columns() -> dict[str, ColumnSpec]:
    c: list[ColumnSpec] = [
        ColumnSpec("patient_id", "id", "keys",
                   "Opaque random patient token (not derived from a medical record number, "
                   "name or date), e.g. 'P3A9F0C'.", required=True),
        ColumnSpec("session", "int", "keys", "Infusion number, 1-based.", "", 1, 100,
                   required=True),
        ColumnSpec("day", "int", "keys",
                   "Days since the first infusion (session 1 is day 0); increases with "
                   "session within a patient.", "days", 0, 3650, required=True),
    ]
    for inst in INSTRUMENTS.values():
        c.append(ColumnSpec(inst.name, "int", "scores",
                            f"{inst.label}, total score.", "points", inst.min, inst.max))
    madrs_item_names = (
        "apparent sadness", "reported sadness", "inner tension", "reduced sleep",
        "reduced appetite", "concentration difficulties", "lassitude",
        "inability to feel", "pessimistic thoughts", "suicidal thoughts",
    )
    for item, label in zip(MADRS_ITEMS, madrs_item_names, strict=True):
        c.append(ColumnSpec(item, "int", "scores", f"MADRS item: {label}.", "points", 0, 6))
    c += [
        ColumnSpec("ill", "binary", "illness",
                   "Acutely ill at this session (1) or not (0).", "", 0, 1),
        ColumnSpec("illness_type", "category", "illness",
                   "Kind of acute illness; only when ill = 1.", levels=ILLNESS_TYPES),
        ColumnSpec("illness_severity", "category", "illness",
                   "Severity of the acute illness; only when ill = 1.", levels=SEVERITIES),
        ColumnSpec("days_since_onset", "int", "illness",
                   "Days from illness onset to this session; only when ill = 1.",
                   "days", 0, 60),
    ]
    labels = {"il6_pg_ml": "IL-6", "tnfa_pg_ml": "TNF-alpha", "il1b_pg_ml": "IL-1beta",
              "crp_mg_l": "C-reactive protein"}
    for marker, unit in CYTOKINES.items():
        label = labels[marker]
        c.append(ColumnSpec(marker, "cytokine", "cytokines",
                            f"{label} concentration; '<L' when below the detection limit L.",
                            unit, 0, None))
        c.append(ColumnSpec(marker + LOD_SUFFIX, "float", "cytokines",
                            f"Detection limit of the {label} assay for this sample (optional).",
                            unit, 0, None))
    c += [
        ColumnSpec("dose_mg_kg", "float", "treatment", "Ketamine dose of this infusion.",
                   "mg/kg", 0, 3),
        ColumnSpec("infusion_minutes", "float", "treatment", "Infusion duration.",
                   "min", 1, 240),
        ColumnSpec("postponed", "binary", "treatment",
                   "This infusion was postponed from its planned day (1) or not (0).", "", 0, 1),
        ColumnSpec("delay_days", "int", "treatment",
                   "Days of postponement; required (> 0) when postponed = 1, 0 or missing "
                   "otherwise.", "days", 0, 365),
        ColumnSpec("dose_changed", "binary", "treatment",
                   "The dose differs from the previous infusion (1) or not (0).", "", 0, 1),
        ColumnSpec("planned_ill", "binary", "treatment",
                   "Postponed infusion: the patient was acutely ill on the planned day (1) or "
                   "it was postponed for another reason (0); only when postponed = 1.", "", 0, 1),
        ColumnSpec("planned_illness_type", "category", "treatment",
                   "Postponed infusion: kind of the illness on the planned day (the reason); "
                   "only when planned_ill = 1.", levels=ILLNESS_TYPES),
        ColumnSpec("planned_illness_severity", "category", "treatment",
                   "Postponed infusion: severity of the illness on the planned day; only when "
                   "planned_ill = 1.", levels=SEVERITIES),
        ColumnSpec("planned_days_since_onset", "int", "treatment",
                   "Postponed infusion: days from illness onset to the planned day; only when "
                   "planned_ill = 1.", "days", 0, 60),
        ColumnSpec("planned_illness_medication", "binary", "treatment",
                   "Postponed infusion: on illness medication (antipyretic, NSAID, steroid or "
                   "antibiotic) on the planned day (1) or not (0); only when planned_ill = 1.",
                   "", 0, 1),
        ColumnSpec("sbp_pre", "float", "treatment", "Systolic blood pressure before infusion.",
                   "mmHg", 50, 260),
        ColumnSpec("dbp_pre", "float", "treatment", "Diastolic blood pressure before infusion.",
                   "mmHg", 30, 160),
        ColumnSpec("hr_pre", "float", "treatment", "Heart rate before infusion.",
                   "beats/min", 25, 220),
        ColumnSpec("sbp_peak", "float", "treatment", "Peak systolic blood pressure during "
                   "infusion.", "mmHg", 50, 300),
        ColumnSpec("dbp_peak", "float", "treatment", "Peak diastolic blood pressure during "
                   "infusion.", "mmHg", 30, 200),
    ]
    for med in MEDICATION_CLASSES:
        c.append(ColumnSpec(med, "binary", "medication",
                            f"Concomitant {med} medication at this session (1) or not (0).",
                            "", 0, 1))
    c += [
        ColumnSpec("age", "age", "baseline",
                   "Age in years at the first infusion; ages over 89 must be given as '90+'.",
                   "years", 0, 89),
        ColumnSpec("sex", "category", "baseline", "Sex.", levels=SEXES),
        ColumnSpec("bmi", "float", "baseline", "Body-mass index at baseline.", "kg/m2", 10, 80),
        ColumnSpec("year", "int", "baseline",
                   "Calendar year of the first infusion (the only date element Safe Harbor "
                   "allows).", "", 1990, 2100),
        ColumnSpec("site", "category", "baseline",
                   "Study site code (a short code, not a place name).", levels=()),
    ]
    return {spec.name: spec for spec in c}


#: Every contract column, in canonical order.
COLUMNS: dict[str, ColumnSpec] = _build_columns()

#: Pre-treatment columns that must be constant within a patient.
BASELINE_COLUMNS: tuple[str, ...] = tuple(
    name for name, spec in COLUMNS.items() if spec.section == "baseline"
)
