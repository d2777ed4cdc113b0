//! Command-line definitions (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const MAIN_HELP: &str = "\
Exit codes:
  0  ok: valid, equal, safe, all finite
  1  the answer is no: invalid or corrupt file, unsafe file, differences,
     non-finite values
  2  usage error, or an input that cannot be read (missing file, I/O or
     network error, a directory that holds no checkpoint)
  3  internal error (a bug in safeweights; please report it)
With --json, a failure also prints one JSON document on stdout:
  {\"error\": {\"kind\": \"invalid\" | \"unsafe\" | \"usage\" | \"input\" | \"internal\",
             \"message\": ..., \"path\": ... or null}}

Checkpoints: every command that reads accepts a .safetensors file, a sharded
checkpoint's index (*.safetensors.index.json) or a directory holding one,
and s3://bucket/key, http:// and https:// URLs of a file or an index, read
with Range requests (only the header and the bytes needed are fetched).
s3:// settings come from AWS_* variables and ~/.aws (AWS_ENDPOINT_URL for
S3-compatible servers). scan and convert download a URL whole into a
temporary file (removed afterwards); convert writes to s3:// too.

Colour is used on terminals unless NO_COLOR is set. --json prints exactly
one JSON document on stdout.

Examples:
  safeweights inspect model.safetensors
  safeweights validate *.safetensors
  safeweights scan ./downloaded-model/
  safeweights convert pytorch_model.bin model.safetensors
  safeweights diff old/ new/ --atol 1e-6
  safeweights stats model.safetensors -t '*.weight' --check-finite";

/// Inspect, validate, convert, scan, compare and edit model checkpoints.
#[derive(Debug, Parser)]
#[command(name = "safeweights", about, after_help = MAIN_HELP)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Largest header to accept (default 100MB); a header over it is refused
    /// as corrupt. Raise it for files with very many tensors that you trust.
    #[arg(long, global = true, value_name = "SIZE")]
    pub max_header_size: Option<String>,

    /// Seconds to wait for a remote server to connect or send data.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,

    /// Writers: skip flushing files and directories to disk before
    /// reporting success (faster; a power cut may then lose the output).
    #[arg(long, global = true)]
    pub no_fsync: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show tensors (name, dtype, shape, size) and a summary.
    #[command(after_help = "\
Examples:
  safeweights inspect model.safetensors
  safeweights inspect model.safetensors.index.json
  safeweights inspect checkpoint-dir/ --json
  safeweights inspect https://example.com/model.safetensors

--json prints {\"header_size\", \"metadata\", \"tensors\": [{\"name\", \"dtype\",
\"shape\", \"data_offsets\"}]} with tensors in data-offset order; sharded
checkpoints add \"shard\" per tensor and a \"shards\" list; remote files add
\"http\": {\"requests\", \"bytes\"}.")]
    Inspect(InspectArgs),

    /// Check files against every rule of the format.
    #[command(after_help = "\
Exit code 0 when every file is valid, 1 when any is invalid (one line per
bad file on stderr), 2 when a file cannot be opened.

