fn main() {
    cp_torch_link::emit()
}
