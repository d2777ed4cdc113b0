//! The `--version` text: the crate version, the git commit it was built
//! from (see `build.rs`), and what this build can do.

/// `0.1.0 (abc123def 2026-12-07)` from a git checkout, else `0.1.0`.
pub fn short() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match (
        option_env!("SAFEWEIGHTS_GIT_COMMIT"),
        option_env!("SAFEWEIGHTS_GIT_DATE"),
    ) {
        (Some(commit), Some(date)) => format!("{version} ({commit} {date})"),
        (Some(commit), None) => format!("{version} ({commit})"),
        _ => version.to_owned(),
    }
}

/// [`short`], then one `key: value` line per capability of this build,
/// then the embedding program's `host_lines`.
pub fn long(host_lines: &[String]) -> String {
    let mut lines = vec![
        short(),
        // object_store with reqwest and rustls: no system OpenSSL needed.
        "remote: s3, http, https (rustls)".to_owned(),
        format!(
            "target: {}",
            option_env!("SAFEWEIGHTS_BUILD_TARGET").unwrap_or("unknown")
        ),
    ];
    lines.extend(host_lines.iter().cloned());
    lines.join("\n")
}

/// `command` with `-V` printing [`short`] and `--version` printing [`long`].
pub fn with_version(command: clap::Command, host_lines: &[String]) -> clap::Command {
    command.version(short()).long_version(long(host_lines))
}
