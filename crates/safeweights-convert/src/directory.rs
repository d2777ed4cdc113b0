//! What `convert` converts in a Hugging Face model directory.

use std::path::{Path, PathBuf};

use safeweights_pickle::{Error, Result};

/// The sharded checkpoint's index Hugging Face writes.
const BIN_INDEX: &str = "pytorch_model.bin.index.json";
/// The single-file checkpoint Hugging Face writes.
const BIN: &str = "pytorch_model.bin";

/// The checkpoints to convert in a model directory, in the order Hugging
/// Face's loaders prefer them: `pytorch_model.bin.index.json` (which
/// brings its shards), else `pytorch_model.bin`, else every `.pt` and
/// `.pth` file (sorted). Each converts to [`super::default_output`]'s name
/// beside it, so the directory gains the matching safetensors layout.
pub fn directory_inputs(directory: &Path) -> Result<Vec<PathBuf>> {
    for name in [BIN_INDEX, BIN] {
        let path = directory.join(name);
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    let entries = std::fs::read_dir(directory).map_err(|e| Error::io(directory, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(directory, e))?.path();
        let torch = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pt") || e.eq_ignore_ascii_case("pth"));
        if torch && path.is_file() {
            found.push(path);
        }
    }
    if found.is_empty() {
        return Err(Error::usage(format!(
            "{} holds no {BIN_INDEX}, {BIN}, .pt or .pth file to convert",
            directory.display()
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
        assert!(matches!(error, Error::Usage { .. }), "{error:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
