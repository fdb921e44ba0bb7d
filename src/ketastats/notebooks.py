"""Execute an analyst notebook for a cohort and export it to self-contained HTML.

The workflow's ``notebook`` rule (``workflow/rules/notebooks.smk``) calls
:func:`run_notebook` once per notebook and cohort. Notebooks run with papermill, which
injects the parameters (``cohort``, ``root``) after the cell tagged ``parameters`` and,
unlike ``nbconvert --execute``, writes the executed notebook even when a cell fails.

* On success the executed notebook and its HTML export are written atomically. Timing
  metadata (papermill's and the kernel's timestamps) are dropped, so the same inputs give
  the same bytes.
* On failure the executed notebook, with the traceback in the failing cell, is kept at
  ``failed_copy`` and a :class:`NotebookError` names the notebook, the cell and the error;
  the job fails with that message.

The HTML uses nbconvert's ``lab`` template without its CDN scripts (require.js, MathJax,
Mermaid): images are embedded as data URIs and the file opens offline.

papermill, nbformat, nbconvert and ipykernel are the ``notebooks`` extra
(``pip install -e ".[notebooks]"``; ``dev`` includes it). Without them :func:`run_notebook`
stops with a :class:`NotebookError` that says so, and the workflow's default target leaves
the notebooks out.

References
----------
.. [1] papermill: https://papermill.readthedocs.io
.. [2] nbconvert HTMLExporter: https://nbconvert.readthedocs.io
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._atomic import atomic_path, write_text_atomic
from .exceptions import KetastatsError

__all__ = [
    "NotebookError",
    "run_notebook",
    "normalize_notebook",
    "notebook_to_html",
    "missing_notebook_packages",
    "require_notebook_packages",
]

log = logging.getLogger(__name__)

# nbconvert's lab template minus the <script src="https://cdn..."> tags: opens offline.
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_TIMING_KEYS = ("start_time", "end_time", "duration")


class NotebookError(KetastatsError):
    """A notebook failed; the message names the notebook, the failing cell and its error."""


#: what executing a notebook imports: the ``notebooks`` extra in pyproject.toml
NOTEBOOK_PACKAGES = ("papermill", "nbformat", "nbconvert", "ipykernel")


def missing_notebook_packages() -> list[str]:
    """The packages of the ``notebooks`` extra that are not installed (none is imported)."""
    return [name for name in NOTEBOOK_PACKAGES if importlib.util.find_spec(name) is None]


def require_notebook_packages() -> None:
    """Raise :class:`NotebookError`, saying what to install, if the ``notebooks`` extra is missing."""
    missing = missing_notebook_packages()
    if missing:
        raise NotebookError(
            f"executing the analyst notebooks needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: install the 'notebooks' extra "
            '(pip install -e ".[notebooks]" in the project folder)'
        )


def normalize_notebook(nb: Any, *, output_path: str | None = None) -> Any:
    """Drop run-dependent metadata from an executed notebook (in place; also returned).

    Removes the kernel's per-cell ``execution`` timestamps and papermill's start/end
    times and durations, gives papermill's injected-parameters cell a fixed id instead of
    a random one, and sets papermill's ``output_path`` to ``output_path`` (the final
    name, not the temporary file it was executed into).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        An executed notebook.
    output_path : str, optional
        The path to record as papermill's ``output_path``.

    Returns
    -------
    nbformat.NotebookNode
    """
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):
        for key in _TIMING_KEYS:
            pm.pop(key, None)
        if output_path is not None:
            pm["output_path"] = output_path
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill draws a random id for it
        cpm = cell.metadata.get("papermill")
        if isinstance(cpm, dict):
            for key in _TIMING_KEYS:
                cpm.pop(key, None)
    return nb


def notebook_to_html(nb: Any, *, exclude_input: bool = False) -> str:
    """Render an executed notebook as one self-contained HTML page.

    Parameters
    ----------
    nb : nbformat.NotebookNode
    exclude_input : bool
        Leave the code cells out (``jupyter nbconvert --no-input``).

    Returns
    -------
    str
        The HTML; images embedded as ``data:`` URIs, no external scripts.
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"ketastats_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="ketastats_offline.html.j2",
        exclude_input=exclude_input,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(copy.deepcopy(nb))
    return body