Examples:
  safeweights validate model.safetensors
  safeweights validate shards/*.safetensors --json")]
    Validate(ValidateArgs),

    /// Find files that would run code when loaded (pickles, torch checkpoints, numpy).
    #[command(after_help = "\
Formats are detected from content, never from the file name: pickles,
PyTorch checkpoints (zip and legacy), .npy and .npz (object arrays hold
pickles), nested archives, and .safetensors files (validated). Pickles are
simulated, never run, with the stack and memo tracked like the real VM.

Verdicts:
  safe        would load with safeweights' allow-listing reader; hidden
              .NAME.XXXXXX.tmp files are reported as an incomplete
              safeweights write (see `safeweights clean`)
  suspicious  an unknown global or opcode, a malformed or inconsistent
              container: refused by the safe reader, may hide a payload
  dangerous   a global that executes code or reaches the OS (os.system,
              builtins.eval, subprocess, importlib, runpy, socket, ...)

Exit code 0 when every file is safe, 1 when anything is suspicious or
dangerous, 2 when a file cannot be read.

Examples:
  safeweights scan pytorch_model.bin
  safeweights scan ./downloaded-model/ --json
  safeweights scan model.ckpt --all        # also list the safe globals")]
    Scan(ScanArgs),

    /// Remove temporary files left by interrupted safeweights writes.
    #[command(after_help = "\
Our writers write to a hidden .NAME.XXXXXX.tmp file beside the destination
and rename it into place. A process killed before the rename (kill -9, a
power cut) leaves that file behind; this removes them, recursively. Files a
running write still holds (an exclusive lock) are left alone and listed.

Examples:
  safeweights clean ./checkpoints/ --dry-run
  safeweights clean ./checkpoints/ --json")]
    Clean(CleanArgs),

    /// Convert a PyTorch or numpy checkpoint to safetensors without running it.
    #[command(after_help = "\
Inputs are detected from content: torch.save files (.bin .pt .pth .ckpt, zip
and legacy formats), a sharded pytorch_model.bin.index.json, .npy and .npz.
They are read by safeweights' own pickle reader, which never imports or
calls anything: a file that needs code to load is refused (exit 1) and
nothing is written.

Nested checkpoints are flattened with dots (model.layer.0.weight,
optimizer.state.0.exp_avg). Tensors that share exactly the same bytes are
stored once; the other names are recorded in __metadata__ as
alias = kept_name, as the reference's convert does. Plain values (epoch,
step, learning rates) are kept as one JSON object under the
safeweights.values metadata key (unless --drop-values); values that have
no JSON form are listed as not converted.

OUT defaults to model.safetensors beside the input for pytorch_model.bin
(or its index), else to the input's name with .safetensors. A directory OUT
receives model.safetensors, or shards and model.safetensors.index.json.

A Hugging Face model directory as input converts pytorch_model.bin.index.json
and its shards, else pytorch_model.bin, else every .pt and .pth file, into
the matching safetensors names beside them (or in OUT, a directory); --json
then prints {\"input\", \"conversions\": [...]}.

IN and OUT may be URLs. An s3:// or https:// input is downloaded into a
temporary directory (an index brings its shards; an s3:// prefix is a model
directory); an s3:// OUT is uploaded file by file, each object appearing
only when complete. Safetensors to an s3:// GGUF streams both ways. An
existing output file or object is replaced only with --force.

A torch.distributed.checkpoint directory in torch's default format (a
pickled .metadata and .distcp files, as dcp.save writes it) converts into
one checkpoint (OUT defaults to the directory's name with .safetensors):
tensors whole, sharded chunks joined, and the non-tensor values kept in
the structure, so safeweights.load(OUT) returns what dcp_to_torch_save
then torch.load(weights_only=True) would. Nothing in it is unpickled.

After writing, the output is read back and checked tensor by tensor against
digests of the input taken as it was read (the input is read once), unless
--no-verify is given.

GGUF (llama.cpp's format, recognised by content) converts both ways. A GGUF
input is dequantized bit for bit as gguf.quants does (quantized tensors
become f32, or --dtype), its metadata kept as JSON under gguf.metadata;
--keep-quantized stores the raw blocks instead (MXFP4 as F4 values plus
F8_E8M0 NAME.scales), and --hf writes Hugging Face Llama names and a
config.json. An OUT ending in .gguf makes a GGUF file from safetensors
(a file, index or directory), streamed one tensor at a time: matrices in
--outtype, vectors in f32; a --keep-quantized file comes back byte for byte.

Exit codes: 0 converted, 1 unsafe or invalid input (nothing written),
2 usage or I/O error (including an existing output without --force),
3 the output fails its verification (a bug; please report it).

Examples:
  safeweights convert pytorch_model.bin
  safeweights convert model.ckpt model.safetensors --dtype bf16
  safeweights convert pytorch_model.bin.index.json out/ --max-shard-size 5GB
  safeweights convert ./bert-base-uncased/            # the whole model directory
  safeweights convert arrays.npz --force --json
  safeweights convert model.gguf model.safetensors --dtype bf16
  safeweights convert model.gguf raw.safetensors --keep-quantized
  safeweights convert model.gguf out/model.safetensors --hf
  safeweights convert ./llama-hf/ model.gguf --outtype q8_0 --arch llama")]
    Convert(ConvertArgs),

    /// Compare two checkpoints tensor by tensor.
    #[command(after_help = "\
Reports tensors only in A or only in B, dtype and shape changes, metadata
changes, and for tensors whose bytes differ: the number of differing
elements, the max and mean absolute difference (computed in f64 for every
dtype; mean over pairs where both values are finite).

Two values are equal when |a - b| <= atol + rtol * |b| (numpy's allclose).
The defaults atol = rtol = 0 mean exact equality (0.0 equals -0.0); equal
infinities are equal; NaN equals NaN only with --equal-nan. Byte-identical
tensors are always equal. C64 values compare per component. 64-bit integers
beyond 2^53 are compared after rounding to f64.

Exit code 1 when anything differs.

Examples:
  safeweights diff a.safetensors b.safetensors
  safeweights diff base/ finetuned/ --atol 1e-3 --rtol 1e-2
  safeweights diff model.safetensors https://example.com/model.safetensors --json")]
    Diff(DiffArgs),

    /// Per-tensor min, max, mean, std and counts of NaN, +inf, -inf, zeros.
    #[command(after_help = "\
min, max, mean and std (population, divisor n) are over the finite values;
NaN and infinities are counted apart. Values are decoded exactly to f64 for
every dtype (fp8, fp6 and fp4 included; C64 per component). Files are
streamed through the memory map on all cores, so files larger than memory
work.

Examples:
  safeweights stats model.safetensors
  safeweights stats model.safetensors -t 'model.layers.*.mlp.*' --json
  safeweights stats checkpoint-dir/ --check-finite")]
    Stats(StatsArgs),

    /// Print a tensor's values, or write its raw bytes.
    #[command(after_help = "\
Values print like numpy: tensors over 1000 elements are summarized with
'...' showing 3 items at each edge.

Examples:
  safeweights dump model.safetensors embed.weight
  safeweights dump model.safetensors embed.weight --slice '0:2, :, ::4'
  safeweights dump model.safetensors embed.weight --slice 0 --raw > row0.bin
  safeweights dump model.safetensors lm_head.bias --slice '::-1'       # reversed
  safeweights dump https://example.com/model.safetensors lm_head.weight --slice '-1'")]
    Dump(DumpArgs),

    /// Print or store one SHA-256 per tensor.
    #[command(after_help = "\
Without --write, prints a JSON manifest {\"algorithm\": \"sha256\", \"tensors\":
{name: hex}} that `verify --manifest` checks.

With --write, stores the digests in the file's __metadata__ under the key
\"safeweights.sha256\", as a compact JSON object {name: hex} (sorted by name).
Tensor data is not touched: the header is rewritten in place when its
padding has room, else the file is rewritten through a temporary file and a
rename. The result stays a valid file for every safetensors reader. For a
sharded checkpoint, each shard stores the digests of its own tensors.

Examples:
  safeweights checksum model.safetensors > model.sha256.json
  safeweights checksum model.safetensors --write
  safeweights checksum model.safetensors.index.json --write")]
    Checksum(ChecksumArgs),

    /// Recompute tensor digests and compare with stored ones.
    #[command(after_help = "\
Checks against the digests stored by `checksum --write` (metadata key
\"safeweights.sha256\"), or against a manifest printed by `checksum`.
Exit code 1 when a tensor does not match, is missing, or when the file has
no stored digests and no manifest is given.

Examples:
  safeweights verify model.safetensors
  safeweights verify model.safetensors --manifest model.sha256.json
  safeweights verify s3://bucket/model.safetensors --tensor lm_head.weight")]
    Verify(VerifyArgs),

    /// Show or edit the __metadata__ map.
    #[command(after_help = "\
Without --set or --delete, prints the metadata. Edits keep every tensor, its
order and its offsets. When the new header fits in the old header's space
(JSON plus padding), it is written in place with one write of the same
length: the data does not move and the old header stays valid until that
write lands. Otherwise, or with --copy, the file is rewritten through a
temporary file and a rename, which never leaves a partial file.

Examples:
  safeweights metadata model.safetensors
  safeweights metadata model.safetensors --set format=pt --set author=me
  safeweights metadata model.safetensors --delete author --json")]
    Metadata(MetadataArgs),

    /// Split a checkpoint into shards of bounded size.
    #[command(after_help = "\
Writes model-0000K-of-0000N.safetensors files and model.safetensors.index.json
into OUTDIR, or one model.safetensors when everything fits in one shard,
as the library's sharded writer does. Tensors are streamed: memory stays
bounded whatever the checkpoint size.

A checkpoint already in OUTDIR is replaced only with --force, and atomically
as a set: the new shards are written beside the old ones, the index switches
from one set to the other, then the old shards are removed. Every shard and
the index carry one checkpoint id, so a mix of two saves is refused on load.

Sizes: 5GB (powers of 1000), 2GiB (powers of 1024), or bytes.

Examples:
  safeweights shard model.safetensors --max-shard-size 5GB out/
  safeweights shard old-shards/ --max-shard-size 2GiB resharded/
  safeweights shard ckpt/ --max-shard-size 1GB ckpt/ --force")]
    Shard(ShardArgs),

    /// Consolidate a distributed checkpoint into full tensors.
    #[command(after_help = "\
CKPT_DIR is a checkpoint written through safeweights.dcp (torch.distributed.checkpoint
with SafeweightsStorageWriter): per-rank __R_P.safetensors files and
safeweights.dcp.json. OUT_DIR receives the full tensors in a standard Hugging
Face layout, model-0000N-of-0000M.safetensors plus model.safetensors.index.json,
which every safetensors tool and torch's HuggingFaceStorageReader load.
Non-tensor values (step counters, configs) are not part of that layout.

It streams: tensors sharded on their first dimension (FSDP, DTensor Shard(0))
go from the chunks' byte ranges to the output in 16 MiB pieces; others are
assembled one tensor at a time, so memory stays bounded by the largest tensor.
An index already in OUT_DIR is replaced only with --force.

Examples:
  safeweights consolidate ckpt/step-1000 hf-model/
  safeweights consolidate ckpt/step-1000 hf-model/ --max-shard-size 2GB --force")]
    Consolidate(ConsolidateArgs),

    /// Merge a sharded checkpoint into one file.
    #[command(after_help = "\
Output is byte-identical to the library writer's for the same tensors and
metadata (the first shard's). Tensors are streamed with bounded memory.

Examples:
  safeweights merge model.safetensors.index.json model.safetensors
  safeweights merge checkpoint-dir/ merged.safetensors")]
    Merge(MergeArgs),

    /// Write a subset of tensors, optionally renamed, to a new file.
    #[command(after_help = "\
-t and --exclude take globs: '*' matches any run of characters (dots
included), '?' one character, matched against the whole name. A tensor is
kept when it matches any -t (or there is no -t) and no --exclude.

--rename FROM=TO replaces the prefix FROM of a name by TO; several are
tried in order and the first matching one applies.

Examples:
  safeweights filter model.safetensors out.safetensors -t 'model.layers.0.*'
  safeweights filter model.safetensors out.safetensors --exclude '*.bias'
  safeweights filter model.safetensors out.safetensors -t 'model.*' --rename model.=")]
    Filter(FilterArgs),

    /// Print a shell completion script.
    #[command(after_help = "\
Install (each shell reads its completions from its own place):
  bash  safeweights completions bash > ~/.local/share/bash-completion/completions/safeweights
  zsh   safeweights completions zsh > ~/.zfunc/_safeweights
        (with fpath+=(~/.zfunc); autoload -U compinit; compinit in ~/.zshrc)
  fish  safeweights completions fish > ~/.config/fish/completions/safeweights.fish

Examples:
  safeweights completions bash
  source <(safeweights completions bash)   # this shell only")]
    Completions(CompletionsArgs),

    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "\
Examples:
  safeweights man | man -l -
  safeweights man > ~/.local/share/man/man1/safeweights.1
  safeweights man --dir ~/.local/share/man/man1   # also safeweights-inspect.1, ...")]
    Man(ManArgs),

    /// Copy a model file between local disk and object storage, verified.
    #[command(after_help = "\
Examples:
  safeweights cp model.safetensors s3://bucket/models/model.safetensors
  safeweights cp s3://bucket/models/model.safetensors ./model.safetensors
  safeweights cp https://host/model.safetensors s3://bucket/model.safetensors

The source is checked first (a file that is not valid safetensors is
refused, exit 1, and nothing is written). Uploads go by multipart upload:
the object appears only when the upload completes, and a failed upload
leaves nothing. Downloads go to a temporary file renamed into place once
the whole file arrived and its header is valid. After an upload the
destination's length and header are read back and compared with the
source's. An existing destination, file or object, is replaced only with
--force (exit 2 without it, nothing written). s3:// settings come from the
AWS_* environment variables and ~/.aws files (AWS_ENDPOINT_URL for
S3-compatible servers).")]
    Cp(CpArgs),
}

/// Arguments of `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a .safetensors file or a URL (s3://, http://, https://).
    pub source: String,
    /// Destination: a path or an s3:// URL.
    pub destination: String,
    /// Replace an existing destination file or object.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// File, index file, directory or URL.
    pub file: String,
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files, index files or directories.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First checkpoint (file, index, directory or URL).
    pub a: String,
    /// Second checkpoint (file, index, directory or URL).
    pub b: String,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 0.0)]
    pub atol: f64,
    /// Relative tolerance (relative to B's value).
    #[arg(long, default_value_t = 0.0)]
    pub rtol: f64,
    /// Count NaN in both as equal.
    #[arg(long)]
    pub equal_nan: bool,
    /// Only compare tensors matching these globs.
    #[arg(short = 't', long = "tensor", value_name = "PATTERN")]
    pub tensors: Vec<String>,
}

/// Arguments of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// File, index file or directory.
    pub file: PathBuf,
    /// Only tensors matching these globs ('*' any run, '?' one character).
    #[arg(short = 't', long = "tensor", value_name = "PATTERN")]
    pub tensors: Vec<String>,
    /// Exit with code 1 if any value is NaN or infinite.
    #[arg(long)]
    pub check_finite: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments of `dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// File, index file, directory or URL.
    pub file: String,
    /// Tensor name.
    pub tensor: String,
    /// Python-style index, numpy's rules: e.g. "0:2, ::-1", "..., 0", "None, :4", "-1".
    #[arg(long, allow_hyphen_values = true)]
    pub slice: Option<safeweights::slice::SliceSpec>,
    /// Write the raw little-endian bytes to stdout instead of values.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
}

/// Arguments of `checksum`.
#[derive(Debug, Args)]
pub struct ChecksumArgs {
    /// A .safetensors file.
    pub file: PathBuf,
    /// Store the digests in the file's metadata.
    #[arg(long)]
    pub write: bool,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A .safetensors file, or a safeweights.dcp checkpoint directory.
    pub file: PathBuf,
    /// A manifest printed by `checksum` to check against.
    #[arg(long, value_name = "M")]
    pub manifest: Option<PathBuf>,
    /// Check only this tensor (repeatable); of a remote file only its
    /// bytes are fetched.
    #[arg(long = "tensor", value_name = "NAME")]
    pub tensors: Vec<String>,
}

/// Arguments of `metadata`.
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// A .safetensors file.
    pub file: PathBuf,
    /// Set KEY to VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Remove KEY (repeatable).
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    /// Always rewrite through a temporary file, never in place.
    #[arg(long)]
    pub copy: bool,
}

/// Arguments of `shard`.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// File, index file or directory to reshard.
    pub input: PathBuf,
    /// Largest shard, e.g. 5GB, 500MB, 2GiB.
    #[arg(long, value_name = "SIZE")]
    pub max_shard_size: String,
    /// Output directory (created if missing).
    pub outdir: PathBuf,
    /// Replace a checkpoint already in OUTDIR.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `consolidate`.
#[derive(Debug, Args)]
pub struct ConsolidateArgs {
    /// A safeweights.dcp checkpoint directory.
    pub ckpt_dir: PathBuf,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Largest output shard, e.g. 5GB, 500MB, 2GiB.
    #[arg(long, value_name = "SIZE", default_value = "5GB")]
    pub max_shard_size: String,
    /// Replace an index already in OUT_DIR.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Index file or directory.
    pub input: PathBuf,
    /// Output .safetensors file.
    pub output: PathBuf,
}

/// Arguments of `filter`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// File, index file or directory.
    pub input: PathBuf,
    /// Output .safetensors file.
    pub output: PathBuf,
    /// Keep tensors matching these globs (default: all).
    #[arg(short = 't', long = "tensor", value_name = "PATTERN")]
    pub tensors: Vec<String>,
    /// Drop tensors matching these globs.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Replace name prefix FROM with TO (repeatable; first match applies).
    #[arg(long, value_name = "FROM=TO")]
    pub rename: Vec<String>,
}

/// Arguments of `scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files, directories (scanned recursively) and URLs (downloaded
    /// into a temporary file, removed afterwards).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also list safe findings (the globals a checkpoint needs).
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Directories (searched recursively) and files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Checkpoint to convert (.bin .pt .pth .ckpt .npy .npz, a
    /// pytorch_model.bin.index.json), a Hugging Face model directory, or a
    /// torch.distributed.checkpoint directory.
    pub input: PathBuf,
    /// Output file or directory (default: derived from the input; for a
    /// directory input, an output directory).
    pub output: Option<PathBuf>,
    /// Split the output into shards of at most this size (e.g. 5GB, 500MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_shard_size: Option<String>,
    /// Cast floating tensors to bf16, f16 or f32, rounding as torch does.
    #[arg(long, value_name = "DTYPE")]
    pub dtype: Option<String>,
    /// Replace existing output files or objects.
    #[arg(long)]
    pub force: bool,
    /// Skip reading the output back and comparing it with the input.
    #[arg(long)]
    pub no_verify: bool,
    /// Write the tensors by name only: without the checkpoint's structure
    /// (`safeweights.checkpoint`, which lets `safeweights.load` return what
    /// `torch.load` returned) and plain values (`safeweights.values`).
    #[arg(long)]
    pub drop_values: bool,
    /// GGUF input: store the raw quantized blocks (ggml types recorded) so
    /// that converting back gives the same GGUF file byte for byte.
    #[arg(long)]
    pub keep_quantized: bool,
    /// GGUF input: Hugging Face Llama names and layouts, plus config.json.
    #[arg(long)]
    pub hf: bool,
    /// GGUF output: f32, f16 (default), bf16, q8_0, q4_0, q4_1, q5_0 or q5_1.
    #[arg(long, value_name = "TYPE")]
    pub outtype: Option<String>,
    /// GGUF output: llama (Hugging Face to GGUF names, rotary permutation,
    /// hyperparameters from config.json) or none (names as they are).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write safeweights.1 and one safeweights-COMMAND.1 per command into
    /// this directory (created if missing) instead of printing safeweights.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
