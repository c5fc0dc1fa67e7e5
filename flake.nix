# Nix entry point: the package (crane), the NixOS modules, one NixOS VM check
# per category, interactive drivers and Hydra jobs. Machines and wiring only:
# what a check does lives in `nvmfcheck run`.
{
  description = "nvmfcheck: end-to-end checks of an NVMe-over-Fabrics target in NixOS VMs";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane";
    systems.url = "github:nix-systems/default";
    flake-utils = {
      url = "github:numtide/flake-utils";
      inputs.systems.follows = "systems";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      flake-utils,
      ...
    }:
    let
      # The VM checks need a Linux builder with KVM.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      perSystem = flake-utils.lib.eachSystem linuxSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          craneLib = crane.mkLib pkgs;

          # Rust and cargo files, plus proto/ (build.rs compiles proto/*.proto
          # with protox, so no protoc is needed), src/suite/setups.json
          # (build.rs makes constants of the facts the checks below share
          # with the binary), docs/bad-input.md (a test checks that it shows
          # the bad-input table the code has) and proptest-regressions/ (the
          # inputs on which property tests once failed, which each run tries
          # first).
          # tests/flake-src.sh copies the same files for CI's test of them.
          src = pkgs.lib.fileset.toSource {
            root = ./.;
            fileset = pkgs.lib.fileset.unions [
              (craneLib.fileset.commonCargoSources ./.)
              ./proto
              ./src/suite/setups.json
              ./docs/bad-input.md
              ./proptest-regressions
            ];
          };

          commonArgs = {
            inherit src;
            strictDeps = true;
            cargoExtraArgs = "--locked";
          };

          cargoArtifacts = craneLib.buildDepsOnly commonArgs;

          nvmfcheck = craneLib.buildPackage (
            commonArgs
            // {
              inherit cargoArtifacts;
              # The tests run once, in checks.nextest.
              doCheck = false;
              meta.mainProgram = "nvmfcheck";
            }
          );

          basic = import ./checks/basic.nix { inherit pkgs nvmfcheck; };
          io = import ./checks/io.nix { inherit pkgs nvmfcheck basic; };
          security = import ./checks/security.nix { inherit pkgs nvmfcheck basic; };
          replication = import ./checks/replication.nix { inherit pkgs nvmfcheck basic; };

          # `nix run .#driver-<category>`: the VMs and a Python prompt; the
          # drivers run whatever the checks' results are.
          driverApp = category: check: {
            type = "app";
            program = "${check.driverInteractive}/bin/nixos-test-driver";
            meta.description = "Interactive NixOS test driver of the ${category} check";
          };
        in
        {
          packages = {
            default = nvmfcheck;
            inherit nvmfcheck;
          };

          checks = {
            inherit
              basic
              io
              security
              replication
              nvmfcheck
              ;
            clippy = craneLib.cargoClippy (
              commonArgs
              // {
                inherit cargoArtifacts;
                cargoClippyExtraArgs = "--all-targets -- -D warnings";
              }
            );
            fmt = craneLib.cargoFmt { inherit src; };
            # Some tests run the real fio and nvme-cli (on files, not devices).
            nextest = craneLib.cargoNextest (
              commonArgs
              // {
                inherit cargoArtifacts;
                nativeBuildInputs = [
                  pkgs.fio
                  pkgs.nvme-cli
                ];
              }
            );
          };

          apps = {
            default = {
              type = "app";
              program = "${nvmfcheck}/bin/nvmfcheck";
              meta.description = "The nvmfcheck binary";
            };
            driver-basic = driverApp "basic" basic;
            driver-io = driverApp "io" io;
            driver-security = driverApp "security" security;
            driver-replication = driverApp "replication" replication;
          };

          devShells.default = pkgs.mkShell {
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.qemu
              pkgs.fio
              pkgs.nvme-cli
              pkgs.nixfmt
              pkgs.deadnix
            ];
          };

          formatter = pkgs.nixfmt-tree;
        }
      );

      # hydraJobs.<job>.<system>: job first, as Hydra reads it.
      jobOf = outputs: name: builtins.mapAttrs (_: perSys: perSys.${name}) outputs;
    in
    perSystem
    // {
      nixosModules = {
        target =
          { lib, pkgs, ... }:
          {
            imports = [ ./modules/target.nix ];
            services.nvmfcheck-agent.package =
              lib.mkDefault
                self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          };
        initiator =
          { lib, pkgs, ... }:
          {
            imports = [ ./modules/initiator.nix ];
            programs.nvmfcheck-initiator.package =
              lib.mkDefault
                self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          };
      };

      hydraJobs = {
        nvmfcheck = jobOf perSystem.packages "nvmfcheck";
        basic = jobOf perSystem.checks "basic";
        io = jobOf perSystem.checks "io";
        security = jobOf perSystem.checks "security";
        replication = jobOf perSystem.checks "replication";
      };
    };
}
