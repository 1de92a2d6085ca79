#!/usr/bin/env bash
# Idempotent, offline-capable setup for the real-client e2e tests.
#
#  1. Installs the Debian packages the tests need (only the missing ones;
#     `apt-get update` only when the install fails or no package lists exist).
#  2. Installs code-server 4.100.3 (VS Code 1.100.3, last release that runs on
#     Node 20) into a cache folder, following docs/TESTING.md's offline sequence.
#
# Cache folder: $TD_CODE_SERVER_DIR, default <repo>/.cache/code-server-4.100.3.
# When the cache is complete (marker file) and the packages are present, this
# exits immediately. Binary afterwards: $DIR/node_modules/.bin/code-server
#
# `--unit`: only the packages the unit tests need (chromium for SwiftShader's Vulkan driver and
# libvulkan1, the loader onnxruntime's WebGPU provider opens), then exit: `npm test` runs this
# before the unit tests, so it works as the first command on a bare machine.
#
# Env:
#   TD_CODE_SERVER_DIR   cache folder (see above)
#   TD_E2E_SKIP_APT=1    never call apt-get (fail if packages are missing)
#   TD_E2E_FORCE=1       wipe and reinstall code-server
set -euo pipefail

CS_VERSION=4.100.3
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
DIR=${TD_CODE_SERVER_DIR:-$REPO_ROOT/.cache/code-server-$CS_VERSION}
MARKER="$DIR/.td-e2e-setup-complete"
PKGS=(chromium libvulkan1 ripgrep libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev pkg-config)
UNIT_ONLY=""
if [[ "${1:-}" == --unit ]]; then
  UNIT_ONLY=1
  PKGS=(chromium libvulkan1)
fi

T0=$(date +%s)
log() { printf '[e2e-setup +%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '[e2e-setup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. Debian packages
missing_pkgs() {
  local p
  for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s ' "$p"
    fi
  done
}

MISSING=$(missing_pkgs)
if [[ -n "$MISSING" ]]; then
  [[ "${TD_E2E_SKIP_APT:-}" == 1 ]] && die "missing Debian packages: $MISSING (TD_E2E_SKIP_APT=1)"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing Debian packages ($MISSING) and not root / no sudo"
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "installing Debian packages: $MISSING"
  # shellcheck disable=SC2086
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null \
     || ! $SUDO apt-get install -y --no-install-recommends $MISSING; then
    log "apt-get update (package lists missing or stale)"
    $SUDO apt-get update
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $MISSING
  fi
  MISSING=$(missing_pkgs)
  [[ -z "$MISSING" ]] || die "still missing after apt-get: $MISSING"
  log "Debian packages installed"
fi

[[ -n "$UNIT_ONLY" ]] && exit 0

# ---------------------------------------------------------------- 2. code-server
if [[ -f "$MARKER" && -z "${TD_E2E_FORCE:-}" ]]; then
  echo "[e2e-setup] code-server $CS_VERSION ready in $DIR"
  exit 0
fi

command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[[ "$NODE_MAJOR" -ge 20 ]] || die "Node >= 20 required (have $(node -v))"

mkdir -p "$(dirname "$DIR")"
# Serialize concurrent setups (e.g. parallel CI jobs sharing the cache).
exec 9>"$DIR.lock"
if command -v flock >/dev/null; then
  log "waiting for lock $DIR.lock"
  flock 9
  if [[ -f "$MARKER" && -z "${TD_E2E_FORCE:-}" ]]; then
    echo "[e2e-setup] code-server $CS_VERSION ready in $DIR (installed by a concurrent run)"
    exit 0
  fi
fi

log "installing code-server $CS_VERSION into $DIR (takes a few minutes)"
rm -rf "$DIR"
mkdir -p "$DIR"

# Isolate from the repository's own npm project config (.npmrc, package.json).
printf '{ "name": "td-e2e-code-server", "private": true }\n' >"$DIR/package.json"
: >"$DIR/.npmrc"

# node-gyp must not download Node headers: point it at the local ones.
NODE_PREFIX=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [[ -z "${npm_config_nodedir:-}" && -f "$NODE_PREFIX/include/node/node_api.h" ]]; then
  export npm_config_nodedir="$NODE_PREFIX"
fi
export npm_config_yes=true npm_config_fund=false npm_config_audit=false \
  npm_config_update_notifier=false npm_config_prefer_offline=true npm_config_loglevel=warn

cd "$DIR"
log "npm install code-server@$CS_VERSION --ignore-scripts"
npm install "code-server@$CS_VERSION" --ignore-scripts --no-save --no-package-lock

VSC="$DIR/node_modules/code-server/lib/vscode"
[[ -d "$VSC" ]] || die "unexpected layout: $VSC missing"
cd "$VSC"
log "npm install --omit=dev --ignore-scripts (lib/vscode)"
npm install --omit=dev --ignore-scripts

log "ripgrep: copy /usr/bin/rg"
RG=$(command -v rg || true)
[[ -n "$RG" ]] || die "rg not found (Debian package ripgrep)"
mkdir -p node_modules/@vscode/ripgrep/bin
cp "$RG" node_modules/@vscode/ripgrep/bin/rg

log "npm rebuild (native modules, lib/vscode)"
npm rebuild

log "symlinks"
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sf code-linux.sh code-server)
(cd bin/helpers && ln -sf browser-linux.sh browser.sh)

log "npm install --omit=dev (lib/vscode/extensions)"
(cd extensions && npm install --omit=dev)

cd "$DIR"
log "npm rebuild argon2"
npm rebuild argon2

BIN="$DIR/node_modules/.bin/code-server"
[[ -x "$BIN" ]] || die "$BIN missing"
log "smoke check: code-server --version"
# (own XDG_CONFIG_HOME: code-server writes a default config.yaml on first run)
XDG_CONFIG_HOME="$DIR/.smoke-config" "$BIN" --version 2>&1 | grep -E "^$CS_VERSION " \
  || die "code-server --version did not report $CS_VERSION"
rm -rf "$DIR/.smoke-config"

date -u +"code-server $CS_VERSION installed %Y-%m-%dT%H:%M:%SZ in $(( $(date +%s) - T0 ))s" >"$MARKER"
log "done: $BIN"
