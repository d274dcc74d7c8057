#!/usr/bin/env bash
# The whole run: up, scenarios, down (the cluster is deleted even when a scenario fails; KEEP=1 keeps it).
here="$(dirname "${BASH_SOURCE[0]}")"
status=0
"$here/up.sh" && "$here/run.sh" || status=$?
if [[ "${KEEP:-}" != 1 ]]; then "$here/down.sh"; fi
exit "$status"
