//! Header parsing on arbitrary bytes: never panics, and whatever it accepts
//! is internally consistent, survives a write/parse round trip, and is
//! accepted by the reference implementation with the same tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights::write::{Layout, TensorSpec, WriteOptions};
use safeweights::{Header, HeaderLimits};

fuzz_target!(|data: &[u8]| {
    // The JSON alone, against a data length taken from the input.
    let data_len = data.first().map_or(0, |&b| u64::from(b));
    if let Ok(header) = Header::parse(data, data_len) {
        check(&header, data_len);
    }

    // A whole file.
    let Ok((header, rest)) = Header::parse_file(data, &HeaderLimits::default()) else {
        return;
    };
    check(&header, rest.len() as u64);
    let reference = safetensors::SafeTensors::deserialize(data)
        .expect("we accepted a file the reference rejects");
    assert_eq!(reference.len(), header.len());
    for tensor in header.tensors() {
        let theirs = reference
            .tensor(tensor.name)
            .expect("tensor missing in the reference");
        assert_eq!(theirs.shape(), tensor.shape);
        assert_eq!(format!("{:?}", theirs.dtype()), tensor.dtype.name());
        assert_eq!(
            theirs.data(),
            &rest[tensor.begin as usize..tensor.end as usize]
        );
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(data).unwrap();
    let theirs: Option<std::collections::BTreeMap<String, String>> =
        meta.metadata().clone().map(|m| m.into_iter().collect());
    assert_eq!(theirs.as_ref(), header.metadata());
});

fn check(header: &Header, data_len: u64) {
    let mut end = 0;
    for tensor in header.tensors() {
        assert_eq!(tensor.begin, end, "tensors tile the data section");
        assert_eq!(
            Some(tensor.byte_len()),
            tensor.dtype.bytes_for(tensor.numel())
        );
        assert_eq!(header.get(tensor.name), Some(tensor));
        end = tensor.end;
    }
    assert_eq!(end, data_len);
    assert_eq!(header.data_len(), data_len);

    // Writing the same tensors and metadata gives a header that parses to
    // the same entries (in the writer's order, so compare by name).
    let specs: Vec<TensorSpec> = header
        .tensors()
        .map(|t| TensorSpec::new(t.name.to_owned(), t.dtype, t.shape.to_vec()))
        .collect();
    let layout = Layout::plan(&specs, header.metadata(), &WriteOptions::default())
        .expect("a valid header can be written");
    let again = layout.to_header().expect("our own header parses");
    assert_eq!(again.len(), header.len());
    assert_eq!(again.metadata(), header.metadata());
    for tensor in header.tensors() {
        let other = again.get(tensor.name).expect("same names");
        assert_eq!((other.dtype, other.shape), (tensor.dtype, tensor.shape));
    }
}
