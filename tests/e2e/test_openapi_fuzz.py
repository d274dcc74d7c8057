"""The gateway against its own ``/openapi.json``: a schemathesis run on the live gateway and its model pods.

Every operation of the served document is exercised with generated requests (its coverage cases, then random ones,
valid and invalid), as a tenant; every answer must be no server error and must match the document: status code,
content type and body schema. A failed run prints its seed; ``MODELCLUSTER_FUZZ_SEED=<seed>`` runs that one again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import GatewayProcess, Tenant

pytestmark = pytest.mark.cluster

CONFIG = """
color = false
workers = 1
continue-on-failure = true
request-timeout = 10

[generation]
max-examples = 25
database = "none"

# Stateless: each request stands alone.
[phases.stateful]
enabled = false

[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true

[parameters]
# The model routes all work on one model, which a real runtime pod serves: every model id would get a cluster of its
# own (a PUT with a task creates one even for a model the catalog does not know).
"path.org" = "sentence-transformers"
"path.name" = "all-MiniLM-L6-v2"
# Every replica is a runtime process on this machine: a cluster that a request creates or patches has one.
"body.capacity.desired" = 1
# OpenAI requests name a real chat model half of the time, and ask for a few tokens.
"body.model" = { dictionary = "models", probability = 0.5 }
"body.max_tokens" = 8
"body.max_completion_tokens" = 8

[dictionaries.models]
values = ["modelcluster/tiny-chat", "sentence-transformers/all-MiniLM-L6-v2", "nobody/nothing"]

# A first inference request creates its model's cluster and is held until the pod has started (20-40 s here).
[[operations]]
include-name-regex = "^POST /models/v2/"
request-timeout = 180

# The coverage cases of the cluster bodies take capacities up to the limit (1000 replicas) whatever `parameters`
# say; the random cases keep to them.
[[operations]]
include-name = ["PUT /models/v2/{org}/{name}", "PATCH /models/v2/{org}/{name}"]
phases.coverage.enabled = false
"""


def test_gateway_answers_as_its_openapi_document_says(gateway: GatewayProcess, tenant: Tenant, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    argv = [
        str(schemathesis),
        f"--config-file={config}",
        "run",
        f"{gateway.url}/openapi.json",
        f"--header=Authorization: Key {tenant.key}",
    ]
    if seed := os.environ.get("MODELCLUSTER_FUZZ_SEED"):
        argv.append(f"--seed={seed}")
    # Run in tmp_path: schemathesis keeps the failing cases there, for `st replay <id>` from that directory.
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=420, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n(run in {tmp_path})"
