"""``modelcluster runtime``: serve one model for one task over HTTP."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import click

# Idle keep-alive connections stay open longer than the gateway keeps them pooled (60 s), so the
# gateway, not the runtime, closes them: no request is sent on a connection the runtime just closed.
KEEP_ALIVE_S = 75


@click.command("runtime")
@click.option(
    "--model-id",
    envvar="MODEL_ID",
    help="Hub model id (org/name) or a model directory under CACHE_DIR, HF_HOME or MODEL_DIRS (env MODEL_ID).",
)
@click.option("--task", envvar="TASK", help="Task to serve (env TASK).")
@click.option("--host", envvar="HOST", default="0.0.0.0", show_default=True)
@click.option("--port", envvar="PORT", type=int, default=8000, show_default=True)
@click.option("--log-level", default="info", show_default=True)
def runtime(model_id: str | None, task: str | None, host: str, port: int, log_level: str) -> None:
    """Run the inference server; every other setting comes from the environment (see docs/runtime.md)."""
    from modelcluster.runtime.startup import StartupClock

    startup = StartupClock()
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from modelcluster.api.exit_codes import MODEL_LOAD_FAILED_EXIT_CODE
    from modelcluster.runtime.app import create_app
    from modelcluster.runtime.server import DrainingServer
    from modelcluster.runtime.settings import RuntimeSettings
    from modelcluster.runtime.termination import write_termination_message

    startup.mark("interpreter")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"host": host, "port": port}
    if model_id:
        overrides["model_id"] = model_id
    if task:
        overrides["task"] = task
    settings = RuntimeSettings(**overrides)
    exit_code = {"value": 0}

    def load_failed(cause: str) -> None:
        # Fatal: the pod restarts (with back-off) and its status carries the cause at once.
        write_termination_message(settings.termination_message_path, f"{settings.model_id}: {cause}")
        logging.getLogger("modelcluster.runtime").error("exiting with code %d: %s", MODEL_LOAD_FAILED_EXIT_CODE, cause)
        exit_code["value"] = MODEL_LOAD_FAILED_EXIT_CODE
        server.should_exit = True

    if settings.standby_family is not None:
        from modelcluster.runtime.standby import StandbyRuntime

        app: Any = StandbyRuntime(
            settings,
            make_app=lambda claimed, clock: create_app(claimed, on_load_failure=load_failed, startup=clock),
            startup=startup,
        )
        on_drain = app.start_draining
    else:
        app = create_app(settings, on_load_failure=load_failed, startup=startup)
        on_drain = app.state.runtime.start_draining
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )
    server = DrainingServer(config, drain_delay_s=settings.drain_delay_s, on_drain=on_drain)
    server.run()
    if not server.started and not exit_code["value"]:
        sys.exit(STARTUP_FAILURE)
    # The app has shut down. Skip the interpreter's teardown: collecting torch's and transformers' objects
    # takes seconds, and it would wait for an inference thread a drain timeout left running.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code["value"])
