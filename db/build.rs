//! Builds `db/migrations` into the app: one `dbkit::migration::Embedded` per folder, its files
//! read with `include_str!` (so cargo rebuilds the app when one changes). The tool that
//! writes migrations (`cargo xtask`) reads them from disk and is never rebuilt by them.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut folders: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().filter(|e| e.path().join("up.sql").is_file()).map(|e| e.path()).collect())
        .unwrap_or_default();
    folders.sort();
    let mut out = String::from("&[\n");
    for folder in &folders {
        let name = folder.file_name().unwrap().to_str().expect("a migration folder's name is UTF-8");
        let file = |f: &str| {
            let path = folder.join(f);
            path.is_file().then(|| format!("include_str!({:?})", path.display().to_string()))
        };
        let optional = |f: &str| file(f).map_or("None".to_string(), |text| format!("Some({text})"));
        writeln!(
            out,
            "    dbkit::migration::Embedded {{ name: {name:?}, up: {}, down: {}, metadata: {} }},",
            file("up.sql").unwrap(),
            optional("down.sql"),
            optional("metadata.toml")
        )
        .unwrap();
    }
    out.push(']');
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs"), out).unwrap();
}
