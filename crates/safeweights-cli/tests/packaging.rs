//! What ships around the commands: `--version` (version, git commit,
//! capabilities), shell completions that the shells accept, and man pages
//! that render. zsh, fish and groff come from scripts/install-test-deps.sh;
//! without them the checks that need them follow `common::require`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// `Some(program)` when it can be run, under the one missing-dependency policy.
fn tool(program: &str) -> Option<&str> {
    let runs = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    require(program, runs.then_some(program))
}

/// Runs `program args` with `input` on stdin; returns (success, stdout, stderr).
fn pipe_into(program: &str, args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The commit `build.rs` should have recorded: HEAD, when this crate is
/// tracked by the git repository around it.
fn expected_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    git(&["ls-files", "--error-unmatch", "build.rs"])?;
    git(&["rev-parse", "--short=9", "HEAD"])
}

#[test]
fn version_names_the_version_the_commit_and_the_capabilities() {
    let output = run(&["--version"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    let version = format!("safeweights {}", env!("CARGO_PKG_VERSION"));
    match expected_commit() {
        Some(commit) => {
            let prefix = format!("{version} ({commit} ");
            assert!(lines[0].starts_with(&prefix), "{text}");
            // The commit date, as YYYY-MM-DD.
            let date = &lines[0][prefix.len()..lines[0].len() - 1];
            assert_eq!(date.len(), 10, "{text}");
            assert!(
                date.chars().all(|c| c.is_ascii_digit() || c == '-'),
                "{text}"
            );
        }
        None => assert_eq!(lines[0], version),
    }
    assert!(
        lines.contains(&"remote: s3, http, https (rustls)"),
        "{text}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("target: ") && !l.ends_with("unknown")));
    assert!(
        !text.contains("python:"),
        "only the Python entry adds that line"
    );
    let short = run(&["-V"]);
    assert_eq!(stdout(&short), format!("{}\n", lines[0]));
}

#[test]
fn completions_parse_in_each_shell() {
    for (shell, checker) in [
        ("bash", ["bash", "-n"]),
        ("zsh", ["zsh", "-n"]),
        ("fish", ["fish", "-n"]),
    ] {
        let output = run(&["completions", shell]);
        assert_eq!(code(&output), 0, "{shell}: {}", stderr(&output));
        let script = output.stdout;
        assert!(
            String::from_utf8_lossy(&script).contains("convert"),
            "{shell}: the commands are completed"
        );
        let Some(checker_program) = tool(checker[0]) else {
            continue;
        };
        let (ok, _, errors) = pipe_into(checker_program, &checker[1..], &script);
        assert!(
            ok && errors.is_empty(),
            "{shell} rejects the script: {errors}"
        );
    }
    for shell in ["powershell", "elvish"] {
        let output = run(&["completions", shell]);
        assert_eq!(code(&output), 0, "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("safeweights"));
    }
}

#[test]
fn completions_refuse_unknown_shells_and_json() {
    let output = run(&["completions", "tcsh"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("possible values"),
        "{}",
        stderr(&output)
    );
    assert_eq!(code(&run(&["completions", "bash", "--json"])), 2);
}

/// Renders a man page with groff, with every warning on; returns plain
/// text (`-P-cbu`: no escape codes, no overstriking for bold or underline),
/// or `None` without groff.
fn render(page: &[u8]) -> Option<String> {
    let groff = tool("groff")?;
    let (ok, text, warnings) = pipe_into(groff, &["-man", "-Tutf8", "-ww", "-P-cbu"], page);
    assert!(ok && warnings.is_empty(), "groff: {warnings}");
    Some(text)
}

#[test]
fn man_page_renders_with_the_commands_and_exit_codes() {
    let output = run(&["man"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let page = output.stdout;
    assert!(page.starts_with(b".ie"), "roff source");
    let Some(text) = render(&page) else {
        return;
    };
    for expected in [
        "SYNOPSIS",
        "safeweights-inspect(1)",
        "Exit codes:",
        "NO_COLOR",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
}

#[test]
fn man_dir_writes_one_rendering_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let doc = json(&["man", "--dir", &out.display().to_string()], 0);
    let pages: Vec<&str> = doc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for command in ["inspect", "convert", "scan", "completions", "man"] {
        let page = out.join(format!("safeweights-{command}.1"));
        assert!(
            pages.contains(&page.display().to_string().as_str()),
            "{pages:?}"
        );
    }
    assert!(pages.contains(&out.join("safeweights.1").display().to_string().as_str()));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        pages.len(),
        "no temporary files left: {names:?}"
    );
    assert!(Path::new(&pages[0]).is_file());
    let page = std::fs::read(out.join("safeweights-convert.1")).unwrap();
    assert!(String::from_utf8_lossy(&page).contains("max\\-shard\\-size"));
    if let Some(convert) = render(&page) {
        assert!(convert.contains("--max-shard-size"), "{convert}");
    }
}
