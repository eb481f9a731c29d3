fn main() {
    // The migrations are embedded: a new or changed one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
}
