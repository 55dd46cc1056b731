//! Pre-tokenized corpora: token ids read straight into documents, with no tokenizer run.
//!
//! Recognised by extension:
//! - `.npy`: a NumPy array of little-endian `u16` or `u32` (`<u2`, `<u4`), one-dimensional
//!   (the whole file, cut at the document separator if one is given) or two-dimensional
//!   (each row a document);
//! - `.parquet`: a list-of-integers column (`input_ids` by default), each row a document;
//! - anything else: raw little-endian ids of a declared width (`u16` or `u32`), like `.npy`'s
//!   one-dimensional form.
//!
//! Corpora tokenized elsewhere are often stored flat with an end-of-text id between documents;
//! `separator` cuts there (the separator itself belongs to no document), so that no n-gram
//! crosses a document boundary, as with text corpora.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use polars::prelude::*;
use polars_io::prelude::*;
use rayon::prelude::*;

use crate::error::{AnalysisError, Result};

/// The width of the ids of a raw token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

impl std::str::FromStr for TokenWidth {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "u16" | "uint16" => Ok(TokenWidth::U16),
            "u32" | "uint32" => Ok(TokenWidth::U32),
            _ => Err(format!("`{s}`: expected u16 or u32")),
        }
    }
}

/// How to read pre-tokenized files.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Width of raw (`.bin`, extensionless) files; `.npy` files say their own.
    pub width: Option<TokenWidth>,
    /// The Parquet column of lists of ids.
    pub column: String,
    /// Cut flat files into documents at this id.
    pub separator: Option<u32>,
    /// Ids must be below this (the tokenizer's vocabulary).
    pub vocab_size: u32,
}

/// A token file that cannot be read as one: named with what is wrong (not as a corrupt index,
/// which it is not).
fn bad(path: &Path, message: impl Into<String>) -> AnalysisError {
    AnalysisError::Corpus {
        path: path.to_owned(),
        line: None,
        message: message.into(),
    }
}

/// The documents of one pre-tokenized file: its ids, and where each document lies among them
/// (flat files keep their separators between the documents, unread).
#[derive(Debug, Default)]
pub struct TokenDocuments {
    ids: Vec<u32>,
    spans: Vec<Range<usize>>,
}

impl TokenDocuments {
    /// The documents in file order.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        self.spans.iter().map(|r| &self.ids[r.clone()])
    }

    /// Text entries the documents take in an index: their ids, and a separator each.
    pub fn entries(&self) -> u64 {
        self.spans.iter().map(|r| r.len() as u64 + 1).sum()
    }

    /// A flat run of ids, cut at `separator` (empty documents dropped) or whole.
    fn flat(ids: Vec<u32>, separator: Option<u32>) -> Self {
        let spans = match separator {
            None => std::iter::once(0..ids.len()).collect(),
            Some(sep) => {
                let mut spans = Vec::new();
                let mut start = 0;
                for (i, _) in ids.iter().enumerate().filter(|(_, &t)| t == sep) {
                    spans.push(start..i);
                    start = i + 1;
                }
                spans.push(start..ids.len());
                spans.retain(|r| !r.is_empty());
                spans
            }
        };
        TokenDocuments { ids, spans }
    }

    /// `rows` documents of `cols` ids each.
    fn rows(ids: Vec<u32>, rows: usize, cols: usize) -> Self {
        let spans = (0..rows).map(|r| r * cols..(r + 1) * cols).collect();
        TokenDocuments { ids, spans }
    }

    /// The first document id outside `0..vocab_size`: (document, position, id).
    fn first_outside(&self, vocab_size: u32) -> Option<(usize, usize, u32)> {
        // In parallel over the documents, which are in file order: the first hit is the
        // first outside id in the file.
        let d = self
            .spans
            .par_iter()
            .position_first(|r| self.ids[r.clone()].iter().any(|&t| t >= vocab_size))?;
        let doc = &self.ids[self.spans[d].clone()];
        let i = doc.iter().position(|&t| t >= vocab_size)?;
        Some((d, i, doc[i]))
    }
}

/// Ids per block when a flat file is read a block at a time (64 MiB of `u32`).
const BLOCK_IDS: usize = 1 << 24;

