#!/usr/bin/env bash
# Thread scaling of the full analysis on the accelerator machine's CPU (16 cores, no Node, no
# network), against PyTorch at the same thread count (issue 20): bench/scaling.ts, bundled.
#
#   tools/device/cpu-scaling.sh prepare   HERE, after npm ci: fills .device-carry/ (git-ignored)
#   tools/device/cpu-scaling.sh run       THERE, from the repo root with .device-carry carried
#
# .device-carry/ holds what tools/device/prepare.sh (the GPU bench's) makes, and this script
# makes the same files when they are missing, so one carry serves both:
#   node.xz        this machine's Node binary          ort.tar.xz     onnxruntime-node (linux-x64)
#   shared.tar.xz  GPT-2's BPE files + the Moby-Dick text (the checkpoint's tokenizer, the input)
# and its own:
#   cpu-scaling/   bench/scaling.js + bench/child.js as esbuild bundles (the engine inside),
#                  bench/reference/pytorch_analysis.py
#
# `run` makes the GPT-2-small-shaped random checkpoint there (0.5 GB, in /tmp), then measures at
# the most threads first: ours, PyTorch (time baseline) and lean PyTorch (memory baseline) at
# 512 and 1024 tokens; engine settings at those threads (--variants); onnxruntime's per-operator
# profile at the most threads and at 2 (--profile, when the runtime writes TD_ORT_PROFILE); then
# the smaller thread counts while the budget lasts. Everything is saved after every step:
#   $OUT/cpu-scaling.json, $OUT/cpu-scaling.md, $OUT/cpu-scaling.log
# Env (run): TD_SCALING_BUDGET_S (default 185: no new step starts after it), TD_SCALING_HARD_S
# (default 225: the bench is stopped, what it saved stays), TD_SCALING_ARGS (replaces the
# default arguments, e.g. "--threads 2 --sizes 64,128" for a test), TD_PYTHON (a python3 with
# torch; default: the first of python3, /usr/bin/python3 that imports it).
# Env (prepare): TD_SHARED_DATA (default <repo>/../shared/data), XZ_OPT (default -6 -T0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
C=$ROOT/.device-carry
log() { printf '[cpu-scaling +%ss] %s\n' "$SECONDS" "$*"; }

prepare() {
  local shared=${TD_SHARED_DATA:-$ROOT/../shared/data}
  export XZ_OPT=${XZ_OPT:--6 -T0}
  [[ -x node_modules/.bin/esbuild ]] || { echo "node_modules is missing: run npm ci first" >&2; exit 1; }
  mkdir -p "$C"
  if [[ ! -s $C/node.xz ]]; then
    log "compressing $(command -v node) ($(node --version))"
    xz -c "$(command -v node)" > "$C/node.xz.tmp" && mv "$C/node.xz.tmp" "$C/node.xz"
  fi
  if [[ ! -s $C/ort.tar.xz ]]; then
    log "packing onnxruntime-node"
    tar -C node_modules -cJf "$C/ort.tar.xz.tmp" onnxruntime-node/package.json onnxruntime-node/dist \
      onnxruntime-node/bin/napi-v6/linux/x64 onnxruntime-common
    mv "$C/ort.tar.xz.tmp" "$C/ort.tar.xz"
  fi
  if [[ ! -s $C/shared.tar.xz ]]; then
    log "packing GPT-2's BPE files and the Moby-Dick text from $shared"
    tar -C "$shared" -cJf "$C/shared.tar.xz" gpt2-bpe/encoder.json gpt2-bpe/vocab.bpe moby-dick/moby-dick.txt
  fi
  rm -rf "$C/cpu-scaling"
  mkdir -p "$C/cpu-scaling/bench/reference"
  for entry in bench/scaling.ts bench/child.ts; do
    node_modules/.bin/esbuild "$entry" --bundle --platform=node --target=node20 --format=cjs --external:onnxruntime-node \
      --log-level=warning --outfile="$C/cpu-scaling/out/${entry%.ts}.js"
  done
  cp bench/reference/pytorch_analysis.py "$C/cpu-scaling/bench/reference/"
  # what travels: tracked + untracked-not-ignored files, and the carry (64 MiB in all); the bundled
  # model's weights are not needed there (move them out for the call, as for the GPU bench)
  local carry tree mini
  carry=$(du -sb "$C" | cut -f1)
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c '%s' 2>/dev/null | awk '{s+=$1} END {print s+0}')
  mini=$(stat -c '%s' media/models/td-mini/model.safetensors 2>/dev/null || echo 0)
  log "carry $(numfmt --to=iec "$carry") (.device-carry: name it in the call's carry), working tree $(numfmt --to=iec "$tree")"
  log "with media/models/td-mini/model.safetensors moved out for the call: $(numfmt --to=iec $((carry + tree - mini))) of 64 MiB"
}

run() {
  local out=${OUT:-/tmp/td-cpu-scaling-out}
  mkdir -p "$out"
  exec > >(tee "$out/cpu-scaling.log") 2>&1
  for f in node.xz ort.tar.xz shared.tar.xz cpu-scaling/out/bench/scaling.js; do
    [[ -s $C/$f ]] || { log "missing .device-carry/$f: run tools/device/cpu-scaling.sh prepare here first, and carry .device-carry"; exit 2; }
  done
  w=""
  w=$(mktemp -d /tmp/td-cpu-scaling.XXXXXX)
  trap 'rm -rf "$w"' EXIT
  log "unpacking"
  xz -dc "$C/node.xz" > "$w/node" && chmod +x "$w/node"
  cp -r "$C/cpu-scaling" "$w/app" && mkdir -p "$w/app/node_modules" && tar -C "$w/app/node_modules" -xJf "$C/ort.tar.xz"
  mkdir -p "$w/shared" && tar -C "$w/shared" -xJf "$C/shared.tar.xz"
  export PATH=$w:$PATH
  local py=${TD_PYTHON:-}
  if [[ -z $py ]]; then
    for cand in python3 /usr/bin/python3; do
      if command -v "$cand" >/dev/null && "$cand" -c 'import torch' 2>/dev/null; then py=$(command -v "$cand"); break; fi
    done
  fi
  log "node $(node --version); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  lscpu 2>/dev/null | grep -E '^(Thread|Core|Socket)' || true
  [[ -n $py ]] && "$py" -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads()); print(torch.__config__.show())' 2>&1 | grep -E 'torch|BLAS|MKL|OpenMP' | head -6
  [[ -z $py ]] && log "no python3 with torch: ours only"
  # thread counts (bench/scaling.ts): one per physical core, then 8, 4, 2
  local args=${TD_SCALING_ARGS:-"--sizes 512,1024 --repeats 1 --variants --profile"}
  [[ -z $py ]] && args+=" --no-torch"
  log "bench: $args (budget ${TD_SCALING_BUDGET_S:-185} s, stopped at ${TD_SCALING_HARD_S:-225} s)"
  local rc=0
  # shellcheck disable=SC2086
  TD_SHARED_DATA=$w/shared TD_PYTHON=${py:-/nonexistent} timeout -k 5 "${TD_SCALING_HARD_S:-225}" \
    node "$w/app/out/bench/scaling.js" $args --out "$out" --budget-s "${TD_SCALING_BUDGET_S:-185}" || rc=$?
  ((rc == 124)) && log "stopped at the hard limit: $out holds the steps saved so far"
  ls -la "$out"
  log "done (exit code $rc)"
  return $rc
}

case ${1:-} in
  prepare) prepare ;;
  run) run ;;
  *)
    echo "usage: tools/device/cpu-scaling.sh prepare|run" >&2
    exit 2
    ;;
esac
