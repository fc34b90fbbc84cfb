#!/usr/bin/env bash
# Regenerates the golden fixtures under tests/golden/ (tools/golden/README.md).
#
#   tools/golden/gen_all.sh              run every generator
#   tools/golden/gen_all.sh ops_train …  run only the named generators (basename, no .py)
#
# A generator is any tools/golden/*.py with an `if __name__ == "__main__":` guard (ops_*.py
# and the model-level ones); helper modules such as fixture.py have none and are skipped.
# Each runs from the repository root with the golden venv, which setup_venv.sh brings up to
# date first (a no-op when it already matches the locks).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${AIDOMM_GOLDEN_VENV:-$HOME/.cache/aidomm/golden-venv}"

"$here/setup_venv.sh"
vpy="$venv/bin/python"

gens=()
if [[ $# -gt 0 ]]; then
  for name in "$@"; do
    f="$here/${name%.py}.py"
    [[ -f "$f" ]] || { echo "gen_all.sh: no generator $f" >&2; exit 2; }
    gens+=("$f")
  done
else
  for f in "$here"/*.py; do
    grep -q '^if __name__ == "__main__":' "$f" && gens+=("$f")
  done
fi

# AdamW fixtures are compared bit for bit; torch's AVX2/AVX-512 kernels fuse multiply-adds
# that its portable "default" kernels do not, so regenerate on an x86-64 machine with AVX2.
cap="$("$vpy" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
case "$cap" in
  AVX2|AVX512) ;;
  *) echo "gen_all.sh: warning: torch CPU kernels are '$cap', not AVX2/AVX512;" \
          "bit-exact fixtures (adamw) will not match the C kernels" >&2 ;;
esac

cd "$root"
failed=()
for f in "${gens[@]}"; do
  echo "== ${f#$root/}"
  if ! "$vpy" "$f"; then failed+=("${f#$root/}"); fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "gen_all.sh: ${#failed[@]} of ${#gens[@]} generators failed: ${failed[*]}" >&2
  exit 1
fi
echo "gen_all.sh: ${#gens[@]} generators ok"
