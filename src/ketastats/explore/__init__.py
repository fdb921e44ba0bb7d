"""Look around a cohort that the workflow has already run: the notebooks' toolbox.

The analyst notebooks (``notebooks/``) hold no analysis logic; they call the functions
here. Everything reads what the workflow wrote (``data/processed/<cohort>/sessions.parquet``
and ``data/processed/<cohort>/models/<name>.json``) and never refits a model.

One module per job: :mod:`.cohort` (find and load a cohort), :mod:`.sessions` (tables of
the session data), :mod:`.models` (model comparison, a trial model, BLUPs and fitted
trajectories), :mod:`.plots` (figures).

Examples
--------
On a cohort the workflow has run (here ``demo``), from anywhere inside the project:

.. code-block:: python

    view = load_cohort("demo")
    model_table(view)[["model", "nobs", "illness_estimate"]]
"""

from __future__ import annotations

from .cohort import *  # noqa: F403
from .cohort import __all__ as _cohort
from .models import *  # noqa: F403
from .models import __all__ as _models
from .plots import *  # noqa: F403
from .plots import __all__ as _plots
from .sessions import *  # noqa: F403
from .sessions import __all__ as _sessions

__all__ = [*_cohort, *_sessions, *_models, *_plots]
