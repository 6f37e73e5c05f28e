//! `include/bpc.h` is what cbindgen generates from `src/lib.rs` (with `cbindgen.toml`).
//! After changing the C ABI, regenerate it with
//! `BPC_BLESS=1 cargo test -p bpc-capi --release --test header`.

use std::path::Path;

#[test]
fn the_committed_header_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen reads src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("include/bpc.h");
    if std::env::var_os("BPC_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/bpc.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/bpc.h is out of date: run BPC_BLESS=1 cargo test -p bpc-capi --release --test header"
    );
}