/// Reads the documents of one pre-tokenized file, checked against the vocabulary, and hands
/// them to `each` in file order, a block of whole documents at a time. Flat files cut at a
/// separator (raw ids, one-dimensional `.npy`) are read a block at a time, so memory holds a
/// block and the document running on past it, not the file; other files are one block.
pub fn read_token_documents(
    path: &Path,
    settings: &TokenSettings,
    each: impl FnMut(&TokenDocuments) -> Result<()>,
) -> Result<()> {
    read_in_blocks(path, settings, BLOCK_IDS, each)
}

fn read_in_blocks(
    path: &Path,
    settings: &TokenSettings,
    block_ids: usize,
    mut each: impl FnMut(&TokenDocuments) -> Result<()>,
) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Documents in earlier blocks, to name a bad id's document in the whole file.
    let mut before = 0;
    let mut checked = |docs: &TokenDocuments| -> Result<()> {
        if let Some((d, i, id)) = docs.first_outside(settings.vocab_size) {
            return Err(bad(
                path,
                format!(
                    "document {}, token {i}: id {id} is outside the tokenizer's vocabulary of {}",
                    before + d,
                    settings.vocab_size
                ),
            ));
        }
        before += docs.spans.len();
        each(docs)
    };
    if ext == "parquet" {
        return checked(&read_parquet_ids(path, &settings.column)?);
    }
    let mut file = File::open(path).map_err(|e| AnalysisError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| AnalysisError::io(path, e))?
        .len();
    let (width, data_len) = if ext == "npy" {
        let (width, shape, data_len) = read_npy_header(path, &mut file, file_len)?;
        match shape.as_slice() {
            [_] => (width, data_len),
            [rows, cols] => {
                let ids = read_ids(path, &mut file, data_len, width)?;
                return checked(&TokenDocuments::rows(ids, *rows, *cols));
            }
            _ => {
                return Err(bad(
                    path,
                    format!("shape {shape:?}: expected 1 or 2 dimensions"),
                ))
            }
        }
    } else {
        let width = settings.width.ok_or_else(|| {
            bad(
                path,
                "a raw token file needs its id width (--token-dtype u16 or u32); .npy files carry theirs",
            )
        })?;
        (width, file_len)
    };
    if !data_len.is_multiple_of(width.bytes() as u64) {
        return Err(bad(
            path,
            format!(
                "{data_len} bytes of data is not a whole number of {}-byte ids (wrong --token-dtype, or a truncated file?)",
                width.bytes()
            ),
        ));
    }
    let Some(separator) = settings.separator else {
        // One document, the whole file.
        let ids = read_ids(path, &mut file, data_len, width)?;
        return checked(&TokenDocuments::flat(ids, None));
    };
    let block_bytes = (block_ids * width.bytes()) as u64;
    let mut left = data_len;
    let mut run_on: Vec<u32> = Vec::new();
    while left > 0 {
        let bytes = block_bytes.min(left);
        left -= bytes;
        let block = read_ids(path, &mut file, bytes, width)?;
        let mut ids = if run_on.is_empty() {
            block
        } else {
            run_on.extend(block);
            std::mem::take(&mut run_on)
        };
        // The block's documents end at its last separator; the rest runs on into the next.
        if left > 0 {
            let end = ids
                .iter()
                .rposition(|&t| t == separator)
                .map_or(0, |i| i + 1);
            run_on = ids.split_off(end);
        }
        checked(&TokenDocuments::flat(ids, Some(separator)))?;
    }
    Ok(())
}

/// Reads `bytes` bytes of ids from `file` and decodes them.
fn read_ids(path: &Path, file: &mut File, bytes: u64, width: TokenWidth) -> Result<Vec<u32>> {
    let mut data = Vec::with_capacity(bytes as usize);
    let read = file
        .take(bytes)
        .read_to_end(&mut data)
        .map_err(|e| AnalysisError::io(path, e))?;
    if read as u64 != bytes {
        return Err(bad(path, "the file ended early (truncated?)"));
    }
    decode_ids(path, &data, width)
}

