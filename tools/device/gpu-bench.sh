#!/usr/bin/env bash
# The WebGPU benchmark on the accelerator machine (NVIDIA H200, no Node, no network), from the
# repo root with .device-carry/ carried (tools/device/prepare.sh makes it here). Under 6 minutes:
#   1. unpacks the Vulkan loader and libglvnd into / (TD_DEVICE_ROOT), Node, onnxruntime-node and
#      the bench's text files;
#   2. says what the machine has: the GPU, the Vulkan loader, torch with CUDA;
#   3. runs npm run bench:gpu's script (bench/gpu.ts, bundled): GPT-2-small shape (made there, it
#      does not fit in the call) at 128/512/1024 tokens and a 1.2 B Llama-shaped checkpoint, on
#      WebGPU and on all CPU cores, PyTorch CUDA for the same analysis, the numbers compared, the
#      node placement, an onnxruntime profile — results saved after every step.
# Writes to $OUT: gpu-bench.log, gpu-<date>.md, gpu-<date>.json.
# Env: TD_BENCH_ARGS (default: the full run), TD_BENCH_BUDGET_S (default 300: the bench is stopped
# then, its results so far kept), TD_DEVICE_ROOT (default /; a folder to test the unpacking
# elsewhere), TD_VK_ICD (default NVIDIA's driver manifest there).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
C=$PWD/.device-carry
OUT=${OUT:-/tmp/td-gpu-out}
W=$(mktemp -d /tmp/td-gpu.XXXXXX)
DEST=${TD_DEVICE_ROOT:-/}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-bench.log") 2>&1
T0=$(date +%s)
log() { printf '[gpu-bench +%ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
[[ -s $C/node.xz && -s $C/ort.tar.xz && -d $C/app ]] || { log "no .device-carry: run tools/device/prepare.sh here first, and carry .device-carry"; exit 2; }

log "1. unpacking"
for f in "$C"/debs/*.deb; do dpkg -x "$f" "$DEST" || log "dpkg -x $f failed"; done
[[ $DEST == / ]] && ldconfig
xz -dc "$C/node.xz" > "$W/node" && chmod +x "$W/node"
# the bench runs from a copy in /tmp: its checkpoints (0.5 and 2.4 GB) and caches stay out of the carry
cp -r "$C/app" "$W/app" && mkdir -p "$W/app/node_modules" && tar -C "$W/app/node_modules" -xJf "$C/ort.tar.xz"
mkdir -p "$W/shared" && tar -C "$W/shared" -xJf "$C/shared.tar.xz"
export PATH=$W:$PATH
log "node $(node --version)"

log "2. the machine"
nvidia-smi -L 2>&1 | head -4 || true
ldconfig -p | grep -E 'libvulkan|libGLX|libEGL\.' | head -5 || true
ICD=${TD_VK_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
if [[ -f $ICD ]]; then
  export VK_ICD_FILENAMES=$ICD VK_DRIVER_FILES=$ICD
  [[ -d /usr/local/nvidia/lib64 ]] && export LD_LIBRARY_PATH=/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  EGL=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [[ -f $EGL ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=$EGL
else
  log "no Vulkan driver manifest at $ICD: Dawn uses the loader's defaults"
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
log "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 | tail -1

log "3. the benchmark"
# shellcheck disable=SC2086
TD_SHARED_DATA=$W/shared timeout -k 10 "${TD_BENCH_BUDGET_S:-300}" node "$W/app/out/bench/gpu.js" --out "$OUT" ${TD_BENCH_ARGS:-}
rc=$?
((rc == 124)) && log "the bench ran out of its time budget: the results above are those saved so far"
ls -la "$OUT"
rm -rf "$W"
log "done (bench exit code $rc)"
exit $rc
