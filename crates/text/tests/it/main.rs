//! Integration tests of cp-text: real chat templates, tiny tokenizers built on the fly,
//! model folders and prompt files on disk.

mod corpus_encoder;
mod model;
mod prompts;
mod templates;

use std::path::{Path, PathBuf};

/// `crates/text/tests/data/<name>`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn added_token(id: u32, content: &str, special: bool) -> serde_json::Value {
    serde_json::json!({
        "id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": special
    })
}

/// A word-level `tokenizer.json` splitting on whitespace and punctuation, with the given
/// special tokens as ids 0.. and the given words after them (then `[UNK]`).
pub fn word_level_tokenizer(specials: &[&str], words: &[&str]) -> String {
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(i, t)| added_token(i as u32, t, true))
        .collect();
    let mut vocab = serde_json::Map::new();
    for (i, t) in specials.iter().enumerate() {
        vocab.insert(t.to_string(), (i as u32).into());
    }
    for (i, w) in words.iter().enumerate() {
        vocab.insert(w.to_string(), ((specials.len() + i) as u32).into());
    }
    vocab.insert(
        "[UNK]".into(),
        ((specials.len() + words.len()) as u32).into(),
    );
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// A byte-level BPE `tokenizer.json` (GPT-2 style): ids 0.. are `t h e Ġ th the Ġthe Ċ Ã © Ã©`,
/// then `<|endoftext|>` (11, special) and `<tool>` (12, added but not special).
pub fn byte_level_tokenizer() -> String {
    let pieces = ["t", "h", "e", "Ġ", "th", "the", "Ġthe", "Ċ", "Ã", "©", "Ã©"];
    let mut vocab = serde_json::Map::new();
    for (i, p) in pieces.iter().enumerate() {
        vocab.insert(p.to_string(), (i as u32).into());
    }
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added_token(11, "<|endoftext|>", true), added_token(12, "<tool>", false)],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": ["t h", "th e", "Ġ the", "Ã ©"]
        }
    })
    .to_string()
}