fn decode_ids(path: &Path, data: &[u8], width: TokenWidth) -> Result<Vec<u32>> {
    if !data.len().is_multiple_of(width.bytes()) {
        return Err(bad(
            path,
            format!(
                "{} bytes of data is not a whole number of {}-byte ids (wrong --token-dtype, or a truncated file?)",
                data.len(),
                width.bytes()
            ),
        ));
    }
    // In parallel: on one core, decoding a block of ids took a tenth of an index build.
    Ok(match width {
        TokenWidth::U16 => data
            .par_chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        TokenWidth::U32 => data
            .par_chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

/// Reads a `.npy` file's header (format versions 1 to 3, C order), leaving `file` at the start
/// of its data: the id width, the shape, and the data's length in bytes.
fn read_npy_header(
    path: &Path,
    file: &mut File,
    file_len: u64,
) -> Result<(TokenWidth, Vec<usize>, u64)> {
    let io = |e| AnalysisError::io(path, e);
    let mut head = vec![0u8; file_len.min(12) as usize];
    file.read_exact(&mut head).map_err(io)?;
    if head.len() < 10 || &head[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        2 | 3 if head.len() >= 12 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        v => {
            return Err(bad(
                path,
                format!(".npy format version {v} is not supported"),
            ))
        }
    };
    let end = start + header_len;
    if (end as u64) > file_len {
        return Err(bad(path, "truncated .npy header"));
    }
    // The header starts after the magic, version and length; `head` may hold its first bytes.
    let mut header = head.split_off(start.min(head.len()));
    let read = header.len();
    header.resize(header_len, 0);
    file.read_exact(&mut header[read..]).map_err(io)?;
    let header = std::str::from_utf8(&header).map_err(|_| bad(path, "truncated .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        let rest = header[at + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?;
        Some(rest.trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(path, "the .npy header has no 'descr'"))?;
    let width = match descr {
        "<u2" | "|u2" => TokenWidth::U16,
        "<u4" | "|u4" => TokenWidth::U32,
        other => {
            return Err(bad(
                path,
                format!("dtype `{other}`: token ids must be little-endian uint16 or uint32"),
            ))
        }
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(path, "a Fortran-order array; save it in C order"));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(path, "the .npy header has no 'shape'"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad(path, format!("shape ({shape_text})")))
        })
        .collect::<Result<_>>()?;
    let count: usize = shape.iter().product();
    let data_len = file_len - end as u64;
    if data_len != (count * width.bytes()) as u64 {
        return Err(bad(
            path,
            format!(
                "shape {shape:?} needs {} bytes of data, the file has {data_len} (truncated?)",
                count * width.bytes(),
            ),
        ));
    }
    Ok((width, shape, data_len))
}

fn read_parquet_ids(path: &Path, column: &str) -> Result<TokenDocuments> {
    let file = std::fs::File::open(path).map_err(|e| AnalysisError::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| bad(path, format!("parquet: {e}")))?;
    let col = df.column(column).map_err(|_| {
        bad(
            path,
            format!("no column `{column}` (--text-field names it)"),
        )
    })?;
    let list = col
        .as_materialized_series()
        .strict_cast(&DataType::List(Box::new(DataType::Int64)))
        .map_err(|_| {
            bad(
                path,
                format!(
                    "column `{column}` is {}, not a list of integer ids",
                    col.dtype()
                ),
            )
        })?;
    let mut docs = TokenDocuments::default();
    for (row, value) in list.list().expect("cast").series_iter().enumerate() {
        let Some(series) = value else {
            continue;
        };
        let start = docs.ids.len();
        let ids = series
            .i64()
            .expect("cast")
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.and_then(|v| u32::try_from(v).ok())
                    .filter(|&v| v != u32::MAX)
                    .ok_or_else(|| {
                        bad(
                            path,
                            format!("row {row}, token {i}: {v:?} is not a token id"),
                        )
                    })
            })
            .collect::<Result<Vec<u32>>>()?;
        docs.ids.extend(ids);
        docs.spans.push(start..docs.ids.len());
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` file of `ids` at `descr` with `shape`.
    pub(crate) fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn read(path: &Path, settings: &TokenSettings) -> Vec<Vec<u32>> {
        read_blocks(path, settings, BLOCK_IDS).unwrap()
    }

    fn read_blocks(path: &Path, settings: &TokenSettings, block: usize) -> Result<Vec<Vec<u32>>> {
        let mut docs = Vec::new();
        read_in_blocks(path, settings, block, |block| {
            docs.extend(block.iter().map(<[u32]>::to_vec));
            Ok(())
        })?;
        Ok(docs)
    }

    fn error(path: &Path, settings: &TokenSettings) -> String {
        read_token_documents(path, settings, |_| Ok(()))
            .unwrap_err()
            .to_string()
    }

    fn settings(separator: Option<u32>) -> TokenSettings {
        TokenSettings {
            width: None,
            column: "input_ids".into(),
            separator,
            vocab_size: 100,
        }
    }

    #[test]
    fn npy_one_and_two_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<u8> = [5u16, 6, 0, 7, 8, 9]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&p, npy("<u2", "(6,)", &data)).unwrap();
        assert_eq!(read(&p, &settings(Some(0))), [vec![5, 6], vec![7, 8, 9]]);
        assert_eq!(read(&p, &settings(None)), [vec![5, 6, 0, 7, 8, 9]]);
        let data: Vec<u8> = [1u32, 2, 3, 4, 5, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&p, npy("<u4", "(2, 3)", &data)).unwrap();
        assert_eq!(read(&p, &settings(None)), [vec![1, 2, 3], vec![4, 5, 6]]);
    }

    #[test]
    fn bad_token_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, npy("<f4", "(1,)", &[0, 0, 0, 0])).unwrap();
        let e = error(&p, &settings(None));
        assert!(e.contains("a.npy") && e.contains("`<f4`"), "{e}");
        std::fs::write(&p, npy("<u2", "(3,)", &[1, 0, 2, 0])).unwrap();
        let e = error(&p, &settings(None));
        assert!(e.contains("truncated"), "{e}");
        let raw = dir.path().join("a.bin");
        std::fs::write(&raw, [1u8, 0, 200, 0]).unwrap();
        let e = error(&raw, &settings(None));
        assert!(e.contains("--token-dtype"), "{e}");
        let s = TokenSettings {
            width: Some(TokenWidth::U16),
            ..settings(None)
        };
        let e = error(&raw, &s);
        assert!(
            e.contains("id 200") && e.contains("vocabulary of 100"),
            "{e}"
        );
        std::fs::write(&raw, [1u8, 0, 2]).unwrap();
        let e = error(&raw, &s);
        assert!(e.contains("whole number"), "{e}");
        // The first outside id in the file is named, with its document and position; the
        // separator itself may lie outside the vocabulary.
        let ids: Vec<u8> = [1u16, 2, 999, 3, 200, 999, 250, 999]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&raw, ids).unwrap();
        let s = TokenSettings {
            separator: Some(999),
            ..s
        };
        let e = error(&raw, &s);
        assert!(e.contains("document 1, token 1: id 200"), "{e}");
    }

    #[test]
    fn flat_files_read_a_block_at_a_time_give_the_same_documents() {
        let dir = tempfile::tempdir().unwrap();
        // Documents of 0 to 30 ids (empty ones dropped), one longer than any block.
        let mut ids: Vec<u16> = Vec::new();
        let mut x = 7u32;
        for d in 0..60u32 {
            let len = if d == 20 { 50 } else { (d * 7) % 31 };
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ids.push(1 + (x >> 16) as u16 % 90);
            }
            ids.push(0);
        }
        ids.extend([5, 6, 7]); // a last document with no separator after it
        let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = dir.path().join("a.bin");
        std::fs::write(&raw, &bytes).unwrap();
        let npy_path = dir.path().join("a.npy");
        std::fs::write(&npy_path, npy("<u2", &format!("({},)", ids.len()), &bytes)).unwrap();
        let s = TokenSettings {
            width: Some(TokenWidth::U16),
            ..settings(Some(0))
        };
        let whole = read(&raw, &s);
        // Documents 0 and 31 are empty.
        assert_eq!(
            whole.len(),
            58 + 1,
            "60 documents, two of them empty, and the tail"
        );
        assert_eq!(whole.last().unwrap(), &[5, 6, 7]);
        for block in [1, 2, 7, 16, 49] {
            assert_eq!(
                read_blocks(&raw, &s, block).unwrap(),
                whole,
                "block {block}"
            );
            assert_eq!(
                read_blocks(&npy_path, &s, block).unwrap(),
                whole,
                "block {block}"
            );
        }
        // A bad id is named by its document in the whole file, whichever block it is in.
        let mut bad_ids = ids.clone();
        let at = bad_ids.len() - 2;
        bad_ids[at] = 100;
        let bytes: Vec<u8> = bad_ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&raw, &bytes).unwrap();
        let e = read_blocks(&raw, &s, 7).unwrap_err().to_string();
        assert!(e.contains("document 58, token 1: id 100"), "{e}");
        assert!(!e.contains("index"), "a token file is not an index: {e}");
    }
}
