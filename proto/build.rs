//! Compiles every `.proto` under `tandem/v1/` with a vendored `protoc`, so no
//! system protobuf installation is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = root.join("tandem/v1");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    protos.sort();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // RPCs the server does not implement yet answer UNIMPLEMENTED instead of
        // failing to compile; every implemented RPC overrides its default.
        .generate_default_stubs(true)
        .file_descriptor_set_path(out_dir.join("tandem_descriptor.bin"))
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
