//! Compiles `proto/raft.proto` with a vendored `protoc`, so a fresh machine needs nothing but cargo.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; PROTOC is read by prost-build below.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/raft.proto");
    // `bytes` fields decode into `bytes::Bytes`: entry payloads are shared, not copied.
    tonic_prost_build::configure()
        .bytes(".rocinante.raft")
        .compile_protos(&["proto/raft.proto"], &["proto"])?;
    Ok(())
}
