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
# # Individual trajectories with BLUPs
#
# A linear mixed model's view of single patients: the observed score, the average patient's
# fitted line (fixed effects) and the patient's own line (fixed effects plus the patient's
# predicted random effects, BLUPs). Sessions rated ill are red squares. Patients are
# identified by their pseudonymous ids only.

# %% tags=["parameters"]
cohort = "demo"  # a cohort name from config/config.yaml that the workflow has run
root = None  # the project folder; None: the nearest folder above the working directory with a Snakefile
model = None  # a linear mixed model from config/config.yaml (models:); None: "primary"
n_patients = 6  # how many example patients to draw (half with an illness episode)
seed = 0  # which example patients: change it to draw others
patients = []  # or name the pseudonymous ids to show, e.g. ["P0D254B"]

# %%
# %matplotlib inline
from ketastats.explore import (
    blup_table,
    example_patients,
    load_cohort,
    plot_blups,
    plot_trajectories,
    predict_trajectories,
)

view = load_cohort(cohort, root)
view

# %% [markdown]
# ## Random effects of all patients

# %%
blups = blup_table(view, model)
blups.describe().round(3)

# %%
plot_blups(blups)

# %% [markdown]
# ## Example patients

# %%
shown = list(patients) or example_patients(view, n_patients, seed=seed)
trajectories = predict_trajectories(view, model, shown)
plot_trajectories(trajectories)

# %%
trajectories.round(2)
