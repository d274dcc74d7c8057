"""The CustomResourceDefinitions of ModelCluster and Tenant, generated from ``modelcluster.api``."""

from modelcluster.crd.definition import build_crd, build_tenant_crd, render_all_crds, render_crd, render_tenant_crd
from modelcluster.crd.output import CRD_PATHS, CRD_RENDERINGS, stale_paths, write_crds

__all__ = [
    "CRD_PATHS",
    "CRD_RENDERINGS",
    "build_crd",
    "build_tenant_crd",
    "render_all_crds",
    "render_crd",
    "render_tenant_crd",
    "stale_paths",
    "write_crds",
]
