//! Sharded pickle checkpoints: `pytorch_model.bin.index.json` and the
//! shard files it lists, checked to agree with each other before anything
//! is converted.

use std::collections::HashMap;
use std::path::Path;

use safeweights::shards::ShardIndex;

use crate::input::{detect_file, open_part, parse_index, Part};
use safeweights_pickle::source::Source;
use safeweights_pickle::Limits;
use safeweights_pickle::{Error, Result};

/// Opens every shard the index at `path` lists, in file-name order.
pub(crate) fn open_shards(path: &Path, source: &Source, limits: &Limits) -> Result<Vec<Part>> {
    let index = parse_index(path, source)?;
    let location = path.display().to_string();
    let files = index.shard_files();
    if files.is_empty() {
        return Err(Error::index("the index lists no tensors").within(location));
    }
    let directory = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut parts = Vec::with_capacity(files.len());
    for name in &files {
        // `ShardIndex` already refused names that are not plain file names,
        // so the join cannot leave the index's directory.
        let shard = directory.join(name);
        if !shard.is_file() {
            return Err(
                Error::index(format!("shard `{name}` listed in the index is missing"))
                    .within(location),
            );
        }
        let source = Source::open(&shard)?;
        let kind = detect_file(&shard, &source, limits)?;
        parts.push(open_part(&shard, source, kind, limits)?);
    }
    check_agreement(&index, &files, &parts).map_err(|e| e.within(location))?;
    Ok(parts)
}

/// Every tensor (and tied alias) a shard holds must be listed for that
/// shard (so no name can be in two shards), and every listed name must be
/// in its shard. Values that were skipped (not tensors) count as present.
fn check_agreement(index: &ShardIndex, files: &[&str], parts: &[Part]) -> Result<()> {
    let mut held: HashMap<&str, &str> = HashMap::new();
    for (file, part) in files.iter().zip(parts) {
        let tensors = part.tensors.iter().map(|t| t.name.as_str());
        let aliases = part.aliases.iter().map(|(alias, _)| alias.as_str());
        for name in tensors.chain(aliases) {
            match index.weight_map.get(name) {
                None => {
                    return Err(Error::index(format!(
                        "tensor `{name}` in shard `{file}` is not listed in the index"
                    )))
                }
                Some(listed) if listed != file => {
                    return Err(Error::index(format!(
                        "tensor `{name}` is listed in `{listed}` but stored in `{file}`"
                    )))
                }
                Some(_) => {}
            }
            held.insert(name, file);
        }
        for skipped in &part.skipped {
            held.entry(skipped.path.as_str()).or_insert(file);
        }
    }
    for (name, file) in &index.weight_map {
        if !held.contains_key(name.as_str()) {
            return Err(Error::index(format!(
                "tensor `{name}` is listed in `{file}` but that shard does not hold it"
            )));
        }
    }
    Ok(())
}
