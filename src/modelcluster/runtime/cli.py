"""``modelcluster runtime``: serve one model for one task over HTTP."""

from __future__ import annotations

import logging
from typing import Any

import click


@click.command("runtime")
@click.option("--model-id", envvar="MODEL_ID", help="Hub model id or local model directory (env MODEL_ID).")
@click.option("--task", envvar="TASK", help="Task to serve (env TASK).")
@click.option("--host", envvar="HOST", default="0.0.0.0", show_default=True)
@click.option("--port", envvar="PORT", type=int, default=8000, show_default=True)
@click.option("--log-level", default="info", show_default=True)
def runtime(model_id: str | None, task: str | None, host: str, port: int, log_level: str) -> None:
    """Run the inference server; every other setting comes from the environment (see docs/runtime.md)."""
    import uvicorn

    from modelcluster.runtime.app import create_app
    from modelcluster.runtime.settings import RuntimeSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"host": host, "port": port}
    if model_id:
        overrides["model_id"] = model_id
    if task:
        overrides["task"] = task
    settings = RuntimeSettings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level, access_log=False)
