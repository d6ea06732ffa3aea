#!/usr/bin/env bash
# Build the local test control plane from pinned Go modules (see docs/testing.md).
#
# Each component has a module of its own under e2e/controlplane/<name>/, so their dependency graphs
# never meet. Binaries land in $BREAKEVEN_E2E_CACHE/bin (default ~/.cache/breakeven-e2e/bin), named
# with their version: a warm machine skips the build, a cold one builds once. The Go module cache
# and the Go build cache stay in their default places outside the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${BREAKEVEN_E2E_CACHE:-$HOME/.cache/breakeven-e2e}
bin=$cache/bin
mkdir -p "$bin" "$cache/data"

# Pinned versions; each must match the go.mod of its module.
KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
LWS_VERSION=v0.9.0
HELM_VERSION=v3.22.0
# llm-d-inference-sim: a vLLM simulator whose /metrics are the live vllm:* series of the e2e tests
# (e2e/inference_sim.py). `go install ...@v0.10.2` fails (the proxy refuses the module's version
# list, which go install reads for deprecations); a module of our own that requires it builds.
INFERENCE_SIM_VERSION=v0.10.2
# Our own small tools (gitops/: the Argo CD Lua health runner on gopher-lua, the kstatus checker)
# are named by a hash of their sources, so an edit rebuilds them.
GITOPS_VERSION=src-$(cd "$here/gitops" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)

export GOFLAGS=${GOFLAGS:--mod=mod}
export CGO_ENABLED=0

targets=(
  "kube-apiserver:kubernetes:k8s.io/kubernetes/cmd/kube-apiserver:$KUBE_VERSION"
  "kube-controller-manager:kubernetes:k8s.io/kubernetes/cmd/kube-controller-manager:$KUBE_VERSION"
  "kube-scheduler:kubernetes:k8s.io/kubernetes/cmd/kube-scheduler:$KUBE_VERSION"
  "kubectl:kubernetes:k8s.io/kubernetes/cmd/kubectl:$KUBE_VERSION"
  "etcd:etcd:.:$ETCD_VERSION"
  "kwok:kwok:sigs.k8s.io/kwok/cmd/kwok:$KWOK_VERSION"
  "kwokctl:kwok:sigs.k8s.io/kwok/cmd/kwokctl:$KWOK_VERSION"
  "lws-controller:lws:sigs.k8s.io/lws/cmd:$LWS_VERSION"
  "helm:helm:helm.sh/helm/v3/cmd/helm:$HELM_VERSION"
  "lua-health:gitops:./cmd/lua-health:$GITOPS_VERSION"
  "kstatus:gitops:./cmd/kstatus:$GITOPS_VERSION"
  "llm-d-inference-sim:inference-sim:github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim:$INFERENCE_SIM_VERSION"
)

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

# helm's own Makefile (v3.22.0, Makefile lines 46-69) stamps its version and the Kubernetes version
# it assumes when no cluster is asked (the client-go minor it is built with, major = 0 + 1); without
# these `helm template` believes it renders for Kubernetes v1.20 and refuses `kubeVersion: >=1.30`.
helm_ldflags() {
  local kv major minor
  kv=$(cd "$here/helm" && go list -f '{{.Version}}' -m k8s.io/client-go) # v0.37.0
  kv=${kv#v}; major=$((${kv%%.*} + 1)); minor=${kv#*.}; minor=${minor%%.*}
  echo "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/internal/version.gitTreeState=clean \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

total=${#targets[@]}
i=0
start=$(date +%s)
for t in "${targets[@]}"; do
  IFS=: read -r name module pkg version <<<"$t"
  i=$((i + 1))
  out=$bin/$name-$version
  if [[ -x $out ]]; then
    echo "[$i/$total] $name $version: cached ($out)"
    continue
  fi
  ldflags="-s -w"
  [[ $module == kubernetes ]] && ldflags=$kube_ldflags
  [[ $module == helm ]] && ldflags=$(helm_ldflags)
  echo "[$i/$total] building $name $version (a cold build takes several minutes; $(($(date +%s) - start))s so far)"
  (cd "$here/$module" && go build -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
done

# Data the harness needs from the modules: kwok's stage definitions and the LWS CRD.
copy_data() { # module-dir module-path src dest
  local dir
  dir=$(cd "$here/$1" && go list -m -f '{{.Dir}}' "$2")
  mkdir -p "$(dirname "$4")"
  cp "$dir/$3" "$4.tmp" && mv "$4.tmp" "$4"
}
for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
  pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  dest=$cache/data/kwok-$KWOK_VERSION/$(basename "$s").yaml
  [[ -f $dest ]] || copy_data kwok sigs.k8s.io/kwok "kustomize/stage/$s.yaml" "$dest"
done
# The LWS controller also runs a DisaggregatedSet controller (v0.9): it needs that CRD installed too.
for crd in leaderworkerset.x-k8s.io_leaderworkersets:leaderworkerset-crd \
  disaggregatedset.x-k8s.io_disaggregatedsets:disaggregatedset-crd; do
  dest=$cache/data/lws-$LWS_VERSION/${crd#*:}.yaml
  [[ -f $dest ]] || copy_data lws sigs.k8s.io/lws "config/crd/bases/${crd%%:*}.yaml" "$dest"
done

# Gateway API's HTTPRoute CRD (standard channel, which carries RequestMirror's `percent`), from the
# module zip of sigs.k8s.io/gateway-api (v1.7.0 needs Go 1.27: stay on v1.6.3). No build, only data.
GATEWAY_API_VERSION=v1.6.3
dest=$cache/data/gateway-api-$GATEWAY_API_VERSION/httproutes-crd.yaml
if [[ ! -f $dest ]]; then
  dir=$(cd "$cache" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$(dirname "$dest")"
  cp "$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" "$dest.tmp" && mv "$dest.tmp" "$dest"
fi

echo "control plane binaries ready in $bin ($(($(date +%s) - start))s)"
