#!/usr/bin/env bash
# Installs what the real-browser test of the blotter page needs:
#   chromium       - the distribution's package (/usr/bin/chromium), never a browser download;
#   playwright-core - from npm into tests/browser/node_modules (git-ignored), pinned by
#                     tests/browser/package.json. playwright-core ships no browser and its
#                     install step downloads nothing; `npx playwright install` is never run.
# Idempotent and fast when both are present. Exit status 3 means chromium could not be
# installed (the test then skips with that message); any other failure is an error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BROWSER_DIR="${ROOT}/tests/browser"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

log() { printf 'install-browser: %s\n' "$*" >&2; }

install_chromium() {
    if [[ -x "${CHROMIUM}" ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        log "chromium is missing and apt-get is not available to install it"
        return 3
    fi
    local sudo=""
    if [[ "$(id -u)" != "0" ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            log "chromium is missing and installing it needs root"
            return 3
        fi
    fi
    log "installing the chromium package"
    if ! ${sudo} apt-get update -qq \
        || ! DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends \
            chromium fonts-liberation >/dev/null; then
        log "apt-get could not install chromium"
        return 3
    fi
    if [[ ! -x "${CHROMIUM}" ]]; then
        log "the chromium package did not provide ${CHROMIUM}"
        return 3
    fi
}

install_playwright_core() {
    command -v node >/dev/null || { log "node is required to drive the browser"; return 1; }
    local wanted installed
    wanted="$(node -p "require('${BROWSER_DIR}/package.json').dependencies['playwright-core']")"
    installed="$(node -p "try { require('${BROWSER_DIR}/node_modules/playwright-core/package.json')
        .version } catch { '' }")"
    if [[ "${installed}" == "${wanted}" ]]; then
        return 0
    fi
    command -v npm >/dev/null || { log "npm is required to install playwright-core"; return 1; }
    log "installing playwright-core ${wanted} from npm"
    # No browser download: playwright-core has none, and the variable guards against a wrapper.
    # No lock file: the one dependency is pinned exactly and has no dependencies of its own.
    (cd "${BROWSER_DIR}" \
        && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --no-save \
            --no-package-lock --silent)
}

install_chromium
install_playwright_core
log "ready: $("${CHROMIUM}" --version 2>/dev/null || echo chromium), playwright-core $(
    node -p "require('${BROWSER_DIR}/node_modules/playwright-core/package.json').version")"
