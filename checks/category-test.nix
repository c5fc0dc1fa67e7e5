# One NixOS VM test for one category: the target VMs of the category's
# setup (`target`; or `node1` and `node2`), each running the agent with a
# blank disk (/dev/vdb), and an initiator VM on the same VLAN running
# `nvmfcheck run <category>` against them. The reports land in the check's
# output ($out/report.json, $out/junit.xml). The addresses, ports, disk size,
# allowed paths, target VMs and what the category's setup turns on come from
# src/suite/setups.json, which the binary's QEMU runner follows too.
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
  # The agent setup, a key of setups.json's `setups`: "faults" (Control on,
  # gRPC on the link at the default port), "hardened" (the module's
  # defaults: gRPC on loopback, no Control; plus the link on another port
  # and a token) or "replication" (two nodes as "faults", with a nexus port
  # and a rebuild rate).
  setup ? "faults",
  # Whether the check's output keeps the first target's data disk as the
  # passed run left it (basic, whose last case leaves a data set there),
  # after that target is powered off: $out/${diskFile}.
  keepDisk ? false,
  # A disk kept so (`"${basic}/${diskFile}"`) that the check's first target
  # boots on, a writable copy, instead of a blank disk (io, whose first case
  # reads basic's data set back).
  fromDisk ? null,
}:
let
  pair = builtins.fromJSON (builtins.readFile ../src/suite/setups.json);
  agentSetup = pair.setups.${setup};
  inherit (agentSetup) targets linkPort;
  inherit (pair) grpcPort;
  # Nodes on VLAN 1 get 192.168.1.<n>, n by the nodes' names in
  # alphabetical order: initiator = .1, then the targets from .2 (target;
  # node1, node2), the addresses setups.json gives and the runner uses
  # (nix/eval-outputs.nix checks that they agree).
  firstAddress = builtins.match "(.*[.])([0-9]+)" pair.targetAddress;
  addressOf =
    k:
    "${builtins.elemAt firstAddress 0}${
      toString (builtins.fromJSON (builtins.elemAt firstAddress 1) + k)
    }";
  # The targets' names and addresses, in order.
  targetList = builtins.genList (k: {
    name = builtins.elemAt targets k;
    address = addressOf k;
  }) (builtins.length targets);
  targetAddress = addressOf 0;
  # `--node2` names the second target for `replication`.
  nodeArgs =
    if builtins.length targets > 1 then " --node2 ${addressOf 1}:${toString linkPort}" else "";
  # The link at the default port is one of the module's listenAddresses; at
  # another port it takes a `--listen` of its own.
  linkOnGrpcPort = linkPort == grpcPort;
  reportDir = "/tmp/nvmfcheck";
  # The kept data disk in a check's output: the driver's qcow2 image of the
  # target's first empty disk (/dev/vdb), gzipped.
  diskFile = "target-vdb.qcow2.gz";
  # What the kept disk may take in the output; basic writes about 32 MiB of
  # random data to the disk, which does not compress.
  maxDiskMiB = 64;
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
    "--target ${targetAddress}:${toString linkPort}${nodeArgs} --report-dir ${reportDir}"
    + (if agentSetup.token then " --token-file ${tokenFile}" else "");
  waitForAgents = builtins.concatStringsSep "\n" (
    map (t: ''
      ${t.name}.wait_for_unit("nvmfcheck-agent.service")
      ${t.name}.wait_for_open_port(${toString linkPort}, "${t.address}")'') targetList
  );
  first = (builtins.head targetList).name;
  # A target that may reset itself (Control.PowerCycle) must boot again in
  # the same QEMU: the driver passes -no-reboot unless a machine is started
  # with allow_reboot=True. Nothing later in the script talks to such a
  # target over the driver's shell, which a reset it did not cause breaks.
  startTargets = builtins.concatStringsSep "\n" (
    map (t: "${t.name}.start(allow_reboot=True)") (
      if agentSetup.powerCycle or false then targetList else [ ]
    )
  );

  # The first target's disk is the driver's `empty0.qcow2` in its state dir:
  # the VM's start script makes it only if it is missing, so a copy put
  # there first is what the target boots on.
  bootOnDisk = ''
    import gzip
    import shutil

    with gzip.open("${fromDisk}", "rb") as packed, open(
        ${first}.state_dir / "empty0.qcow2", "wb"
    ) as disk:
        shutil.copyfileobj(packed, disk)
  '';
  # After a passed run: the first target powered off (what it flushed is
  # what stays), its disk gzipped into the output.
  keepTheDisk = ''
    import gzip
    import shutil

    ${first}.shutdown()
    kept = driver.out_dir / "${diskFile}"
    with open(${first}.state_dir / "empty0.qcow2", "rb") as disk, gzip.open(
        kept, "wb"
    ) as packed:
        shutil.copyfileobj(disk, packed)
    if kept.stat().st_size > ${toString maxDiskMiB} << 20:
        raise Exception(
            f"{kept} has {kept.stat().st_size} bytes, more than ${toString maxDiskMiB} MiB"
        )
  '';

  # The run's stdout goes to stderr, which the test instrumentation sends to
  # the serial console: the driver logs each step line as it is printed.
  # The reports are copied out before a failed run fails the test. `before`
  # runs before the VMs start, `after` once the run passed.
  script =
    {
      categories,
      extraArgs ? "",
      before ? "",
      after ? "",
    }:
    ''
      ${before}
      ${startTargets}
      start_all()
      ${waitForAgents}
      # The file basic/mayastor-clients exports as an aio bdev (`--aio-file`).
      ${first}.succeed("truncate -s 64M /tmp/aio-file.img")
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
      ${after}
    '';
  # A target VM: the agent, set up as the category's setup says, on a
  # blank disk.
  targetNode = address: {
    imports = [
      ../modules/target.nix
      (if agentSetup.token then token else { })
    ];
    services.nvmfcheck-agent = {
      enable = true;
      package = nvmfcheck;
      # eth0 (the driver's user network) would otherwise come first.
      inherit address;
      inherit grpcPort;
      openFirewall = true;
      # The test disk, and /tmp: the aio file of basic/mayastor-clients
      # and the paths of the bad-input rows.
      inherit (pair) allowPaths;
      listenAddresses =
        (if agentSetup.loopback then [ "127.0.0.1" ] else [ ])
        ++ (if linkOnGrpcPort then [ address ] else [ ]);
      extraFlags =
        if linkOnGrpcPort then
          [ ]
        else
          [
            "--listen"
            "${address}:${toString linkPort}"
          ];
      enableFaults = agentSetup.faults;
      tokenFile = if agentSetup.token then tokenFile else null;
      nexusPort = agentSetup.nexusPort or null;
      rebuildRate = agentSetup.rebuildRate or null;
      allowPowerCycle = agentSetup.powerCycle or false;
    };
    networking.firewall.allowedTCPPorts = [ linkPort ];
    virtualisation.vlans = [ 1 ];
    virtualisation.emptyDiskImages = [ pair.dataDiskMiB ];
  };
in
pkgs.testers.runNixOSTest {
  name = "nvmfcheck-${category}";
  # Boot and report copying on top of the run itself.
  globalTimeout = runTimeout + 600;

  nodes =
    builtins.listToAttrs (
      map (t: {
        inherit (t) name;
        value = targetNode t.address;
      }) targetList
    )
    // {
      initiator = {
        imports = [
          ../modules/initiator.nix
          (if agentSetup.token then token else { })
        ];
        programs.nvmfcheck-initiator = {
          enable = true;
          package = nvmfcheck;
        };
        virtualisation.vlans = [ 1 ];
      };
    };

  testScript = script {
    categories = category;
    extraArgs = extraRunArgs;
    before = if fromDisk == null then "" else bootOnDisk;
    after = if keepDisk then keepTheDisk else "";
  };
  # The interactive driver runs whatever other checks' results are, so its
  # script names no other check's output and runs the dependencies itself,
  # on a blank disk, and keeps nothing.
  interactive.testScript = pkgs.lib.mkForce (script {
    categories = interactiveCategories;
  });
}
