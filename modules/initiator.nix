# NixOS module for the initiator machine: the NVMe/TCP host driver and the
# tools `nvmfcheck run` calls. Exported by the flake as
# `nixosModules.initiator`, which also sets `package` to the flake's build.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.programs.nvmfcheck-initiator;
in
{
  options.programs.nvmfcheck-initiator = {
    enable = lib.mkEnableOption "the nvmfcheck initiator: nvme-tcp, nvme-cli, fio and nvmfcheck";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The nvmfcheck package.";
    };
  };

  config = lib.mkIf cfg.enable {
    # Pulls in nvme-fabrics and nvme-core.
    boot.kernelModules = [ "nvme-tcp" ];

    environment.systemPackages = [
      cfg.package
      pkgs.nvme-cli
      pkgs.fio
    ];
  };
}
