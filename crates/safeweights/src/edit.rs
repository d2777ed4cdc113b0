//! Editing a file's `__metadata__` without touching tensor data.
//!
//! The new header keeps every tensor's entry, order and offsets. When it
//! fits in the space of the old header (the JSON plus its space padding),
//! it is written in place, padded with spaces to exactly the old length,
//! so the data section does not move; otherwise the file is rewritten
//! through a temporary file and a rename.
//!
//! The tradeoff of the in-place path: it costs one small write instead of
//! copying gigabytes, and the old header stays valid until that single
//! positioned write lands, but a crash in the middle of the write could
//! leave a torn header (file systems make no atomicity promise, although a
//! write within one page is atomic in practice). [`EditMode::Rewrite`]
//! avoids that risk at the cost of a full copy.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{HeaderLimits, Metadata, PREFIX_LEN};
use crate::read::read_header;
use crate::write::{header_json, pad_header, write_all_at, AtomicFile};

/// How [`rewrite_metadata`] may change the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EditMode {
    /// In place when the new header fits, else through a temporary file.
    #[default]
    InPlaceIfFits,
    /// Always through a temporary file and a rename.
    Rewrite,
}

/// What [`rewrite_metadata`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditOutcome {
    /// The header was overwritten in place; the data did not move.
    InPlace,
    /// The file was rewritten through a temporary file and a rename.
    Rewritten,
}

/// Replaces the `__metadata__` of the file at `path` (`None` removes it),
/// keeping tensors and their data exactly as they are. The file is
/// validated first; an invalid file is left alone.
pub fn rewrite_metadata(
    path: impl AsRef<Path>,
    metadata: Option<&Metadata>,
    mode: EditMode,
) -> Result<EditOutcome> {
    let path = path.as_ref();
    rewrite_inner(path, metadata, mode).map_err(|e| e.in_file(path))
}

fn rewrite_inner(path: &Path, metadata: Option<&Metadata>, mode: EditMode) -> Result<EditOutcome> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(mode == EditMode::InPlaceIfFits)
        .open(path)?;
    let header = read_header(&file, file.metadata()?.len(), &HeaderLimits::default())?;
    let json = header_json(metadata, header.tensors());
    let old_len = header.header_len() as usize;
    if mode == EditMode::InPlaceIfFits && json.len() <= old_len {
        let mut bytes = json.into_bytes();
        bytes.resize(old_len, b' ');
        // One positioned write of the same length: the prefix and the data
        // section are untouched, so the file is valid before and after.
        write_all_at(&file, &bytes, PREFIX_LEN as u64)?;
        file.sync_data()?;
        return Ok(EditOutcome::InPlace);
    }
    let head = pad_header(&json, 8);
    let out = AtomicFile::create(path)?;
    write_all_at(out.file(), &head, 0)?;
    let mut target = out.file();
    target.seek(SeekFrom::Start(head.len() as u64))?;
    file.seek(SeekFrom::Start(header.data_start()))?;
    let copied = std::io::copy(&mut (&file).take(header.data_len()), &mut target)?;
    if copied != header.data_len() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file became shorter while it was copied",
        )));
    }
    out.file().set_permissions(file.metadata()?.permissions())?;
    out.commit(true)?;
    Ok(EditOutcome::Rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::SafetensorsFile;
    use crate::write::{serialize_to_file, TensorRef, WriteOptions};

    fn sample(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("m.safetensors");
        let data: Vec<u8> = (0..24).collect();
        let tensors = [
            (
                "b",
                TensorRef::new(crate::Dtype::F32, vec![2, 2], &data[..16]),
            ),
            ("a", TensorRef::new(crate::Dtype::U8, vec![8], &data[16..])),
        ];
        serialize_to_file(&tensors, None, &path, &WriteOptions::default()).unwrap();
        path
    }

    #[test]
    fn small_edit_is_in_place_and_large_edit_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let before = std::fs::read(&path).unwrap();
        let mut meta = Metadata::new();
        meta.insert("k".into(), "v".into());
        // Metadata first needs room the original has not got: rewrite.
        assert_eq!(
            rewrite_metadata(&path, Some(&meta), EditMode::default()).unwrap(),
            EditOutcome::Rewritten
        );
        let file = SafetensorsFile::open(&path).unwrap();
        assert_eq!(file.header().metadata(), Some(&meta));
        assert_eq!(
            file.tensor_bytes("b").unwrap().as_ref(),
            &before[before.len() - 24..before.len() - 8]
        );
        drop(file);
        // Removing it shrinks the JSON: in place, same length.
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            rewrite_metadata(&path, None, EditMode::default()).unwrap(),
            EditOutcome::InPlace
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert!(SafetensorsFile::open(&path)
            .unwrap()
            .header()
            .metadata()
            .is_none());
    }
}
