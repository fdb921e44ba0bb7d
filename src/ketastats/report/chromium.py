"""Finding Chromium, which prints the report to PDF.

Kept apart from :mod:`.render` (pandas, matplotlib): the workflow calls
:func:`find_chromium` while parsing the Snakefile to decide whether ``report.pdf`` is a
target (config ``report.pdf: auto``).
"""

from __future__ import annotations

import os
import shutil

from ..exceptions import KetastatsError

__all__ = ["CHROMIUM_ARGS", "find_chromium"]

#: Chromium switches for a quiet, offline, headless run (as root in CI)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str:
    """Path of a Chromium binary: ``$KETASTATS_CHROMIUM``, else chromium on the PATH."""
    env = os.environ.get("KETASTATS_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise KetastatsError(
        "the PDF report needs Chromium, which was not found: install Debian's 'chromium' package "
        "(apt-get install chromium) or set KETASTATS_CHROMIUM to its path"
    )
