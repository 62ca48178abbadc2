//! Generates the tonic/prost code for the etcd v3 API (with etcd's Lock and
//! Election services) and Logbook's peer API, and the JSON (serde) impls of
//! the etcd messages for the v3 gateway.
//!
//! protoc comes from `protoc-bin-vendored` and is handed to prost-build here
//! only; nothing is exported to the environment, because other build scripts
//! in the workspace (the `raft` crate's) reject a modern protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let protos = [
        root.join("mvccpb/kv.proto"),
        root.join("authpb/auth.proto"),
        root.join("etcdserverpb/rpc.proto"),
        root.join("v3lockpb/v3lock.proto"),
        root.join("v3electionpb/v3election.proto"),
        root.join("logbookpb/peer.proto"),
        root.join("logbookpb/raft.proto"),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Keys and values decode as `bytes::Bytes`: slices of the received
    // buffer, not copies, on the hot write path.
    config.bytes(["."]);
    let descriptors = PathBuf::from(std::env::var("OUT_DIR")?).join("descriptors.bin");
    config.file_descriptor_set_path(&descriptors);

    // Answers are encoded into buffers of their exact size (`codec.rs`): a big list is
    // written once, into memory of its own size.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::ExactCodec")
        .compile_with_config(config, &protos, &[root])?;

    // serde impls for the etcd packages, in the JSON etcd's gRPC gateway
    // speaks: the .proto field names as written (`cluster_id`, `dbSize`),
    // 64-bit integers as strings, bytes as base64, defaults omitted, unknown
    // fields ignored. Both spellings of a name are accepted on input.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
