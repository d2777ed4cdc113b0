//! The overwrite rule of every command that writes, for local paths and
//! URLs alike: an existing file or object is replaced only with `--force`.

use std::path::Path;

use safeweights::remote::object_exists;
use safeweights::resolve::is_url;

use crate::commands::Context;
use crate::exit::{CliError, CliResult};
use crate::source::remote_options;

/// Refuses `destination` (a path or a URL) when something is there and
/// `force` is off. For a URL that costs one HEAD request. The check comes
/// before anything is written; an object created by someone else between
/// the check and the end of the upload is replaced (S3 multipart uploads
/// cannot be made conditional on absence).
pub fn check_destination(destination: &str, force: bool, ctx: &Context) -> CliResult<()> {
    if force {
        return Ok(());
    }
    let exists = if is_url(destination) {
        object_exists(destination, &remote_options(ctx))?
    } else {
        std::fs::symlink_metadata(Path::new(destination)).is_ok()
    };
    if exists {
        return Err(already_exists(destination));
    }
    Ok(())
}

/// The error for an existing destination, naming the flag that allows it.
pub fn already_exists(destination: &str) -> CliError {
    CliError::usage(format!(
        "{destination} already exists; nothing was written (pass --force to replace it)"
    ))
}
