//! No input may panic: random bytes, random edits of the conformance examples, and
//! pathological nesting all return `Ok` or diagnostics. The deep cases run on a thread
//! with a deliberately small stack, so a recursion that grows with the input fails here.

use bpc_front::{Source, compile, render};
use proptest::prelude::*;

const EXAMPLES: &[&str] =
    &["add_mul", "sigmoid_neuron", "max_gate", "squared_error", "logistic", "iris", "digits", "mnist"];

fn example_text(name: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let local = format!("{root}/examples/{name}.bp");
    let path =
        if std::path::Path::new(&local).exists() { local } else { format!("{root}/../shared/examples/{name}.bp") };
    std::fs::read_to_string(path).unwrap()
}

/// Compiles and renders (rendering must not panic either); true if it compiled.
fn survives(text: &str) -> bool {
    let src = Source::new("fuzz.bp", text);
    match compile(&src) {
        Ok(f) => {
            bpc_ir::verify(&f).unwrap();
            true
        }
        Err(d) => {
            assert!(!d.is_empty());
            assert!(d.iter().all(|d| !d.message.starts_with("internal")), "{d:?}");
            let _ = render(&src, &d);
            false
        }
    }
}

/// Runs `f` on a thread with a 1 MiB stack (half a test thread's default).
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(1 << 20).spawn(f).unwrap().join().unwrap()
}

fn first_message(text: String) -> Option<String> {
    small_stack(move || compile(&Source::new("deep.bp", text)).err().map(|d| d[0].message.clone()))
}

#[test]
fn deep_nesting_is_a_diagnostic() {
    let n = 10_000;
    let deep = "expression is nested too deeply";
    assert_eq!(first_message(format!("input x\nloss {}x{}\n", "(".repeat(n), ")".repeat(n))), None);
    assert_eq!(first_message(format!("input x\nloss {}x{}\n", "exp(".repeat(n), ")".repeat(n))).as_deref(), Some(deep));
    assert_eq!(first_message(format!("input x\nloss {}x\n", "-".repeat(n))).as_deref(), Some(deep));
    assert_eq!(first_message(format!("input x\nloss x{}\n", "^x".repeat(n))).as_deref(), Some(deep));
    assert_eq!(first_message(format!("input x\nloss x{}\n", "*x".repeat(n))).as_deref(), Some(deep));
    assert_eq!(first_message(format!("input v[2]\nloss v{}\n", "[0]".repeat(n))).as_deref(), Some(deep));
}

/// A chain of `def`s, each calling the previous one: inlining nests `2 * n` levels.
fn def_chain(n: usize) -> String {
    let mut text = String::from("input x\ndef f0(a) = a + 1\n");
    for i in 1..n {
        text.push_str(&format!("def f{i}(a) = f{}(a) * 2\n", i - 1));
    }
    text.push_str(&format!("loss f{}(x)\n", n - 1));
    text
}

#[test]
fn inlining_depth_is_limited_and_the_limit_fits_a_small_stack() {
    let limit = bpc_front::MAX_INLINE_DEPTH as usize;
    // Just under the limit: compiles, on a small stack.
    assert_eq!(first_message(def_chain(limit / 2 - 2)), None);
    assert_eq!(first_message(def_chain(limit)).as_deref(), Some("expression is nested too deeply"));
}

#[test]
fn edge_inputs() {
    for text in [
        "",
        "\n",
        "#",
        "loss",
        "loss 1",
        "model",
        "input",
        "(",
        ")",
        "[",
        "]",
        "1e",
        "\u{0}",
        "loss x\r\n",
        "é",
        "loss 1.e5",
        "loss 0.e0",
    ] {
        survives(text);
    }
    assert!(survives("loss 1"), "a constant loss is a valid (if useless) program");
    let huge_int = format!("input x[{}]\nloss sum(x)\n", "9".repeat(400));
    assert!(!survives(&huge_int));
}

/// Byte-level edits: delete, insert or replace a span with bytes drawn from the language.
fn mutate(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut s = text.as_bytes().to_vec();
    for (at, del, ins) in edits {
        let at = at % (s.len() + 1);
        let end = (at + del).min(s.len());
        s.splice(at..end, ins.bytes());
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "x",
            "W1",
            "b1",
            "y",
            "(",
            ")",
            "[",
            "]",
            ",",
            "@",
            "*",
            "+",
            "-",
            "^",
            "/",
            "<",
            "==",
            "=",
            "~",
            ":",
            "\n",
            " ",
            "0",
            "1",
            "2.5",
            "1e-3",
            "sum(",
            "softmax(",
            "cross_entropy(",
            "axis=",
            "input ",
            "param ",
            "label ",
            "loss ",
            "output ",
            "const ",
            "def ",
            "class(",
            "model ",
            "#",
            "max(",
            "where(",
            "transpose(",
            "mse(",
            "h",
        ]),
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        survives(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_programs_never_panic(lines in prop::collection::vec(token_soup(), 0..8)) {
        survives(&lines.join("\n"));
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..EXAMPLES.len(),
        edits in prop::collection::vec((any::<usize>(), 0usize..8, token_soup()), 1..4),
    ) {
        survives(&mutate(&example_text(EXAMPLES[which]), &edits));
    }
}

#[test]
fn every_example_compiles_unchanged() {
    for name in EXAMPLES {
        assert!(survives(&example_text(name)), "{name}");
    }
}
