# Shared settings of the kind scripts (sourced, not run).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-modelcluster-e2e}"
NAMESPACE="${NAMESPACE:-modelcluster-system}"
RELEASE="${RELEASE:-modelcluster}"
REGISTRY="${REGISTRY:-ghcr.io/modelcluster}"
IMAGE_VERSION="${IMAGE_VERSION:-0.1.0}"
# The families the scenarios use: text (embeddings) and llm (chat).
FAMILIES="${FAMILIES:-text llm}"
STATE="${STATE:-$REPO/.devcluster/kind}"
export KUBECONFIG="$STATE/kubeconfig"

log() { printf '[%(%H:%M:%S)T] kind-e2e: %s\n' -1 "$*" >&2; }

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "kind-e2e: $tool is required (see e2e/kind/README.md)" >&2; exit 1; }
  done
}
