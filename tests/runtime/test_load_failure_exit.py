"""A runtime process whose model cannot load: the cause in the log and the termination message, a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runtime_support import free_port

from modelcluster.api.exit_codes import MODEL_LOAD_FAILED_EXIT_CODE


def test_fatal_load_error_ends_the_process_with_its_cause(tmp_path: Path) -> None:
    empty_model = tmp_path / "no-model-here"
    empty_model.mkdir()
    termination_log = tmp_path / "termination-log"
    termination_log.touch()  # Kubernetes creates the file; the runtime only writes to an existing one
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEVICE": "cpu", "TERMINATION_MESSAGE_PATH": str(termination_log)}
    env["MODEL_DIRS"] = str(tmp_path)  # the empty directory is under a model root: the load itself fails
    argv = [sys.executable, "-m", "modelcluster.runtime", "--host", "127.0.0.1", "--port", str(free_port())]
    argv += ["--model-id", str(empty_model), "--task", "text-classification"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)

    assert done.returncode == MODEL_LOAD_FAILED_EXIT_CODE, done.stdout + done.stderr
    message = termination_log.read_text()
    assert message.startswith(f"{empty_model}: ")
    assert "Error" in message
    assert "model failed to load" in done.stdout + done.stderr
