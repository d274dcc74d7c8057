"""The CustomResourceDefinition of ModelCluster, generated from ``modelcluster.api``."""

from modelcluster.crd.definition import build_crd, render_crd
from modelcluster.crd.output import CRD_PATHS, stale_paths, write_crds

__all__ = ["CRD_PATHS", "build_crd", "render_crd", "stale_paths", "write_crds"]
