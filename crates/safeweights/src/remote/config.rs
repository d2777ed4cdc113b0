//! From a URL and the user's options to an object store and a key.
//!
//! `s3://bucket/key` reads its endpoint, region and credentials from the
//! standard `AWS_*` environment variables, then from the shared config and
//! credentials files (`~/.aws/config`, `~/.aws/credentials`, the profile
//! named by `AWS_PROFILE`), then from explicit storage options, each
//! overriding the one before. `http(s)://host/path` needs no configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, RemoteErrorKind, Result};

/// How remote objects are reached and read. The defaults suit object
/// storage: a 64 KiB first read (the whole header of most files), ranges
/// less than 256 KiB apart merged into one request, requests of at most
/// 8 MiB (up to 64 MiB for a long read), 8 of them in flight, 5 retries
/// with exponential backoff.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Explicit settings: `endpoint`/`endpoint_url`, `region`,
    /// `access_key_id`/`key`, `secret_access_key`/`secret`,
    /// `session_token`/`token`, `allow_http`, `skip_signature`/`anon`, or any
    /// `aws_*` name `object_store` knows. They win over the environment.
    pub storage_options: BTreeMap<String, String>,
    /// Bound on connecting and on each request, so nothing hangs.
    pub timeout: Duration,
    /// Retries of a transient failure (5xx, a timeout, a broken
    /// connection); 403 and 404 are never retried.
    pub retries: usize,
    /// Bytes asked for by the first request.
    pub first_read: u64,
    /// Ranges closer than this are fetched by one request.
    pub coalesce_gap: u64,
    /// Largest single ranged request of a short read; longer reads are
    /// split. A long read (a whole model) uses requests of its length over
    /// `max_in_flight`, up to 64 MiB, so it makes few requests while every
    /// slot stays busy.
    pub request_size: u64,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Part size of multipart uploads (S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Called with a warning for people (a server without Range support).
    pub warn: fn(&str),
}

fn warn_on_stderr(message: &str) {
    eprintln!("safeweights: warning: {message}");
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            storage_options: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            retries: 5,
            first_read: 64 * 1024,
            coalesce_gap: 256 * 1024,
            request_size: 8 << 20,
            max_in_flight: 8,
            part_size: 8 << 20,
            warn: warn_on_stderr,
        }
    }
}

/// An object store and the key of one object in it.
pub(crate) struct Located {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: ObjectPath,
}

/// Builds the store for `url` and finds the object's key.
pub(crate) fn locate(url: &str, options: &RemoteOptions) -> Result<Located> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| config_error(format!("{url:?} is not a URL")))?;
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => locate_s3(rest, options),
        "http" | "https" => locate_http(scheme, rest, options),
        other => Err(config_error(format!(
            "unsupported URL scheme {other:?}: use s3://, http:// or https://"
        ))),
    }
}

fn locate_s3(rest: &str, options: &RemoteOptions) -> Result<Located> {
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(config_error("an s3:// URL needs a bucket: s3://BUCKET/KEY"));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let env_has_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    for (key, value) in profile_settings(env_has_keys) {
        builder = with_setting(builder, &key, &value)?;
    }
    let mut explicit_endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok();
    for (key, value) in &options.storage_options {
        if matches!(
            key.as_str(),
            "endpoint" | "endpoint_url" | "aws_endpoint_url"
        ) {
            explicit_endpoint = Some(value.clone());
        }
        builder = with_setting(builder, key, value)?;
    }
    // An endpoint given as http:// is a deliberate choice (a local test
    // server, a gateway on a private network): allow it.
    let plain_http =
        explicit_endpoint.is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
    let builder = builder
        .with_client_options(client_options(options).with_allow_http(plain_http))
        .with_retry(retry_config(options));
    let store = builder.build().map_err(|e| config_error(e.to_string()))?;
    Ok(Located {
        store: Arc::new(store),
        path: object_path(key)?,
    })
}

