#!/usr/bin/env bash
# Static checks of the Nix layer that need neither nixpkgs nor a binary
# cache, with the Nix (>= 2.18) of the Debian 13 chroot that
# nix/install-tools.sh makes (run through nix/nix-in-chroot.sh):
#   - `nix flake metadata --offline --no-update-lock-file` accepts flake.lock
#     for flake.nix, on a copy of the repository's files, and reads back the
#     same lock. With every input locked and matching flake.nix, Nix fetches
#     none of them (it only reads an input when it must lock it anew), so
#     this runs offline with an empty store; a lock that does not match
#     fails, as Nix would then have to fetch. The narHashes themselves are
#     not checked here: that needs the inputs (see nix/VERIFIED.md).
#   - every .nix file in the repository parses (nix-instantiate --parse);
#   - the pure evaluation test nix/eval-outputs.nix holds (flake outputs and
#     the target module evaluated with stand-ins for nixpkgs, crane and
#     flake-utils; its NixOS test scripts must parse as Python);
#   - nixfmt --check and deadnix --fail (host tools, from crates.io);
#   - nothing is left mounted under the chroot.
# Nothing is fetched, built or run in a VM.
#
# It installs nothing: `bash nix/install-tools.sh` does, on a Debian 12
# machine, as root. Ends with "nix: N passed, N failed"; exits non-zero on
# any failure or missing tool.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
root=${NVMFCHECK_NIX_CHROOT:-$HOME/.cache/nvmfcheck/nix-trixie}

missing=()
for tool in git nixfmt deadnix python3 findmnt; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ! nix_version=$(bash nix/nix-in-chroot.sh nix --version 2>/dev/null); then
  missing+=("nix (the chroot $root)")
fi
if ((${#missing[@]})); then
  echo "tests/nix.sh: missing tool(s): ${missing[*]}; install them with: bash nix/install-tools.sh" >&2
  exit 2
fi
echo "tests/nix.sh: $nix_version (Debian 13 chroot $root)"

# Tracked files and new ones not ignored by git, that exist on disk.
all_files=()
while IFS= read -r f; do
  [[ -f $f ]] && all_files+=("$f")
done < <(git ls-files --cached --others --exclude-standard | sort -u)
files=()
for f in "${all_files[@]}"; do
  [[ $f == *.nix ]] && files+=("$f")
done
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

in_chroot() { bash nix/nix-in-chroot.sh "$@"; }

# The repository's files are copied to a directory of the chroot, as a
# `path:` flake (the repository may be a git worktree whose git directory
# the chroot cannot see); the lock Nix reports must be flake.lock as is.
flake_metadata() {
  local json
  # shellcheck disable=SC2016
  json=$(in_chroot bash -c '
    tmp=$(mktemp -d) || exit 1
    trap "rm -rf \"\$tmp\"" EXIT
    cp --parents -- "$@" "$tmp" || exit 1
    nix flake metadata --offline --no-update-lock-file --json "path:$tmp"
  ' sh "${all_files[@]}") || return 1
  python3 -c '
import datetime, json, sys
meta = json.loads(sys.argv[1])
lock = json.load(open("flake.lock"))
if meta["locks"] != lock:
    sys.exit("nix read a different lock from flake.lock")
for name, node in sorted(lock["nodes"][lock["root"]]["inputs"].items()):
    l = lock["nodes"][node]["locked"]
    day = datetime.datetime.fromtimestamp(l["lastModified"], datetime.timezone.utc).date()
    print("{}: {}/{} {} ({})".format(name, l["owner"], l["repo"], l["rev"][:12], day))
' "$json"
}

parse_all() {
  # shellcheck disable=SC2016
  in_chroot bash -c '
    for f; do
      nix-instantiate --parse "$f" >/dev/null || { echo "$f does not parse"; exit 1; }
    done
  ' sh "${files[@]}"
}

eval_outputs() {
  local json
  json=$(in_chroot nix-instantiate --option restrict-eval true -I "$PWD" \
    --eval --strict --json nix/eval-outputs.nix) || return 1
  python3 -c '
import ast, json, sys
d = json.load(sys.stdin)
for name, script in sorted(d["testScripts"].items()):
    ast.parse(script, filename=name + " testScript")
print(len(d["checked"]), "assertions held; the test scripts parse as Python")
' <<<"$json"
}

nothing_mounted() {
  local left
  left=$(findmnt -rn -o TARGET | grep -F "$(cd "$root" && pwd -P)")
  [[ -z $left ]] || {
    echo "still mounted: $left"
    return 1
  }
}

step "nix flake metadata --offline accepts flake.lock" flake_metadata
step "nix-instantiate --parse (${#files[@]} files)" parse_all
step "nix/eval-outputs.nix" eval_outputs
step "nixfmt --check" nixfmt --check "${files[@]}"
step "deadnix --fail" env NO_COLOR=1 deadnix --fail "${files[@]}"
step "nothing left mounted under the chroot" nothing_mounted

echo "nix: $passed passed, $failed failed"
((failed == 0))
