"""Statistical models of ketastats, one result type for all of them."""

from .mixed import ENGINES, MixedModelResult, design_matrices, fit_mixed

__all__ = ["ENGINES", "MixedModelResult", "design_matrices", "fit_mixed"]
