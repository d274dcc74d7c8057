"""Where the generated CRD is written: the repository's ``crds/`` and the Helm chart's."""

from __future__ import annotations

from pathlib import Path

from modelcluster.crd.definition import render_crd

CRD_PATHS = (Path("crds/modelclusters.yaml"), Path("charts/modelcluster/crds/modelclusters.yaml"))


def write_crds(root: Path) -> list[Path]:
    """Write the one rendering to every path under ``root``; return the paths written."""
    text = render_crd()
    written = []
    for relative in CRD_PATHS:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_paths(root: Path) -> list[Path]:
    """The CRD files under ``root`` that are missing or differ from a fresh rendering."""
    text = render_crd()
    return [
        root / relative
        for relative in CRD_PATHS
        if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text
    ]
