/* The lecture's sigmoid neuron from C: compile the model, take the gradient of its loss
 * with respect to every input, call it on C buffers and print the value and gradients.
 *
 *   cargo build --release -p bpc-capi
 *   cc examples/c/grad.c -I crates/bpc-capi/include target/release/libbpc_capi.a \
 *      -lpthread -ldl -lm -o grad && ./grad
 *
 * prints f = 0.731059, then w0 -0.196612, x0 0.393224, w1 -0.393224, x1 -0.589836,
 * w2 0.196612 (crates/bpc-capi/tests/c_example.rs runs it). */

#include <stdio.h>

#include "bpc.h"

static const char *MODEL =
    "input w0\n"
    "input x0\n"
    "input w1\n"
    "input x1\n"
    "input w2\n"
    "f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))\n"
    "loss f\n";

int main(void) {
    BpcProgram *program = bpc_compile(MODEL, "sigmoid_neuron.bp", 2, 1);
    if (program == NULL) {
        fprintf(stderr, "%s\n", bpc_last_error());
        return 1;
    }
    /* d loss / d every input, at one example per call. */
    size_t n = bpc_program_input_count(program);
    const char *wrt[5];
    if (n != 5) {
        fprintf(stderr, "expected 5 inputs, got %zu\n", n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        wrt[i] = bpc_program_input_name(program, i);
    }
    BpcValueAndGrad *vg = bpc_value_and_grad(program, wrt, n, 1);
    BpcWorkspace *ws = vg ? bpc_workspace_new(vg) : NULL;
    if (ws == NULL) {
        fprintf(stderr, "%s\n", bpc_last_error());
        return 1;
    }

    float values[5] = {2.0f, -1.0f, -3.0f, -2.0f, -3.0f}; /* w0, x0, w1, x1, w2 */
    const float *inputs[5];
    size_t lens[5];
    for (size_t i = 0; i < n; i++) {
        inputs[i] = &values[i];
        lens[i] = 1;
    }
    float loss = 0.0f;
    float grads[5];
    if (bpc_value_and_grad_call(vg, ws, NULL, 0, inputs, lens, n, NULL, NULL, 0, &loss, grads, 5) != BPC_OK) {
        fprintf(stderr, "%s\n", bpc_last_error());
        return 1;
    }
    printf("f = %.6f\n", loss);
    for (size_t i = 0; i < n; i++) {
        size_t at = bpc_value_and_grad_grad_offset(vg, i);
        printf("%s %.6f\n", bpc_value_and_grad_grad_name(vg, i), grads[at]);
    }

    /* A buffer of the wrong length is an error, not a crash. */
    lens[0] = 2;
    if (bpc_value_and_grad_call(vg, ws, NULL, 0, inputs, lens, n, NULL, NULL, 0, &loss, grads, 5) == BPC_ERROR) {
        printf("error: %s\n", bpc_last_error());
    }

    bpc_workspace_free(ws);
    bpc_value_and_grad_free(vg);
    bpc_program_free(program);
    return 0;
}
