//! Encoding whole corpora: the tokenizer's own result, without its per-piece bookkeeping.
//!
//! `tokenizers` tracks, for every byte of every pre-token, where it came from in the
//! original text (`NormalizedString`'s alignments), and builds an `Encoding` with a
//! `String` per token. An index needs only the ids. That bookkeeping was most of the time
//! `index build` took on the KJV text (4.1 MB, two threads): 0.88–1.31 s through
//! `encode_fast`, 0.41–0.56 s through this encoder, with the same files written
//! (docs/performance.md).
//!
//! What stays the library's: added tokens and the normalizer
//! (`AddedVocabulary::extract_and_normalize`), every `Split` pre-tokenizer's compiled
//! pattern, and the model, which maps each distinct pre-token to ids. What is done here is
//! what those steps leave: cutting a segment at every match of each pattern and mapping
//! bytes to the byte-level alphabet. It is done only for the pre-tokenizer shapes the
//! byte-level families use (GPT-2's `ByteLevel`; LLaMA-3's, Qwen2's and LLaDA's `Split`
//! then `ByteLevel`); any other shape, BPE dropout, truncation or padding is encoded by
//! the library document by document. Tests compare both with the library on corpus text
//! and on random strings of the characters where pre-tokenizers differ.

use std::sync::{LazyLock, Mutex};

use rustc_hash::FxHashMap;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::utils::SysRegex;
use tokenizers::{
    Model, ModelWrapper, OffsetReferential, OffsetType, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use crate::{TextError, Tokenizer};

/// GPT-2's pre-tokenization pattern, which `ByteLevel` applies when `use_regex` is set
/// (`tokenizers` keeps its compiled copy private).
const BYTE_LEVEL_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

static BYTE_LEVEL_REGEX: LazyLock<SysRegex> =
    LazyLock::new(|| SysRegex::new(BYTE_LEVEL_PATTERN).expect("GPT-2's pattern compiles"));

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the others for code points from 256 on, in byte order.
static BYTE_CHARS: LazyLock<[char; 256]> = LazyLock::new(|| {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        chars[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below 512")
        };
    }
    chars
});

/// Once a memo holds this many pre-tokens, or this many ids, it starts again, so that a corpus
/// of billions of tokens (and so of many rare pre-tokens) is encoded in bounded memory (and
/// the ids' offsets fit in `u32`).
const MEMO_PIECES: usize = 1 << 20;
const MEMO_IDS: usize = 1 << 24;

/// Encodes documents to exactly the ids [`Tokenizer::encode`] gives, faster for corpora.
///
/// Safe to share between threads: each call borrows one of a small pool of memos.
pub struct CorpusEncoder<'t> {
    tokenizer: &'t Tokenizer,
    /// `None`: every document goes through the library's whole pipeline.
    pieces: Option<PieceSplitter<'t>>,
    memos: Mutex<Vec<PieceMemo>>,
}

/// The pre-tokenizer, taken apart: `Split` patterns applied in order (each cutting at
/// every match start and end), then `ByteLevel`.
struct PieceSplitter<'t> {
    splits: Vec<&'t SysRegex>,
    add_prefix_space: bool,
    byte_level_regex: bool,
}

/// Ids of the pre-tokens seen so far, all in one buffer.
struct PieceMemo {
    spans: FxHashMap<Box<str>, (u32, u32)>,
    ids: Vec<u32>,
    /// Reused for each pre-token's byte-level form.
    mapped: String,
    /// [`MEMO_PIECES`] and [`MEMO_IDS`] (smaller in tests).
    limits: (usize, usize),
}

impl Default for PieceMemo {
    fn default() -> Self {
        PieceMemo {
            spans: FxHashMap::default(),
            ids: Vec::new(),
            mapped: String::new(),
            limits: (MEMO_PIECES, MEMO_IDS),
        }
    }
}

impl<'t> CorpusEncoder<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        CorpusEncoder {
            tokenizer,
            pieces: PieceSplitter::of(tokenizer),
            memos: Mutex::new(Vec::new()),
        }
    }

    /// Whether documents are cut into pre-tokens here (else the library encodes them).
    pub fn splits_pre_tokens(&self) -> bool {
        self.pieces.is_some()
    }

    /// The ids of `doc`, with no special token added (as [`Tokenizer::encode`]).
    pub fn encode(&self, doc: &str) -> Result<Vec<u32>, TextError> {
        let Some(pieces) = &self.pieces else {
            return self.tokenizer.encode(doc);
        };
        let inner = self.tokenizer.inner();
        let segments = inner
            .get_added_vocabulary()
            .extract_and_normalize(inner.get_normalizer(), doc);
        let mut memo = self
            .memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(doc.len() / 3);
        let mut result = Ok(());
        for (text, _, added) in segments.get_splits(OffsetReferential::Normalized, OffsetType::None)
        {
            if let Some(tokens) = added {
                out.extend(tokens.iter().map(|t| t.id));
                continue;
            }
            result = pieces.each_piece(text, &mut |piece| {
                memo.push_ids(piece, inner.get_model(), &mut out)
            });
            if result.is_err() {
                break;
            }
        }
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(memo);
        result.map_err(|message| TextError::Tokenize {
            path: self.tokenizer.path().to_path_buf(),
            message: format!("cannot encode text: {message}"),
        })?;
        Ok(out)
    }
}

