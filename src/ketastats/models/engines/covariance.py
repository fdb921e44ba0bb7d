"""Covariance structures across visits for the MMRM engine (``engines/mmrm.py``).

Each structure maps its parameters, in SAS PROC MIXED's parametrization (the one SAS prints under
"Covariance Parameter Estimates"), to the ``T x T`` covariance matrix of one patient's complete set
of visits, with exact first and second derivatives. Visits are the levels of the visit column in
their order: ``ar1``/``ar1h``/``toeph``/``adh`` take the distance between two visits as the
difference of their positions in that order (as SAS's REPEATED statement and R's mmrm do).

| name | SAS ``type=`` | parameters (SAS's labels) | count |
|---|---|---|---|
| ``us`` | ``UN`` | ``UN(i,j)``, i >= j (lower triangle row by row) | T(T+1)/2 |
| ``cs`` | ``CS`` | ``CS`` (common covariance), ``Residual`` | 2 |
| ``csh`` | ``CSH`` | ``Var(1..T)``, ``CSH`` (common correlation) | T+1 |
| ``ar1`` | ``AR(1)`` | ``AR(1)`` (correlation of adjacent visits), ``Residual`` | 2 |
| ``ar1h`` | ``ARH(1)`` | ``Var(1..T)``, ``ARH(1)`` | T+1 |
| ``toeph`` | ``TOEPH`` | ``Var(1..T)``, ``TOEPH(1..T-1)`` (correlation at lag d) | 2T-1 |
| ``adh`` | ``ANTE(1)`` | ``Var(1..T)``, ``Rho(1..T-1)`` (correlation of visits k, k+1) | 2T-1 |

Each parameter has a kind that decides its unconstrained transform during optimisation:
``var`` (log), ``cov`` (none; positive-definiteness is checked) and ``corr`` (tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STRUCTURES", "Structure", "make_structure", "n_parameters"]

#: The covariance structures, in the order of the config's enum.
STRUCTURES: tuple[str, ...] = ("us", "cs", "csh", "ar1", "ar1h", "toeph", "adh")


def n_parameters(name: str, n_visits: int) -> int:
    """Number of covariance parameters of structure ``name`` over ``n_visits`` visits."""
    T = n_visits
    return {
        "us": T * (T + 1) // 2,
        "cs": 2,
        "csh": T + 1,
        "ar1": 2,
        "ar1h": T + 1,
        "toeph": 2 * T - 1 if T > 1 else 1,
        "adh": 2 * T - 1 if T > 1 else 1,
    }[name]


@dataclass(frozen=True)
class Structure:
    """One covariance structure over ``T`` visits (see the module docstring)."""

    name: str
    T: int
    labels: tuple[str, ...]
    kinds: tuple[str, ...]  # per parameter: "var", "cov" or "corr"
    linear: bool  # Sigma linear in the parameters (second derivatives zero)

    @property
    def q(self) -> int:
        return len(self.labels)

    # -- Sigma and its derivatives -------------------------------------------------------------

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        return self.derivatives(theta, order=0)[0]

    def derivatives(self, theta: np.ndarray, order: int = 2):
        """``(Sigma, dSigma, d2Sigma)``: (T,T), (q,T,T) and (q,q,T,T); None past ``order``."""
        theta = np.asarray(theta, dtype=float)
        T = self.T
        if self.name == "us":
            S = np.zeros((T, T))
            r, c = _us_index(T)
            S[r, c] = theta
            S[c, r] = theta
            if order == 0:
                return S, None, None
            d1 = np.zeros((self.q, T, T))
            k = np.arange(self.q)
            d1[k, r, c] = 1.0
            d1[k, c, r] = 1.0
            return S, d1, (np.zeros((self.q, self.q, T, T)) if order > 1 else None)
        if self.name == "cs":
            cs, res = theta
            J, eye = np.ones((T, T)), np.eye(T)
            S = cs * J + res * eye
            if order == 0:
                return S, None, None
            d1 = np.stack([J, eye])
            return S, d1, (np.zeros((2, 2, T, T)) if order > 1 else None)
        het = self.name != "ar1"
        nv = T if het else 1
        v, rho = theta[:nv], theta[nv:]
        C, C1, C2 = _correlation(self.name, T, rho, order)
        if not het:  # ar1: Sigma = v C, parameters (AR(1), Residual) -> stored as [v, rho]
            S = v[0] * C
            if order == 0:
                return S, None, None
            d1 = np.concatenate([C[None], v[0] * C1])
            d2 = None
            if order > 1:
                m = C1.shape[0]
                d2 = np.zeros((1 + m, 1 + m, T, T))
                d2[0, 1:] = C1
                d2[1:, 0] = C1
                d2[1:, 1:] = v[0] * C2
            return S, d1, d2
        s = np.sqrt(v)
        S = s[:, None] * C * s[None, :]
        if order == 0:
            return S, None, None
        m = C1.shape[0]
        q = nv + m
        # dD/dv_k = E_kk / (2 s_k);  dSigma/dv_k = dD C D + D C dD
        ds = 1.0 / (2.0 * s)
        d1 = np.zeros((q, T, T))
        for k in range(T):
            row = np.zeros((T, T))
            row[k, :] = ds[k] * C[k, :] * s
            d1[k] = row + row.T
        d1[nv:] = s[None, :, None] * C1 * s[None, None, :]
        d2 = None
        if order > 1:
            d2 = np.zeros((q, q, T, T))
            for k in range(T):
                for j in range(T):
                    if j == k:
                        # second derivative of s_k: -1 / (4 s_k^3)
                        row = np.zeros((T, T))
                        row[k, :] = -C[k, :] * s / (4.0 * s[k] ** 3)
                        block = row + row.T
                        block[k, k] = 0.0  # Sigma_kk = v_k is linear in v_k
                        d2[k, k] = block
                    else:
                        block = np.zeros((T, T))
                        block[k, j] = ds[k] * ds[j] * C[k, j]
                        block[j, k] = block[k, j]
                        d2[k, j] = block
                # mixed v_k, rho_a: dD_k C_a D + D C_a dD_k
                for a in range(m):
                    row = np.zeros((T, T))
                    row[k, :] = ds[k] * C1[a, k, :] * s
                    d2[k, nv + a] = row + row.T
                    d2[nv + a, k] = d2[k, nv + a]
            d2[nv:, nv:] = s[None, None, :, None] * C2 * s[None, None, None, :]
        return S, d1, d2

    # -- start and transforms ------------------------------------------------------------------

    def start(self, S0: np.ndarray) -> np.ndarray:
        """Start values from a positive-definite empirical covariance ``S0`` (T x T)."""
        T = self.T
        d = np.maximum(np.diag(S0), 1e-8 * max(1.0, float(np.max(np.diag(S0)))))
        R = S0 / np.sqrt(np.outer(d, d))
        off = R[~np.eye(T, dtype=bool)]
        mean_r = float(np.clip(off.mean(), -0.2, 0.8)) if off.size else 0.0
        lag = [float(np.clip(np.mean(np.diag(R, k)), -0.8, 0.9)) for k in range(1, T)]
        if self.name == "us":
            r, c = _us_index(T)
            return S0[r, c].copy()
        if self.name == "cs":
            v = float(d.mean())
            return np.array([max(mean_r, 0.0) * v, (1.0 - max(mean_r, 0.0)) * v])
        if self.name == "csh":
            return np.concatenate([d, [max(mean_r, 0.0)]])
        if self.name == "ar1":
            return np.array([float(d.mean()), lag[0] if lag else 0.3])
        if self.name == "ar1h":
            return np.concatenate([d, [lag[0] if lag else 0.3]])
        if self.name == "toeph":
            rho = np.array(lag) * 0.5
            return np.concatenate([d, rho])
        if self.name == "adh":
            rho = np.array([np.clip(R[k, k + 1], -0.8, 0.9) for k in range(T - 1)])
            return np.concatenate([d, rho])
        raise AssertionError(self.name)


def _us_index(T: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for i in range(T):
        for j in range(i + 1):
            rows.append(i)
            cols.append(j)
    return np.array(rows, dtype=int), np.array(cols, dtype=int)


def _correlation(name: str, T: int, rho: np.ndarray, order: int):
    """Correlation matrix ``C`` (T,T), its first (m,T,T) and second (m,m,T,T) derivatives."""
    i, j = np.indices((T, T))
    D = np.abs(i - j)
    m = rho.size
    C1 = C2 = None
    if name == "csh":
        r = rho[0]
        C = np.where(D == 0, 1.0, r)
        if order:
            C1 = (D != 0).astype(float)[None]
            C2 = np.zeros((1, 1, T, T))
        return C, C1, C2
    if name in ("ar1", "ar1h"):
        r = rho[0]
        C = np.where(D == 0, 1.0, r ** np.maximum(D, 1))
        if order:
            C1 = np.where(D >= 1, D * r ** np.maximum(D - 1, 0), 0.0)[None]
            C2 = np.where(D >= 2, D * (D - 1) * r ** np.maximum(D - 2, 0), 0.0)[None, None]
        return C, C1, C2
    if name == "toeph":
        C = np.eye(T)
        C1 = np.zeros((m, T, T))
        for d in range(1, T):
            C = C + np.where(D == d, rho[d - 1], 0.0)
            C1[d - 1] = (D == d).astype(float)
        return C, C1, (np.zeros((m, m, T, T)) if order else None)
    if name == "adh":
        C = np.eye(T)
        C1 = np.zeros((m, T, T))
        C2 = np.zeros((m, m, T, T))
        for a in range(T):
            for b in range(a + 1, T):
                ks = list(range(a, b))  # rho_k for k in [a, b)
                C[a, b] = C[b, a] = float(np.prod(rho[ks]))
                for k in ks:
                    val = float(np.prod([rho[x] for x in ks if x != k]))
                    C1[k, a, b] = C1[k, b, a] = val
                    for k2 in ks:
                        if k2 != k:
                            val2 = float(np.prod([rho[x] for x in ks if x not in (k, k2)]))
                            C2[k, k2, a, b] = C2[k, k2, b, a] = val2
        return C, C1, C2
    raise AssertionError(name)


def make_structure(name: str, T: int) -> Structure:
    """The structure ``name`` (one of :data:`STRUCTURES`) over ``T`` visits."""
    if name not in STRUCTURES:
        raise ValueError(f"unknown covariance structure {name!r}; one of {', '.join(STRUCTURES)}")
    if T < 1:
        raise ValueError("a covariance structure needs at least one visit")
    if name == "us":
        r, c = _us_index(T)
        labels = tuple(f"UN({i + 1},{j + 1})" for i, j in zip(r, c, strict=True))
        kinds = tuple("var" if i == j else "cov" for i, j in zip(r, c, strict=True))
        return Structure(name, T, labels, kinds, True)
    if name == "cs":
        return Structure(name, T, ("CS", "Residual"), ("cov", "var"), True)
    if name == "ar1":
        return Structure(name, T, ("Residual", "AR(1)"), ("var", "corr"), False)
    var_labels = tuple(f"Var({k + 1})" for k in range(T))
    if name == "csh":
        return Structure(name, T, (*var_labels, "CSH"), ("var",) * T + ("corr",), False)
    if name == "ar1h":
        return Structure(name, T, (*var_labels, "ARH(1)"), ("var",) * T + ("corr",), False)
    if name == "toeph":
        labels = (*var_labels, *(f"TOEPH({d})" for d in range(1, T)))
        return Structure(name, T, labels, ("var",) * T + ("corr",) * (T - 1), False)
    labels = (*var_labels, *(f"Rho({d})" for d in range(1, T)))
    return Structure(name, T, labels, ("var",) * T + ("corr",) * (T - 1), False)
