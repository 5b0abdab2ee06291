#!/usr/bin/env bash
# Build llama.cpp's own llama-bench, llama-speculative-simple and llama-server from the
# llama.cpp sources vendored in the installed llama-cpp-python release: same commit, same
# flags (GGML_NATIVE=ON), so benchmarks compare edgeinf with llama.cpp itself.
#
# Usage: tools/build_llama_cpp.sh [PYTHON]   (default: python3 on PATH)
# Prints the directory holding the binaries. Builds are cached per llama-cpp-python version
# in ${EDGEINF_TOOLS_CACHE:-$XDG_CACHE_HOME/edgeinf/llama.cpp}.
set -euo pipefail

python=${1:-python3}
version=$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')
cache=${EDGEINF_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeinf/llama.cpp}
out="$cache/$version"
bin="$out/build/bin"
targets=(llama-bench llama-speculative-simple llama-server)

if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-speculative-simple" ] && [ -x "$bin/llama-server" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
rm -rf "$out/src"
mv "$work/llama_cpp_python-$version/vendor/llama.cpp" "$out/src"

cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$out/build" --config Release -j "$(nproc)" --target "${targets[@]}" >&2
echo "$bin"
