//! Compiles the `.proto` files with protox (pure Rust, so no `protoc` is
//! needed on the build host or in the Nix build).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mayastor.proto",
        "proto/control.proto",
        "proto/security.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The bdev client prints replies as JSON shaped like the messages,
        // as `mayastor-client` did.
        .type_attribute(
            ".mayastor",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
