//! The strict GGUF reader on arbitrary bytes: never panics, and what it
//! accepts is consistent: every key and tensor is found by name, every
//! array element decodes, and every tensor's bytes lie inside the data
//! section, are as long as its type and shape say, and can all be read;
//! and every tensor of a type with a rule dequantizes without a panic
//! (bounded, so that a huge claimed tensor cannot stall the run).
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights_gguf::quant::{can_dequantize, dequantize};
use safeweights_gguf::{Gguf, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::parse(data) else {
        return;
    };
    for (key, value) in gguf.metadata() {
        // The same entry, by address: a NaN value is not equal to itself.
        assert!(gguf
            .get(key)
            .is_some_and(|found| std::ptr::eq(found, value)));
        touch(value);
    }
    assert_eq!(gguf.data_offset() % u64::from(gguf.alignment()), 0);
    let mut checksum = 0u8;
    for info in gguf.tensors() {
        assert!(gguf
            .tensor(info.name)
            .is_some_and(|found| std::ptr::eq(found, info)));
        assert!(info.dims.len() <= 4);
        let row = info.dims.first().copied().unwrap_or(1);
        let expected = row / info.ggml_type.block_size()
            * info.ggml_type.block_bytes()
            * info.dims.iter().skip(1).product::<u64>();
        assert_eq!(info.byte_len, expected);
        let bytes = gguf.tensor_bytes(info.name).expect("a listed tensor");
        assert_eq!(bytes.len() as u64, info.byte_len);
        assert!(gguf.data_offset() + info.offset + info.byte_len <= data.len() as u64);
        checksum = bytes.iter().fold(checksum, |acc, &b| acc.wrapping_add(b));
        if can_dequantize(info.ggml_type) && info.numel() <= 1 << 16 {
            let mut values = vec![0f32; info.numel() as usize];
            dequantize(info.ggml_type, bytes, &mut values).expect("a valid tensor dequantizes");
            std::hint::black_box(&values);
        }
    }
    std::hint::black_box(checksum);
});

/// Decodes every element of arrays, nested ones included.
fn touch(value: &Value<'_>) {
    if let Value::Array(array) = value {
        assert_eq!(array.iter().count(), array.len());
        for item in array.iter() {
            assert_eq!(item.value_type(), array.element_type());
            touch(&item);
        }
    }
}
