//! The core library against the reference `safetensors` crate, in one run.
//!
//! Run through `bench/run_core.sh`, which also writes BENCHMARKS.md. The
//! data size of the write and read benchmarks is `SAFEWEIGHTS_BENCH_MIB`
//! (default 1024) in 200 tensors.

use std::fs::File;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use safeweights::read::{SafeTensors, SafetensorsFile};
use safeweights::write::{serialize, serialize_to_file, WriteOptions};
use safeweights::Header;
use safeweights_bench::{header_json, many_tensor_file, remove, sync_disks, touch, BigModel};

fn header_sizes() -> [(usize, &'static str); 2] {
    [(10_000, "10k"), (1_000_000, "1M")]
}

/// Parsing the header JSON. Ours always validates too (it cannot build a
/// header without), the reference's JSON step does not, so this favours it.
fn header_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_parse");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (count, label) in header_sizes() {
        let file = many_tensor_file(count);
        let json = header_json(&file);
        let data_len = (file.len() - 8 - json.len()) as u64;
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new("ours", label), json, |b, json| {
            b.iter(|| Header::parse(black_box(json), data_len).expect("valid"))
        });
        group.bench_with_input(BenchmarkId::new("reference", label), json, |b, json| {
            b.iter(|| {
                serde_json::from_slice::<safetensors::tensor::Metadata>(black_box(json))
                    .expect("valid")
            })
        });
    }
    group.finish();
}

/// Parse and validate a whole file held in memory: what opening costs.
fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (count, label) in header_sizes() {
        let file = many_tensor_file(count);
        group.throughput(Throughput::Bytes(header_json(&file).len() as u64));
        group.bench_with_input(BenchmarkId::new("ours", label), &file, |b, file| {
            b.iter(|| SafeTensors::parse(black_box(file)).expect("valid"))
        });
        group.bench_with_input(BenchmarkId::new("reference", label), &file, |b, file| {
            b.iter(|| safetensors::SafeTensors::deserialize(black_box(file)).expect("valid"))
        });
    }
    group.finish();
}

fn model() -> BigModel {
    let mib: usize = std::env::var("SAFEWEIGHTS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    BigModel::new(mib << 20, 200)
}

fn label(model: &BigModel) -> String {
    format!("{}MiB", model.bytes() >> 20)
}

fn serialize_memory(c: &mut Criterion, model: &BigModel) {
    let mut group = c.benchmark_group("serialize_memory");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(model.bytes()));
    let label = label(model);
    group.bench_function(BenchmarkId::new("ours", &label), |b| {
        b.iter(|| serialize(&model.refs(), None, &WriteOptions::default()).expect("valid"))
    });
    group.bench_function(BenchmarkId::new("reference", &label), |b| {
        b.iter(|| safetensors::serialize(model.reference_views(), None).expect("valid"))
    });
    group.finish();
}

/// Writing a file; `sync` runs before each write, outside the timing, so
/// every write starts with no dirty pages.
fn serialize_file(c: &mut Criterion, model: &BigModel, dir: &std::path::Path) {
    let mut group = c.benchmark_group("serialize_file");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(model.bytes()));
    let label = label(model);
    let ours = dir.join("ours.safetensors");
    let theirs = dir.join("reference.safetensors");
    group.bench_function(BenchmarkId::new("ours", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                remove(&ours);
                sync_disks();
                let start = Instant::now();
                // Without fsync, like the reference: the cost of durability
                // is measured on its own (bench/durability_bench.py).
                let like_reference = WriteOptions {
                    sync: false,
                    ..WriteOptions::default()
                };
                serialize_to_file(&model.refs(), None, &ours, &like_reference).expect("written");
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function(BenchmarkId::new("reference", &label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                remove(&theirs);
                sync_disks();
                let start = Instant::now();
                safetensors::serialize_to_file(model.reference_views(), None, &theirs)
                    .expect("written");
                total += start.elapsed();
            }
            total
        })
    });
    remove(&ours);
    remove(&theirs);
    sync_disks();
    group.finish();
}

/// Open a file in the page cache through mmap and read every byte of
/// every tensor; then the same into owned buffers.
fn read_warm(c: &mut Criterion, model: &BigModel, dir: &std::path::Path) {
    let path = dir.join("read.safetensors");
    serialize_to_file(&model.refs(), None, &path, &WriteOptions::default()).expect("written");
    let mut group = c.benchmark_group("read_warm_mmap");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(model.bytes()));
    let label = label(model);
    group.bench_function(BenchmarkId::new("ours", &label), |b| {
        b.iter(|| {
            let file = SafetensorsFile::open(&path).expect("valid");
            let mut sum = 0u64;
            for info in file.header().tensors() {
                sum = sum.wrapping_add(touch(&file.bytes_of(info).expect("readable")));
            }
            sum
        })
    });
    group.bench_function(BenchmarkId::new("reference", &label), |b| {
        b.iter(|| {
            let handle = File::open(&path).expect("exists");
            // SAFETY: nobody modifies the file during the benchmark.
            let map = unsafe { memmap2::Mmap::map(&handle) }.expect("mapped");
            let file = safetensors::SafeTensors::deserialize(&map).expect("valid");
            let mut sum = 0u64;
            for (_, view) in file.iter() {
                sum = sum.wrapping_add(touch(view.data()));
            }
            sum
        })
    });
    group.finish();

    let mut group = c.benchmark_group("read_warm_owned");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(model.bytes()));
    group.bench_function(BenchmarkId::new("ours", &label), |b| {
        b.iter(|| {
            let file = SafetensorsFile::open(&path).expect("valid");
            let tensors = file.header().tensors();
            let mut buffers: Vec<Vec<u8>> =
                tensors.clone().map(|t| vec![0u8; t.byte_len()]).collect();
            let mut requests: Vec<(&str, &mut [u8])> = tensors
                .zip(buffers.iter_mut())
                .map(|(t, b)| (t.name, &mut b[..]))
                .collect();
            file.read_many_into(&mut requests).expect("read");
            buffers
        })
    });
    group.bench_function(BenchmarkId::new("reference", &label), |b| {
        b.iter(|| {
            let handle = File::open(&path).expect("exists");
            // SAFETY: nobody modifies the file during the benchmark.
            let map = unsafe { memmap2::Mmap::map(&handle) }.expect("mapped");
            let file = safetensors::SafeTensors::deserialize(&map).expect("valid");
            file.iter()
                .map(|(_, view)| view.data().to_vec())
                .collect::<Vec<_>>()
        })
    });
    group.finish();
    remove(&path);
}

fn big(c: &mut Criterion) {
    let model = model();
    let base =
        std::env::var_os("SAFEWEIGHTS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    serialize_memory(c, &model);
    serialize_file(c, &model, dir.path());
    read_warm(c, &model, dir.path());
}

criterion_group!(benches, header_parse, validate, big);
criterion_main!(benches);
