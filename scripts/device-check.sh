#!/usr/bin/env bash
# The device check: what gan-gpu measures on a machine with a real GPU, in one folder.
#
#   scripts/device-check.sh [--binary FILE] [--data DIR] [--out DIR] [--iterations N]
#
# Needs only the built binary (`cargo build --release` anywhere, then copy
# target/release/gan-gpu), the MNIST folder (data/mnist of the repository) and the GPU's
# Vulkan, Metal or DX12 driver: no network, no Rust toolchain, no other tools. Runs, in
# order, with the cache folder inside the output folder:
#   adapters   every adapter wgpu finds                      adapters.json, adapters.txt
#   selftest   every kernel against the CPU reference        selftest.json, selftest.log
#   bench      every kernel and a training step on the GPU   bench.json, bench.log
#   train      3,000 iterations with --device gpu            train/ (run folder), loss.csv,
#                                                             last-samples.png, train.log
# and writes summary.txt: each step's exit status and seconds. Every step runs even when
# an earlier one fails; the script exits 1 if any failed.
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
binary="$here/target/release/gan-gpu"
data="$here/data/mnist"
out="device-check-$(date +%Y%m%d-%H%M%S)"
iterations=3000

while (($#)); do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --iterations) iterations="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "device-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ ! -x "$binary" ]]; then
    echo "device-check: no gan-gpu binary at $binary (build it with cargo build --release, or pass --binary FILE)" >&2
    exit 2
fi
if [[ ! -d "$data" ]]; then
    echo "device-check: no MNIST folder at $data (pass --data DIR: the repository's data/mnist)" >&2
    exit 2
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
# The selftest's verdict and anything else cached stays with the results.
export XDG_CACHE_HOME="$out/cache"
# Mesa and some loaders warn without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

summary="$out/summary.txt"
{
    echo "gan-gpu device check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "binary: $binary ($("$binary" --version 2>&1))"
    echo "host: $(uname -srm)"
    [[ -n "${GAN_GPU_KERNELS:-}" ]] && echo "GAN_GPU_KERNELS=$GAN_GPU_KERNELS"
    [[ -n "${WGPU_BACKEND:-}" ]] && echo "WGPU_BACKEND=$WGPU_BACKEND"
    [[ -n "${WGPU_ADAPTER_NAME:-}" ]] && echo "WGPU_ADAPTER_NAME=$WGPU_ADAPTER_NAME"
} >"$summary"

failed=0
# step NAME STDOUT STDERR ARGS...: runs the binary, records status and time.
step() {
    local name="$1" stdout="$2" stderr="$3"
    shift 3
    echo "device-check: $name ..." >&2
    local start=$SECONDS
    "$binary" "$@" >"$stdout" 2>"$stderr"
    local status=$?
    local took=$((SECONDS - start))
    printf '%-10s exit %d  %5d s  gan-gpu %s\n' "$name" "$status" "$took" "$*" >>"$summary"
    if ((status != 0)); then
        failed=1
        echo "device-check: $name FAILED (exit $status), see $stderr" >&2
    fi
}

step adapters "$out/adapters.json" "$out/adapters.log" adapters --json
"$binary" adapters >"$out/adapters.txt" 2>>"$out/adapters.log"
step selftest "$out/selftest.json" "$out/selftest.log" selftest --json
step bench "$out/bench.json" "$out/bench.log" bench --json --device gpu
step train /dev/null "$out/train.log" train --device gpu --iterations "$iterations" \
    --data "$data" --out "$out/train" --log-every 100 --sample-every 500 \
    --checkpoint-every "$iterations"

if [[ -f "$out/train/loss.csv" ]]; then
    cp "$out/train/loss.csv" "$out/loss.csv"
fi
last_sample="$(ls "$out/train/samples/"iter_*.png 2>/dev/null | sort | tail -n 1)"
if [[ -n "$last_sample" ]]; then
    cp "$last_sample" "$out/last-samples.png"
    echo "last sample grid: $(basename "$last_sample")" >>"$summary"
fi

cat "$summary" >&2
echo "device-check: results in $out" >&2
exit "$failed"