fn locate_http(scheme: &str, rest: &str, options: &RemoteOptions) -> Result<Located> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(config_error(format!("{scheme}:// URL without a host")));
    }
    if path.contains('#') {
        return Err(config_error(format!(
            "{scheme}://{authority}/{path}: a URL with a #fragment names no object"
        )));
    }
    if path.contains('?') {
        // A pre-signed URL: the query string is its signature, so every
        // request goes to the URL exactly as given (the store's base URL
        // is the whole URL, the key is empty). Range headers are not
        // signed, so ranged reads work as with any other URL.
        let store = HttpBuilder::new()
            .with_url(format!("{scheme}://{rest}"))
            .with_client_options(client_options(options).with_allow_http(true))
            .with_retry(retry_config(options))
            .build()
            .map_err(|e| config_error(e.to_string()))?;
        return Ok(Located {
            store: Arc::new(store),
            path: ObjectPath::default(),
        });
    }
    let store = HttpBuilder::new()
        .with_url(format!("{scheme}://{authority}"))
        .with_client_options(client_options(options).with_allow_http(true))
        .with_retry(retry_config(options))
        .build()
        .map_err(|e| config_error(e.to_string()))?;
    Ok(Located {
        store: Arc::new(store),
        path: ObjectPath::from_url_path(path).map_err(|e| config_error(e.to_string()))?,
    })
}

fn object_path(key: &str) -> Result<ObjectPath> {
    ObjectPath::parse(key).map_err(|e| config_error(format!("bad object key {key:?}: {e}")))
}

fn client_options(options: &RemoteOptions) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(options.timeout)
        .with_connect_timeout(options.timeout)
}

fn retry_config(options: &RemoteOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: options.retries,
        retry_timeout: (options.timeout * 4).max(Duration::from_secs(10)),
    }
}

/// One storage option, with the short names fsspec users know.
fn with_setting(builder: AmazonS3Builder, key: &str, value: &str) -> Result<AmazonS3Builder> {
    let name = match key.to_ascii_lowercase().as_str() {
        "key" => "access_key_id".to_owned(),
        "secret" => "secret_access_key".to_owned(),
        "anon" => "skip_signature".to_owned(),
        "allow_http" => "aws_allow_http".to_owned(),
        other => other.to_owned(),
    };
    let parsed: AmazonS3ConfigKey = name
        .parse()
        .map_err(|_| config_error(format!("unknown storage option {key:?}")))?;
    Ok(builder.with_config(parsed, value))
}

fn config_error(message: impl Into<String>) -> Error {
    Error::Remote {
        kind: RemoteErrorKind::Config,
        message: message.into(),
    }
}

/// Settings of the AWS profile (`AWS_PROFILE`, else `default`) from the
/// shared files, as storage option names. Keys come from the files only
/// when the environment has none, as the AWS SDKs do.
fn profile_settings(env_has_keys: bool) -> Vec<(String, String)> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let mut settings = Vec::new();
    // In the config file profiles other than default are "[profile NAME]".
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    if let Some(text) =
        file("AWS_CONFIG_FILE", "config").and_then(|p| std::fs::read_to_string(p).ok())
    {
        for (key, value) in ini_section(&text, &config_section) {
            match key.as_str() {
                "region" if std::env::var_os("AWS_REGION").is_none() => {
                    settings.push(("region".to_owned(), value))
                }
                "endpoint_url" if std::env::var_os("AWS_ENDPOINT_URL").is_none() => {
                    settings.push(("endpoint".to_owned(), value))
                }
                _ => {}
            }
        }
    }
    if !env_has_keys {
        if let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            for (key, value) in ini_section(&text, &profile) {
                let name = match key.as_str() {
                    "aws_access_key_id" => "access_key_id",
                    "aws_secret_access_key" => "secret_access_key",
                    "aws_session_token" => "session_token",
                    _ => continue,
                };
                settings.push((name.to_owned(), value));
            }
        }
    }
    settings
}

/// The `key = value` lines of one `[section]` of an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside {
            if let Some((key, value)) = line.split_once('=') {
                found.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_are_read_by_name() {
        let text = "[default]\nregion = us-east-1\n[profile dev]\n# c\nregion=eu-west-1\n";
        assert_eq!(
            ini_section(text, "profile dev"),
            vec![("region".to_owned(), "eu-west-1".to_owned())]
        );
        assert_eq!(ini_section(text, "default").len(), 1);
        assert!(ini_section(text, "other").is_empty());
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let options = RemoteOptions::default();
        for url in ["s3:///key", "ftp://h/x", "https:///x", "https://h/x#part"] {
            let error = locate(url, &options).err().expect(url);
            assert!(
                matches!(
                    error,
                    Error::Remote {
                        kind: RemoteErrorKind::Config,
                        ..
                    }
                ),
                "{url}: {error}"
            );
        }
    }
}
