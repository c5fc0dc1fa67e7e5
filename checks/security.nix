# The security category, against an agent set up as a careful operator
# would (the module's defaults: gRPC on loopback, no Control; plus a token
# and the link on another port). It names basic's output path, as io does.
{
  pkgs,
  nvmfcheck,
  basic,
}:
import ./category-test.nix { inherit pkgs nvmfcheck; } {
  category = "security";
  setup = "hardened";
  extraRunArgs = " --require-passed ${basic}/report.json";
  interactiveCategories = "basic security";
  runTimeout = 900;
}
