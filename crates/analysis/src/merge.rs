//! `index merge`: index folders built apart (on several machines, or from parts of a corpus)
//! joined into one sharded index, whose queries answer as one index of all their documents.

use std::path::{Path, PathBuf};

use crate::corpus::write_shard_set;
use crate::error::{AnalysisError, Result};
use crate::index::{index_files, IndexHeader, NgramIndex};
use crate::unigram::Unigram;

/// The one-piece index folders an index folder stands for: itself, or its shards.
fn pieces(dir: &Path) -> Result<Vec<(PathBuf, IndexHeader)>> {
    let header: IndexHeader = cp_records::read_json(&dir.join(index_files::HEADER))?;
    if header.shards.is_empty() {
        return Ok(vec![(dir.to_owned(), header)]);
    }
    header
        .shards
        .iter()
        .map(|s| {
            let d = dir.join(s);
            let h: IndexHeader = cp_records::read_json(&d.join(index_files::HEADER))?;
            Ok((d, h))
        })
        .collect()
}

/// Copies a one-piece index folder's files into `to` (hard links where the file system
/// allows, so merging large shards costs no space).
fn copy_piece(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).map_err(|e| AnalysisError::io(to, e))?;
    for name in [
        index_files::HEADER,
        index_files::TOKENS,
        index_files::SUFFIX,
        index_files::UNIGRAM,
    ] {
        let (a, b) = (from.join(name), to.join(name));
        if std::fs::hard_link(&a, &b).is_err() {
            std::fs::copy(&a, &b).map_err(|e| AnalysisError::io(&a, e))?;
        }
    }
    Ok(())
}

/// Merges `inputs` (one-piece or sharded index folders, all built with the same tokenizer)
/// into the sharded index folder `out`, written atomically and opened once to check it.
pub fn merge_indexes(inputs: &[PathBuf], out: &Path) -> Result<IndexHeader> {
    let mut all = Vec::new();
    let mut sources = Vec::new();
    for dir in inputs {
        // Opening checks every file of every piece before anything is written.
        let index = NgramIndex::open(dir, None)?;
        sources.extend(index.header().sources.iter().cloned());
        all.extend(pieces(dir)?);
    }
    let Some((first_dir, first)) = all.first() else {
        return Err(AnalysisError::Setting {
            name: "inputs",
            message: "give at least one index folder".into(),
        });
    };
    if let Some((dir, h)) = all
        .iter()
        .find(|(_, h)| h.tokenizer_sha256 != first.tokenizer_sha256)
    {
        return Err(AnalysisError::corrupt(
            dir.join(index_files::HEADER),
            format!(
                "built with tokenizer {:?}, but {} with {:?}: only indexes of one tokenizer merge",
                h.tokenizer_sha256,
                first_dir.display(),
                first.tokenizer_sha256
            ),
        ));
    }
    let staged = cp_records::OutputDir::create(out)?;
    let mut shards = Vec::with_capacity(all.len());
    let mut counts: Vec<u64> = Vec::new();
    for (k, (dir, h)) in all.iter().enumerate() {
        let name = format!("shard-{k:05}");
        copy_piece(dir, &staged.path().join(&name))?;
        let unigram = Unigram::load(dir)?;
        if counts.len() < unigram.len() {
            counts.resize(unigram.len(), 0);
        }
        for (t, c) in unigram.counts().iter().enumerate() {
            counts[t] += c;
        }
        shards.push((name, h.token_count, h.doc_count));
    }
    let header = write_shard_set(
        staged.path(),
        &shards,
        &counts,
        (first.tokenizer_sha256.clone(), first.tokenizer.clone()),
        sources,
        &format!("merged from {} index folders", inputs.len()),
    )?;
    NgramIndex::open(staged.path(), None)?;
    staged.commit()?;
    Ok(header)
}
