# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Models and sensitivity analyses compared
#
# Every model the workflow fitted for this cohort (`data/processed/<cohort>/models/*.json`),
# side by side: whether it converged, its fixed effects and its estimate of the illness
# effect. The workflow's models are read, never refitted. To try another model, set
# `trial_formula` below: it is fitted here (by the workflow's own code) and compared with
# the rest. To keep it, add it to `models:` in `config/config.yaml` and rerun the workflow;
# it appears here by itself.

# %% tags=["parameters"]
cohort = "demo"  # a cohort name from config/config.yaml that the workflow has run
root = None  # the project folder; None: the nearest folder above the working directory with a Snakefile
# Try a model: fitted here, next to the workflow's models (nothing is saved), e.g.
# "madrs ~ session + ill_within + ill_between"; leave empty for none.
trial_formula = ""
trial_re_formula = "~session"  # random effects per patient; None: random intercept only

# %%
# %matplotlib inline
from ketastats.explore import (
    coefficient_table,
    illness_effects,
    load_cohort,
    model_table,
    plot_illness_effects,
    try_model,
)

view = load_cohort(cohort, root)
view = try_model(view, trial_formula, trial_re_formula)  # adds a model named "trial", if any
view

# %% [markdown]
# ## The models

# %%
model_table(view)

# %% [markdown]
# ## Illness effect across models
#
# The estimate of the illness term (in outcome units) with its confidence interval.

# %%
effects = illness_effects(view)
effects.round(3)

# %%
plot_illness_effects(effects)

# %% [markdown]
# ## All fixed effects

# %%
coefficient_table(view).round(3)
