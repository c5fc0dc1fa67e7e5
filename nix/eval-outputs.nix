# Pure evaluation test of the flake's outputs and modules, with small
# stand-ins for nixpkgs, crane and flake-utils: nothing is fetched or built,
# and a stand-in holds only the attributes the flake is meant to use (each
# one found in the real sources, see nix/VERIFIED.md), so a misspelt or new
# attribute fails here. It also checks the hand-written flake.lock against
# flake.nix and calls modules/*.nix with a minimal module-system stand-in.
# Run by tests/nix.sh, from the repository root, with the chroot's Nix:
#
#   bash nix/nix-in-chroot.sh nix-instantiate --option restrict-eval true \
#     -I "$PWD" --eval --strict --json nix/eval-outputs.nix
#
# It evaluates to { checked = [ names ]; testScripts = { ... }; } (the NixOS
# test scripts, which tests/nix.sh parses as Python) or throws naming the
# first assertion that does not hold.
let
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];
  system = "x86_64-linux";

  # A derivation-shaped attribute set; `args` are what the flake passed in.
  fakeDrv =
    name: args:
    args
    // {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    };

  fakePkgs = sys: {
    lib = {
      fileset = {
        toSource = args: args // { fileset-source = true; };
        unions = list: { inherit list; };
      };
      mkForce = content: {
        _type = "override";
        priority = 50;
        inherit content;
      };
    };
    stdenv.hostPlatform.system = sys;
    testers.runNixOSTest =
      module:
      fakeDrv "vm-test-run-${module.name}" {
        inherit module;
        driver = fakeDrv "nixos-test-driver-${module.name}" { };
        driverInteractive = fakeDrv "nixos-test-driver-${module.name}-interactive" { };
      };
    mkShell = args: fakeDrv "nix-shell" args;
    cargo = fakeDrv "cargo" { };
    rustc = fakeDrv "rustc" { };
    clippy = fakeDrv "clippy" { };
    rustfmt = fakeDrv "rustfmt" { };
    qemu = fakeDrv "qemu" { };
    fio = fakeDrv "fio" { };
    nvme-cli = fakeDrv "nvme-cli" { };
    iproute2 = fakeDrv "iproute2" { };
    nixfmt = fakeDrv "nixfmt" { };
    deadnix = fakeDrv "deadnix" { };
    nixfmt-tree = fakeDrv "nixfmt-tree" { };
  };

  nixpkgs.legacyPackages = builtins.listToAttrs (
    map (sys: {
      name = sys;
      value = fakePkgs sys;
    }) systems
  );

  crane.mkLib = _pkgs: {
    fileset.commonCargoSources = path: { commonCargoSources = path; };
    buildDepsOnly = args: fakeDrv "nvmfcheck-deps" args;
    buildPackage = args: fakeDrv "nvmfcheck" args;
    cargoClippy = args: fakeDrv "nvmfcheck-clippy" args;
    cargoFmt = args: fakeDrv "nvmfcheck-fmt" args;
    cargoNextest = args: fakeDrv "nvmfcheck-nextest" args;
  };

  # flake-utils' eachSystem contract (lib.nix): `f system` gives
  # { attr = value; }, the result is { attr.<system> = value; }. (The real one
  # also adds builtins.currentSystem under --impure.)
  flake-utils.lib.eachSystem =
    systemList: f:
    builtins.foldl' (
      acc: sys:
      acc // builtins.mapAttrs (name: value: (acc.${name} or { }) // { ${sys} = value; }) (f sys)
    ) { } systemList;

  flake = import ../flake.nix;
  out = flake.outputs {
    self = out;
    inherit nixpkgs crane flake-utils;
    systems = { };
  };

  checks = out.checks.${system};
  apps = out.apps.${system};
  basicScript = checks.basic.module.testScript;
  ioScript = checks.io.module.testScript;
  ioInteractiveScript = checks.io.module.interactive.testScript.content;
  securityScript = checks.security.module.testScript;

  # flake.lock, written by hand: its root inputs and their `original` must
  # match flake.nix's inputs, as `nix` requires before it uses a lock.
  lock = builtins.fromJSON (builtins.readFile ../flake.lock);
  lockMatches =
    name: input:
    let
      m = builtins.match "github:([^/]+)/([^/]+)(/(.+))?" input.url;
      node = lock.nodes.${lock.nodes.root.inputs.${name}};
      wanted = {
        type = "github";
        owner = builtins.elemAt m 0;
        repo = builtins.elemAt m 1;
      }
      // (if builtins.elemAt m 3 == null then { } else { ref = builtins.elemAt m 3; });
    in
    node.original == wanted
    && builtins.stringLength node.locked.rev == 40
    && builtins.substring 0 7 node.locked.narHash == "sha256-"
    && builtins.isInt node.locked.lastModified;

  # The pinned crane (lib/default.nix, `minSupported`) warns on every
  # evaluation with a nixpkgs release older than 26.05.
  craneMinNixpkgs = "26.05";
  nixpkgsRelease =
    let
      m = builtins.match "nixos-([0-9]+[.][0-9]+)" (lock.nodes.nixpkgs.original.ref or "");
    in
    if m == null then null else builtins.head m;

  contains = needle: haystack: builtins.replaceStrings [ needle ] [ "" ] haystack != haystack;
  hasAll = names: attrs: builtins.all (n: attrs ? ${n}) names;

  # Minimal module-system stand-ins to call modules/*.nix directly.
  fakeLib = {
    mkEnableOption = _: {
      _type = "option";
      default = false;
    };
    mkOption = args: args // { _type = "option"; };
    mkIf = condition: content: { inherit condition content; };
    inherit (builtins) concatMap;
    optionals = cond: list: if cond then list else [ ];
    types = {
      package = "package";
      str = "str";
      port = "port";
      bool = "bool";
      nullOr = t: "nullOr ${t}";
      listOf = t: "listOf ${t}";
    };
  };
  # Each option's default, overridden by `set`.
  configFrom =
    options: set:
    builtins.mapAttrs (name: opt: set.${name} or opt.default or (throw "no value for ${name}")) options;
  agentPackage = fakeDrv "nvmfcheck-agent-test" { };
  callTarget =
    set:
    let
      module = import ../modules/target.nix {
        lib = fakeLib;
        pkgs = fakePkgs "x86_64-linux";
        utils.escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map builtins.toJSON args);
        config.services.nvmfcheck-agent = configFrom module.options.services.nvmfcheck-agent set;
      };
    in
    module;
  targetDefault = callTarget {
    enable = true;
    package = agentPackage;
  };
  targetFull = callTarget {
    enable = true;
    package = agentPackage;
    address = "192.168.1.2";
    create = [ "aio:///dev/vdb" ];
    share = [ "aio:///dev/vdb" ];
  };
  execStart = m: m.config.content.systemd.services.nvmfcheck-agent.serviceConfig.ExecStart;
  initiator =
    let
      module = import ../modules/initiator.nix {
        lib = fakeLib;
        pkgs = fakePkgs system;
        config.programs.nvmfcheck-initiator = configFrom module.options.programs.nvmfcheck-initiator {
          enable = true;
          package = agentPackage;
        };
      };
    in
    module;

  # [ name, holds ] pairs, checked in order.
  assertions = [
    [
      "every output evaluates (no attribute missing from the stand-ins)"
      (builtins.deepSeq out true)
    ]
    [
      "flake.lock: version 7, one node per input, follows recorded"
      (
        lock.version == 7
        && builtins.attrNames lock.nodes.root.inputs == builtins.attrNames flake.inputs
        && builtins.all (n: lockMatches n flake.inputs.${n}) (builtins.attrNames flake.inputs)
        && lock.nodes.flake-utils.inputs.systems == [ "systems" ]
        && flake.inputs.flake-utils.inputs.systems.follows == "systems"
      )
    ]
    [
      "flake.lock: nixpkgs is a nixos-YY.MM release the pinned crane supports"
      (nixpkgsRelease != null && builtins.compareVersions nixpkgsRelease craneMinNixpkgs >= 0)
    ]
    [
      "systems"
      (
        builtins.attrNames out.checks == [
          "aarch64-linux"
          "x86_64-linux"
        ]
      )
    ]
    [
      "checks.x86_64-linux.{basic,io,security,clippy,fmt,nextest,nvmfcheck}"
      (hasAll [
        "basic"
        "io"
        "security"
        "clippy"
        "fmt"
        "nextest"
        "nvmfcheck"
      ] checks)
    ]
    [
      "apps.x86_64-linux.{driver-basic,driver-io,driver-security,default}"
      (hasAll [
        "driver-basic"
        "driver-io"
        "driver-security"
        "default"
      ] apps)
    ]
    [
      "packages.x86_64-linux.{default,nvmfcheck}"
      (hasAll [
        "default"
        "nvmfcheck"
      ] out.packages.${system})
    ]
    [
      "devShells.x86_64-linux.default and formatter.x86_64-linux"
      (out.devShells.${system} ? default && out.formatter.${system}.name == "nixfmt-tree")
    ]
    [
      "nixosModules.{target,initiator}"
      (hasAll [
        "target"
        "initiator"
      ] out.nixosModules)
    ]
    [
      "hydraJobs.{basic,io,security,nvmfcheck}.x86_64-linux"
      (
        out.hydraJobs.basic.${system} == checks.basic
        && out.hydraJobs.io.${system} == checks.io
        && out.hydraJobs.security.${system} == checks.security
        && out.hydraJobs.nvmfcheck.${system} == out.packages.${system}.nvmfcheck
      )
    ]
    [
      "package: --locked, dependency artifacts, tests left to nextest"
      (
        out.packages.${system}.default.cargoExtraArgs == "--locked"
        && out.packages.${system}.default.cargoArtifacts.name == "nvmfcheck-deps"
        && !out.packages.${system}.default.doCheck
      )
    ]
    [
      "source keeps proto/"
      (builtins.elem ../proto out.packages.${system}.default.src.fileset.list)
    ]
    [
      "clippy denies warnings"
      (checks.clippy.cargoClippyExtraArgs == "--all-targets -- -D warnings")
    ]
    [
      "apps run the interactive drivers and the binary"
      (
        apps.driver-basic.type == "app"
        && apps.driver-basic.program == "${checks.basic.driverInteractive}/bin/nixos-test-driver"
        && apps.driver-io.program == "${checks.io.driverInteractive}/bin/nixos-test-driver"
        && apps.driver-security.program == "${checks.security.driverInteractive}/bin/nixos-test-driver"
        && apps.default.program == "${out.packages.${system}.default}/bin/nvmfcheck"
      )
    ]
    [
      "nixosModules default the package to this flake's build"
      (
        let
          args = {
            lib.mkDefault = x: x;
            pkgs = fakePkgs system;
          };
        in
        (out.nixosModules.target args).services.nvmfcheck-agent.package == out.packages.${system}.default
        &&
          (out.nixosModules.initiator args).programs.nvmfcheck-initiator.package
          == out.packages.${system}.default
      )
    ]
    [
      "basic: two nodes on VLAN 1, a 512 MiB disk, a global timeout"
      (
        checks.basic.module.nodes.target.virtualisation.emptyDiskImages == [ 512 ]
        && checks.basic.module.nodes.target.virtualisation.vlans == [ 1 ]
        && checks.basic.module.nodes.initiator.virtualisation.vlans == [ 1 ]
        && checks.basic.module.globalTimeout > 900
      )
    ]
    [
      "basic: runs the category, logs its steps, copies both reports"
      (
        contains "\"nvmfcheck run basic --target 192.168.1.2:10124 --report-dir /tmp/nvmfcheck >&2\",\n    timeout=900,\n" basicScript
        && contains "copy_from_vm" basicScript
        && contains "\"report.json\", \"junit.xml\"" basicScript
      )
    ]
    [
      "io names basic's output path and requires its report"
      (
        contains checks.basic.outPath ioScript
        && contains "--require-passed ${checks.basic.outPath}/report.json" ioScript
        && contains "nvmfcheck run io " ioScript
      )
    ]
    [
      "the interactive io driver does not need basic's output: it runs basic itself"
      (
        !contains checks.basic.outPath ioInteractiveScript
        && contains "nvmfcheck run basic io --target" ioInteractiveScript
        && checks.io.module.interactive.testScript.priority == 50
      )
    ]
    [
      "target module: defaults"
      (
        execStart targetDefault == builtins.concatStringsSep " " (
          map builtins.toJSON [
            "${agentPackage}/bin/nvmfcheck"
            "agent"
            "--discovery-port"
            "8420"
            "--io-port"
            "8430"
            "--state-dir"
            "/var/lib/nvmfcheck"
            "--listen"
            "127.0.0.1:10124"
          ]
        )
        && targetDefault.config.condition
        &&
          targetDefault.config.content.boot.kernelModules == [
            "nvmet"
            "nvmet-tcp"
            "loop"
          ]
        && !targetDefault.config.content.networking.firewall.allowedTCPPorts.condition
        &&
          targetDefault.config.content.networking.firewall.allowedTCPPorts.content == [
            10124
            8420
            8430
          ]
      )
    ]
    [
      "target module: faults, allowed paths, token, more flags"
      (contains
        ''"--listen" "192.168.1.2:10124" "--allow-path" "/dev/vdb" "--faults" "--token-file" "/run/t" "--x"''
        (
          execStart (callTarget {
            enable = true;
            package = agentPackage;
            listenAddresses = [ "192.168.1.2" ];
            allowPaths = [ "/dev/vdb" ];
            enableFaults = true;
            tokenFile = "/run/t";
            extraFlags = [ "--x" ];
          })
        )
      )
    ]
    [
      "checks: basic's agent has faults on the link; security's keeps the defaults, a token and the link at 10125"
      (
        let
          agent = check: check.module.nodes.target.services.nvmfcheck-agent;
          basicAgent = agent checks.basic;
          securityAgent = agent checks.security;
        in
        basicAgent.enableFaults
        && basicAgent.listenAddresses == [ "192.168.1.2" ]
        && basicAgent.openFirewall
        && !securityAgent.enableFaults
        && securityAgent.listenAddresses == [ "127.0.0.1" ]
        && securityAgent.tokenFile == "/etc/nvmfcheck/token"
        &&
          securityAgent.extraFlags == [
            "--listen"
            "192.168.1.2:10125"
          ]
        && contains "nvmfcheck run security --target 192.168.1.2:10125 --report-dir /tmp/nvmfcheck --token-file /etc/nvmfcheck/token --require-passed ${checks.basic}/report.json" securityScript
        && contains "target.wait_for_open_port(10125, \"192.168.1.2\")" securityScript
      )
    ]
    [
      "target module: address, create, share"
      (contains ''"--address" "192.168.1.2" "--create" "aio:///dev/vdb" "--share" "aio:///dev/vdb"'' (
        execStart targetFull
      ))
    ]
    [
      "initiator module: nvme-tcp, nvme-cli, fio, nvmfcheck"
      (
        initiator.config.content.boot.kernelModules == [ "nvme-tcp" ]
        &&
          map (p: p.name) initiator.config.content.environment.systemPackages == [
            "nvmfcheck-agent-test"
            "nvme-cli"
            "fio"
          ]
      )
    ]
  ];

  check =
    done: a:
    let
      name = builtins.elemAt a 0;
    in
    if builtins.elemAt a 1 then done ++ [ name ] else throw "eval-outputs: FAILED: ${name}";
in
{
  checked = builtins.foldl' check [ ] assertions;
  testScripts = {
    basic = basicScript;
    io = ioScript;
    io-interactive = ioInteractiveScript;
    security = securityScript;
  };
}
