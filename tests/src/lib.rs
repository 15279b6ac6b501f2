//! What Holub's end-to-end suites share: the real `holub` binary, built once per test run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of the `holub` binary of this workspace, built (debug profile) on first use so the
/// suites always drive the current code.
pub fn holub_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "holub", "--bin", "holub"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building holub failed");
        // Test executables live in <target>/<profile>/deps; the binary one level up.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executables live in <target>/<profile>/deps");
        profile_dir.join("holub")
    })
    .clone()
}
