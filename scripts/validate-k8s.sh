#!/usr/bin/env bash
# Validates Deploy/k8s with kubernetes-validate (PyPI) against the Kubernetes API schemas it
# bundles (no network at run time; only `pip install` needs PyPI, once). Every core object must
# pass --strict (unknown fields rejected). KEDA's ScaledObject and TriggerAuthentication are CRDs
# without bundled schemas: reported, and checked by Tests/EndToEndTests/Deploy/KubernetesManifestTests.swift.
# With kubectl on PATH the kustomize output (namespace and labels applied) is validated too.
#
#   scripts/validate-k8s.sh            # creates .venv-k8s on first use
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-k8s
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi
files=()
for f in Deploy/k8s/*.yaml; do [ "$(basename "$f")" = kustomization.yaml ] || files+=("$f"); done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"$venv/bin/kubernetes-validate" --strict "${files[@]}" >"$out" 2>&1 || status=$?
if command -v kubectl >/dev/null 2>&1; then
  built=$(mktemp --suffix=.yaml)
  kubectl kustomize Deploy/k8s >"$built"
  "$venv/bin/kubernetes-validate" --strict "$built" >>"$out" 2>&1 || status=$?
  rm -f "$built"
else
  echo "kubectl not on PATH: the kustomize output was not validated (the files were)" >>"$out"
fi
cat "$out"
passed=$(grep -c ' passed for resource ' "$out" || true)
missing=$(grep -c "Couldn't find schema" "$out" || true)
unexpected=$(grep "Couldn't find schema" "$out" | grep -v 'keda.sh/v1alpha1' || true)
echo "kubernetes-validate: $passed objects passed; $missing without a bundled schema (KEDA CRDs)"
if [ -n "$unexpected" ]; then echo "objects of unknown kinds besides KEDA's:" >&2; echo "$unexpected" >&2; exit 1; fi
if grep -qE 'ERROR|failed' "$out"; then exit 1; fi
exit "$status"
