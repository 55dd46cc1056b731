//! Reading reference corpora and building an index folder from them.
//!
//! Corpus files are recognised by extension:
//! - `.jsonl`: one JSON object per line, the document is its text field (`text` by default);
//! - `.parquet`: the document is each value of a string column (`text` by default);
//! - anything else is plain UTF-8 text, split into documents by [`DocSplit`].
//!
//! Documents are tokenized in parallel batches (rayon) with a caller-supplied tokenizer, so
//! this crate never depends on a particular tokenizer library.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rayon::prelude::*;

pub use cp_records::DocSplit;

use crate::error::{AnalysisError, Result};
use std::collections::BTreeMap;

use crate::index::{index_files, IndexBuilder, IndexHeader, INDEX_FORMAT_VERSION, SHARD_LIMIT};
use crate::tokens::{read_token_documents, TokenSettings};

/// How to build an index.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// The JSON key or Parquet column holding the text.
    pub text_field: String,
    /// How plain-text files are cut into documents.
    pub split: DocSplit,
    /// The tokenizer's vocabulary size (the unigram table is padded to it).
    pub vocab_size: u32,
    /// SHA-256 of `tokenizer.json`, recorded in the header.
    pub tokenizer_sha256: Option<String>,
    /// The tokenizer path as given, recorded in the header.
    pub tokenizer: Option<String>,
    /// Approximate bytes of text tokenized per parallel batch.
    pub batch_bytes: usize,
    /// Most text entries (tokens plus a separator per document) per shard; `None`: the limit
    /// of one piece ([`SHARD_LIMIT`]). A corpus that fits one shard is written in one piece.
    pub shard_tokens: Option<u64>,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings {
            text_field: "text".into(),
            split: DocSplit::Paragraph,
            vocab_size: 0,
            tokenizer_sha256: None,
            tokenizer: None,
            batch_bytes: 8 << 20,
            shard_tokens: None,
        }
    }
}

/// Progress of [`build_index`], reported to the caller's callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BuildProgress {
    /// Bytes of corpus files read and tokenized so far, out of their total size.
    Tokenizing { bytes: u64, total: u64 },
    /// Tokenization finished; sorting the suffixes of this many tokens.
    Sorting { tokens: u64 },
    /// Writing the index files.
    Writing,
}

/// Calls `sink` with batches of documents (about `batch_bytes` of text each) and the number of
/// file bytes they came from.
pub fn read_documents(
    path: &Path,
    settings: &BuildSettings,
    mut sink: impl FnMut(Vec<String>, u64) -> Result<()>,
) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<String>, bytes: &mut usize, force: bool| -> Result<()> {
        if (force && !batch.is_empty()) || *bytes >= settings.batch_bytes {
            sink(std::mem::take(batch), *bytes as u64)?;
            *bytes = 0;
        }
        Ok(())
    };
    match ext {
        "parquet" => {
            let file = File::open(path).map_err(|e| AnalysisError::io(path, e))?;
            let size = file
                .metadata()
                .map_err(|e| AnalysisError::io(path, e))?
                .len();
            use polars_io::prelude::*;
            let df = ParquetReader::new(file)
                .with_columns(Some(vec![settings.text_field.clone()]))
                .finish()
                .map_err(|e| AnalysisError::Corpus {
                    path: path.to_owned(),
                    line: None,
                    message: e.to_string(),
                })?;
            let col = df
                .column(&settings.text_field)
                .map_err(|_| AnalysisError::Corpus {
                    path: path.to_owned(),
                    line: None,
                    message: format!("no column `{}`", settings.text_field),
                })?;
            let strings = col.str().map_err(|_| AnalysisError::Corpus {
                path: path.to_owned(),
                line: None,
                message: format!(
                    "column `{}` is {}, not a string column",
                    settings.text_field,
                    col.dtype()
                ),
            })?;
            let per_doc = size / strings.len().max(1) as u64;
            for s in strings.iter().flatten() {
                batch_bytes += s.len().max(per_doc as usize);
                batch.push(s.to_owned());
                flush(&mut batch, &mut batch_bytes, false)?;
            }
        }
        "jsonl" => {
            let reader = BufReader::new(File::open(path).map_err(|e| AnalysisError::io(path, e))?);
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| AnalysisError::io(path, e))?;
                batch_bytes += line.len() + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let err = |message: String| AnalysisError::Corpus {
                    path: path.to_owned(),
                    line: Some(i + 1),
                    message,
                };
                let value: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| err(e.to_string()))?;
                match value.get(&settings.text_field) {
                    Some(serde_json::Value::String(s)) => batch.push(s.clone()),
                    Some(other) => {
                        return Err(err(format!(
                            "field `{}` is not a string: {other}",
                            settings.text_field
                        )))
                    }
                    None => return Err(err(format!("no field `{}`", settings.text_field))),
                }
                flush(&mut batch, &mut batch_bytes, false)?;
            }
        }
        _ => {
            let mut reader =
                BufReader::new(File::open(path).map_err(|e| AnalysisError::io(path, e))?);
            let mut doc = String::new();
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| AnalysisError::io(path, e))?;
                batch_bytes += n;
                let blank = line.trim().is_empty();
                let end_doc = match settings.split {
                    DocSplit::Line => {
                        if !blank {
                            doc.push_str(line.trim_end_matches(['\n', '\r']));
                        }
                        true
                    }
                    DocSplit::Paragraph => {
                        if !blank {
                            doc.push_str(&line);
                        }
                        blank
                    }
                    DocSplit::File => {
                        doc.push_str(&line);
                        false
                    }
                };
                if (end_doc || n == 0) && !doc.is_empty() {
                    let mut d = std::mem::take(&mut doc);
                    if settings.split == DocSplit::Paragraph {
                        // The newline that ends the paragraph belongs to the separator, not to it.
                        let trimmed = d.trim_end_matches(['\n', '\r']).len();
                        d.truncate(trimmed);
                    }
                    batch.push(d);
                    flush(&mut batch, &mut batch_bytes, false)?;
                }
                if n == 0 {
                    break;
                }
            }
        }
    }
    flush(&mut batch, &mut batch_bytes, true)
}

