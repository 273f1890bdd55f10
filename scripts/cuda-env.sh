# Environment for building (and running) genlab with `--features cuda` (docs/cuda.md).
# Source it from bash, don't run it:
#
#   source scripts/cuda-env.sh [VENV]      # VENV: $GENLAB_CUDA_VENV, else <repo>/.venv-cuda
#
# VENV is the venv made by scripts/setup-cuda.sh. Exports:
#   CUDA_HOME / CUDA_PATH / CUDA_ROOT  VENV's site-packages/nvidia/cu13 (bin/nvcc, include/, lib/)
#   PATH             + $CUDA_HOME/bin: cudarc's build runs `nvcc --version`, candle-kernels nvcc
#   CUDA_COMPUTE_CAP kept if set, else 80: the GPU generation candle-kernels compiles for
#                    (there may be no GPU to ask at build time). 80 = A100; 86 RTX 30xx,
#                    89 RTX 40xx / L4, 90 H100 / H200.
#   LIBRARY_PATH     + VENV/cuda-link: unversioned .so links and the libcuda.so link stub
#   LD_LIBRARY_PATH  + $CUDA_HOME/lib: libcudart/libcublas/libcurand/libnvrtc at run time (the
#                    binary needs them, and the NVIDIA driver's libcuda.so.1, to start at all)

_genlab_cuda_env() {
    local repo venv site cuda
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="${1:-${GENLAB_CUDA_VENV:-$repo/.venv-cuda}}"
    if [ ! -x "$venv/bin/python" ]; then
        echo "cuda-env.sh: no venv at $venv; run: bash scripts/setup-cuda.sh${1:+ $1}" >&2
        return 1
    fi
    venv="$(cd "$venv" && pwd)"
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    cuda="$site/nvidia/cu13"
    if [ ! -x "$cuda/bin/nvcc" ] || [ ! -e "$venv/cuda-link/libcuda.so" ]; then
        echo "cuda-env.sh: $venv is incomplete; run: bash scripts/setup-cuda.sh${1:+ $1}" >&2
        return 1
    fi
    export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
    case ":$PATH:" in *":$cuda/bin:"*) ;; *) export PATH="$cuda/bin:$PATH" ;; esac
    case ":${LIBRARY_PATH:-}:" in *":$venv/cuda-link:"*) ;;
        *) export LIBRARY_PATH="$venv/cuda-link${LIBRARY_PATH:+:$LIBRARY_PATH}" ;; esac
    case ":${LD_LIBRARY_PATH:-}:" in *":$cuda/lib:"*) ;;
        *) export LD_LIBRARY_PATH="$cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
    echo "CUDA env: $("$cuda/bin/nvcc" --version | grep -o 'release [0-9.]*'), CUDA_HOME=$cuda, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
}
_genlab_cuda_env "$@"
_genlab_cuda_env_rc=$?
unset -f _genlab_cuda_env
# shellcheck disable=SC2317
return $_genlab_cuda_env_rc 2>/dev/null || exit $_genlab_cuda_env_rc
