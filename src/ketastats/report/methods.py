"""The report's generated Methods section: what was fit and how, software, references.

Every sentence is generated from ``results.json`` (model specifications, estimation
method, engine, degrees-of-freedom method, confidence level, suppression threshold and
package versions), so the text cannot drift from what was run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import escape

from .suppression import say_count as _say

__all__ = ["REFERENCES", "methods_section"]

#: key -> full reference, cited in the generated text as [key]
REFERENCES: dict[str, str] = {
    "montgomery1979": (
        "Montgomery, S. A., & Åsberg, M. (1979). A new depression scale designed to be sensitive to "
        "change. British Journal of Psychiatry, 134(4), 382-389. https://doi.org/10.1192/bjp.134.4.382"
    ),
    "hernan2020": (
        "Hernán, M. A., & Robins, J. M. (2020). Causal Inference: What If. Boca Raton: Chapman & Hall/CRC."
    ),
    "hernan2016": (
        "Hernán, M. A., & Robins, J. M. (2016). Using big data to emulate a target trial when a randomized "
        "trial is not available. American Journal of Epidemiology, 183(8), 758-764. "
        "https://doi.org/10.1093/aje/kwv254"
    ),
    "cole2008": (
        "Cole, S. R., & Hernán, M. A. (2008). Constructing inverse probability weights for marginal "
        "structural models. American Journal of Epidemiology, 168(6), 656-664. "
        "https://doi.org/10.1093/aje/kwn164"
    ),
    "bang2005": (
        "Bang, H., & Robins, J. M. (2005). Doubly robust estimation in missing data and causal inference "
        "models. Biometrics, 61(4), 962-973. https://doi.org/10.1111/j.1541-0420.2005.00377.x"
    ),
    "austin2015": (
        "Austin, P. C., & Stuart, E. A. (2015). Moving towards best practice when using inverse probability "
        "of treatment weighting (IPTW) using the propensity score to estimate causal treatment effects in "
        "observational studies. Statistics in Medicine, 34(28), 3661-3679. https://doi.org/10.1002/sim.6607"
    ),
    "laird1982": (
        "Laird, N. M., & Ware, J. H. (1982). Random-effects models for longitudinal data. Biometrics, "
        "38(4), 963-974. https://doi.org/10.2307/2529876"
    ),
    "bates2015": (
        "Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models "
        "using lme4. Journal of Statistical Software, 67(1), 1-48. https://doi.org/10.18637/jss.v067.i01"
    ),
    "seabold2010": (
        "Seabold, S., & Perktold, J. (2010). statsmodels: Econometric and statistical modeling with "
        "Python. Proceedings of the 9th Python in Science Conference, 92-96."
    ),
    "curran2011": (
        "Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and between-person "
        "effects in longitudinal models of change. Annual Review of Psychology, 62, 583-619. "
        "https://doi.org/10.1146/annurev.psych.093008.100356"
    ),
    "austin2009": (
        "Austin, P. C. (2009). Balance diagnostics for comparing the distribution of baseline covariates "
        "between treatment groups in propensity-score matched samples. Statistics in Medicine, 28(25), "
        "3083-3107. https://doi.org/10.1002/sim.3697"
    ),
    "yang2012": (
        "Yang, D., & Dalton, J. E. (2012). A unified approach to measuring the effect size between two "
        "groups using SAS. SAS Global Forum 2012, paper 335-2012."
    ),
    "molder2021": (
        "Mölder, F., Jablonski, K. P., Letcher, B., et al. (2021). Sustainable data analysis with "
        "Snakemake. F1000Research, 10, 33. https://doi.org/10.12688/f1000research.29032.2"
    ),
    "cms2020": (
        "Centers for Medicare & Medicaid Services. CMS Cell Size Suppression Policy. "
        "https://www.hhs.gov/guidance/document/cms-cell-suppression-policy"
    ),
    "liang1986": (
        "Liang, K.-Y., & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models. "
        "Biometrika, 73(1), 13-22. https://doi.org/10.1093/biomet/73.1.13"
    ),
    "bell2002": (
        "Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear regression "
        "with multi-stage samples. Survey Methodology, 28(2), 169-181."
    ),
    "pustejovsky2018": (
        "Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance "
        "estimation and hypothesis testing in fixed effects models. Journal of Business & Economic "
        "Statistics, 36(4), 672-683. https://doi.org/10.1080/07350015.2016.1247004"
    ),
    "mallinckrodt2008": (
        "Mallinckrodt, C. H., Lane, P. W., Schnell, D., Peng, Y., & Mancuso, J. P. (2008). Recommendations for "
        "the primary analysis of continuous endpoints in longitudinal clinical trials. Drug Information "
        "Journal, 42(4), 303-319. https://doi.org/10.1177/009286150804200402"
    ),
    "kenward1997": (
        "Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed effects from restricted "
        "maximum likelihood. Biometrics, 53(3), 983-997. https://doi.org/10.2307/2533558"
    ),
    "vanbuuren2018": (
        "van Buuren, S. (2018). Flexible Imputation of Missing Data (2nd ed.). Chapman & Hall/CRC. "
        "https://stefvanbuuren.name/fimd/"
    ),
    "rubin1987": "Rubin, D. B. (1987). Multiple Imputation for Nonresponse in Surveys. Wiley.",
    "barnard1999": (
        "Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple imputation. "
        "Biometrika, 86(4), 948-955. https://doi.org/10.1093/biomet/86.4.948"
    ),
    "permutt2016": (
        "Permutt, T. (2016). Sensitivity analysis for missing data in regulatory submissions. Statistics in "
        "Medicine, 35(17), 2876-2879. https://doi.org/10.1002/sim.6753"
    ),
    "duru2008": (
        "Duru, G., & Fantino, B. (2008). The clinical relevance of changes in the Montgomery-Asberg "
        "Depression Rating Scale using the minimum clinically important difference approach. Current "
        "Medical Research and Opinion, 24(5), 1329-1335. https://doi.org/10.1185/030079908X291958"
    ),
}

def _e(x: Any) -> str:
    """``x`` as HTML text: the paragraphs are rendered as markup, so every value from a
    config, a data file or a fit (labels, formulas, marker names, reasons) is escaped."""
    return str(escape(x))


def _model_sentence(m: Mapping[str, Any], level: int) -> str:
    """A model's Methods paragraph, from its kind's own description
    (:func:`ketastats.models.descriptions.describe_method`)."""
    from ..models.descriptions import describe_method

    spec = m.get("spec") or {}
    label = _e(m["label"])
    if m.get("status", "ok") != "ok":
        return (
            f"The model '{label}' (<code>{_e(m.get('formula') or spec.get('formula', '?'))}</code>) was "
            f"{_e(m['status'])}: {_e(m.get('reason') or 'no reason recorded')}."
        )
    d = describe_method(m)
    random = f" with {d.random}" if d.random else ""
    counts = f"{_say(m['nobs'])} observations of {_say(m['ngroups'])} patients"
    extra = f" {d.extra}" if d.extra else ""
    return (
        f"Model '{label}': {d.model}, {d.formula}{random}; estimated by {d.estimation}; "
        f"{d.se_method}; p-values and {level}% confidence intervals from {d.inference}.{extra} {counts} "
        f"(complete cases of the model's variables).{_filters_sentence(m)}"
    )


def _filters_sentence(m: Mapping[str, Any]) -> str:
    """The rows a sensitivity analysis leaves out, in words (empty when none)."""
    f = m.get("row_filters") or {}
    out = ""
    if "complete_case" in f:
        c = f["complete_case"]
        out += (
            f" Complete-case analysis: only the {_say(c.get('patients_kept'))} patients with every planned "
            f"session rated and every model variable observed ({_say(c.get('patients_removed'))} left out); "
            "valid only if missingness is completely at random."
        )
    if "exclude_onset_within_days" in f:
        e = f["exclude_onset_within_days"]
        out += (
            f" Ill sessions within {_e(e.get('days'))} days of the illness onset were left out "
            f"({_say(e.get('sessions_removed'))} sessions, and {_say(e.get('onset_unknown_removed'))} with an "
            "unknown onset)."
        )
    return out


def methods_section(results: Mapping[str, Any]) -> dict[str, Any]:
    """Paragraphs of the Methods section and the references they cite.

    Parameters
    ----------
    results : mapping
        The results dictionary being built (``settings``, ``models``, ``provenance``).

    Returns
    -------
    dict
        ``paragraphs`` (list of str: HTML built here, with ``<code>`` markup and every
        value from the config, the data or a fit escaped; the report renders it as is) and
        ``references`` (list of ``{"key", "text"}`` in order of first citation).
    """
    s = results["settings"]
    level = int(round(100 * s["confidence_level"]))
    pk = (results.get("provenance") or {}).get("packages") or {}

    def v(name: str) -> str:
        return _e(pk.get(name, "not recorded"))

    ins = s["instrument"]
    cite = " [montgomery1979]" if ins["name"] == "madrs" else ""
    remission = f"at most {ins['remission_max']}"
    illness = (
        "Acute illness (cold, flu, gastrointestinal infection) is recorded per session "
        "(<code>ill</code>); where a model uses <code>ill_within</code> and <code>ill_between</code>, the "
        "illness indicator is split into its person-mean-centred (within-patient) and person-mean "
        "(between-patient) parts [curran2011]. "
        if s.get("illness_data", True)
        else "This cohort has no illness data: the models describe the course of the score only. "
    )
    paras = [
        f"Outcome: the {_e(ins['label'])} ({_e(ins['short'])}, {ins['min']}-{ins['max']}, higher is worse)"
        f"{cite}, rated at each {_e(ins['unit'])}; the first rating is the pre-treatment baseline. Response is "
        f"a reduction of at least {round(100 * ins['response_fraction'])}% from baseline and remission a score "
        f"{remission} ({_e(ins['source'])}). "
        + illness
        + "Sessions without an outcome rating or a model variable are "
        "left out of that model (complete-case analysis, valid when missingness is at random given the "
        "model's variables).",
    ]
    for m in results["models"].values():
        paras.append(_model_sentence(m, level))
    mcid_txt = (
        f"against a minimal clinically important difference of {s['mcid']:g} points"
        + (" [duru2008]" if ins["name"] == "madrs" else "")
        if s.get("mcid") is not None
        else f"(no minimal clinically important difference is established for the {_e(ins['short'])})"
    )
    paras.append(
        f"The illness effect is reported in {_e(ins['short'])} points {mcid_txt}; the forest plot shows it for "
        "the primary and every other analysis. Diagnostics (residuals against fitted values, a normal QQ plot "
        "of the residuals, and the random effects' conditional modes with their conditional SDs) are "
        "computed from the stored estimates and BLUPs; nothing is refitted for the report."
    )
    paras.append(
        "Table 1 describes patients at their first session by whether they were ever ill during the "
        "course: mean (SD), or median [Q1, Q3] when a variable's absolute skewness exceeds 1, and n (%) "
        "of patients with a known value, with missing counts and standardized mean differences "
        "[austin2009; yang2012]. Trajectory means are over patients (a patient with two sessions in a "
        f"{results.get('trajectories', {}).get('day_bin', 7)}-day bin counts once), with t-based "
        f"{level}% confidence intervals."
    )
    paras.append(
        f"Small-cell suppression [cms2020]: counts of patients or sessions from 1 to "
        f"{s['small_cell_threshold']} are not shown anywhere in this report or in results.json (shown as "
        f"&lt;{s['small_cell_threshold'] + 1}), nor are cells from which such a count could be derived "
        "through totals, complements or differences (shown as 'suppressed'); statistics computed from "
        "so few patients are not shown either."
    )
    paras.append(
        f"Software: ketastats {v('ketastats')} run by Snakemake {v('snakemake')} [molder2021]; Python "
        f"packages numpy {v('numpy')}, pandas {v('pandas')}, scipy {v('scipy')}, statsmodels "
        f"{v('statsmodels')} [seabold2010], patsy {v('patsy')}, matplotlib {v('matplotlib')}. The input's "
        "SHA-256, the configuration and the code's git commit are listed under Provenance."
    )
    cited: list[str] = []
    for p in paras:
        i = 0
        while (i := p.find("[", i)) >= 0:
            j = p.find("]", i)
            for key in p[i + 1 : j].split(";"):
                key = key.strip()
                if key in REFERENCES and key not in cited:
                    cited.append(key)
            i = j + 1
    return {"paragraphs": paras, "references": [{"key": k, "text": REFERENCES[k]} for k in cited]}
