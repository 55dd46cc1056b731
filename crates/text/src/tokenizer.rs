//! A thin wrapper around a Hugging Face `tokenizer.json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::TextError;

/// A tokenizer loaded from a Hugging Face `tokenizer.json`.
///
/// [`encode`](Self::encode) never adds special tokens (no BOS, no EOS): chat templates
/// write their own BOS, exactly as `transformers`' `apply_chat_template` does (it renders
/// the template to text and then encodes with `add_special_tokens=False`), and raw
/// prompts are encoded as written.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Ids of added tokens marked `special`.
    special: HashSet<u32>,
    /// Ids of all added tokens, special or not.
    added: HashSet<u32>,
    /// One more than the largest id the tokenizer knows, added tokens included.
    vocab_size: usize,
    /// The decoder is byte-level (GPT-2 style `Ġ` pieces).
    byte_level: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a model folder: its `tokenizer.json`, or, when there is
    /// none, a Qwen2-style slow tokenizer (`vocab.json`, `merges.txt` and the added tokens
    /// of `tokenizer_config.json`, as Dream ships) converted the way `transformers`
    /// converts it to a fast one.
    pub fn from_dir(dir: &Path) -> Result<Self, TextError> {
        let file = dir.join("tokenizer.json");
        if file.is_file() || !dir.join("vocab.json").is_file() || !dir.join("merges.txt").is_file()
        {
            if !file.is_file() {
                return Err(TextError::TokenizerLoad {
                    path: file,
                    message: "no such file (and no vocab.json with merges.txt beside it)".into(),
                });
            }
            return Self::from_file(&file);
        }
        let (json, added) = qwen2_tokenizer_json(dir)?;
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| {
            TextError::TokenizerLoad {
                path: dir.join("vocab.json"),
                message: e.to_string(),
            }
        })?;
        // The tokenizers library numbers added tokens itself, after the model vocabulary;
        // a vocabulary with gaps would shift them, so every id is checked.
        for (id, content) in added {
            let got = inner.token_to_id(&content);
            if got != Some(id) {
                return Err(TextError::config(
                    dir.join("tokenizer_config.json"),
                    "added_tokens_decoder",
                    format!(
                        "token {content:?} should have id {id} but gets {} after the {} entries of vocab.json; save a tokenizer.json with transformers",
                        got.map_or("none".to_string(), |g| g.to_string()),
                        inner.get_vocab_size(false)
                    ),
                ));
            }
        }
        Ok(Self::from_tokenizer(inner, &dir.join("vocab.json")))
    }

    /// Loads a `tokenizer.json` file (a folder is read with [`from_dir`](Self::from_dir)).
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        if path.is_dir() {
            return Self::from_dir(path);
        }
        let bytes = std::fs::read(path).map_err(|e| TextError::io(path, e))?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TextError::TokenizerLoad {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self::from_tokenizer(inner, path))
    }

    /// Wraps an already built tokenizer; `path` is only used in messages.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, path: &Path) -> Self {
        let added = inner.get_added_tokens_decoder();
        let special = added
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        let added = added.keys().copied().collect();
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        // The decoder is inspected through its serialised form because it can be nested
        // in a `Sequence`; a byte-level decoder anywhere means pieces are byte-level.
        let byte_level = inner
            .get_decoder()
            .and_then(|d| serde_json::to_string(d).ok())
            .is_some_and(|s| s.contains("\"ByteLevel\""));
        Tokenizer {
            inner,
            path: path.to_path_buf(),
            special,
            added,
            vocab_size,
            byte_level,
        }
    }

    /// The file this tokenizer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying `tokenizers` object, for anything this wrapper does not offer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text to ids without adding any special token.
    ///
    /// Special tokens written in the text (`<|eot_id|>`) are recognised as such, as
    /// in `transformers`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.tokenize_error(format!("cannot encode text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text as transformers' `tokenizer(text)` does (`add_special_tokens=True`): the
    /// tokenizer's own post-processor adds what it adds (BOS for LLaDA-style tokenizers,
    /// nothing for Qwen2's).
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let enc = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| self.tokenize_error(format!("cannot encode text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text; `skip_special` drops special tokens (BOS, EOS, mask...).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.tokenize_error(format!("cannot decode ids: {e}")))
    }

    /// One token as readable text, for tables and reports.
    ///
    /// Special and added tokens are shown as written (`<|mdm_mask|>`); byte-level pieces
    /// are turned back into text (`Ġthe` becomes ` the`, `Ċ` becomes a newline), bytes
    /// that are only part of a UTF-8 character are shown as `<0xE2>`; SentencePiece's
    /// `▁` becomes a space. An id the tokenizer does not know (models often have more
    /// embedding rows than the tokenizer has tokens) is shown as `<id:N>`.
    pub fn token_text(&self, id: u32) -> String {
        let Some(piece) = self.inner.id_to_token(id) else {
            return format!("<id:{id}>");
        };
        if self.added.contains(&id) {
            return piece;
        }
        if self.byte_level {
            if let Some(bytes) = byte_level_bytes(&piece) {
                return bytes_to_display(&bytes);
            }
        }
        if let Some(b) = byte_fallback(&piece) {
            return bytes_to_display(&[b]);
        }
        piece.replace('\u{2581}', " ")
    }

    /// One more than the largest id the tokenizer knows, added tokens included.
    ///
    /// This is the length of a table indexed by token id. The model's embedding may be
    /// larger (LLaDA pads it to 126464); ids past this value have no text.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token written exactly as in the vocabulary (`<|endoftext|>`, `Ġthe`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary entry of an id, as stored (byte-level pieces unconverted).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether the id is an added token marked special (BOS, EOS, mask, chat markers).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Ids of all special tokens, sorted.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.special.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn tokenize_error(&self, message: String) -> TextError {
        TextError::Tokenize {
            path: self.path.clone(),
            message,
        }
    }
}

