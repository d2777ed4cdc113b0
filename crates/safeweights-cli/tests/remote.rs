//! Remote reading over HTTP Range requests, against a real nginx on the
//! loopback interface, a server that ignores Range (python's http.server),
//! and a server that never answers.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A child process killed when the test ends.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx in the foreground, one process, serving `root`.
fn nginx(root: &Path) -> Option<Server> {
    let binary = require("nginx", find_nginx())?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let config = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  log_format bytes '$request_uri $status $body_bytes_sent $http_range';
  access_log {d}/access.log bytes; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; root {}; }}
}}",
        root.display()
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(binary)
        .args(["-p", &d.to_string(), "-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_listening(port);
    Some(Server {
        child,
        port,
        _dir: dir,
    })
}

/// (status, body bytes sent) of every request nginx logged for `name`.
fn served(server: &Server, name: &str) -> Vec<(u16, u64)> {
    let log = std::fs::read_to_string(server._dir.path().join("access.log")).unwrap_or_default();
    log.lines()
        .filter(|line| line.starts_with(&format!("/{name} ")))
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields[1].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect()
}

fn url(server: &Server, name: &str) -> String {
    format!("http://127.0.0.1:{}/{name}", server.port)
}

#[test]
fn inspect_dump_and_diff_over_nginx() {
    let Some(_) = python() else { return };
    let Some(server) = nginx(fixtures()) else {
        return;
    };
    let local = json(&["inspect", &fixture("remote.safetensors")], 0);
    let remote = json(&["inspect", &url(&server, "remote.safetensors")], 0);
    assert_eq!(remote["tensors"], local["tensors"]);
    assert_eq!(remote["metadata"], local["metadata"]);
    assert_eq!(
        remote["http"]["requests"], 1,
        "the header fits the first range"
    );
    assert!(remote["http"]["bytes"].as_u64().unwrap() <= 64 * 1024);

    // A header larger than the first range: exactly two requests, and
    // about header-size bytes in all.
    let local = json(&["inspect", &fixture("bighdr.safetensors")], 0);
    let remote = json(&["inspect", &url(&server, "bighdr.safetensors")], 0);
    assert_eq!(remote["tensors"], local["tensors"]);
    assert_eq!(remote["http"]["requests"], 2);
    let header = local["header_size"].as_u64().unwrap();
    let bytes = remote["http"]["bytes"].as_u64().unwrap();
    assert!(
        bytes >= header && bytes <= header + 64 * 1024,
        "{bytes} vs header {header}"
    );

    let args = |file: String| {
        vec![
            "dump".to_owned(),
            file,
            "w".into(),
            "--slice".into(),
            "7, 100:104".into(),
        ]
    };
    let a = args(fixture("remote.safetensors"));
    let b = args(url(&server, "remote.safetensors"));
    let local = json(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    let remote = json(&b.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    assert_eq!(remote["values"], local["values"]);
    assert!(
        remote["http"]["bytes"].as_u64().unwrap() < 64 * 1024 + 1024,
        "only the slice's span is fetched"
    );

    // A strided slice over 12 MiB of rows: one small range per run, not
    // the whole span.
    let a = ["dump", "w", "--slice", "::1024, 0:4"];
    let local_file = fixture("remote.safetensors");
    let remote_file = url(&server, "remote.safetensors");
    let local = json(&[a[0], &local_file, a[1], a[2], a[3]], 0);
    let remote = json(&[a[0], &remote_file, a[1], a[2], a[3]], 0);
    assert_eq!(remote["values"], local["values"]);
    assert_eq!(remote["http"]["requests"], 1 + 4, "{}", remote["http"]);
    assert!(
        remote["http"]["bytes"].as_u64().unwrap() < 64 * 1024 + 4 * 1024,
        "{}",
        remote["http"]
    );

    let doc = json(
        &[
            "diff",
            &url(&server, "remote.safetensors"),
            &fixture("remote.safetensors"),
        ],
        0,
    );
    assert_eq!(doc["equal"], true);
    let doc = json(
        &[
            "diff",
            &url(&server, "diff_a.safetensors"),
            &url(&server, "diff_b.safetensors"),
        ],
        1,
    );
    assert_eq!(doc["only_in_a"], serde_json::json!(["only_a"]));

    let output = run(&["inspect", &url(&server, "missing.safetensors")]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("404"), "{}", stderr(&output));
    let output = run(&["inspect", &url(&server, "lfs.safetensors")]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("git-lfs"));
}

/// Tensor parallelism: rank 3 of 8 reads rows 1536..2048 of a 4096-row
/// matrix. nginx's own access log says what was sent: the header read and
/// those rows, nothing of the other 14 MiB.
#[test]
fn a_ranks_slice_fetches_only_its_rows_by_the_servers_count() {
    let Some(_) = python() else { return };
    let Some(server) = nginx(fixtures()) else {
        return;
    };
    let slice = "1536:2048, 0:2";
    let local = json(
        &[
            "dump",
            &fixture("remote.safetensors"),
            "w",
            "--slice",
            slice,
        ],
        0,
    );
    let remote = json(
        &[
            "dump",
            &url(&server, "remote.safetensors"),
            "w",
            "--slice",
            slice,
        ],
        0,
    );
    assert_eq!(remote["values"], local["values"]);
    let log = served(&server, "remote.safetensors");
    assert!(log.iter().all(|(status, _)| *status == 206), "{log:?}");
    let sent: u64 = log.iter().map(|(_, bytes)| bytes).sum();
    let rows = 512 * 1024 * 4;
    let file = std::fs::metadata(fixture("remote.safetensors"))
        .unwrap()
        .len();
    assert!(
        sent >= rows - 4096 && sent <= rows + 64 * 1024,
        "{sent} bytes sent for {rows} bytes of rows (file {file}): {log:?}"
    );
    assert_eq!(remote["http"]["bytes"], sent, "client and server agree");
}

#[test]
fn server_without_range_support_falls_back_to_one_download_with_a_warning() {
    let Some(python) = python() else { return };
    let port = free_port();
    let child = Command::new(python)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(fixtures())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        port,
        _dir: tempfile::tempdir().unwrap(),
    };
    wait_until_listening(port);
    let output = run(&["inspect", "--json", &url(&server, "remote.safetensors")]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("warning") && err.contains("does not support HTTP Range requests"),
        "{err}"
    );
    let remote: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let local = json(&["inspect", &fixture("remote.safetensors")], 0);
    assert_eq!(remote["tensors"], local["tensors"]);
    let size = std::fs::metadata(fixture("remote.safetensors"))
        .unwrap()
        .len();
    assert_eq!(remote["http"]["bytes"], size, "one whole download");
    assert_eq!(
        remote["http"]["requests"], 2,
        "the refused range, then the download"
    );
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept connections and hold them open without answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let start = Instant::now();
    let output = run(&[
        "inspect",
        &format!("http://127.0.0.1:{port}/m.safetensors"),
        "--timeout",
        "1",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("timed out"), "{}", stderr(&output));
    assert_eq!(
        code(&run(&["inspect", "http://127.0.0.1:1/x", "--timeout", "1"])),
        2
    );
}
