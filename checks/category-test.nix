# One NixOS VM test for one category: a target VM running the agent with a
# blank 512 MiB disk (/dev/vdb), an initiator VM on the same VLAN running
# `nvmfcheck run <category>` against it. The reports land in the check's
# output ($out/report.json, $out/junit.xml). The agent runs as the
# category's setup says (src/suite/setup.rs, whose flags this repeats).
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
  # The agent setup: "faults" (Control on, gRPC on the link at 10124) or
  # "hardened" (module defaults: gRPC on loopback at 10124, no Control;
  # plus the link at 10125 and a token).
  setup ? "faults",
}:
let
  # Nodes on VLAN 1 get 192.168.1.<n>, n by the nodes' names in
  # alphabetical order: initiator = .1, target = .2.
  targetAddress = "192.168.1.2";
  grpcPort = 10124;
  hardened = setup == "hardened";
  linkPort = if hardened then grpcPort + 1 else grpcPort;
  reportDir = "/tmp/nvmfcheck";
  # A test VM's token: in the store, which is fine for a throwaway VM and
  # nothing else.
  tokenFile = "/etc/nvmfcheck/token";
  token = {
    environment.etc."nvmfcheck/token" = {
      text = "nvmfcheck-security-check";
      mode = "0600";
    };
  };
  runArgs =
    "--target ${targetAddress}:${toString linkPort} --report-dir ${reportDir}"
    + (if hardened then " --token-file ${tokenFile}" else "");

  # The run's stdout goes to stderr, which the test instrumentation sends to
  # the serial console: the driver logs each step line as it is printed.
  # The reports are copied out before a failed run fails the test.
  script = categories: extraArgs: ''
    start_all()
    target.wait_for_unit("nvmfcheck-agent.service")
    target.wait_for_open_port(${toString linkPort}, "${targetAddress}")
    # The file basic/mayastor-clients exports as an aio bdev (`--aio-file`).
    target.succeed("truncate -s 64M /tmp/aio-file.img")
    initiator.wait_for_unit("network-online.target")

    status, _ = initiator.execute(
        "nvmfcheck run ${categories} ${runArgs}${extraArgs} >&2",
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
      imports = [
        ../modules/target.nix
        (if hardened then token else { })
      ];
      services.nvmfcheck-agent = {
        enable = true;
        package = nvmfcheck;
        # eth0 (the driver's user network) would otherwise come first.
        address = targetAddress;
        inherit grpcPort;
        openFirewall = true;
        # The test disk, and /tmp: the aio file of basic/mayastor-clients
        # and the paths of the bad-input rows.
        allowPaths = [
          "/dev/vdb"
          "/tmp"
        ];
      }
      // (
        if hardened then
          {
            inherit tokenFile;
            extraFlags = [
              "--listen"
              "${targetAddress}:${toString linkPort}"
            ];
          }
        else
          {
            listenAddresses = [ targetAddress ];
            enableFaults = true;
          }
      );
      networking.firewall.allowedTCPPorts = [ linkPort ];
      virtualisation.vlans = [ 1 ];
      virtualisation.emptyDiskImages = [ 512 ];
    };

    initiator = {
      imports = [
        ../modules/initiator.nix
        (if hardened then token else { })
      ];
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
