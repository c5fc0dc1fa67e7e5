# One NixOS VM test for one category: a target VM running the agent with a
# blank 512 MiB disk (/dev/vdb), an initiator VM on the same VLAN running
# `nvmfcheck run <category>` against it. The reports land in the check's
# output ($out/report.json, $out/junit.xml).
{ pkgs, nvmfcheck }:
{
  category,
  # Extra arguments for `nvmfcheck run` in the check (not in the interactive
  # driver), each with its leading space.
  extraRunArgs ? "",
  # What the interactive driver runs: the category with the categories it
  # depends on, since it has no earlier report to vouch for them.
  interactiveCategories ? category,
  # Seconds `nvmfcheck run` may take.
  runTimeout,
}:
let
  # Nodes on VLAN 1 get 192.168.1.<n>, n by the nodes' names in
  # alphabetical order: initiator = .1, target = .2.
  targetAddress = "192.168.1.2";
  grpcPort = 10124;
  reportDir = "/tmp/nvmfcheck";

  # The run's stdout goes to stderr, which the test instrumentation sends to
  # the serial console: the driver logs each step line as it is printed.
  # The reports are copied out before a failed run fails the test.
  script = categories: runArgs: ''
    start_all()
    target.wait_for_unit("nvmfcheck-agent.service")
    target.wait_for_open_port(${toString grpcPort})
    # The file basic/mayastor-clients exports as an aio bdev (`--aio-file`).
    target.succeed("truncate -s 64M /tmp/aio-file.img")
    initiator.wait_for_unit("network-online.target")

    status, _ = initiator.execute(
        "nvmfcheck run ${categories} --target ${targetAddress}:${toString grpcPort} --report-dir ${reportDir}${runArgs} >&2",
        timeout=${toString runTimeout},
    )

    for report in ["report.json", "junit.xml"]:
        if initiator.execute(f"test -f ${reportDir}/{report}")[0] == 0:
            initiator.copy_from_vm(f"${reportDir}/{report}")

    if status != 0:
        raise Exception(
            f"nvmfcheck run ${categories} exited with {status}; its steps are above"
        )
  '';
in
pkgs.testers.runNixOSTest {
  name = "nvmfcheck-${category}";
  # Boot and report copying on top of the run itself.
  globalTimeout = runTimeout + 600;

  nodes = {
    target = {
      imports = [ ../modules/target.nix ];
      services.nvmfcheck-agent = {
        enable = true;
        package = nvmfcheck;
        # eth0 (the driver's user network) would otherwise come first.
        address = targetAddress;
        inherit grpcPort;
      };
      virtualisation.vlans = [ 1 ];
      virtualisation.emptyDiskImages = [ 512 ];
    };

    initiator = {
      imports = [ ../modules/initiator.nix ];
      programs.nvmfcheck-initiator = {
        enable = true;
        package = nvmfcheck;
      };
      virtualisation.vlans = [ 1 ];
    };
  };

  testScript = script category extraRunArgs;
  # The interactive driver runs whatever other checks' results are, so its
  # script names no other check's output and runs the dependencies itself.
  interactive.testScript = pkgs.lib.mkForce (script interactiveCategories "");
}
