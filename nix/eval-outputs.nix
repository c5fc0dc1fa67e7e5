# Pure evaluation test of the flake's outputs and the target module, with
# small stand-ins for nixpkgs, crane and flake-utils: nothing is fetched or
# built. A stand-in holds only the attributes the flake uses (each found in
# the real sources, see nix/VERIFIED.md), so a misspelt or new one fails
# here; its derivations are real (`derivation`, never built), so string
# context, which is how one check comes to need another's output, is real
# too. It checks what the flake does, not how its files spell it:
#   - the attribute tree `nix flake check`, `nix run` and Hydra read;
#   - io, security and replication name basic's output, so none can build until basic
#     has, and their runs refuse to start unless basic's report says its
#     cases passed; their interactive drivers need no output and run basic
#     themselves;
#   - the agent's command line (ExecStart) modules/target.nix makes by
#     default and with each check's settings, and that each check's run
#     reaches that agent;
#   - the link addresses in src/suite/setups.json are the ones the test
#     framework gives the nodes.
# Run by tests/nix.sh, from the repository root, with the chroot's Nix:
#
#   bash nix/nix-in-chroot.sh nix-instantiate --option restrict-eval true \
#     -I "$PWD" --eval --strict --json nix/eval-outputs.nix
#
# It evaluates to { checked = [ names ]; testScripts = { ... }; } (the NixOS
# test scripts, which tests/nix.sh parses as Python) or throws naming the
# first assertion that does not hold.
let
  inherit (builtins)
    all
    attrNames
    elemAt
    filter
    head
    length
    match
    ;

  systems = wordsOf "aarch64-linux x86_64-linux";
  system = "x86_64-linux";
  categories = wordsOf "basic io security replication";

  # A derivation for `sys` (instantiated, never built) with `args` on top.
  fakeDrv =
    sys: name: args:
    args
    // derivation {
      inherit name;
      system = sys;
      builder = "/bin/sh";
    };

  fakePkgs =
    sys:
    let
      drv = fakeDrv sys;
    in
    {
      lib = {
        fileset = {
          toSource = args: args;
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
        drv "vm-test-run-${module.name}" {
          inherit module;
          driver = drv "nixos-test-driver-${module.name}" { };
          driverInteractive = drv "nixos-test-driver-${module.name}-interactive" { };
        };
      mkShell = drv "nix-shell";
    }
    // builtins.listToAttrs (
      map
        (name: {
          inherit name;
          value = drv name { };
        })
        (
          wordsOf "cargo rustc clippy rustfmt qemu fio nvme-cli iproute2 lvm2 mdadm nixfmt deadnix nixfmt-tree"
        )
    );

  crane.mkLib =
    pkgs:
    let
      drv = fakeDrv pkgs.stdenv.hostPlatform.system;
    in
    {
      fileset.commonCargoSources = path: { commonCargoSources = path; };
      buildDepsOnly = drv "nvmfcheck-deps";
      buildPackage = drv "nvmfcheck";
      cargoClippy = drv "nvmfcheck-clippy";
      cargoFmt = drv "nvmfcheck-fmt";
      cargoNextest = drv "nvmfcheck-nextest";
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

  out = (import ../flake.nix).outputs {
    self = out;
    nixpkgs.legacyPackages = builtins.listToAttrs (
      map (sys: {
        name = sys;
        value = fakePkgs sys;
      }) systems
    );
    inherit crane flake-utils;
    systems = { };
  };
  checks = out.checks.${system};
  package = out.packages.${system}.nvmfcheck;
  pair = builtins.fromJSON (builtins.readFile ../src/suite/setups.json);

  wordsOf = s: filter (w: builtins.isString w && w != "") (builtins.split " " s);
  names = set: toString (attrNames set);

  # modules/target.nix with a minimal module-system stand-in: each option's
  # default, overridden by `set`. systemd runs ExecStart's words as the
  # agent's arguments, so the stand-in escapeSystemdExecArgs keeps the list.
  targetModule =
    set:
    let
      module = import ../modules/target.nix {
        lib = {
          mkEnableOption = _: { default = false; };
          mkOption = args: args;
          mkIf = _: content: content;
          inherit (builtins) concatMap;
          optionals = cond: list: if cond then list else [ ];
          types = {
            package = "package";
            str = "str";
            port = "port";
            bool = "bool";
            nullOr = t: "nullOr ${t}";
            ints.positive = "positive int";
            listOf = t: "listOf ${t}";
          };
        };
        pkgs = fakePkgs system;
        utils.escapeSystemdExecArgs = args: args;
        config.services.nvmfcheck-agent = builtins.mapAttrs (
          name: opt: set.${name} or opt.default or (throw "no value for ${name}")
        ) module.options.services.nvmfcheck-agent;
      };
    in
    module;
  execStart = set: (targetModule set).config.systemd.services.nvmfcheck-agent.serviceConfig.ExecStart;
  agentOf = check: node: check.module.nodes.${node}.services.nvmfcheck-agent;
  agentCommand = "${package}/bin/nvmfcheck agent --discovery-port 8420 --io-port 8430 --state-dir /var/lib/nvmfcheck";

  # The words after `flag` in a command line.
  valuesOf =
    flag: words:
    filter (w: w != null) (
      builtins.genList (i: if elemAt words i == flag then elemAt words (i + 1) else null) (
        length words - 1
      )
    );

  # The groups of the one line of `script` that matches `regex`.
  lineMatch =
    regex: script:
    let
      found = filter (m: m != null) (
        map (match regex) (filter builtins.isString (builtins.split "\n" script))
      );
    in
    if length found == 1 then
      found
    else
      throw "eval-outputs: ${toString (length found)} lines match ${regex}";

  # The words of the `nvmfcheck run` a test script starts, after `run`.
  runOf = script: wordsOf (head (head (lineMatch " *\"nvmfcheck run (.*) >&2\"," script)));
  # Its categories: the words before the first flag.
  categoriesOf = script: head (match "([a-z ]*[a-z]) --.*" (toString (runOf script)));

  scriptOf = c: checks.${c}.module.testScript;
  interactiveScriptOf = c: checks.${c}.module.interactive.testScript.content;

  # Whether `script` names basic's output: the check's driver, whose
  # `testScript` attribute the script is, then needs that output built.
  needsBasic =
    script:
    builtins.elem "out" (
      (builtins.getContext script).${builtins.unsafeDiscardStringContext checks.basic.drvPath}.outputs
      or [ ]
    );

  # The target nodes of check `c` (every node but the initiator), sorted.
  targetsOf = c: filter (n: n != "initiator") (attrNames checks.${c}.module.nodes);
  # The address VLAN 1 gives node `node` of check `c`:
  # 192.168.1.<1 + its position in the sorted node names>.
  vlanAddress =
    c: node:
    "192.168.1.${toString (1 + length (filter (n: n < node) (attrNames checks.${c}.module.nodes)))}";

  # Whether check `c`'s run reaches each of its agents: the run names the
  # first with `--target`, the second with `--node2`, each an address the
  # agent listens on, on its link address; the firewall opens its port, the
  # script waits for it there first, and a token file the agent wants is the
  # run's and is on the agent's node and the initiator.
  reachesAgent =
    c:
    let
      inherit (checks.${c}.module) nodes;
      run = runOf (scriptOf c);
      targets = targetsOf c;
      inEtc =
        node: path:
        let
          name = match "/etc/(.+)" path;
        in
        name != null && builtins.any (m: m.environment.etc or { } ? ${head name}) node.imports;
      reaches =
        k:
        let
          node = elemAt targets k;
          agent = execStart (agentOf checks.${c} node);
          target = valuesOf (if k == 0 then "--target" else "--node${toString (k + 1)}") run;
          wait = lineMatch " *${node}.wait_for_open_port\\(([0-9]+), \"([^\"]+)\"\\)" (scriptOf c);
          port = builtins.fromJSON (elemAt (head wait) 0);
          address = vlanAddress c node;
          tokens = valuesOf "--token-file" agent;
        in
        length target == 1
        && builtins.elem (head target) (valuesOf "--listen" agent)
        && valuesOf "--address" agent == [ address ]
        && head target == "${address}:${toString port}"
        && elemAt (head wait) 1 == address
        && builtins.elem port nodes.${node}.networking.firewall.allowedTCPPorts
        && valuesOf "--token-file" run == tokens
        && all (path: inEtc nodes.${node} path && inEtc nodes.initiator path) tokens;
    in
    targets != [ ] && all reaches (builtins.genList (k: k) (length targets));

  # [ name, holds ] pairs, checked in order.
  assertions = [
    [
      "every output and the target module evaluate (no attribute missing from the stand-ins)"
      (builtins.deepSeq out (builtins.deepSeq (targetModule { inherit package; }) true))
    ]
    [
      "outputs: packages, apps, checks, devShells, formatter per Linux system; nixosModules; hydraJobs"
      (
        names out == "apps checks devShells formatter hydraJobs nixosModules packages"
        && all (o: attrNames out.${o} == systems) (wordsOf "apps checks devShells formatter packages")
        && names out.nixosModules == "initiator target"
        && names out.packages.${system} == "default nvmfcheck"
        && out.packages.${system}.default == package
        && names checks == "basic clippy fmt io nextest nvmfcheck replication security"
        && checks.nvmfcheck == package
      )
    ]
    [
      "apps: default runs the binary, driver-<category> that check's interactive driver"
      (
        names out.apps.${system} == "default driver-basic driver-io driver-replication driver-security"
        && out.apps.${system}.default.program == "${package}/bin/nvmfcheck"
        && all (
          c:
          out.apps.${system}."driver-${c}".program == "${checks.${c}.driverInteractive}/bin/nixos-test-driver"
        ) categories
      )
    ]
    [
      "hydraJobs.<job>.<system>: the categories' checks and the package"
      (
        names out.hydraJobs == "basic io nvmfcheck replication security"
        && all (
          sys:
          out.hydraJobs.nvmfcheck.${sys} == out.packages.${sys}.nvmfcheck
          && all (c: out.hydraJobs.${c}.${sys} == out.checks.${sys}.${c}) categories
        ) systems
      )
    ]
    [
      "io, security and replication need basic's output (so build after it) and their runs require its report; basic needs none"
      (
        !builtins.hasContext (scriptOf "basic")
        && valuesOf "--require-passed" (runOf (scriptOf "basic")) == [ ]
        &&
          all
            (
              c:
              needsBasic (scriptOf c)
              && valuesOf "--require-passed" (runOf (scriptOf c)) == [ "${checks.basic}/report.json" ]
              && categoriesOf (scriptOf c) == c
            )
            [
              "io"
              "security"
              "replication"
            ]
      )
    ]
    [
      "the interactive drivers need no check's output, and the others run basic first"
      (
        all (c: !builtins.hasContext (interactiveScriptOf c)) categories
        && all (c: categoriesOf (interactiveScriptOf c) == "basic ${c}") [
          "io"
          "security"
          "replication"
        ]
      )
    ]
    [
      "target module, defaults: gRPC on loopback only; nothing exportable, no Control, no token"
      (
        toString (execStart {
          inherit package;
        }) == "${agentCommand} --listen 127.0.0.1:10124"
      )
    ]
    [
      "target module, basic's and io's settings (faults): gRPC on the link, the test disk and /tmp, Control on"
      (all
        (
          c:
          toString (execStart (agentOf checks.${c} "target"))
          == "${agentCommand} --address 192.168.1.2 --listen 192.168.1.2:10124 --allow-path /dev/vdb --allow-path /tmp --faults"
        )
        [
          "basic"
          "io"
        ]
      )
    ]
    [
      "target module, security's settings (hardened): the module's defaults (loopback, no Control), a token, the link on its own port"
      (
        toString (execStart (agentOf checks.security "target"))
        == "${agentCommand} --address 192.168.1.2 --listen 127.0.0.1:10124 --allow-path /dev/vdb --allow-path /tmp --token-file /etc/nvmfcheck/token --listen 192.168.1.2:10125"
        &&
          execStart (agentOf checks.security "target") == execStart (
            removeAttrs (agentOf checks.security "target") [
              "listenAddresses"
              "enableFaults"
            ]
          )
      )
    ]
    [
      "target module, replication's settings: node1 and node2 as faults, each on its own address, with the nexus port, rebuild rate and power cycle"
      (
        map (node: toString (execStart (agentOf checks.replication node))) [
          "node1"
          "node2"
        ] == map
          (
            address:
            "${agentCommand} --address ${address} --listen ${address}:10124 --allow-path /dev/vdb --allow-path /tmp --faults --nexus-port 4421 --rebuild-rate 4096 --allow-power-cycle"
          )
          [
            "192.168.1.2"
            "192.168.1.3"
          ]
      )
    ]
    [
      "the targets that may reset themselves (replication's) are started with allow_reboot=True before start_all(), in the check and the interactive driver; the others are not"
      (
        let
          allowed =
            script: node:
            builtins.match ".*${node}[.]start[(]allow_reboot=True[)]\n.*start_all[(][)].*" script != null;
          both = c: [
            (scriptOf c)
            (interactiveScriptOf c)
          ];
        in
        all (script: allowed script "node1" && allowed script "node2") (both "replication")
        && all (script: builtins.match ".*allow_reboot.*" script == null) (
          builtins.concatMap both [
            "basic"
            "io"
            "security"
          ]
        )
      )
    ]
    [
      "basic's check keeps its target's disk once the run passed, after powering the target off; io's target boots on a copy of it; no other script, and no interactive driver, touches a disk"
      (
        let
          # A regular expression may not refer to a store path; needsBasic
          # checks the context.
          kept = builtins.unsafeDiscardStringContext "${checks.basic}/target-vdb.qcow2.gz";
          keeps =
            builtins.match (
              ".*raise Exception[(]\n *f\"nvmfcheck run basic exited.*"
              + "\ntarget[.]shutdown[(][)]\nkept = driver[.]out_dir / \"target-vdb[.]qcow2[.]gz\"\n"
              + "with open[(]target[.]state_dir / \"empty0[.]qcow2\", \"rb\"[)].*"
            ) (scriptOf "basic") != null;
          bootsOn =
            builtins.match (
              ".*with gzip[.]open[(]\"${kept}\", \"rb\"[)] as packed, open[(]\n"
              + " *target[.]state_dir / \"empty0[.]qcow2\", \"wb\"\n.*start_all[(][)].*"
            ) (scriptOf "io") != null;
          touchesNoDisk = script: builtins.match ".*empty0.*" script == null;
        in
        keeps
        && bootsOn
        && needsBasic (scriptOf "io")
        && all touchesNoDisk (
          [
            (scriptOf "security")
            (scriptOf "replication")
          ]
          ++ map interactiveScriptOf categories
        )
      )
    ]
    [
      "each check's run reaches its agent: a --listen address on the link, open, waited for, with the agent's token"
      (all reachesAgent categories)
    ]
    [
      "setups.json's link addresses are those VLAN 1 gives the nodes (192.168.1.<position in the sorted node names>): the initiator's, the first target's, then one up per target as the runner counts"
      (all (
        c:
        let
          inherit (checks.${c}.module) nodes;
          targets = targetsOf c;
          first = match "(.*[.])([0-9]+)" pair.targetAddress;
          addressOf = k: "${head first}${toString (builtins.fromJSON (elemAt first 1) + k)}";
        in
        vlanAddress c "initiator" == pair.initiatorAddress
        && builtins.any (setup: setup.targets == targets) (builtins.attrValues pair.setups)
        &&
          builtins.genList (k: vlanAddress c (elemAt targets k)) (length targets)
          == builtins.genList addressOf (length targets)
        && all (n: n.virtualisation.vlans == [ 1 ]) (builtins.attrValues nodes)
      ) categories)
    ]
  ];

  check =
    done: a: if elemAt a 1 then done ++ [ (head a) ] else throw "eval-outputs: FAILED: ${head a}";
in
{
  checked = builtins.foldl' check [ ] assertions;
  testScripts = {
    basic = scriptOf "basic";
    io = scriptOf "io";
    security = scriptOf "security";
    replication = scriptOf "replication";
    basic-interactive = interactiveScriptOf "basic";
    io-interactive = interactiveScriptOf "io";
    security-interactive = interactiveScriptOf "security";
    replication-interactive = interactiveScriptOf "replication";
  };
}
