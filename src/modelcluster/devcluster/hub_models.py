"""``modelcluster dev --hub-models``: every catalog model's pods run its family's runtime as a process.

By default the local cluster runs a runtime process only for the images of ``e2e/pod-commands.yaml`` (the text
family's image and the local images the catalog gives the offline models); pods of the other families' images are
simulated. With ``--hub-models`` each family image of the catalog is mapped to ``modelcluster runtime`` on the CPU
as well, reading the same hub cache (``~/.cache/modelcluster/hf-home``), so any catalog model whose weights are
in that cache serves with its real weights.

The egress guard keeps every packet of the cluster on this machine, pods included, so the runtime never downloads:
weights are fetched beforehand from an ordinary shell (outside the cluster), for instance
``HF_HOME=~/.cache/modelcluster/hf-home .venv/bin/hf download openai-community/gpt2``. A pod whose model is not
in the cache fails to load, and says so in its log.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelcluster.catalog import Catalog
from modelcluster.devcluster.config import PodCommand

#: The environment of a family runtime on the CPU over the local cluster's hub cache (as e2e/pod-commands.yaml).
RUNTIME_ENV = {
    "DEVICE": "cpu",
    "HF_HOME": "${MODELCLUSTER_CACHE}/hf-home",
    "HF_HUB_OFFLINE": "1",
    "TORCH_THREADS": "1",
}


def hub_model_commands(catalog: Catalog, mapped: Mapping[str, PodCommand]) -> dict[str, PodCommand]:
    """``mapped`` with a runtime process for every family image of ``catalog`` that it does not map yet."""
    commands = dict(mapped)
    for family in catalog.families.values():
        commands.setdefault(family.image, PodCommand(command=["modelcluster", "runtime"], env=dict(RUNTIME_ENV)))
    return commands