impl<'t> PieceSplitter<'t> {
    /// The steps of `tokenizer`'s pre-tokenizer when they are ones done here.
    fn of(tokenizer: &'t Tokenizer) -> Option<Self> {
        let inner = tokenizer.inner();
        if inner.get_truncation().is_some() || inner.get_padding().is_some() {
            return None;
        }
        // With dropout, BPE merges at random: a pre-token's ids cannot be remembered.
        if let ModelWrapper::BPE(bpe) = inner.get_model() {
            if bpe.dropout.is_some_and(|d| d > 0.0) {
                return None;
            }
        }
        let steps: &[PreTokenizerWrapper] = match inner.get_pre_tokenizer()? {
            PreTokenizerWrapper::Sequence(seq) => seq.as_ref(),
            single => std::slice::from_ref(single),
        };
        let (PreTokenizerWrapper::ByteLevel(byte_level), splits) = steps.split_last()? else {
            return None;
        };
        let ByteLevel {
            add_prefix_space,
            use_regex,
            ..
        } = *byte_level;
        let splits = splits
            .iter()
            .map(|step| match step {
                // Isolated keeps matches and the text between them alike, so an inverted
                // pattern cuts in the same places.
                PreTokenizerWrapper::Split(split)
                    if split.behavior == SplitDelimiterBehavior::Isolated =>
                {
                    Some(&split.regex)
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(PieceSplitter {
            splits,
            add_prefix_space,
            byte_level_regex: use_regex,
        })
    }

    /// Calls `each` with every pre-token of `segment`, in order, as the library cuts it
    /// (before the byte-level mapping).
    fn each_piece(
        &self,
        segment: &str,
        each: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        self.split_from(0, segment, each)
    }

    fn split_from(
        &self,
        step: usize,
        text: &str,
        each: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        if let Some(regex) = self.splits.get(step) {
            return cut_at_matches(regex, text, &mut |piece| {
                self.split_from(step + 1, piece, each)
            });
        }
        // `ByteLevel` prefixes every piece that reaches it, not only the first.
        let prefixed;
        let text = if self.add_prefix_space && !text.starts_with(' ') {
            prefixed = format!(" {text}");
            prefixed.as_str()
        } else {
            text
        };
        if self.byte_level_regex {
            cut_at_matches(&BYTE_LEVEL_REGEX, text, each)
        } else if text.is_empty() {
            Ok(())
        } else {
            each(text)
        }
    }
}

/// Cuts `text` at every start and end of a match of `regex` (the library's `Isolated`
/// behaviour), dropping empty pieces as the library does.
fn cut_at_matches(
    regex: &SysRegex,
    text: &str,
    each: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut last = 0;
    for (start, end) in regex.find_iter(text) {
        if start > last {
            each(&text[last..start])?;
        }
        if end > start {
            each(&text[start..end])?;
        }
        last = end;
    }
    if last < text.len() {
        each(&text[last..])?;
    }
    Ok(())
}

impl PieceMemo {
    /// Appends the ids of one pre-token to `out`, asking the model only the first time.
    fn push_ids(
        &mut self,
        piece: &str,
        model: &impl Model,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        if let Some(&(start, len)) = self.spans.get(piece) {
            out.extend_from_slice(&self.ids[start as usize..(start + len) as usize]);
            return Ok(());
        }
        self.mapped.clear();
        self.mapped
            .extend(piece.bytes().map(|b| BYTE_CHARS[b as usize]));
        let tokens = model.tokenize(&self.mapped).map_err(|e| e.to_string())?;
        let (max_pieces, max_ids) = self.limits;
        if self.spans.len() >= max_pieces || self.ids.len() + tokens.len() > max_ids {
            self.spans.clear();
            self.ids.clear();
        }
        if tokens.len() > max_ids {
            // One pre-token longer than a memo (a huge run without a pattern match).
            out.extend(tokens.iter().map(|t| t.id));
            return Ok(());
        }
        let start = self.ids.len();
        self.ids.extend(tokens.iter().map(|t| t.id));
        out.extend_from_slice(&self.ids[start..]);
        self.spans
            .insert(piece.into(), (start as u32, tokens.len() as u32));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memo that starts again every few pre-tokens, or skips one longer than itself, still
    /// gives the model's ids.
    #[test]
    fn a_full_memo_starts_again_and_keeps_giving_the_models_ids() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/text-llada/tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).unwrap();
        let model = tokenizer.inner().get_model();
        let text = "In the beginning God created the heaven and the earth, and the earth was \
                    without form, and void; and darkness was upon the face of the deep.";
        let splitter = PieceSplitter::of(&tokenizer).unwrap();
        for limits in [(3, 1000), (1000, 4), (2, 2), (MEMO_PIECES, MEMO_IDS)] {
            let mut memo = PieceMemo {
                limits,
                ..PieceMemo::default()
            };
            for _ in 0..3 {
                let mut out = Vec::new();
                splitter
                    .each_piece(text, &mut |piece| memo.push_ids(piece, model, &mut out))
                    .unwrap();
                assert_eq!(out, tokenizer.encode(text).unwrap(), "limits {limits:?}");
                assert!(memo.spans.len() <= limits.0 && memo.ids.len() <= limits.1);
            }
        }
    }
}