/// The pre-tokenization pattern of Qwen2's tokenizer (and so Dream's).
const QWEN2_PRETOKENIZE_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Slow tokenizer classes whose files [`qwen2_tokenizer_json`] knows how to convert.
const QWEN2_CLASSES: [&str; 2] = ["Qwen2Tokenizer", "DreamTokenizer"];

/// A `tokenizer.json` equivalent to a Qwen2-style slow tokenizer, built as `transformers`'
/// `Qwen2Converter` builds it: NFC normalisation, the Qwen2 split pattern, byte-level
/// BPE without unknown token, and the added tokens of `tokenizer_config.json` at their ids.
/// Also returns the added tokens, `(id, content)` in id order.
fn qwen2_tokenizer_json(dir: &Path) -> Result<(String, Vec<(u32, String)>), TextError> {
    let config_path = dir.join("tokenizer_config.json");
    let config = crate::config::read_json_object(&config_path)?.ok_or_else(|| {
        TextError::TokenizerLoad {
            path: dir.join("tokenizer.json"),
            message: "no such file; vocab.json and merges.txt need a tokenizer_config.json to be converted".into(),
        }
    })?;
    let class = config
        .get("tokenizer_class")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    if !QWEN2_CLASSES.contains(&class) {
        return Err(TextError::TokenizerLoad {
            path: dir.join("tokenizer.json"),
            message: format!(
                "no such file, and the slow tokenizer class {class:?} of tokenizer_config.json is not one this tool can convert ({}); save a tokenizer.json with transformers",
                QWEN2_CLASSES.join(", ")
            ),
        });
    }
    let vocab_path = dir.join("vocab.json");
    let vocab = crate::config::read_json_object(&vocab_path)?.unwrap_or_default();
    let merges_path = dir.join("merges.txt");
    let merges_text =
        std::fs::read_to_string(&merges_path).map_err(|e| TextError::io(&merges_path, e))?;
    let merges: Vec<&str> = merges_text
        .lines()
        .enumerate()
        .filter(|(i, l)| !(l.trim().is_empty() || (*i == 0 && l.starts_with("#version:"))))
        .map(|(_, l)| l.trim())
        .collect();
    let mut added = Vec::new();
    let mut added_ids = Vec::new();
    if let Some(decoder) = config.get("added_tokens_decoder") {
        let Some(map) = decoder.as_object() else {
            return Err(TextError::config(
                &config_path,
                "added_tokens_decoder",
                "expected an object",
            ));
        };
        for (id, token) in map {
            let id: u32 = id.parse().map_err(|_| {
                TextError::config(
                    &config_path,
                    "added_tokens_decoder",
                    format!("key {id:?} is not a token id"),
                )
            })?;
            let Some(content) = token.get("content").and_then(|c| c.as_str()) else {
                return Err(TextError::config(
                    &config_path,
                    "added_tokens_decoder",
                    format!("token {id} has no string `content`"),
                ));
            };
            let flag =
                |k: &str, default: bool| token.get(k).and_then(|v| v.as_bool()).unwrap_or(default);
            added_ids.push((id, content.to_string()));
            added.push(serde_json::json!({
                "id": id, "content": content,
                "single_word": flag("single_word", false), "lstrip": flag("lstrip", false),
                "rstrip": flag("rstrip", false), "normalized": flag("normalized", false),
                "special": flag("special", true),
            }));
        }
    }
    // Added tokens are numbered in the order given, so they go in id order.
    added.sort_by_key(|t| t["id"].as_u64());
    added_ids.sort();
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false
    });
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PRETOKENIZE_REGEX}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "",
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }
    });
    Ok((json.to_string(), added_ids))
}

