//! `examples/c/grad.c` compiled with the system C compiler against the static library and
//! run: it must print the lecture's value and gradients. Skipped, with the reason printed,
//! when there is no `cc` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The static library cargo built beside this test (`target/<profile>/deps` or its parent).
fn static_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [deps, deps.parent()?].into_iter().map(|d| d.join("libbpc_capi.a")).find(|p| p.exists())
}

#[test]
fn the_c_example_prints_the_lectures_gradients() {
    if Command::new("cc").arg("--version").output().is_err() {
        println!("skipped: no C compiler (`cc`) on PATH");
        return;
    }
    let Some(lib) = static_library() else {
        panic!("libbpc_capi.a was not built next to {:?}", std::env::current_exe());
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = std::env::temp_dir().join(format!("bpc-capi-grad-{}", std::process::id()));
    let cc = Command::new("cc")
        .arg(root.join("examples/c/grad.c"))
        .arg("-std=c99")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(root.join("crates/bpc-capi/include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-lgcc_s", "-o"])
        .arg(&exe)
        .output()
        .expect("cc runs");
    assert!(cc.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&cc.stderr));
    let run = Command::new(&exe).output().expect("the example runs");
    let _ = std::fs::remove_file(&exe);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "grad failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..6],
        ["f = 0.731059", "w0 -0.196612", "x0 0.393224", "w1 -0.393224", "x1 -0.589836", "w2 0.196612"],
        "{stdout}"
    );
    assert_eq!(
        lines[6],
        "error: sigmoid_neuron: argument w0 has 2 elements, expected 1 (minibatch 1 × 1 per example); \
         2 elements are 2 examples: compile a function for minibatch size 2",
        "{stdout}"
    );
}
