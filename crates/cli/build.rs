fn main() {
    // Only the model binary (and the tests, which load models) link libtorch; `collapse-probe`
    // itself must not, or it would load libtorch on every start.
    cp_torch_link::emit_for_binary("collapse-probe-model")
}
