//! Golden filetests of the passes: every `tests/filetests/*.ir` file names a pass in its
//! first line (`; test cse`; `; test O2 batch 1` is `-O2` compiled at minibatch size 1), then holds the input function, `; after`, and the function the
//! pass must print. `BPC_BLESS=1 cargo test -p bpc-opt --test filetests` rewrites the
//! expected part from what the pass gives. Every output is also verified and read back.

use std::path::Path;

use bpc_ir::{Function, read, verify};
use bpc_opt::{OptLevel, optimize, optimize_for_batch};

fn run_pass(name: &str, f: &Function) -> Function {
    match name {
        "dce" => bpc_opt::eliminate_dead_code(f),
        "cse" => bpc_opt::eliminate_common_subexpressions(f),
        "fold" => bpc_opt::fold_constants(f),
        "simplify" => bpc_opt::simplify(f),
        "hoist" => bpc_opt::hoist_shared(f),
        "fuse" => bpc_opt::fuse(f),
        "O1" => optimize(f, OptLevel::O1),
        "O2" => optimize(f, OptLevel::O2),
        other => match other.strip_prefix("O2 batch ").and_then(|b| b.parse().ok()) {
            Some(batch) => optimize_for_batch(f, OptLevel::O2, batch),
            None => panic!("unknown pass `{other}`"),
        },
    }
}

/// `(pass, header lines, input text, expected text)` of a filetest.
fn parse(text: &str) -> (String, String, String, String) {
    let pass = text.lines().next().and_then(|l| l.strip_prefix("; test ")).expect("first line `; test PASS`");
    let header: String = text.lines().take_while(|l| l.starts_with(';')).map(|l| format!("{l}\n")).collect();
    let rest = &text[header.len()..];
    let (input, expected) = rest.split_once("; after\n").expect("a `; after` line");
    (pass.trim().to_string(), header, input.to_string(), expected.to_string())
}

#[test]
fn filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let bless = std::env::var_os("BPC_BLESS").is_some();
    let mut failures = Vec::new();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "ir")) {
        let text = std::fs::read_to_string(path).unwrap();
        let (pass, header, input, expected) = parse(&text);
        let f = read(&input).unwrap_or_else(|e| panic!("{}: input: {e}", path.display()));
        verify(&f).unwrap_or_else(|e| panic!("{}: input does not verify: {e}", path.display()));
        let out = run_pass(&pass, &f);
        verify(&out).unwrap_or_else(|e| panic!("{}: output does not verify: {e}\n{out}", path.display()));
        let got = out.to_string();
        assert_eq!(read(&got).unwrap().to_string(), got, "{}: output reads back", path.display());
        if bless {
            std::fs::write(path, format!("{header}{input}; after\n{got}")).unwrap();
        } else if got != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} filetests differ (BPC_BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(files.len() >= 10, "the filetests are missing");
}
