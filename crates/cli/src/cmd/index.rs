//! `collapse-probe index build|query`: the reference-corpus n-gram index.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use cp_analysis::{
    build_index, build_index_from_tokens, BuildProgress, BuildSettings, DocSplit, NgramIndex,
    TokenSettings, TokenWidth,
};
use cp_text::{CorpusEncoder, Tokenizer};

use crate::common::GlobalArgs;

/// `collapse-probe index` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize a reference corpus and build its suffix-array n-gram index.
    Build(BuildArgs),
    /// Print the corpus count of every n-gram of a query.
    Query(QueryArgs),
    /// Join index folders built apart (one tokenizer) into one sharded index.
    Merge(MergeArgs),
    /// Check an index folder (every shard, every file) and print what it holds.
    Info(InfoArgs),
}

/// Arguments of `index merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Index folders (one-piece or sharded), in the order their shards are to take.
    #[arg(value_name = "INDEX", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged index folder to write (atomically).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `index info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The index folder.
    #[arg(value_name = "DIR")]
    pub index: PathBuf,
}

/// Arguments of `index build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The model's tokenizer.json (its SHA-256 is recorded in the index).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: PathBuf,
    /// Corpus files: .jsonl (a text field), .parquet (a string column), anything else plain text.
    #[arg(long, value_name = "FILE", num_args = 1.., required_unless_present = "tokens")]
    pub corpus: Vec<PathBuf>,
    /// Pre-tokenized corpus files instead of --corpus: .npy (uint16/uint32, 1-D or a document
    /// per row), .parquet (a list column, `input_ids` unless --text-field says otherwise), or raw
    /// little-endian ids with --token-dtype. Ids are checked against the tokenizer's vocabulary.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "corpus")]
    pub tokens: Vec<PathBuf>,
    /// Width of the ids in raw --tokens files: u16 or u32.
    #[arg(long, value_name = "u16|u32")]
    pub token_dtype: Option<String>,
    /// Cut flat --tokens files into documents at this id (an end-of-text id), so that no n-gram
    /// crosses two documents.
    #[arg(long, value_name = "ID")]
    pub doc_separator: Option<u32>,
    /// Build in shards of at most N tokens (plus one separator per document), written one at a
    /// time so that memory holds one shard; queries sum over them. Default: one piece up to
    /// 2^31 - 1 entries, shards beyond.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub shard_tokens: Option<u64>,
    /// The index folder to write (replaced atomically).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// JSON key / Parquet column holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    pub text_field: String,
    /// How plain-text files are split into documents.
    #[arg(long, value_enum, default_value = "paragraph")]
    pub split: DocSplit,
}

/// Arguments of `index query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The index folder.
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,
    /// Tokenizer for a text query (checked against the index's tokenizer hash).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Token ids instead of text, comma-separated.
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "text"
    )]
    pub ids: Option<Vec<u32>>,
    /// Longest n-gram to count (default: the whole query).
    #[arg(long, value_name = "N")]
    pub max_n: Option<usize>,
    /// The query text (needs --tokenizer).
    pub text: Option<String>,
}

