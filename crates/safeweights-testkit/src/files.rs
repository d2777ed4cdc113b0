//! Files built by hand for the tests that cut a file while it is read
//! (issue 15): a safetensors or `.npy` file of any size, stored sparse so
//! that gigabytes cost no disk, and the cut itself.

use std::io::Write;
use std::path::Path;

/// The 8-byte length and the header `json`, padded with spaces to a
/// multiple of 8 bytes as writers do: the head of a safetensors file.
pub fn safetensors_head(json: &str) -> Vec<u8> {
    let mut header = json.to_owned();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out
}

/// The head of a safetensors file whose one tensor `w` holds `len` U8
/// values.
pub fn one_u8_tensor_head(len: u64) -> Vec<u8> {
    safetensors_head(&format!(
        r#"{{"w":{{"dtype":"U8","shape":[{len}],"data_offsets":[0,{len}]}}}}"#
    ))
}

/// The head of a `.npy` file (format 1.0) whose header is the dictionary
/// `dict`: the magic, the version, and the dictionary padded so that the
/// data starts at a multiple of 64 bytes.
pub fn npy_head(dict: &str) -> Vec<u8> {
    let mut header = dict.to_owned();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// The head of a `.npy` file of `len` uint8 values.
pub fn npy_u8_head(len: u64) -> Vec<u8> {
    npy_head(&format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({len},), }}"
    ))
}

/// Writes `head`, then makes the file `data_len` bytes longer: zeros that
/// take no disk.
pub fn write_sparse(path: &Path, head: &[u8], data_len: u64) {
    let mut file = std::fs::File::create(path).expect("create the sparse file");
    file.write_all(head).expect("write the head");
    file.set_len(head.len() as u64 + data_len)
        .expect("extend the sparse file");
}

/// A safetensors file whose one tensor `w` holds `len` U8 zeros, sparse.
pub fn sparse_safetensors(path: &Path, len: u64) {
    write_sparse(path, &one_u8_tensor_head(len), len);
}

/// A `.npy` file of `len` uint8 zeros, sparse.
pub fn sparse_npy(path: &Path, len: u64) {
    write_sparse(path, &npy_u8_head(len), len);
}

/// Cuts the file at `path` to `len` bytes, as another process would.
pub fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the file to cut")
        .set_len(len)
        .expect("cut the file");
}

/// The names in the folder `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safetensors_head_is_padded_to_eight_bytes_and_counts_its_header() {
        let head = one_u8_tensor_head(5);
        let header_len = u64::from_le_bytes(head[..8].try_into().unwrap());
        assert_eq!(header_len as usize, head.len() - 8);
        assert_eq!(header_len % 8, 0);
        assert!(head[8..].starts_with(br#"{"w":{"dtype":"U8","shape":[5]"#));
    }

    #[test]
    fn npy_data_starts_at_a_multiple_of_64() {
        let head = npy_u8_head(3);
        assert_eq!(head.len() % 64, 0);
        assert_eq!(
            usize::from(u16::from_le_bytes([head[8], head[9]])),
            head.len() - 10
        );
        assert!(head.ends_with(b"\n"));
    }

    #[test]
    fn a_sparse_file_has_its_head_then_zeros_and_can_be_cut() {
        let dir = std::env::temp_dir().join(format!("testkit-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        write_sparse(&path, b"head", 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"head\0\0\0\0");
        truncate(&path, 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"he");
        assert_eq!(listing(&dir), ["f"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
