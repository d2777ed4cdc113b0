//! `inspect` and `validate` on files written by the reference package and
//! torch, on sharded checkpoints, and on malformed input.

mod common;

use common::*;
use serde_json::json;

#[test]
fn inspect_json_matches_the_reference_header() {
    let Some(_) = python() else { return };
    let doc = json(&["inspect", &fixture("all.safetensors")], 0);
    let reference = python_run(
        "import json,struct,sys; d=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',d[:8])[0]; print(n); print(json.dumps(json.loads(d[8:8+n])))",
        &[&fixture("all.safetensors")],
    );
    let mut lines = reference.lines();
    let header_size: u64 = lines.next().unwrap().parse().unwrap();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(doc["header_size"], header_size);
    assert_eq!(doc["metadata"], header["__metadata__"]);
    let tensors = doc["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), header.as_object().unwrap().len() - 1);
    let mut last_end = 0;
    for t in tensors {
        let entry = &header[t["name"].as_str().unwrap()];
        assert_eq!(t["dtype"], entry["dtype"]);
        assert_eq!(t["shape"], entry["shape"]);
        assert_eq!(t["data_offsets"], entry["data_offsets"]);
        assert_eq!(t["data_offsets"][0], last_end, "data-offset order");
        last_end = t["data_offsets"][1].as_u64().unwrap();
    }
    assert_eq!(doc["summary"]["tensors"], 22);
}

#[test]
fn inspect_text_has_table_and_summary() {
    let Some(_) = python() else { return };
    let output = run(&["inspect", &fixture("numpy.safetensors")]);
    assert_eq!(code(&output), 0);
    let text = stdout(&output);
    assert!(text.contains("name"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("x ") && l.contains("I32") && l.contains("[3, 4]")),
        "{text}"
    );
    assert!(text.contains("parameters  17"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when piped");
}

#[test]
fn inspect_sharded_index_and_directory() {
    let Some(_) = python() else { return };
    for target in [
        fixture("sharded/model.safetensors.index.json"),
        fixture("sharded"),
    ] {
        let doc = json(&["inspect", &target], 0);
        let tensors = doc["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), 6);
        assert!(tensors
            .iter()
            .all(|t| t["shard"].as_str().unwrap().starts_with("model-0000")));
        assert_eq!(doc["shards"].as_array().unwrap().len(), 3);
        assert_eq!(doc["metadata"], json!({"format": "pt"}));
    }
}

#[test]
fn an_index_is_recognised_by_content_and_an_empty_directory_is_exit_2() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("weights.map");
    std::fs::copy(fixture("sharded/model.safetensors.index.json"), &renamed).unwrap();
    for shard in std::fs::read_dir(fixture("sharded")).unwrap() {
        let shard = shard.unwrap().path();
        if shard.extension().is_some_and(|e| e == "safetensors") {
            std::fs::copy(&shard, dir.path().join(shard.file_name().unwrap())).unwrap();
        }
    }
    let doc = json(&["inspect", renamed.to_str().unwrap()], 0);
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 6);
    let empty = tempfile::tempdir().unwrap();
    let output = run(&["inspect", empty.path().to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("0 index files"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn validate_good_files() {
    let Some(_) = python() else { return };
    let output = run(&[
        "validate",
        &fixture("all.safetensors"),
        &fixture("numpy.safetensors"),
        &fixture("sharded"),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).is_empty());
    let doc = json(&["validate", &fixture("subbyte.safetensors")], 0);
    assert_eq!(doc["valid"], true);
}

#[test]
fn validate_reports_each_bad_file_on_one_line() {
    let Some(_) = python() else { return };
    let bad = [
        ("truncated.safetensors", "truncated"),
        ("trailing.safetensors", "extra bytes"),
        ("empty.safetensors", "too short"),
        ("tiny.safetensors", "too short"),
        ("lfs.safetensors", "git-lfs"),
        ("html.safetensors", "HTML"),
        ("badjson.safetensors", "JSON"),
        ("huge_header.safetensors", "header length"),
    ];
    let mut args = vec!["validate".to_owned(), fixture("numpy.safetensors")];
    args.extend(bad.iter().map(|(f, _)| fixture(f)));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&refs);
    assert_eq!(code(&output), 1);
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), bad.len(), "{err}");
    for ((file, reason), line) in bad.iter().zip(&lines) {
        assert!(
            line.contains(file) && line.contains(reason),
            "{file}: {line}"
        );
    }
    assert!(!err.contains("panicked"));
    let doc = json(&refs, 1);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["files"][0]["valid"], true);
    assert_eq!(doc["files"][1]["valid"], false);
}

#[test]
fn validate_missing_file_and_usage_errors_exit_2() {
    let Some(_) = python() else { return };
    let missing = fixtures().join("nope.safetensors").display().to_string();
    let output = run(&[
        "validate",
        &fixture("numpy.safetensors"),
        &missing,
        &fixture("empty.safetensors"),
    ]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("nope.safetensors"));
    assert_eq!(code(&run(&["validate"])), 2);
    assert_eq!(code(&run(&["frobnicate"])), 2);
    assert_eq!(code(&run(&["inspect", &missing])), 2);
}

#[test]
fn corrupt_input_is_exit_1_with_one_line() {
    let Some(_) = python() else { return };
    for file in [
        "truncated.safetensors",
        "lfs.safetensors",
        "badjson.safetensors",
    ] {
        for command in ["inspect", "stats"] {
            let output = run(&[command, &fixture(file)]);
            assert_eq!(code(&output), 1, "{command} {file}");
            assert_eq!(
                stderr(&output).lines().count(),
                1,
                "{command} {file}: {}",
                stderr(&output)
            );
            assert!(stdout(&output).is_empty());
        }
    }
}

#[test]
fn broken_pipe_exits_quietly() {
    let Some(_) = python() else { return };
    let script = format!(
        "{} inspect {} | head -1",
        env!("CARGO_BIN_EXE_safeweights"),
        fixture("many.safetensors")
    );
    let output = std::process::Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {script}")])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let Some(_) = python() else { return };
    // `script` gives the binary a pseudo-terminal; skip where it is absent.
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok();
    if !has_script {
        eprintln!("skipping: `script` is not installed");
        return;
    }
    let command = format!(
        "{} inspect {}",
        env!("CARGO_BIN_EXE_safeweights"),
        fixture("numpy.safetensors")
    );
    let tty = |no_color: bool| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"])
            .env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    };
    assert!(tty(false).contains("\x1b["), "colour on a terminal");
    assert!(!tty(true).contains("\x1b["), "NO_COLOR respected");
}

/// The commands `safeweights --help` lists (clap's own `help` aside):
/// their lines start with two spaces and the name; wrapped descriptions
/// are indented further.
fn listed_commands() -> Vec<String> {
    let output = run(&["--help"]);
    assert_eq!(code(&output), 0);
    stdout(&output)
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| {
            line.strip_prefix("  ")
                .filter(|rest| !rest.starts_with(' '))
        })
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_has_examples_for_every_command() {
    let commands = listed_commands();
    // The list is read from the help itself, so a new command is checked
    // too; these make sure that the reading found the whole list.
    for known in ["inspect", "convert", "scan", "completions", "cp"] {
        assert!(
            commands.iter().any(|c| c == known),
            "{known} in {commands:?}"
        );
    }
    for command in &commands {
        let output = run(&[command, "--help"]);
        assert_eq!(code(&output), 0, "{command}");
        assert!(stdout(&output).contains("Examples:"), "{command}");
    }
}
