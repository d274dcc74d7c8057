#!/usr/bin/env bash
# Delete the kind cluster and the state directory (the images stay in the local docker).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need kind
log "deleting kind cluster $CLUSTER"
kind delete cluster --name "$CLUSTER"
rm -rf "$STATE"
