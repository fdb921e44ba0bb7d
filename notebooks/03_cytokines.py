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
# # Cytokines
#
# Inflammation markers (IL-6, TNF-alpha, IL-1beta, CRP): how often they were measured, how
# often they fell below the assay's detection limit (LOD), and how detected values differ
# between sessions with and without acute illness. Values below the LOD are counted as
# censored and never replaced by a number here.

# %% tags=["parameters"]
cohort = "demo"  # a cohort name from config/config.yaml that the workflow has run
root = None  # the project folder; None: the nearest folder above the working directory with a Snakefile

# %%
# %matplotlib inline
from ketastats.explore import cytokine_by_illness, cytokine_summary, load_cohort, plot_cytokines

view = load_cohort(cohort, root)
view

# %% [markdown]
# ## Measured, detected, censored

# %%
cytokine_summary(view.sessions).round(2)

# %% [markdown]
# ## By illness at the session
#
# Medians and quartiles are of detected values only.

# %%
cytokine_by_illness(view.sessions).round(2)

# %%
plot_cytokines(view.sessions)
