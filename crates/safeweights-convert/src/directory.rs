//! What `convert` converts in a Hugging Face model directory.

use std::path::{Path, PathBuf};

use safeweights_pickle::{Error, Result};

/// The sharded checkpoint's index Hugging Face writes.
pub const BIN_INDEX: &str = "pytorch_model.bin.index.json";
/// The single-file checkpoint Hugging Face writes.
pub const BIN: &str = "pytorch_model.bin";

/// The checkpoints to convert in a model directory, in the order Hugging
/// Face's loaders prefer them: `pytorch_model.bin.index.json` (which
/// brings its shards), else `pytorch_model.bin`, else every `.pt` and
/// `.pth` file (sorted). Each converts to [`super::default_output`]'s name
/// beside it, so the directory gains the matching safetensors layout.
pub fn directory_inputs(directory: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(directory).map_err(|e| Error::io(directory, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(directory, e))?;
        // Only files: a folder named `x.pt` is no checkpoint.
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let chosen = inputs_among(&names).map_err(|e| e.within(directory.display().to_string()))?;
    Ok(chosen.into_iter().map(|n| directory.join(n)).collect())
}

/// [`directory_inputs`]' choice among a directory's file `names` (a local
/// directory's, or the objects under a prefix in a bucket).
pub fn inputs_among(names: &[String]) -> Result<Vec<String>> {
    for wanted in [BIN_INDEX, BIN] {
        if names.iter().any(|n| n == wanted) {
            return Ok(vec![wanted.to_owned()]);
        }
    }
    let mut found: Vec<String> = names
        .iter()
        .filter(|n| {
            Path::new(n.as_str())
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("pt") || e.eq_ignore_ascii_case("pth"))
        })
        .cloned()
        .collect();
    if found.is_empty() {
        return Err(Error::usage(format!(
            "the directory holds no {BIN_INDEX}, {BIN}, .pt or .pth file to convert"
        )));
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for name in names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sw-dir-inputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn prefers_the_index_then_the_bin_then_pt_files() {
        let dir = temp("prefer");
        touch(&dir, &["b.pth", "a.pt", "notes.txt"]);
        assert_eq!(
            directory_inputs(&dir).unwrap(),
            [dir.join("a.pt"), dir.join("b.pth")]
        );
        touch(&dir, &[BIN]);
        assert_eq!(directory_inputs(&dir).unwrap(), [dir.join(BIN)]);
        touch(&dir, &[BIN_INDEX]);
        assert_eq!(directory_inputs(&dir).unwrap(), [dir.join(BIN_INDEX)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_checkpoints_is_a_usage_error() {
        let dir = temp("empty");
        let error = directory_inputs(&dir).unwrap_err();
        assert!(matches!(error.root(), Error::Usage { .. }), "{error:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
