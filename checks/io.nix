# The io category. It names basic's output path, so it cannot build until
# basic has built (a failed check has no output), and the run refuses to
# start unless everything io depends on passed in basic's report.
{
  pkgs,
  nvmfcheck,
  basic,
}:
import ./category-test.nix { inherit pkgs nvmfcheck; } {
  category = "io";
  extraRunArgs = " --require-passed ${basic}/report.json";
  # The disk basic's target left: io's first case reads basic's data set
  # back from it, as the report's `state` describes it.
  fromDisk = "${basic}/target-vdb.qcow2.gz";
  interactiveCategories = "basic io";
  runTimeout = 1800;
}
