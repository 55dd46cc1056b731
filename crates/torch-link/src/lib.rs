//! Build-script helper for every package whose binaries or tests link libtorch.
//!
//! Call [`emit`] from `build.rs` of a package that depends on `torch-sys` directly
//! (so that cargo hands its build script `DEP_TCH_LIBTORCH_LIB`). It
//!
//! * adds an rpath to the libtorch folder, so binaries run without `LD_LIBRARY_PATH`;
//! * links `libtorch_cuda` with `--no-as-needed` when that library exists, because the
//!   default `--as-needed` drops it (no symbol of it is referenced directly) and CUDA then
//!   silently reports as unavailable. CPU-only libtorch builds have no such library.

use std::path::Path;

/// Emits the link arguments for every target of the package; see the crate documentation.
pub fn emit() {
    emit_for("rustc-link-arg")
}

/// Emits the link arguments for the package's binary `name` and its integration tests only,
/// for a package whose other binaries do not link libtorch.
pub fn emit_for_binary(name: &str) {
    emit_for(&format!("rustc-link-arg-bin={name}="));
    emit_for("rustc-link-arg-tests");
}

/// `key` is the cargo instruction the arguments go to, ending in `=` when it names a target.
fn emit_for(key: &str) {
    let key = if key.ends_with('=') {
        key.to_owned()
    } else {
        format!("{key}=")
    };
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB unset: no rpath to libtorch was added");
        return;
    };
    println!("cargo:{key}-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:{key}-Wl,--no-as-needed");
        println!("cargo:{key}-ltorch_cuda");
        println!("cargo:{key}-Wl,--as-needed");
    }
}
