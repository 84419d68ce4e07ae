# Environment for building the trainer against the project-local PyTorch (source it:
# `source tools/env.sh`). tools/setup.sh creates the venv.
_ddpm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIBTORCH_USE_PYTORCH=1
case ":$PATH:" in
    *":$_ddpm_root/.venv/bin:"*) ;;
    *) export PATH="$_ddpm_root/.venv/bin:$PATH" ;;
esac
unset _ddpm_root
