//! Compiles Dialtone's own protos with protox (pure Rust), so no system `protoc` is needed,
//! and adds canonical proto3 JSON (pbjson) so `dialtonectl -o json` prints field and enum names.
use std::{env, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "dialtone/config/v1/config.proto",
    "dialtone/edge/v1/edge.proto",
    "dialtone/provisioning/v1/provisioning.proto",
    "dialtone/status/v1/status.proto",
    "grpc/health/v1/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("dialtone_descriptor.bin");
    std::fs::write(&descriptor_path, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        // Its Debug is written by hand (src/lib.rs): never the password.
        .skip_debug([".dialtone.config.v1.TrunkCredentials"])
        // The status view fingerprints each status it reduces by hashing it (a walk of its
        // fields, not an encoding): an edge's death re-reduces hundreds of thousands.
        // prost derives `Hash` itself for messages of scalar fields only (`EdgeStatus`,
        // `LineContact`, `ProvisioningStatus`); these two hold repeated messages.
        .type_attribute(".dialtone.status.v1.PhoneStatus", "#[derive(Eq, Hash)]")
        .type_attribute(".dialtone.status.v1.LineStatus", "#[derive(Eq, Hash)]")
        .compile_fds(fds)?;
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .build(&[".dialtone"])?;
    Ok(())
}