/// Reads, tokenizes and indexes `corpus`, writing the index folder `out` atomically
/// (nothing is left behind on error). `tokenize` maps a document to token ids.
pub fn build_index<F>(
    corpus: &[PathBuf],
    settings: &BuildSettings,
    tokenize: F,
    progress: &(dyn Fn(BuildProgress) + Sync),
    out: &Path,
) -> Result<IndexHeader>
where
    F: Fn(&str) -> std::result::Result<Vec<u32>, String> + Sync,
{
    let mut total = 0u64;
    for p in corpus {
        total += std::fs::metadata(p)
            .map_err(|e| AnalysisError::io(p, e))?
            .len();
    }
    let mut builder = ShardedWriter::new(out, settings)?;
    let mut done = 0u64;
    progress(BuildProgress::Tokenizing { bytes: 0, total });
    for path in corpus {
        let mut docs_seen = 0usize;
        read_documents(path, settings, |docs, bytes| {
            let ids: Vec<std::result::Result<Vec<u32>, String>> =
                docs.par_iter().map(|d| tokenize(d)).collect();
            for (k, r) in ids.into_iter().enumerate() {
                let ids = r.map_err(|message| AnalysisError::Tokenize {
                    path: path.clone(),
                    doc: docs_seen + k,
                    message,
                })?;
                builder.push_document(&ids, path)?;
            }
            docs_seen += docs.len();
            done += bytes;
            progress(BuildProgress::Tokenizing {
                bytes: done.min(total),
                total,
            });
            Ok(())
        })?;
    }
    builder.finish(corpus, settings.split.name(), progress)
}

/// Indexes pre-tokenized files (see [`crate::tokens`]) with no tokenizer run, writing the
/// index folder `out` atomically. `settings` gives the tokenizer's hash and vocabulary.
pub fn build_index_from_tokens(
    files: &[PathBuf],
    tokens: &TokenSettings,
    settings: &BuildSettings,
    progress: &(dyn Fn(BuildProgress) + Sync),
    out: &Path,
) -> Result<IndexHeader> {
    let mut total = 0u64;
    for p in files {
        total += std::fs::metadata(p)
            .map_err(|e| AnalysisError::io(p, e))?
            .len();
    }
    let mut builder = ShardedWriter::new(out, settings)?;
    let mut done = 0u64;
    progress(BuildProgress::Tokenizing { bytes: 0, total });
    for path in files {
        read_token_documents(path, tokens, |docs| {
            builder.reserve(docs.entries());
            docs.iter()
                .try_for_each(|doc| builder.push_document(doc, path))
        })?;
        done += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        progress(BuildProgress::Tokenizing {
            bytes: done.min(total),
            total,
        });
    }
    let split = match tokens.separator {
        Some(id) => format!("tokens, documents cut at id {id}"),
        None => "tokens, a document per file (per row for 2-D .npy and Parquet)".into(),
    };
    builder.finish(files, &split, progress)
}