/// GPT-2's byte-to-character table: printable bytes map to themselves, the others to
/// code points from 256 on, in order.
fn byte_level_char_to_byte(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let cp = c as u32;
    if cp < 256 {
        return printable(cp).then_some(cp as u8);
    }
    // The n-th non-printable byte (in increasing order) maps to 256 + n.
    let n = cp - 256;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}

fn byte_level_bytes(piece: &str) -> Option<Vec<u8>> {
    piece.chars().map(byte_level_char_to_byte).collect()
}

/// SentencePiece byte-fallback pieces look like `<0x0A>`.
fn byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Valid UTF-8 as text; every byte of an invalid or incomplete sequence as `<0xNN>`.
fn bytes_to_display(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("checked prefix"));
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("<0x{b:02X}>"));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_matches_gpt2() {
        assert_eq!(byte_level_char_to_byte('a'), Some(b'a'));
        // Space is byte 32, the 33rd non-printable byte: 256 + 32 = 288 = 'Ġ'.
        assert_eq!(byte_level_char_to_byte('Ġ'), Some(b' '));
        // Newline is byte 10: 256 + 10 = 266 = 'Ċ'.
        assert_eq!(byte_level_char_to_byte('Ċ'), Some(b'\n'));
        assert_eq!(byte_level_char_to_byte('é'), Some(0xE9));
        assert_eq!(byte_level_char_to_byte('\u{2581}'), None);
    }

    #[test]
    fn incomplete_utf8_is_shown_as_hex() {
        // "é" is C3 A9; a lone C3 is incomplete.
        assert_eq!(bytes_to_display(&[b'a', 0xC3]), "a<0xC3>");
        assert_eq!(bytes_to_display(&[0xC3, 0xA9, b'!']), "é!");
        assert_eq!(bytes_to_display(&[0xFF, b'x']), "<0xFF>x");
    }

    #[test]
    fn byte_fallback_pieces() {
        assert_eq!(byte_fallback("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_fallback("<0x0>"), None);
        assert_eq!(byte_fallback("<mask>"), None);
    }
}
