//! Links the system oneDNN when the `link` feature is on; does nothing otherwise, so the
//! crate builds on machines without `libdnnl`.

fn main() {
    println!("cargo:rerun-if-env-changed=DNNL_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_LINK").is_none() {
        return;
    }
    // A non-system install (e.g. a oneDNN built from source) can be pointed at here.
    if let Some(dir) = std::env::var_os("DNNL_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
    }
    println!("cargo:rustc-link-lib=dnnl");
}
