//! Records the git commit the binary is built from, for `tokenmint --version`'s neighbour, the
//! `tokenmint_build_info` metric and the start-up line: `TOKENMINT_GIT_COMMIT` when set (container builds, which
//! have no `.git`), else `git rev-parse`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOKENMINT_GIT_COMMIT");
    // Only paths that exist: a missing one would make cargo rerun this script on every build.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("TOKENMINT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
        })
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TOKENMINT_GIT_COMMIT={commit}");
}
