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
# # A cohort's processed data
#
# Distributions, missing values and illness episodes of one cohort's analysis table
# (`data/processed/<cohort>/sessions.parquet`), as the workflow prepared it. Every number
# comes from `ketastats.explore`; nothing is recomputed here.
#
# Run it on another cohort by changing `cohort` below (any cohort the workflow has run).

# %% tags=["parameters"]
cohort = "demo"  # a cohort name from config/config.yaml that the workflow has run
root = None  # the project folder; None: the nearest folder above the working directory with a Snakefile

# %%
# %matplotlib inline
from ketastats.explore import (
    cohort_overview,
    episode_summary,
    illness_episodes,
    load_cohort,
    missingness_table,
    plot_illness_timeline,
    plot_missingness,
    plot_score_distributions,
    score_by_session,
)

view = load_cohort(cohort, root)
view

# %% [markdown]
# ## Overview

# %%
cohort_overview(view.sessions)

# %% [markdown]
# ## Distributions
#
# The cohort's score (`view.score`: the instrument in its config) at baseline, by session (sessions rated ill apart) and its change at each
# patient's last session.

# %%
plot_score_distributions(view.sessions, view.score)

# %%
score_by_session(view.sessions, view.score).round(2)

# %% [markdown]
# ## Missing values
#
# Per column, share of sessions without a value. Cytokines below the detection limit are
# censored, not missing, and are not counted here.

# %%
missingness_table(view.sessions).round(1)

# %%
plot_missingness(view.sessions)

# %% [markdown]
# ## Illness episodes
#
# An episode is a run of consecutive sessions rated ill for one patient.

# %%
episodes = illness_episodes(view.sessions)
episode_summary(episodes)

# %%
plot_illness_timeline(view.sessions)
