//! Where cargo puts what it builds. A user may move it (`CARGO_TARGET_DIR`, `build.target-dir`
//! in a `.cargo/config.toml`, a CI cache path), so xtask asks cargo instead of assuming
//! `<workspace>/target`: every binary it starts and every scratch directory it makes are
//! found through here.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context as _, bail};

use crate::{services::Profile, stack::workspace_root};

/// This workspace's target directory, asked of cargo once per run.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = ask_cargo(&workspace_root())?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The path of binary `name` of `profile`'s build.
pub fn binary(profile: Profile, name: &str) -> anyhow::Result<PathBuf> {
    Ok(binary_in(&target_dir()?, profile, name))
}

/// The path of binary `name` of `profile`'s build under `target`.
pub fn binary_in(target: &Path, profile: Profile, name: &str) -> PathBuf {
    target
        .join(profile.dir())
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A scratch directory under the target directory (`stack`, `chaos`, …), created.
pub fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = target_dir()?.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `cargo`, for a build or test run from xtask. `cargo run` gives xtask the variables it
/// gives every binary it runs (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...); passed on, they
/// differ from a plain `cargo build`'s, and a build script that watches them (ring's does)
/// would rebuild itself and everything above it at every switch between the two.
pub fn cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_PKG_")
                || matches!(
                    key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                ))
        {
            cargo.env_remove(key);
        }
    }
    cargo
}

/// `cargo metadata`'s `target_directory` for the workspace at `workspace`: it weighs
/// `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR` and every `.cargo/config.toml` as a build
/// there would.
pub fn ask_cargo(workspace: &Path) -> anyhow::Result<PathBuf> {
    ask_cargo_with(workspace, Command::new(env!("CARGO")))
}

fn ask_cargo_with(workspace: &Path, mut cargo: Command) -> anyhow::Result<PathBuf> {
    let output = cargo
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed in {}: {}",
            workspace.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata named no target_directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-crate workspace in a fresh directory under the system's temp dir.
    struct TinyWorkspace(PathBuf);

    impl TinyWorkspace {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir()
                .join(format!("xtask-target-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(
                dir.join("Cargo.toml"),
                "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
            )
            .unwrap();
            std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
            Self(dir)
        }

        /// cargo with no target directory of the caller's own in its environment.
        fn cargo(&self) -> Command {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR");
            cargo
        }
    }

    impl Drop for TinyWorkspace {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn without_settings_binaries_are_under_the_workspace_target() {
        let ws = TinyWorkspace::new("default");
        let target = ask_cargo_with(&ws.0, ws.cargo()).unwrap();
        assert_eq!(target, ws.0.join("target"));
    }

    #[test]
    fn cargo_target_dir_moves_the_binaries() {
        let ws = TinyWorkspace::new("env");
        let elsewhere = ws.0.with_extension("elsewhere");
        let mut cargo = ws.cargo();
        cargo.env("CARGO_TARGET_DIR", &elsewhere);

        let target = ask_cargo_with(&ws.0, cargo).unwrap();

        assert_eq!(target, elsewhere);
        assert_eq!(
            binary_in(&target, Profile::Debug, "stripe-sim"),
            elsewhere
                .join("debug")
                .join(format!("stripe-sim{}", std::env::consts::EXE_SUFFIX))
        );
        assert_eq!(
            binary_in(&target, Profile::Release, "orders"),
            elsewhere
                .join("release")
                .join(format!("orders{}", std::env::consts::EXE_SUFFIX))
        );
    }

    #[test]
    fn a_build_target_dir_in_cargo_config_moves_the_binaries() {
        let ws = TinyWorkspace::new("config");
        std::fs::create_dir_all(ws.0.join(".cargo")).unwrap();
        std::fs::write(
            ws.0.join(".cargo/config.toml"),
            "[build]\ntarget-dir = \"built-here\"\n",
        )
        .unwrap();

        let target = ask_cargo_with(&ws.0, ws.cargo()).unwrap();

        // A relative target-dir is relative to the directory holding `.cargo/`.
        assert_eq!(target, ws.0.join("built-here"));
        assert_eq!(
            binary_in(&target, Profile::Debug, "gateway"),
            target
                .join("debug")
                .join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
        );
    }

    #[test]
    fn a_nested_cargo_drops_what_cargo_gives_a_binary_it_runs() {
        // The test binary runs under cargo, which set these for it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let cargo = cargo();
        let removed: Vec<_> = cargo
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().any(|k| k == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(
            removed.iter().all(|k| k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE"
                ]
                .contains(&k.as_str())),
            "{removed:?}"
        );
    }

    #[test]
    fn this_workspace_reports_the_directory_cargo_builds_into() {
        // Under `cargo test` with a moved target dir, the test binary itself sits in it.
        let exe = std::env::current_exe().unwrap();
        let target = ask_cargo(&workspace_root()).unwrap();
        assert!(
            exe.starts_with(&target),
            "{} is not under {}",
            exe.display(),
            target.display()
        );
    }
}
