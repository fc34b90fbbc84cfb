#!/usr/bin/env bash
# Creates or updates the golden-fixture virtual environment (tools/golden/README.md).
#
#   tools/golden/setup_venv.sh            install the locks (a fast no-op when already done)
#   tools/golden/setup_venv.sh --force    reinstall/verify even if the stamp matches
#   tools/golden/setup_venv.sh --relock   rewrite requirements.lock from the venv's packages
#
# The venv lives at ${AIDOMM_GOLDEN_VENV:-$HOME/.cache/aidomm/golden-venv}. Python 3.11 is used
# when available (${PYTHON} overrides); the lock's wheels were resolved for CPython 3.11 on
# Linux x86-64. Nothing here is needed to build or test aidomm: only to regenerate fixtures.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AIDOMM_GOLDEN_VENV:-$HOME/.cache/aidomm/golden-venv}"
lock="$here/requirements.lock"
nodeps="$here/requirements-nodeps.lock"
mode="${1:-install}"

case "$mode" in
  install|--force|--relock) ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "setup_venv.sh: unknown option '$mode' (try --help)" >&2; exit 2 ;;
esac

if [[ ! -x "$venv/bin/python" ]]; then
  py="${PYTHON:-}"
  if [[ -z "$py" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
  fi
  echo "setup_venv.sh: creating $venv with $("$py" --version 2>&1)"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
pyver="$("$vpy" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$pyver" == "3.11" ]] || echo "setup_venv.sh: warning: venv Python is $pyver; the lock was made for 3.11" >&2

# The modules the generators import; --relock and the final check use the same list.
probe_modules="modelgenerator.backbones modelgenerator.adapters modelgenerator.tasks \
modelgenerator.huggingface_models.enformer_pytorch modelgenerator.huggingface_models.rnabert \
transformers.models.esm.modeling_esm peft safetensors.torch numpy torch"

if [[ "$mode" == "--relock" ]]; then
  # Pins the installed version of every distribution those imports load, plus the closure of
  # their requirements (modelgenerator excluded: it is installed --no-deps).
  tmp="$(mktemp)"
  "$vpy" - $probe_modules >"$tmp" <<'PY'
import importlib, importlib.metadata as md, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as cn
for m in sys.argv[1:]:
    importlib.import_module(m)
p2d = md.packages_distributions()
roots = {d for name in list(sys.modules) for d in p2d.get(name.split(".")[0], [])}
roots.discard("modelgenerator")
roots.add("accelerate")  # peft's runtime dependency
seen, stack = {}, sorted(roots)
while stack:
    name = stack.pop()
    if cn(name) in seen or cn(name) == "modelgenerator":
        continue
    try:
        d = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"relock: {name} is required but not installed")
    seen[cn(name)] = (d.metadata["Name"], d.version)
    for r in d.requires or []:
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            stack.append(req.name)
linux_only = ("nvidia-", "triton")
for key in sorted(seen):
    name, ver = seen[key]
    marker = ' ; platform_system == "Linux" and platform_machine == "x86_64"' if key.startswith(linux_only) else ""
    print(f"{name}=={ver}{marker}")
PY
  { sed -n '/^#/p' "$lock"; cat "$tmp"; } >"$lock.new"
  mv "$lock.new" "$lock"
  rm -f "$tmp"
  echo "setup_venv.sh: wrote $lock ($(grep -c '^[^#]' "$lock") pins)"
  exit 0
fi

stamp_file="$venv/.aidomm-golden-stamp"
stamp="$(cat "$lock" "$nodeps" | sha256sum | cut -d' ' -f1) py$pyver"
if [[ "$mode" != "--force" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  exit 0  # already satisfied
fi

echo "setup_venv.sh: installing requirements.lock into $venv"
"$vpy" -m pip install --disable-pip-version-check -q -r "$lock"
echo "setup_venv.sh: installing requirements-nodeps.lock (--no-deps)"
"$vpy" -m pip install --disable-pip-version-check -q --no-deps -r "$nodeps"

# The imports the generators rely on must work before the stamp is written.
"$vpy" - $probe_modules <<'PY'
import importlib, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
import torch
print(f"setup_venv.sh: ok: torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}")
PY
echo "$stamp" >"$stamp_file"