/// Documents in, an index folder out: one piece while the corpus fits a shard, else shard
/// folders of at most `shard_tokens` entries each, written as they fill, with the summed
/// unigram table and counts at the top. Everything goes to a staging folder, renamed into
/// place by [`ShardedWriter::finish`].
///
/// A full shard is sorted and written on a thread of its own while the next one is read,
/// as many at a time as [`background_shards`] allows (none when memory holds only the shard
/// being filled). Shards are named and summed in corpus order whichever finishes first, so
/// the files are the same either way.
struct ShardedWriter<'a> {
    /// Declared before `staged`, so dropped (and waited for) before the staging folder is.
    sorting: BackgroundShards,
    settings: &'a BuildSettings,
    staged: cp_records::OutputDir,
    limit: u64,
    current: IndexBuilder,
    /// Finished shards: folder name, token and document counts.
    shards: Vec<(String, u64, u64)>,
    counts: Vec<u64>,
    /// How many shards may be in `sorting` at once.
    background: usize,
}

/// A shard folder written: its name, header and unigram counts.
struct WrittenShard {
    name: String,
    header: IndexHeader,
    counts: Vec<u64>,
}

/// A shard's peak memory per entry while it is sorted and merged, rounded up from the 13–14
/// bytes measured (docs/scale.md).
const SHARD_BYTES_PER_ENTRY: u64 = 16;

/// How many full shards of `limit` entries may be sorted in the background while the next is
/// filled: as many as half of `available` bytes holds beside the shard being filled, and no more
/// than one per two of rayon's `threads` (shards sorting side by side share those threads; each
/// sort already keeps two busy). Unknown memory: none.
fn background_shards(limit: u64, threads: usize, available: Option<u64>) -> usize {
    let Some(available) = available else {
        return 0;
    };
    let shard = limit.saturating_mul(SHARD_BYTES_PER_ENTRY).max(1);
    let by_memory = (available / 2 / shard).saturating_sub(1);
    by_memory.min((threads / 2).max(1) as u64) as usize
}

impl<'a> ShardedWriter<'a> {
    fn new(out: &Path, settings: &'a BuildSettings) -> Result<Self> {
        let limit = settings
            .shard_tokens
            .unwrap_or(SHARD_LIMIT)
            .clamp(2, SHARD_LIMIT);
        Ok(ShardedWriter {
            settings,
            staged: cp_records::OutputDir::create(out)?,
            limit,
            current: IndexBuilder::new(),
            shards: Vec::new(),
            counts: Vec::new(),
            sorting: BackgroundShards::default(),
            background: background_shards(
                limit,
                rayon::current_num_threads(),
                crate::memory::available_bytes(),
            ),
        })
    }

    /// Makes room in the current shard for `entries` more (as many as it can take).
    fn reserve(&mut self, entries: u64) {
        let room = self.limit.saturating_sub(self.current.entries());
        self.current.reserve(entries.min(room));
    }

    fn push_document(&mut self, ids: &[u32], source: &Path) -> Result<()> {
        // A document never straddles two shards, so no n-gram is lost at a cut.
        if !ids.is_empty()
            && self.current.entries() > 0
            && self.current.entries() + ids.len() as u64 + 1 > self.limit
        {
            self.flush_shard(&|_| {})?;
        }
        self.current.push_document(ids, source)
    }

    fn flush_shard(&mut self, progress: &(dyn Fn(BuildProgress) + Sync)) -> Result<()> {
        let name = format!("shard-{:05}", self.shards.len() + self.sorting.0.len());
        let dir = self.staged.path().join(&name);
        std::fs::create_dir(&dir).map_err(|e| AnalysisError::io(&dir, e))?;
        let builder = std::mem::take(&mut self.current);
        if self.background == 0 {
            let shard = write_shard(builder, self.settings, name, &dir, progress)?;
            self.add_shard(shard);
            return Ok(());
        }
        while self.sorting.0.len() >= self.background {
            self.wait_for_oldest()?;
        }
        let settings = self.settings.clone();
        self.sorting.0.push_back(std::thread::spawn(move || {
            write_shard(builder, &settings, name, &dir, &|_| {})
        }));
        Ok(())
    }

