"""``seesay report``: one self-contained HTML page (and its PNGs) from what seesay writes.

    write_report(["runs/eval", "seesay_profile.json", "runs/sweep"], "report.html")

reads each source (:mod:`seesay.report.sources`), plots with matplotlib (:mod:`seesay.report.figures`),
and writes ``report.html`` with every figure inline plus the same PNGs in ``report_files/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..eval.rundir import atomic_write_text
from . import page
from .model import Figure, Section
from .sources import read_sources

__all__ = ["ReportResult", "Section", "check_report_path", "write_report", "write_sections"]


@dataclass
class ReportResult:
    html: Path
    figures: list[Path]
    sections: int


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def check_report_path(path: str | Path | None, what: str = "--report") -> None:
    """Refuse (one line) a report path that is not an .html file, before any work is done."""
    if path is not None and Path(path).suffix.lower() not in (".html", ".htm"):
        from ..errors import ConfigError

        raise ConfigError(f"{what} writes an HTML file: give a path ending in .html, not {path}")


def write_sections(
    sections: Sequence[Section], out: str | Path, title: str = "seesay report", subtitle: str = ""
) -> ReportResult:
    """Write ``out`` (HTML, figures inline) and each figure's PNG in ``<out stem>_files/``."""
    out = Path(out)
    check_report_path(out, "the report")
    folder = out.with_name(out.stem + "_files")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names: set[str] = set()
    for section in sections:
        figs: list[Figure] = list(section.figures)
        figs += [t.figure for v in section.traces for t in v.tokens if t.figure is not None]
        for fig in figs:
            name = _safe(fig.name)
            stem, k = name.removesuffix(".png"), 1
            while name in names:
                k += 1
                name = f"{stem}_{k}.png"
            names.add(name)
            fig.name = name
            (folder / name).write_bytes(fig.png)
            written.append(folder / name)
    subtitle = subtitle or f"written {time.strftime('%Y-%m-%d %H:%M')} by seesay"
    atomic_write_text(out, page.render(sections, title, subtitle))
    return ReportResult(out, written, len(sections))


def write_report(paths: Sequence[str | Path], out: str | Path, title: str = "seesay report") -> ReportResult:
    """Read every source in ``paths`` and write the report (see the module docstring)."""
    sections = read_sources(paths)
    return write_sections(sections, out, title, subtitle="from " + ", ".join(str(p) for p in paths))
