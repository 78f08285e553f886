//! Embeds the release manifests of images/ into the binary, and records the git revision.
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=images");
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(Path::new(&root).join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("pub static BUILTIN_MANIFESTS: &[(&str, &str)] = &[\n");
    for n in &names {
        println!("cargo:rerun-if-changed=images/{n}");
        let _ = writeln!(
            out,
            "    (\"images/{n}\", include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/images/{n}\"))),"
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_manifests.rs");
    std::fs::write(dest, out).unwrap();

    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KUBEFORGE_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=.git/HEAD");
}