    /// Waits for the oldest background shard and adds it to the finished ones.
    fn wait_for_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.sorting.0.pop_front() {
            let shard = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            self.add_shard(shard);
        }
        Ok(())
    }

    fn add_shard(&mut self, shard: WrittenShard) {
        for (t, c) in shard.counts.iter().enumerate() {
            if t >= self.counts.len() {
                self.counts.resize(t + 1, 0);
            }
            self.counts[t] += c;
        }
        self.shards
            .push((shard.name, shard.header.token_count, shard.header.doc_count));
    }

    fn finish(
        mut self,
        sources: &[PathBuf],
        doc_split: &str,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<IndexHeader> {
        if self.shards.is_empty() && self.sorting.0.is_empty() {
            let builder = std::mem::take(&mut self.current);
            let (header, _) = write_piece(
                builder,
                self.settings,
                sources,
                doc_split,
                self.staged.path(),
                progress,
            )?;
            self.staged.commit()?;
            return Ok(header);
        }
        if self.current.entries() > 0 {
            self.flush_shard(progress)?;
        }
        while !self.sorting.0.is_empty() {
            self.wait_for_oldest()?;
        }
        progress(BuildProgress::Writing);
        if self.counts.len() < self.settings.vocab_size as usize {
            self.counts.resize(self.settings.vocab_size as usize, 0);
        }
        let header = write_shard_set(
            self.staged.path(),
            &self.shards,
            &self.counts,
            (
                self.settings.tokenizer_sha256.clone(),
                self.settings.tokenizer.clone(),
            ),
            sources.iter().map(|p| p.display().to_string()).collect(),
            doc_split,
        )?;
        self.staged.commit()?;
        Ok(header)
    }
}

/// Writes the top of a sharded index folder `dir` whose shard folders are in place: the
/// summed unigram table `counts` and `index.json` listing `shards` (name, tokens, documents).
pub(crate) fn write_shard_set(
    dir: &Path,
    shards: &[(String, u64, u64)],
    counts: &[u64],
    (tokenizer_sha256, tokenizer): (Option<String>, Option<String>),
    sources: Vec<String>,
    doc_split: &str,
) -> Result<IndexHeader> {
    let unigram = dir.join(index_files::UNIGRAM);
    let mut file_bytes = BTreeMap::new();
    file_bytes.insert(
        index_files::UNIGRAM.to_owned(),
        crate::store::write_words(&unigram, crate::store::UNIGRAM_MAGIC, counts)?,
    );
    let header = IndexHeader {
        format_version: INDEX_FORMAT_VERSION,
        tokenizer_sha256,
        tokenizer,
        vocab_size: counts.len() as u32,
        token_count: shards.iter().map(|s| s.1).sum(),
        doc_count: shards.iter().map(|s| s.2).sum(),
        file_bytes,
        sources,
        doc_split: doc_split.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        shards: shards.iter().map(|s| s.0.clone()).collect(),
    };
    cp_records::write_json(&dir.join(index_files::HEADER), &header)?;
    Ok(header)
}

/// Sorts one piece's suffixes and writes its files and `index.json` into the existing `dir`;
/// returns the header and the unigram counts (which a sharded index sums).
fn write_piece(
    builder: IndexBuilder,
    settings: &BuildSettings,
    sources: &[PathBuf],
    doc_split: &str,
    dir: &Path,
    progress: &(dyn Fn(BuildProgress) + Sync),
) -> Result<(IndexHeader, Vec<u64>)> {
    progress(BuildProgress::Sorting {
        tokens: builder.token_count(),
    });
    let built = builder.finish(settings.vocab_size);
    progress(BuildProgress::Writing);
    let file_bytes = built.write_files(dir)?;
    let header = IndexHeader {
        format_version: INDEX_FORMAT_VERSION,
        tokenizer_sha256: settings.tokenizer_sha256.clone(),
        tokenizer: settings.tokenizer.clone(),
        vocab_size: built.unigram().len() as u32,
        token_count: built.token_count(),
        doc_count: built.doc_count(),
        file_bytes,
        sources: sources.iter().map(|p| p.display().to_string()).collect(),
        doc_split: doc_split.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        shards: Vec::new(),
    };
    cp_records::write_json(&dir.join(index_files::HEADER), &header)?;
    Ok((header, built.unigram().counts().to_vec()))
}

