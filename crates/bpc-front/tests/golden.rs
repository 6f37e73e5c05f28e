//! Golden IR: `compile` of every conformance example, printed, against
//! `tests/golden/NAME.ir` at the repository root. `BPC_BLESS=1` rewrites the expected files.

use std::path::{Path, PathBuf};

const EXAMPLES: &[&str] =
    &["add_mul", "sigmoid_neuron", "max_gate", "squared_error", "logistic", "iris", "digits", "mnist"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/NAME.bp` in the repository once it is there, else the shared conformance copy.
pub fn example_path(name: &str) -> PathBuf {
    let local = root().join("examples").join(format!("{name}.bp"));
    if local.exists() { local } else { root().join("../shared/examples").join(format!("{name}.bp")) }
}

#[test]
fn golden_ir_of_the_examples() {
    let bless = std::env::var_os("BPC_BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for name in EXAMPLES {
        let path = example_path(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let src = bpc_front::Source::new(format!("examples/{name}.bp"), text);
        let func = match bpc_front::compile(&src) {
            Ok(f) => f,
            Err(d) => panic!("{name} does not compile:\n{}", bpc_front::render(&src, &d)),
        };
        let got = func.to_string();
        let golden = root().join("tests/golden").join(format!("{name}.ir"));
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: IR differs\n--- expected\n{want}--- got\n{got}")),
            Err(e) => failures.push(format!("{name}: {} ({e}); run with BPC_BLESS=1\n{got}", golden.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
