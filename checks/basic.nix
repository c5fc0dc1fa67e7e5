# The basic category (its cases: `nvmfcheck list`).
{ pkgs, nvmfcheck }:
import ./category-test.nix { inherit pkgs nvmfcheck; } {
  category = "basic";
  runTimeout = 900;
}