/// Sorts and writes one shard into `dir` (see [`write_piece`]).
fn write_shard(
    builder: IndexBuilder,
    settings: &BuildSettings,
    name: String,
    dir: &Path,
    progress: &(dyn Fn(BuildProgress) + Sync),
) -> Result<WrittenShard> {
    let (header, counts) = write_piece(builder, settings, &[], "", dir, progress)?;
    Ok(WrittenShard {
        name,
        header,
        counts,
    })
}

/// Shards being sorted and written on threads of their own, oldest first.
#[derive(Default)]
struct BackgroundShards(VecDeque<JoinHandle<Result<WrittenShard>>>);

impl Drop for BackgroundShards {
    /// A build that fails waits for its background shards, so that none writes into the
    /// staging folder after it is removed.
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_of(text: &str, split: DocSplit) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.txt");
        std::fs::write(&p, text).unwrap();
        let mut out = Vec::new();
        let settings = BuildSettings {
            split,
            batch_bytes: 4,
            ..Default::default()
        };
        read_documents(&p, &settings, |d, _| {
            out.extend(d);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn background_shards_are_bounded_by_memory_and_threads() {
        let gb = 1u64 << 30;
        // 20 M-entry shards peak at 320 MB: half of 24 GB holds 37 of them beside the one
        // being filled, but two threads allow one.
        assert_eq!(background_shards(20_000_000, 2, Some(24 * gb)), 1);
        assert_eq!(background_shards(20_000_000, 64, Some(24 * gb)), 32);
        assert_eq!(background_shards(20_000_000, 64, Some(4 * gb)), 5);
        // Shards of 2^31 entries need 32 GB each: one at a time below 128 GB.
        assert_eq!(background_shards(SHARD_LIMIT, 64, Some(100 * gb)), 0);
        assert_eq!(background_shards(SHARD_LIMIT, 64, Some(200 * gb)), 2);
        assert_eq!(background_shards(1000, 8, None), 0);
    }

    /// The same shard folders, byte for byte, whether shards are sorted in the background
    /// (several at a time) or one after the other.
    #[test]
    fn shards_sorted_in_the_background_write_the_same_files() {
        let settings = BuildSettings {
            shard_tokens: Some(300),
            vocab_size: 50,
            ..Default::default()
        };
        let mut state = 7u64;
        let docs: Vec<Vec<u32>> = (0..200)
            .map(|_| {
                (0..1 + state % 23)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 33) as u32 % 50
                    })
                    .collect()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let build = |name: &str, background: usize| {
            let out = dir.path().join(name);
            let mut writer = ShardedWriter::new(&out, &settings).unwrap();
            writer.background = background;
            for d in &docs {
                writer.push_document(d, Path::new("docs")).unwrap();
            }
            writer.finish(&[], "test", &|_| {}).unwrap();
            out
        };
        let one_by_one = build("one-by-one", 0);
        let background = build("background", 3);
        let files = |root: &Path| {
            let mut found = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        found.push((
                            p.strip_prefix(root).unwrap().to_path_buf(),
                            std::fs::read(&p).unwrap(),
                        ));
                    }
                }
            }
            found.sort();
            found
        };
        let (a, b) = (files(&one_by_one), files(&background));
        assert!(a.iter().filter(|(p, _)| p.ends_with("suffix.bin")).count() >= 5);
        assert_eq!(a.len(), b.len());
        for ((pa, da), (pb, db)) in a.iter().zip(&b) {
            assert_eq!(pa, pb);
            assert!(da == db, "{} differs", pa.display());
        }
    }

    #[test]
    fn plain_text_splits() {
        let text = "a b\nc\n\n\nd e\n";
        assert_eq!(docs_of(text, DocSplit::Paragraph), vec!["a b\nc", "d e"]);
        assert_eq!(docs_of(text, DocSplit::Line), vec!["a b", "c", "d e"]);
        assert_eq!(docs_of(text, DocSplit::File), vec![text]);
        assert_eq!(docs_of("x", DocSplit::Paragraph), vec!["x"]);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"text\":\"a\"}\n{\"body\":\"b\"}\n").unwrap();
        let err = read_documents(&p, &BuildSettings::default(), |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.jsonl:2") && err.contains("no field `text`"),
            "{err}"
        );
    }
}