pub fn run(cmd: Command, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = global.threads {
        cp_analysis::set_threads(n);
    }
    match cmd {
        Command::Build(args) => build(args, global),
        Command::Query(args) => query(args),
        Command::Merge(args) => {
            let header = cp_analysis::merge_indexes(&args.inputs, &args.out)?;
            if !global.quiet {
                eprintln!(
                    "merged {} index folders: {} tokens in {} documents, {} shards -> {}",
                    args.inputs.len(),
                    header.token_count,
                    header.doc_count,
                    header.shards.len(),
                    args.out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info(args) => info(args),
    }
}

fn build(args: BuildArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let tokenizer = Tokenizer::from_file(&args.tokenizer).context("loading the tokenizer")?;
    let sha = cp_records::sha256_file(&args.tokenizer)?;
    let settings = BuildSettings {
        text_field: args.text_field.clone(),
        split: args.split,
        vocab_size: tokenizer.vocab_size() as u32,
        tokenizer_sha256: Some(sha),
        tokenizer: Some(args.tokenizer.display().to_string()),
        shard_tokens: args.shard_tokens,
        ..Default::default()
    };
    let bar = global.progress(
        0,
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    );
    bar.set_message(if args.tokens.is_empty() {
        "tokenizing"
    } else {
        "reading"
    });
    let progress = |p: BuildProgress| match p {
        BuildProgress::Tokenizing { bytes, total } => {
            bar.set_length(total);
            bar.set_position(bytes);
        }
        BuildProgress::Sorting { tokens } => bar.set_message(format!("sorting {tokens} suffixes")),
        BuildProgress::Writing => bar.set_message("writing"),
    };
    let header = if args.tokens.is_empty() {
        // Tokenizing reallocates large buffers document after document (see `allocator`).
        crate::allocator::keep_freed_memory(true);
        let encoder = CorpusEncoder::new(&tokenizer);
        build_index(
            &args.corpus,
            &settings,
            |text| encoder.encode(text).map_err(|e| e.to_string()),
            &progress,
            &args.out,
        )?
    } else {
        let width = args
            .token_dtype
            .as_deref()
            .map(str::parse::<TokenWidth>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--token-dtype {e}"))?;
        let tokens = TokenSettings {
            width,
            column: if args.text_field == "text" {
                "input_ids".into()
            } else {
                args.text_field.clone()
            },
            separator: args.doc_separator,
            vocab_size: settings.vocab_size,
        };
        build_index_from_tokens(&args.tokens, &tokens, &settings, &progress, &args.out)?
    };
    bar.finish_and_clear();
    if !global.quiet {
        eprintln!(
            "indexed {} tokens in {} documents into {} ({:.2} bytes/token, {:.1} s)",
            header.token_count,
            header.doc_count,
            args.out.display(),
            header.bytes_per_token(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    // Opening checks every file of every shard against its index.json.
    let index = NgramIndex::open(&args.index, None)?;
    let h = index.header();
    let mut out = std::io::stdout().lock();
    writeln!(out, "index\t{}", args.index.display())?;
    writeln!(out, "tokens\t{}", h.token_count)?;
    writeln!(out, "documents\t{}", h.doc_count)?;
    writeln!(out, "vocab_size\t{}", h.vocab_size)?;
    writeln!(
        out,
        "tokenizer\t{} ({})",
        h.tokenizer.as_deref().unwrap_or("-"),
        h.tokenizer_sha256.as_deref().unwrap_or("no hash")
    )?;
    writeln!(out, "documents from\t{}", h.doc_split)?;
    writeln!(out, "sources\t{}", h.sources.join(", "))?;
    if h.shards.is_empty() {
        writeln!(out, "shards\tnone (one piece)")?;
    } else {
        writeln!(out, "shards\t{}", h.shards.len())?;
        writeln!(out, "shard\ttokens\tdocuments")?;
        for s in &h.shards {
            let sh: cp_analysis::IndexHeader =
                cp_records::read_json(&args.index.join(s).join("index.json"))?;
            writeln!(out, "{s}\t{}\t{}", sh.token_count, sh.doc_count)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let tokenizer = args
        .tokenizer
        .as_deref()
        .map(Tokenizer::from_file)
        .transpose()
        .context("loading the tokenizer")?;
    let sha = args
        .tokenizer
        .as_deref()
        .map(cp_records::sha256_file)
        .transpose()?;
    let index = NgramIndex::open(&args.index, sha.as_deref())?;
    let ids = match (&args.ids, &args.text, &tokenizer) {
        (Some(ids), _, _) => ids.clone(),
        (None, Some(text), Some(tok)) => tok.encode(text)?,
        (None, Some(_), None) => bail!("a text query needs --tokenizer (or pass --ids)"),
        (None, None, _) => bail!("give a query text or --ids"),
    };
    let show = |ids: &[u32]| match &tokenizer {
        Some(t) => format!(
            "{:?}",
            ids.iter().map(|&i| t.token_text(i)).collect::<String>()
        ),
        None => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
    };
    let max_n = args.max_n.unwrap_or(ids.len()).max(1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "n\tstart\tngram\tcount")?;
    for n in 1..=max_n.min(ids.len()) {
        for start in 0..=ids.len() - n {
            let g = &ids[start..start + n];
            writeln!(out, "{n}\t{start}\t{}\t{}", show(g), index.count(g))?;
        }
    }
    writeln!(out)?;
    writeln!(out, "id\ttoken\tunigram_count")?;
    for &id in &ids {
        writeln!(out, "{id}\t{}\t{}", show(&[id]), index.unigram().count(id))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "corpus: {} tokens, {} documents",
        index.header().token_count,
        index.header().doc_count
    )?;
    Ok(ExitCode::SUCCESS)
}
