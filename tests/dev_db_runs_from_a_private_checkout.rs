//! `scripts/dev-db` works from a checkout whose parent directories the
//! `postgres` user cannot traverse (a clone in root's home, a 0700
//! temporary directory): as root the cluster's files live outside the tree.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory only its owner may enter, removed on drop.
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dev_db(checkout: &Path, port: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(checkout.join("scripts/dev-db"))
        .current_dir(checkout)
        .args(args)
        .env("DEV_DB_INSTANCE", "private-checkout")
        .env("DEV_DB_PORT", port)
        .output()
        .expect("run dev-db");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_dev_cluster_starts_from_a_checkout_postgres_cannot_traverse() {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Without root the cluster runs as the caller, who can reach its
        // own checkout: the case this test pins does not arise.
        eprintln!("not root: the postgres user is not involved");
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        PrivateDir(std::env::temp_dir().join(format!("rt-devdb-{}-{nanos}", std::process::id())));
    let checkout = dir.0.join("checkout");
    std::fs::create_dir_all(checkout.join("scripts")).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"),
        checkout.join("scripts/dev-db"),
    )
    .unwrap();

    let port = support::free_port().to_string();
    let (ok, out) = dev_db(&checkout, &port, &["start"]);
    let cleanup = |checkout: &Path| {
        dev_db(checkout, &port, &["reset"]);
    };
    if !ok {
        cleanup(&checkout);
        panic!("dev-db start failed in a 0700 directory:\n{out}");
    }
    let (ok, sql) = dev_db(&checkout, &port, &["sql", "select 40 + 2"]);
    let link = std::fs::read_link(checkout.join("target/pg-private-checkout"));
    cleanup(&checkout);
    assert!(ok && sql.contains("42"), "query failed:\n{sql}");
    // The cluster is found from the checkout: target/ records where it is.
    let link = link.expect("target/pg-private-checkout is a symlink to the cluster");
    assert!(
        !link.starts_with(&dir.0),
        "cluster files must live outside the private tree: {link:?}"
    );
}
