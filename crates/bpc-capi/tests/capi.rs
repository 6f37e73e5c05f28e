//! The C ABI called from Rust: declarations, a value-and-grad call with params and class
//! labels against the Rust API, and every NULL or mismatched argument an error, not a crash.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;

use bpc_capi::*;

const MODEL: &str = "input x[2]\nlabel y : class(3)\nparam W[3, 2] ~ normal(0, 0.5)\nparam b[3] = 0.25\n\
                     loss cross_entropy(W @ x + b, y)\n";

#[path = "../../../tests/support/alloc.rs"]
mod alloc;
use alloc::allocs;

fn last_error() -> String {
    unsafe { CStr::from_ptr(bpc_last_error()) }.to_string_lossy().into_owned()
}

fn name(p: *const c_char) -> String {
    assert!(!p.is_null());
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn a_model_compiled_through_the_c_abi_matches_the_rust_api() {
    let src = CString::new(MODEL).unwrap();
    unsafe {
        let p = bpc_compile(src.as_ptr(), ptr::null(), 2, 1);
        assert!(!p.is_null(), "{}", last_error());
        assert_eq!((bpc_program_input_count(p), bpc_program_param_count(p), bpc_program_label_count(p)), (1, 2, 1));
        assert_eq!(name(bpc_program_input_name(p, 0)), "x");
        assert_eq!((bpc_program_input_rank(p, 0), *bpc_program_input_shape(p, 0)), (1, 2));
        assert_eq!((name(bpc_program_label_name(p, 0)), bpc_program_label_classes(p, 0)), ("y".to_string(), 3));
        assert_eq!(name(bpc_program_param_name(p, 1)), "b");
        let w_shape = std::slice::from_raw_parts(bpc_program_param_shape(p, 0), bpc_program_param_rank(p, 0));
        assert_eq!(w_shape, [3, 2]);
        assert!(bpc_program_param_name(p, 2).is_null());
        assert_eq!(bpc_program_param_len(p), 9);
        let mut params = [0.0f32; 9];
        assert_eq!(bpc_program_init_params(p, 5, params.as_mut_ptr(), 9), BPC_OK);
        assert_eq!(params[6..], [0.25; 3]);

        // All params (wrt NULL), a minibatch of 2.
        let vg = bpc_value_and_grad(p, ptr::null(), 0, 2);
        assert!(!vg.is_null(), "{}", last_error());
        assert_eq!((bpc_value_and_grad_grad_len(vg), bpc_value_and_grad_grad_offset(vg, 1)), (9, 6));
        assert_eq!(name(bpc_value_and_grad_grad_name(vg, 1)), "b");
        let ws = bpc_workspace_new(vg);
        let (x, y) = ([0.5f32, -1.0, 2.0, 0.25], [2i32, 0]);
        let (inputs, input_lens) = ([x.as_ptr()], [4usize]);
        let (labels, label_lens) = ([y.as_ptr().cast::<c_void>()], [2usize]);
        let (mut loss, mut grads) = (0.0f32, [0.0f32; 9]);
        let status = bpc_value_and_grad_call(
            vg,
            ws,
            params.as_ptr(),
            9,
            inputs.as_ptr(),
            input_lens.as_ptr(),
            1,
            labels.as_ptr(),
            label_lens.as_ptr(),
            1,
            &mut loss,
            grads.as_mut_ptr(),
            9,
        );
        assert_eq!(status, BPC_OK, "{}", last_error());
        // Later calls with the workspace allocate nothing.
        let before = allocs();
        for _ in 0..3 {
            let status = bpc_value_and_grad_call(
                vg,
                ws,
                params.as_ptr(),
                9,
                inputs.as_ptr(),
                input_lens.as_ptr(),
                1,
                labels.as_ptr(),
                label_lens.as_ptr(),
                1,
                &mut loss,
                grads.as_mut_ptr(),
                9,
            );
            assert_eq!(status, BPC_OK);
        }
        assert_eq!(allocs() - before, 0, "allocations in 3 calls");

        let program = bpc::compile(MODEL, &bpc::Options::default()).unwrap();
        let rust = program.value_and_grad(&program.param_names(), 2).unwrap();
        let mut want = [0.0f32; 9];
        let (xs, ls) = ([&x[..]], [bpc::Label::Class(&y)]);
        let want_loss =
            rust.call(&mut rust.workspace(), &params, &bpc::Feed::with_labels(&xs, &ls), &mut want).unwrap();
        assert_eq!((loss, grads), (want_loss, want));

        bpc_workspace_free(ws);
        bpc_value_and_grad_free(vg);
        bpc_program_free(p);
    }
}

#[test]
fn nulls_and_mismatches_are_errors() {
    unsafe {
        assert!(bpc_compile(ptr::null(), ptr::null(), 2, 0).is_null());
        assert_eq!(last_error(), "source is NULL");
        let bad = CString::new("input x\nloss x + q\n").unwrap();
        assert!(bpc_compile(bad.as_ptr(), ptr::null(), 2, 0).is_null());
        let e = last_error();
        assert!(e.starts_with("error:") && e.contains("model.bp:2:"), "{e}");
        let src = CString::new(MODEL).unwrap();
        assert!(bpc_compile(src.as_ptr(), ptr::null(), 3, 0).is_null());
        assert_eq!(last_error(), "opt_level must be 0, 1 or 2, not 3");
        assert_eq!(bpc_program_input_count(ptr::null()), 0);
        assert!(bpc_program_input_name(ptr::null(), 0).is_null());
        assert_eq!(last_error(), "program is NULL");
        assert!(bpc_value_and_grad(ptr::null(), ptr::null(), 0, 1).is_null());
        assert!(bpc_workspace_new(ptr::null()).is_null());
        bpc_program_free(ptr::null_mut());
        bpc_value_and_grad_free(ptr::null_mut());
        bpc_workspace_free(ptr::null_mut());

        let p = bpc_compile(src.as_ptr(), ptr::null(), 0, 1);
        let y = CString::new("y").unwrap();
        assert!(bpc_value_and_grad(p, &y.as_ptr(), 1, 2).is_null());
        assert!(last_error().contains("class label"), "{}", last_error());
        assert!(bpc_value_and_grad(p, ptr::null(), 0, 0).is_null());
        assert!(last_error().contains("minibatch size"), "{}", last_error());
        let mut params = [0.0f32; 9];
        assert_eq!(bpc_program_init_params(p, 0, params.as_mut_ptr(), 8), BPC_ERROR);
        assert_eq!(bpc_program_init_params(p, 0, ptr::null_mut(), 9), BPC_ERROR);
        assert_eq!(last_error(), "params is NULL but its length is 9");

        let vg = bpc_value_and_grad(p, ptr::null(), 0, 1);
        let ws = bpc_workspace_new(vg);
        let x = [1.0f32, 2.0];
        let y = [1i32];
        let (mut loss, mut grads) = (0.0f32, [0.0f32; 9]);
        let mut call = |params: *const f32, x_len: usize, n_labels: usize, ws: *mut BpcWorkspace| {
            let (inputs, lens) = ([x.as_ptr()], [x_len]);
            let (labels, label_lens) = ([y.as_ptr().cast::<c_void>()], [1usize]);
            let status = bpc_value_and_grad_call(
                vg,
                ws,
                params,
                9,
                inputs.as_ptr(),
                lens.as_ptr(),
                1,
                labels.as_ptr(),
                label_lens.as_ptr(),
                n_labels,
                &mut loss,
                grads.as_mut_ptr(),
                9,
            );
            (status, last_error())
        };
        assert_eq!(call(params.as_ptr(), 2, 1, ws).0, BPC_OK);
        assert_eq!(call(ptr::null(), 2, 1, ws), (BPC_ERROR, "params is NULL but its length is 9".into()));
        let (status, e) = call(params.as_ptr(), 3, 1, ws);
        assert!(status == BPC_ERROR && e.contains("argument x has 3 elements, expected 2"), "{e}");
        let (status, e) = call(params.as_ptr(), 2, 0, ws);
        assert!(status == BPC_ERROR && e.contains("expected 1 label buffer (y), got 0"), "{e}");
        assert_eq!(call(params.as_ptr(), 2, 1, ptr::null_mut()), (BPC_ERROR, "workspace is NULL".into()));
        // A class index outside 0..3 is refused before any code runs (its loss would be NaN).
        for bad in [3i32, -1] {
            let yb = [bad];
            let (inputs, lens) = ([x.as_ptr()], [2usize]);
            let (labels, label_lens) = ([yb.as_ptr().cast::<c_void>()], [1usize]);
            grads = [7.0; 9];
            let (inp, lab) = (inputs.as_ptr(), labels.as_ptr());
            let status = bpc_value_and_grad_call(
                vg,
                ws,
                params.as_ptr(),
                9,
                inp,
                lens.as_ptr(),
                1,
                lab,
                label_lens.as_ptr(),
                1,
                &mut loss,
                grads.as_mut_ptr(),
                9,
            );
            let e = last_error();
            let want = format!("label y[0] is {bad}, not a class of `label y : class(3)` (0 to 2)");
            assert!(status == BPC_ERROR && e.contains(&want), "{e}");
            assert_eq!(grads, [7.0; 9], "nothing written");
        }
        bpc_workspace_free(ws);
        bpc_value_and_grad_free(vg);
        bpc_program_free(p);
    }
}
