#!/usr/bin/env bash
# Run HERE, from any folder of the repo (needs node_modules, a build of nothing: it bundles what it
# needs, and Debian's package mirror for four small .debs). Fills .device-carry/ (git-ignored) with
# everything tools/device/gpu-bench.sh needs on the accelerator machine, where there is no Node,
# no npm and no network:
#   node.xz          this machine's Node binary (x86-64; ~24 MB)
#   ort.tar.xz       onnxruntime-node + onnxruntime-common, JS and the linux-x64 binaries (~13 MB)
#   app/             bench/gpu.js, bench/child.js, tools/gpu-placement.js, tools/gpu-profile.js as
#                    esbuild bundles (the engine inside; onnxruntime-node external), the PyTorch
#                    baseline script
#   shared.tar.xz    GPT-2's BPE files and the Moby-Dick text the bench tokenizes (from ../shared/data)
#   debs/            the Vulkan loader and libglvnd (Dawn finds no adapter without them there)
# and prints what the call will send (the 64 MiB limit counts the working tree and the carry).
# Env: TD_SHARED_DATA (default <repo>/../shared/data), XZ_OPT (default -6 -T0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
C=.device-carry
SHARED=${TD_SHARED_DATA:-$ROOT/../shared/data}
export XZ_OPT=${XZ_OPT:--6 -T0}
log() { printf '[prepare] %s\n' "$*"; }
[[ $(uname -m) == x86_64 ]] || { echo "the accelerator machine is x86-64: run this on an x86-64 machine" >&2; exit 1; }
mkdir -p "$C"

# 1. Node, compressed once per binary (a stamp of its path, size and time)
NODE=$(command -v node)
stamp="$NODE $(stat -c '%s %Y' "$NODE")"
if [[ ! -s $C/node.xz || $(cat "$C/node.stamp" 2>/dev/null) != "$stamp" ]]; then
  log "compressing $NODE ($(node --version))"
  xz -c "$NODE" > "$C/node.xz.tmp" && mv "$C/node.xz.tmp" "$C/node.xz" && echo "$stamp" > "$C/node.stamp"
fi

# 2. onnxruntime-node: its JS, onnxruntime-common, and the linux-x64 binaries only
ORT_BIN=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
[[ -f $ORT_BIN/libonnxruntime.so.1 ]] || { echo "$ORT_BIN is missing: run npm ci first" >&2; exit 1; }
stamp="$(stat -c '%s %Y' "$ORT_BIN/libonnxruntime.so.1" "$ORT_BIN/onnxruntime_binding.node" | tr '\n' ' ')"
if [[ ! -s $C/ort.tar.xz || $(cat "$C/ort.stamp" 2>/dev/null) != "$stamp" ]]; then
  log "packing onnxruntime-node ($(node -p "require('onnxruntime-node/package.json').version"))"
  tar -C node_modules -cJf "$C/ort.tar.xz.tmp" onnxruntime-node/package.json onnxruntime-node/dist \
    onnxruntime-node/bin/napi-v6/linux/x64 onnxruntime-common
  mv "$C/ort.tar.xz.tmp" "$C/ort.tar.xz" && echo "$stamp" > "$C/ort.stamp"
fi

# 3. The bench as bundles: same relative layout as out/ (the bench finds its child and tools there)
rm -rf "$C/app"
mkdir -p "$C/app/bench/reference"
for entry in bench/gpu.ts bench/child.ts tools/gpu-placement.ts tools/gpu-profile.ts; do
  node_modules/.bin/esbuild "$entry" --bundle --platform=node --target=node20 --format=cjs --external:onnxruntime-node \
    --log-level=warning --outfile="$C/app/out/${entry%.ts}.js"
done
cp bench/reference/pytorch_analysis.py "$C/app/bench/reference/"

# 4. What the bench reads from ../shared/data
for f in gpt2-bpe/encoder.json gpt2-bpe/vocab.bpe moby-dick/moby-dick.txt; do
  [[ -f $SHARED/$f ]] || { echo "$SHARED/$f is missing (set TD_SHARED_DATA)" >&2; exit 1; }
done
tar -C "$SHARED" -cJf "$C/shared.tar.xz" gpt2-bpe/encoder.json gpt2-bpe/vocab.bpe moby-dick/moby-dick.txt

# 5. The Vulkan loader and libglvnd for amd64 (the device README's recipe)
if ! ls "$C"/debs/libvulkan1_*.deb >/dev/null 2>&1; then
  log "downloading the Vulkan loader and libglvnd .debs"
  mkdir -p "$C/debs" /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update >/dev/null
  (cd "$C/debs" && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi

# 6. What travels: tracked + untracked-not-ignored files, and the carry
carry=$(du -sb "$C" --exclude='*.stamp' | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c '%s' 2>/dev/null | awk '{s+=$1} END {print s+0}')
mini=$(stat -c '%s' media/models/td-mini/model.safetensors 2>/dev/null || echo 0)
log "carry $(numfmt --to=iec "$carry"), working tree $(numfmt --to=iec "$tree") ($(numfmt --to=iec "$mini") of it the bundled model's weights)"
total=$((carry + tree - mini))
log "with media/models/td-mini/model.safetensors moved out for the call: $(numfmt --to=iec $total) of 64 MiB"
((total < 64 * 1024 * 1024)) || { echo "too large for one call: move other large untracked files out too" >&2; exit 1; }
