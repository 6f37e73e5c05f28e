//! The IR text round-trips: every golden `--emit ir` and `--emit grad` file reads back
//! (`bpc_ir::read`, which re-infers and checks every type) and prints as the same text.

use std::fs;
use std::path::Path;

#[test]
fn golden_ir_files_read_back_to_the_same_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("ir" | "grad")) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let func = bpc::ir::read(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bpc::ir::verify(&func).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(func.to_string(), text, "{} does not round-trip", path.display());
        count += 1;
    }
    assert!(count >= 14, "only {count} golden IR files found in {}", dir.display());
}
