//! Property: files made by our writer sniff as safetensors and load, whatever
//! the header length's low byte. Regression for the sniffer that took a file
//! whose header length ends in `0x80` (a pickle's PROTO opcode) for a pickle.

use proptest::prelude::*;
use safeweights::format::sniff::SNIFF_LEN;
use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{sniff, Dtype, FileKind, Metadata};

/// Writes one small tensor with our writer, padding the metadata until the
/// header length is congruent to `residue` modulo 256.
///
/// Our writer (like the reference) pads the header to a multiple of 8, so
/// it alone reaches the 32 residues that are multiples of 8; the others are
/// reached by appending `residue % 8` spaces of JSON whitespace after the
/// writer's header, as an unpadding writer would leave them.
fn file_with_header_residue(residue: u8, name: &str, data: &[u8]) -> Vec<u8> {
    let tensor = [(name, TensorRef::new(Dtype::U8, vec![data.len()], data))];
    let aligned = u64::from(residue) & !7;
    let extra = usize::from(residue % 8);
    for pad in 0..512 {
        let metadata = Metadata::from([("pad".to_owned(), "x".repeat(pad))]);
        let bytes = serialize(&tensor, Some(&metadata), &WriteOptions::default()).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        if len % 256 == aligned {
            return with_extra_spaces(&bytes, len, extra);
        }
    }
    unreachable!("512 paddings cover every multiple of 8 modulo 256");
}

fn with_extra_spaces(bytes: &[u8], len: u64, extra: usize) -> Vec<u8> {
    let header_end = 8 + len as usize;
    let mut out = (len + extra as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&bytes[8..header_end]);
    out.extend(std::iter::repeat_n(b' ', extra));
    out.extend_from_slice(&bytes[header_end..]);
    out
}

fn assert_sniffs_and_loads(bytes: &[u8], residue: u8, name: &str, data: &[u8]) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(len % 256, u64::from(residue));
    let prefix = &bytes[..bytes.len().min(SNIFF_LEN)];
    assert_eq!(sniff(prefix), FileKind::Safetensors, "residue {residue:#x}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    for backend in [Backend::Mmap, Backend::Pread] {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let file = SafetensorsFile::open_with(&path, &options)
            .unwrap_or_else(|e| panic!("residue {residue:#x} via {backend:?}: {e}"));
        assert_eq!(&*file.tensor_bytes(name).unwrap(), data);
    }
}

#[test]
fn every_header_length_residue_mod_256_sniffs_as_safetensors_and_loads() {
    let data = [1u8, 2, 3, 4, 5];
    for residue in 0..=255u8 {
        let bytes = file_with_header_residue(residue, "weight", &data);
        assert_sniffs_and_loads(&bytes, residue, "weight", &data);
    }
}

#[test]
fn header_length_with_low_byte_0x80_is_not_taken_for_a_pickle() {
    let data = [7u8; 3];
    let bytes = file_with_header_residue(0x80, "w", &data);
    assert_eq!(bytes[0], 0x80);
    assert_sniffs_and_loads(&bytes, 0x80, "w", &data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_small_file_sniffs_as_safetensors_whatever_its_residue(
        residue in any::<u8>(),
        name in "[a-zA-Z0-9._]{1,40}",
        data in prop::collection::vec(any::<u8>(), 0..64),
        more in prop::collection::btree_map("[a-z]{1,8}", "[ -~]{0,30}", 0..3),
    ) {
        let mut bytes = file_with_header_residue(residue, &name, &data);
        // Extra metadata shifts the header, then re-pad to the residue.
        if !more.is_empty() {
            let metadata: Metadata = more.into_iter().collect();
            let tensor = [(name.as_str(), TensorRef::new(Dtype::U8, vec![data.len()], &data))];
            let plain = serialize(&tensor, Some(&metadata), &WriteOptions::default()).unwrap();
            let len = u64::from_le_bytes(plain[..8].try_into().unwrap());
            let extra = (u64::from(residue) + 256 - len % 256) % 256;
            bytes = with_extra_spaces(&plain, len, extra as usize);
        }
        assert_sniffs_and_loads(&bytes, residue, &name, &data);
    }
}
