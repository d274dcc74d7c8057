#!/usr/bin/env bash
# Create a kind cluster, build the images and load them into it, and install the chart.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker kind helm kubectl
mkdir -p "$STATE"

if kind get clusters | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists; reusing it"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s
fi

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  log "building images ($REGISTRY, $IMAGE_VERSION, families: $FAMILIES)"
  make -C "$REPO" images REGISTRY="$REGISTRY" IMAGE_VERSION="$IMAGE_VERSION" FAMILIES="$FAMILIES"
fi
images=("$REGISTRY/control-plane:$IMAGE_VERSION")
for family in $FAMILIES; do images+=("$REGISTRY/runtime-$family:$IMAGE_VERSION"); done
for image in "${images[@]}"; do
  log "loading $image into $CLUSTER"
  kind load docker-image --name "$CLUSTER" "$image"
done

# The bootstrap key: made here, kept in the state directory, given to the chart as a Secret (never a value).
if [[ ! -f "$STATE/api-key" ]]; then
  python3 -c 'import secrets; print(f"mc_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}")' >"$STATE/api-key"
  chmod 600 "$STATE/api-key"
fi

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret generic e2e-bootstrap-key --from-file=key="$STATE/api-key" \
  --dry-run=client -o yaml | kubectl apply -f -

log "installing the chart as $RELEASE in $NAMESPACE"
families=()
for family in text llm vision audio diffusion; do
  families+=("--set=modelImages.$family=$REGISTRY/runtime-$family:$IMAGE_VERSION")
done
helm upgrade --install "$RELEASE" "$REPO/charts/modelcluster" \
  --namespace "$NAMESPACE" --create-namespace \
  --values "$REPO/e2e/kind/values-kind.yaml" \
  --set "image.repository=$REGISTRY/control-plane" --set "image.tag=$IMAGE_VERSION" \
  "${families[@]}" \
  --set "bootstrapKey.existingSecret=e2e-bootstrap-key" \
  --wait --timeout 5m
kubectl -n "$NAMESPACE" get pods -o wide
log "ready: export KUBECONFIG=$KUBECONFIG"
