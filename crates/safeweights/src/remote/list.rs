//! What is at a URL before anything is read or written there: whether an
//! object exists (the overwrite rule of writers), and which objects sit
//! directly under a prefix (a model "directory" in a bucket).

use crate::error::{Error, RemoteErrorKind, Result};
use crate::remote::config::{locate, Located, RemoteOptions};
use crate::remote::errors::classify;
use crate::remote::runtime::block_on;

/// Whether an object exists at `url`, by one HEAD request. A missing
/// object is `Ok(false)`; any other failure (403, a bad endpoint) is an
/// error, so a writer never takes "cannot tell" for "free".
pub fn object_exists(url: &str, options: &RemoteOptions) -> Result<bool> {
    let Located { store, path } = locate(url, options)?;
    match block_on(store.head(&path)) {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(classify(error).in_file(url)),
    }
}

/// The names of the objects directly under the prefix `url` (an `s3://`
/// URL, with or without its trailing `/`), sorted; deeper "folders" are
/// left out. HTTP servers cannot list: that is a
/// [`RemoteErrorKind::Config`] error saying so.
pub fn list_directory(url: &str, options: &RemoteOptions) -> Result<Vec<String>> {
    if !url.to_ascii_lowercase().starts_with("s3://") {
        return Err(Error::Remote {
            kind: RemoteErrorKind::Config,
            message: format!(
                "{url}: an HTTP server cannot list a directory; name the file or index in it"
            ),
        });
    }
    let Located { store, path } = locate(url, options)?;
    let prefix = (path.as_ref() != "").then_some(&path);
    let listed =
        block_on(store.list_with_delimiter(prefix)).map_err(|e| classify(e).in_file(url))?;
    let mut names: Vec<String> = listed
        .objects
        .iter()
        .filter_map(|meta| meta.location.filename().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}
