"""The ``modelcluster`` command: one entrypoint per component.

Subcommands are imported lazily so that each component's dependencies are only
needed when that component runs (the runtime's ML stack, the operator's kopf).
"""

from __future__ import annotations

import importlib

import click

# subcommand name -> "module:attribute" of a click command
SUBCOMMANDS: dict[str, str] = {
    "cluster": "modelcluster.devcluster.cli:cluster",
    "crd": "modelcluster.crd.cli:crd",
    "dev": "modelcluster.devcluster.devsystem:dev",
    "gateway": "modelcluster.gateway.cli:gateway",
    "images": "modelcluster.devcluster.images.cli:images",
    "keys": "modelcluster.gateway.keys_cli:keys",
    "usage": "modelcluster.gateway.metering.cli:usage",
    "operator": "modelcluster.operator.cli:operator",
    "runtime": "modelcluster.runtime.cli:runtime",
    "tenants": "modelcluster.gateway.tenants_cli:tenants",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="modelcluster", prog_name="modelcluster")
def main() -> None:
    """ModelCluster: serverless model inference on your own Kubernetes cluster."""
