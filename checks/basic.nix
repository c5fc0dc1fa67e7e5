# The basic category (its cases: `nvmfcheck list`).
{ pkgs, nvmfcheck }:
import ./category-test.nix { inherit pkgs nvmfcheck; } {
  category = "basic";
  runTimeout = 900;
  # Its last case leaves a data set on the target's disk; io boots on it.
  keepDisk = true;
}
