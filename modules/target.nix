# NixOS module for the target machine: runs `nvmfcheck agent` (the gRPC
# control plane over the kernel NVMe target) as the systemd service
# `nvmfcheck-agent`. Exported by the flake as `nixosModules.target`, which
# also sets `package` to the flake's build.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.services.nvmfcheck-agent;
  inherit (lib) mkOption types;
in
{
  options.services.nvmfcheck-agent = {
    enable = lib.mkEnableOption "the nvmfcheck agent, an NVMe-over-Fabrics target with a Mayastor v0 BdevRpc gRPC service";

    package = mkOption {
      type = types.package;
      description = "The nvmfcheck package.";
    };

    listenAddresses = mkOption {
      type = types.listOf types.str;
      default = [ "127.0.0.1" ];
      example = [ "192.168.1.2" ];
      description = ''
        IPv4 addresses the gRPC server listens on, each at `grpcPort`.
        Loopback only by default: give the address other machines reach
        this one at to let them call the agent.
      '';
    };

    address = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "192.168.1.2";
      description = ''
        IPv4 address the NVMe/TCP ports listen on and share URIs name.
        `null` lets the agent pick the first non-loopback IPv4 address.
      '';
    };

    grpcPort = mkOption {
      type = types.port;
      # The agent's own default port, which the binary's build checks
      # setups.json against.
      default = (builtins.fromJSON (builtins.readFile ../src/suite/setups.json)).grpcPort;
      description = "TCP port of the gRPC server.";
    };

    discoveryPort = mkOption {
      type = types.port;
      default = 8420;
      description = "TCP port of the NVMe/TCP discovery service.";
    };

    ioPort = mkOption {
      type = types.port;
      default = 8430;
      description = "TCP port the shared subsystems are served on.";
    };

    nexusPort = mkOption {
      type = types.nullOr types.port;
      default = null;
      example = 4421;
      description = ''
        TCP port published nexuses are served on (`--nexus-port`); `null`
        serves them on `ioPort`, beside the replicas.
      '';
    };

    rebuildRate = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      example = 4096;
      description = ''
        The most a nexus rebuild may copy, in KiB/s (`--rebuild-rate`, md's
        `sync_speed_max`); `null` leaves the kernel's limit.
      '';
    };

    allowPowerCycle = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether `Control.PowerCycle` may reset this machine at once, without
        sync or shutdown (`--allow-power-cycle`, SysRq `b`), as a power cut
        would. Only for throwaway test VMs; needs `enableFaults`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the gRPC, discovery, I/O and nexus ports in the firewall.";
    };

    enableFaults = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether the Control service answers (`--faults`): it takes the
        target's link and ports down and restarts the agent, for tests.
        Off, every Control call is refused.
      '';
    };

    allowPaths = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/dev/vdb" ];
      description = ''
        Prefixes under which aio bdevs may be made (`--allow-path`); none by
        default, so no file or device can be exported until allowed. The
        state directory is never allowed.
      '';
    };

    tokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/keys/nvmfcheck-token";
      description = ''
        A file (not in the Nix store, which anyone can read) whose content
        every gRPC call must carry as `authorization: Bearer <token>`
        (`--token-file`); other users must not be able to read it.
      '';
    };

    extraFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--listen"
        "192.168.1.2:10125"
      ];
      description = "More flags for `nvmfcheck agent`.";
    };

    create = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "aio:///dev/vdb" ];
      description = "Bdev URIs to create at start.";
    };

    share = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "aio:///dev/vdb" ];
      description = "Bdev names to share over NVMe/TCP at start (an aio bdev is named by its URI).";
    };
  };

  config = lib.mkIf cfg.enable {
    # loop: bdevs whose block size the target cannot give their file or
    # device by itself are exported through a loop device. dm_mod: pools
    # and replicas are LVM2 volume groups and logical volumes. raid1: a
    # nexus is an md RAID1 array; nvme-tcp: its remote children are
    # NVMe/TCP namespaces the agent connects to as a host.
    boot.kernelModules = [
      "nvmet"
      "nvmet-tcp"
      "loop"
      "dm_mod"
      "raid1"
      "nvme-tcp"
    ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (
      [
        cfg.grpcPort
        cfg.discoveryPort
        cfg.ioPort
      ]
      ++ lib.optionals (cfg.nexusPort != null) [ cfg.nexusPort ]
    );

    systemd.services.nvmfcheck-agent = {
      description = "nvmfcheck agent (NVMe-oF target, Mayastor v0 BdevRpc)";
      wantedBy = [ "multi-user.target" ];
      # The Control service's LinkDown runs `ip link set`; pools and
      # replicas run LVM2's tools, nexuses mdadm and nvme-cli.
      path = [
        pkgs.iproute2
        pkgs.lvm2
        pkgs.mdadm
        pkgs.nvme-cli
      ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "systemd-modules-load.service"
        "sys-kernel-config.mount"
      ];
      serviceConfig = {
        ExecStart = utils.escapeSystemdExecArgs (
          [
            "${cfg.package}/bin/nvmfcheck"
            "agent"
            "--discovery-port"
            (toString cfg.discoveryPort)
            "--io-port"
            (toString cfg.ioPort)
            "--state-dir"
            "/var/lib/nvmfcheck"
          ]
          ++ lib.optionals (cfg.address != null) [
            "--address"
            cfg.address
          ]
          ++ lib.concatMap (uri: [
            "--create"
            uri
          ]) cfg.create
          ++ lib.concatMap (name: [
            "--share"
            name
          ]) cfg.share
          ++ lib.concatMap (ip: [
            "--listen"
            "${ip}:${toString cfg.grpcPort}"
          ]) cfg.listenAddresses
          ++ lib.concatMap (path: [
            "--allow-path"
            path
          ]) cfg.allowPaths
          ++ lib.optionals cfg.enableFaults [ "--faults" ]
          ++ lib.optionals (cfg.nexusPort != null) [
            "--nexus-port"
            (toString cfg.nexusPort)
          ]
          ++ lib.optionals (cfg.rebuildRate != null) [
            "--rebuild-rate"
            (toString cfg.rebuildRate)
          ]
          ++ lib.optionals cfg.allowPowerCycle [ "--allow-power-cycle" ]
          ++ lib.optionals (cfg.tokenFile != null) [
            "--token-file"
            cfg.tokenFile
          ]
          ++ cfg.extraFlags
        );
        StateDirectory = "nvmfcheck";
        Restart = "on-failure";
      };
    };
  };
}
