//! Generates the parser from `grammar/bp.lalrpop` (at the workspace root) into `OUT_DIR`.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let grammar = manifest.join("../../grammar");
    println!("cargo:rerun-if-changed={}", grammar.join("bp.lalrpop").display());
    lalrpop::Configuration::new()
        .set_in_dir(grammar)
        .set_out_dir(env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .emit_rerun_directives(true)
        .process()
        .expect("grammar/bp.lalrpop must build");
}