@contextlib.contextmanager
def _kernel_imports_this_package() -> Iterator[None]:
    """Put this ketastats first on the kernel's ``PYTHONPATH`` while it starts.

    The kernel is a separate process; without this it could import another installed
    ketastats than the one running the workflow.
    """
    here = str(Path(__file__).resolve().parents[1])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([here, old]) if old else here
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _ipc_kernel_manager(socket_prefix: Path):
    """A kernel manager that talks to its kernel over Unix sockets under ``socket_prefix``.

    With TCP, jupyter_client picks free ports and the kernel binds them a moment later, so
    kernels started side by side (notebook jobs in parallel, on a cluster node) can pick the
    same port, and one dies with "Address already in use". IPC sockets are files named
    ``<socket_prefix>-1`` ... ``-5``; the prefix lies in the run's own temporary folder, so
    no two kernels share one (jupyter_client's default prefix, ``kernel-ipc`` in the working
    directory, would be shared by every kernel started there).
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            return str(socket_prefix)

    return IPCKernelManager


def _failure_message(name: str, exc: Exception, failed_copy: Path | None) -> str:
    cell = getattr(exc, "exec_count", None)
    index = getattr(exc, "cell_index", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    source = (getattr(exc, "source", "") or "").strip()
    where = f"cell {index}" if index is not None else "a cell"
    if cell is not None:
        where += f" (In [{cell}])"
    msg = f"notebook {name} failed in {where}: {ename}: {evalue}"
    if source:
        msg += "\n--- the failing cell ---\n" + source + "\n---"
    if failed_copy is not None:
        msg += f"\nThe executed notebook with the full traceback is at {failed_copy}."
    return msg


def run_notebook(
    notebook: str | os.PathLike,
    executed: str | os.PathLike,
    html: str | os.PathLike | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
    kernel_name: str = "python3",
    failed_copy: str | os.PathLike | None = None,
    exclude_input: bool = False,
    timeout: int = 600,
) -> None:
    """Execute ``notebook`` with papermill; write the executed copy and its HTML export.

    Parameters
    ----------
    notebook : path
        The source notebook (stored without outputs).
    executed : path
        Where to write the executed notebook.
    html : path, optional
        Where to write the HTML export (none if omitted).
    parameters : mapping, optional
        Values injected after the notebook's ``parameters`` cell (e.g. ``cohort``, ``root``).
    cwd : path, optional
        The kernel's working directory (default: the current one).
    kernel_name : str
        Jupyter kernel to run (default ``python3``: the environment's ipykernel).
    failed_copy : path, optional
        Where to keep the executed notebook when a cell fails.
    exclude_input : bool
        Leave code out of the HTML.
    timeout : int
        Seconds a single cell may run.

    Raises
    ------
    NotebookError
        If a cell raises: the message names the notebook, the cell, its source and the
        error. Nothing is written to ``executed`` or ``html`` then.

    Examples
    --------
    In the project folder, on a cohort the workflow has run (as rule ``notebook`` does):

    .. code-block:: python

        run_notebook("notebooks/01_cohort.ipynb", "reports/demo/notebooks/01_cohort.ipynb",
                     "reports/demo/notebooks/01_cohort.html",
                     parameters={"cohort": "demo", "root": "."})
    """
    require_notebook_packages()
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    src = Path(notebook)
    if not src.is_file():
        raise NotebookError(f"notebook {src} does not exist")
    name = src.stem
    with tempfile.TemporaryDirectory(prefix=f"ketastats-{name}-") as tmpdir:
        tmp_out = Path(tmpdir) / src.name
        try:
            with _kernel_imports_this_package():
                papermill.execute_notebook(
                    str(src),
                    str(tmp_out),
                    parameters=dict(parameters or {}),
                    kernel_name=kernel_name,
                    cwd=None if cwd is None else str(cwd),
                    progress_bar=False,
                    log_output=False,
                    execution_timeout=timeout,
                    kernel_manager_class=_ipc_kernel_manager(Path(tmpdir) / "kernel"),
                )
        except PapermillExecutionError as exc:
            keep = None
            if failed_copy is not None and tmp_out.is_file():
                keep = Path(failed_copy)
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp_out, keep)
            raise NotebookError(_failure_message(name, exc, keep)) from None
        nb = nbformat.read(tmp_out, as_version=4)
    normalize_notebook(nb, output_path=str(executed))
    with atomic_path(executed) as tmp:
        nbformat.write(nb, str(tmp))
    log.info("executed %s -> %s", src, executed)
    if html is not None:
        write_text_atomic(html, notebook_to_html(nb, exclude_input=exclude_input))
        log.info("exported %s", html)
