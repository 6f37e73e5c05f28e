//! UI tests: every `tests/ui/NAME.bp` at the repository root must fail to compile with
//! exactly the diagnostics rendered in `tests/ui/NAME.stderr`. `BPC_BLESS=1` rewrites the
//! expected files.

use std::path::Path;

#[test]
fn diagnostics_match_the_expected_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/ui");
    let bless = std::env::var_os("BPC_BLESS").is_some_and(|v| v == "1");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bp"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no UI cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let src = bpc_front::Source::new(format!("tests/ui/{name}"), std::fs::read_to_string(case).unwrap());
        let got = match bpc_front::compile(&src) {
            Ok(_) => {
                failures.push(format!("{name}: compiled without errors"));
                continue;
            }
            Err(diags) => bpc_front::render(&src, &diags),
        };
        let expected_path = case.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: diagnostics differ\n--- expected\n{want}--- got\n{got}")),
            Err(e) => failures.push(format!("{name}: {} ({e}); run with BPC_BLESS=1\n{got}", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {} UI cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
