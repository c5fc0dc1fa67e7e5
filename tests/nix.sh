#!/usr/bin/env bash
# Static checks of the Nix layer that need neither a Nix store nor nixpkgs:
# every .nix file in the repository parses (nix-instantiate --parse), is
# formatted (nixfmt --check) and has no dead code (deadnix --fail), and the
# pure evaluation test nix/eval-outputs.nix holds (flake outputs and modules
# evaluated with stand-ins for nixpkgs, crane and flake-utils; its NixOS test
# scripts must parse as Python). Nothing is fetched, built or run in a VM.
#
# It installs nothing: `bash nix/install-tools.sh` installs the tools on a
# Debian 12 machine. Ends with "nix: N passed, N failed"; exits non-zero on
# any failure or missing tool.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

missing=()
for tool in git nix-instantiate nixfmt deadnix python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "tests/nix.sh: missing tool(s): ${missing[*]}; install them with: bash nix/install-tools.sh" >&2
  exit 2
fi

# Tracked .nix files and new ones not ignored by git, that exist on disk.
files=()
while IFS= read -r f; do
  [[ -f $f ]] && files+=("$f")
done < <(git ls-files --cached --others --exclude-standard -- '*.nix' | sort -u)
if ((${#files[@]} == 0)); then
  echo "tests/nix.sh: no .nix files found" >&2
  exit 1
fi

passed=0
failed=0
# step NAME COMMAND...: runs COMMAND, reports ok/FAIL with its output.
step() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
  fi
  [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/     /'
  return 0
}

parse_all() {
  local f
  for f in "${files[@]}"; do
    nix-instantiate --parse "$f" >/dev/null || return 1
  done
}

eval_outputs() {
  local json
  json=$(nix-instantiate --option restrict-eval true -I "$PWD" \
    --eval --strict --json nix/eval-outputs.nix) || return 1
  python3 -c '
import ast, json, sys
d = json.load(sys.stdin)
for name, script in sorted(d["testScripts"].items()):
    ast.parse(script, filename=name + " testScript")
print(len(d["checked"]), "assertions held; the test scripts parse as Python")
' <<<"$json"
}

step "nix-instantiate --parse (${#files[@]} files)" parse_all
step "nixfmt --check" nixfmt --check "${files[@]}"
step "deadnix --fail" env NO_COLOR=1 deadnix --fail "${files[@]}"
step "nix/eval-outputs.nix" eval_outputs

echo "nix: $passed passed, $failed failed"
((failed == 0))
