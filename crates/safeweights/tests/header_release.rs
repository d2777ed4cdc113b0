//! Parsing a large header while handing its pages back
//! (`Header::parse_file_releasing`, used by the mmap readers), and the
//! headers whose names are already sorted, whose name index is built on
//! first lookup: the same entries, lookups and errors as the plain parse.

use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::{Error, Header, HeaderLimits};

/// A file of `names.len()` U8 tensors of one byte each, in the given
/// order of data offsets.
fn file_of(names: &[String]) -> Vec<u8> {
    let mut json = String::from("{");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#""{name}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
            i + 1
        ));
    }
    json.push('}');
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    file.extend((0..names.len()).map(|i| i as u8));
    file
}

fn sorted_names(count: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..count).map(|i| format!("layer.{i}.weight")).collect();
    names.sort();
    names
}

/// Parses with the release hook, recording its calls.
fn parse_releasing(file: &[u8]) -> (safeweights::Result<Header>, Vec<usize>) {
    let mut calls = Vec::new();
    let parsed =
        Header::parse_file_releasing(file, &HeaderLimits::default(), &mut |n| calls.push(n))
            .map(|(header, _)| header);
    (parsed, calls)
}

#[test]
fn a_large_header_is_released_as_it_is_walked_and_parses_the_same() {
    // About 10 MB of JSON: several release steps of 4 MiB.
    let names = sorted_names(250_000);
    let file = file_of(&names);
    let (plain, _) = Header::parse_file(&file, &HeaderLimits::default()).unwrap();
    let (released, calls) = parse_releasing(&file);
    let released = released.unwrap();
    assert!(released.tensors().eq(plain.tensors()));
    let data_start = released.data_start() as usize;
    // Once after the UTF-8 check, then every few MiB, then the whole header.
    assert!(calls.len() >= 4, "{calls:?}");
    assert_eq!(calls.first(), Some(&data_start));
    assert_eq!(calls.last(), Some(&data_start));
    let walk = &calls[1..calls.len() - 1];
    assert!(walk.windows(2).all(|w| w[0] < w[1]), "{calls:?}");
    assert!(walk.iter().all(|&n| n < data_start), "{calls:?}");
    for name in [&names[0], &names[123_456], &names[names.len() - 1]] {
        assert_eq!(released.get(name), plain.get(name));
        assert_eq!(released.get(name).unwrap().name, name.as_str());
    }
    assert_eq!(released.get("layer.250000.weight"), None);
    assert!(released
        .names_alphabetical()
        .eq(names.iter().map(String::as_str)));
    assert_eq!(released.names_alphabetical().len(), names.len());
}

#[test]
fn a_bad_header_is_reported_the_same_with_the_release_hook() {
    let names = sorted_names(100_000);
    let mut file = file_of(&names);
    // A dtype misspelled near the end, after several releases.
    let at = file.len() - 200 - names.len();
    let found = file[at..].windows(4).position(|w| w == b"\"U8\"").unwrap() + at;
    file[found + 1] = b'X';
    let plain = Header::parse_file(&file, &HeaderLimits::default()).unwrap_err();
    let released = parse_releasing(&file).0.unwrap_err();
    assert!(matches!(released, Error::UnknownDtype { .. }), "{released}");
    assert_eq!(plain.to_string(), released.to_string());
}

#[test]
fn names_out_of_alphabetical_order_are_sorted_and_found() {
    // Offset order is the reverse of the alphabetical one.
    let mut names = sorted_names(3_000);
    names.reverse();
    let header = Header::parse_file(&file_of(&names), &HeaderLimits::default())
        .unwrap()
        .0;
    let mut expected = names.clone();
    expected.sort();
    assert!(header
        .names_alphabetical()
        .eq(expected.iter().map(String::as_str)));
    assert_eq!(header.sorted_names(), expected);
    for (offset, name) in names.iter().enumerate() {
        assert_eq!(header.get(name).unwrap().begin, offset as u64);
    }
}

#[test]
fn a_duplicate_is_refused_whether_or_not_the_names_are_sorted() {
    // Sorted but not strictly: two equal neighbours.
    let mut names = sorted_names(1_000);
    names[500] = names[499].clone();
    let error = Header::parse_file(&file_of(&names), &HeaderLimits::default()).unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateKey { key, .. } if *key == names[499]),
        "{error}"
    );
    // Unsorted, the duplicate far from its twin.
    names = sorted_names(1_000);
    names.reverse();
    names[900] = names[3].clone();
    let error = Header::parse_file(&file_of(&names), &HeaderLimits::default()).unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateKey { key, .. } if *key == names[3]),
        "{error}"
    );
}

#[test]
fn a_lazily_indexed_header_clones_and_is_shared_across_threads() {
    let names = sorted_names(10_000);
    let header = Header::parse_file(&file_of(&names), &HeaderLimits::default())
        .unwrap()
        .0;
    let copy = header.clone();
    std::thread::scope(|scope| {
        for part in names.chunks(2_500) {
            let header = &header;
            scope.spawn(move || {
                for name in part {
                    assert_eq!(header.get(name).unwrap().name, name.as_str());
                }
            });
        }
    });
    assert_eq!(copy.get(&names[42]), header.get(&names[42]));
}

#[test]
fn mapped_and_pread_files_with_a_large_header_read_the_same() {
    let names = sorted_names(150_000);
    let bytes = file_of(&names);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large_header.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let open = |backend| {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        SafetensorsFile::open_with(&path, &options).unwrap()
    };
    let (mapped, pread) = (open(Backend::Mmap), open(Backend::Pread));
    assert!(mapped.header().tensors().eq(pread.header().tensors()));
    for name in [&names[0], &names[77_777], &names[names.len() - 1]] {
        let expected = [names.iter().position(|n| n == name).unwrap() as u8];
        assert_eq!(&*mapped.tensor_bytes(name).unwrap(), &expected);
        assert_eq!(&*pread.tensor_bytes(name).unwrap(), &expected);
    }
    // The released header pages read back from the file as they were.
    assert_eq!(&mapped.mapped_bytes().unwrap()[..bytes.len()], &bytes[..]);
}
