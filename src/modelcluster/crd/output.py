"""Where the generated CRDs are written: the repository's ``crds/`` and the Helm chart's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelcluster.crd.definition import render_crd, render_tenant_crd

#: Each CRD file and the function rendering it.
CRD_RENDERINGS: dict[Path, Callable[[], str]] = {
    Path("crds/modelclusters.yaml"): render_crd,
    Path("charts/modelcluster/crds/modelclusters.yaml"): render_crd,
    Path("crds/tenants.yaml"): render_tenant_crd,
    Path("charts/modelcluster/crds/tenants.yaml"): render_tenant_crd,
}
CRD_PATHS = tuple(CRD_RENDERINGS)


def write_crds(root: Path) -> list[Path]:
    """Write every rendering to its path under ``root``; return the paths written."""
    written = []
    for relative, render in CRD_RENDERINGS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def stale_paths(root: Path) -> list[Path]:
    """The CRD files under ``root`` that are missing or differ from a fresh rendering."""
    return [
        root / relative
        for relative, render in CRD_RENDERINGS.items()
        if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != render()
    ]
