#!/usr/bin/env bash
# Builds the GPU binary: `fourd` with the `cuda` and `nccl` features (multi-GPU data parallelism),
# into target-cuda/ so that the CPU build stays warm.
#
# On a machine with CUDA (nvcc on PATH) and NCCL installed this is just the cargo command at the
# end. On a machine without them (a CI runner, this project's build host) it takes NVIDIA's
# compiler and link libraries from PyPI: ../shared/tools/cuda-env.sh when present (CUDA 13.0 for
# the lent H100/H200 machines), plus NCCL's wheel for libnccl. The first build compiles candle's
# kernels: about 25 minutes on 2 cores.
#
# Arguments go to cargo: `scripts/build-cuda.sh --no-default-features` leaves FFmpeg out (for a
# GPU node without its libraries; clips must then be frame images, as in scripts/gpu-check.sh).
#
# At run time the binary needs libcudart, libcublas, libnccl... on LD_LIBRARY_PATH, e.g. from a
# PyTorch install: D=<site-packages>; export LD_LIBRARY_PATH=$D/nvidia/cu13/lib:$D/nvidia/nccl/lib:$D/torch/lib
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  env_script="${FOURD_CUDA_ENV:-../shared/tools/cuda-env.sh}"
  if [ ! -f "$env_script" ]; then
    echo "build-cuda: no nvcc on PATH and no $env_script to fetch one; install CUDA or set FOURD_CUDA_ENV" >&2
    exit 1
  fi
  # shellcheck disable=SC1090
  source "$env_script"
fi

if [ -z "${NCCL_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl.so'; then
  venv="${FOURD_CUDA_VENV:-$HOME/.cache/fourd-cuda-13.0}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nvidia-nccl-cu13==2.32.*"
  NCCL_LIB="$(ls -d "$venv"/lib/python3*/site-packages/nvidia/nccl/lib | head -n1)"
  # The wheel ships only the versioned name; the linker looks for libnccl.so.
  mkdir -p "$venv/link"
  ln -sf "$NCCL_LIB/libnccl.so.2" "$venv/link/libnccl.so"
  NCCL_LIB="$venv/link"
fi
if [ -n "${NCCL_LIB:-}" ]; then
  export LIBRARY_PATH="$NCCL_LIB${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi

cargo build --release --locked -p fourd-cli --features nccl --target-dir target-cuda "$@"
echo "built target-cuda/release/fourd (features cuda, nccl)"
