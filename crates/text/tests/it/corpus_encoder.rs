//! `CorpusEncoder` against the `tokenizers` library: the same ids for every document, on
//! the pre-tokenizer shapes it splits itself and on those it hands to the library.

use std::path::{Path, PathBuf};

use cp_text::{CorpusEncoder, Tokenizer};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// The KJV fixture's tokenizer (GPT-2 style byte-level BPE), edited by `edit`.
fn kjv_tokenizer(edit: impl FnOnce(&mut Value)) -> Tokenizer {
    let path = fixture("text-llada/tokenizer.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
    Tokenizer::from_tokenizer(inner, &path)
}

fn byte_level(add_prefix_space: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true,
           "use_regex": use_regex})
}

/// Qwen2's (and so Dream's) pattern; LLaMA-3's differs only in `\p{N}{1,3}`.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split(pattern: &str, behavior: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": behavior, "invert": false})
}

/// Strings made of the pieces where pre-tokenizers disagree: runs of spaces and newlines,
/// contractions, digit runs, punctuation, accents composed and not, CJK, emoji, a
/// non-breaking space and added tokens.
fn tricky_strings(count: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "the",
        " God",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "'s",
        "'LL",
        "'",
        "1",
        "23",
        "4567",
        ".",
        "!?",
        ",\n",
        "é",
        "e\u{301}",
        "Å",
        "中文",
        "😀",
        "\u{a0}",
        "-",
        "$",
        "<|endoftext|>",
        "<|eot_id|>",
        " <|eot_id|> ",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    (0..count)
        .map(|_| (0..next(24)).map(|_| PIECES[next(PIECES.len())]).collect())
        .collect()
}

fn assert_encodes_as_library(tokenizer: &Tokenizer, docs: &[String]) {
    let encoder = CorpusEncoder::new(tokenizer);
    for doc in docs {
        assert_eq!(
            encoder.encode(doc).unwrap(),
            tokenizer.encode(doc).unwrap(),
            "document {doc:?}"
        );
    }
}

#[test]
fn the_kjv_corpus_encodes_as_the_library_encodes_it() {
    let tokenizer = kjv_tokenizer(|_| {});
    let encoder = CorpusEncoder::new(&tokenizer);
    assert!(encoder.splits_pre_tokens());
    let corpus = std::fs::read_to_string(fixture("text-llada/corpus.txt")).unwrap();
    let docs: Vec<String> = corpus.split("\n\n").take(6).map(str::to_string).collect();
    assert!(docs.iter().map(String::len).sum::<usize>() > 500_000);
    assert_encodes_as_library(&tokenizer, &docs);
}

#[test]
fn byte_level_shapes_encode_as_the_library_encodes_them() {
    let shapes: Vec<(&str, Value, Value)> = vec![
        ("GPT-2", Value::Null, byte_level(false, true)),
        ("GPT-2, prefix space", Value::Null, byte_level(true, true)),
        (
            "Qwen2: NFC, split, byte level",
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [
                split(QWEN2_PATTERN, "Isolated"), byte_level(false, false)]}),
        ),
        (
            "two splits, then byte level with its own pattern and a prefix space",
            json!({"type": "Lowercase"}),
            json!({"type": "Sequence", "pretokenizers": [
                split(r"\s+", "Isolated"),
                {"type": "Split", "pattern": {"String": "'"}, "behavior": "Isolated", "invert": true},
                byte_level(true, true)]}),
        ),
    ];
    let docs = tricky_strings(1500);
    for (name, normalizer, pre_tokenizer) in shapes {
        let tokenizer = kjv_tokenizer(|t| {
            t["normalizer"] = normalizer;
            t["pre_tokenizer"] = pre_tokenizer;
            // An added token that eats the spaces around it and is matched after
            // normalization, which the library's added-token pass handles.
            t["added_tokens"][4]["lstrip"] = true.into();
            t["added_tokens"][4]["rstrip"] = true.into();
            t["added_tokens"][4]["normalized"] = true.into();
        });
        assert!(CorpusEncoder::new(&tokenizer).splits_pre_tokens(), "{name}");
        assert_encodes_as_library(&tokenizer, &docs);
    }
}

#[test]
fn other_shapes_are_encoded_by_the_library() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let shapes: Vec<(&str, Edit)> = vec![
        (
            "whitespace split",
            Box::new(|t| t["pre_tokenizer"] = json!({"type": "WhitespaceSplit"})),
        ),
        (
            "a split that drops what it matches",
            Box::new(|t| {
                t["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                    split(r"\s+", "Removed"), byte_level(false, false)]})
            }),
        ),
        (
            "byte level, then another split",
            Box::new(|t| {
                t["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                    byte_level(false, true), split("Ġ", "Isolated")]})
            }),
        ),
        (
            "truncation",
            Box::new(|t| {
                t["truncation"] = json!({"direction": "Right", "max_length": 5,
                    "strategy": "LongestFirst", "stride": 0})
            }),
        ),
    ];
    let docs = tricky_strings(300);
    for (name, edit) in shapes {
        let tokenizer = kjv_tokenizer(edit);
        assert!(
            !CorpusEncoder::new(&tokenizer).splits_pre_tokens(),
            "{name}"
        );
        assert_encodes_as_library(&tokenizer, &docs);
    }
    // BPE dropout merges at random, so no pre-token's ids can be remembered.
    let dropout = kjv_tokenizer(|t| t["model"]["dropout"] = 0.1.into());
    assert!(!CorpusEncoder::new(&dropout).splits_pre_tokens());
}

#[test]
fn threads_sharing_one_encoder_get_the_library_ids() {
    let tokenizer = kjv_tokenizer(|_| {});
    let encoder = CorpusEncoder::new(&tokenizer);
    let docs = tricky_strings(400);
    std::thread::scope(|scope| {
        for part in docs.chunks(100) {
            let (encoder, tokenizer) = (&encoder, &tokenizer);
            scope.spawn(move || {
                for doc in part {
                    assert_eq!(encoder.encode(doc).unwrap(), tokenizer.encode(doc).unwrap());
                }
            });
        }
    });
}
