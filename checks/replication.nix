# The replication category: nodes node1 and node2 (the agent on each, a
# blank disk each) and the initiator, on VLAN 1. It names basic's output
# path, as io does.
{
  pkgs,
  nvmfcheck,
  basic,
}:
import ./category-test.nix { inherit pkgs nvmfcheck; } {
  category = "replication";
  setup = "replication";
  extraRunArgs = " --require-passed ${basic}/report.json";
  interactiveCategories = "basic replication";
  runTimeout = 1800;
}
