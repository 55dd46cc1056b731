//! Tokenizer, mask and end-of-text resolution, and `ModelText::load` on model folders.

use std::path::Path;

use cp_text::{ModelText, TemplateChoice, TextError, Tokenizer};

use crate::{byte_level_tokenizer, word_level_tokenizer, write};

const LLADA_SPECIALS: [&str; 6] = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|mdm_mask|>",
];
const WORDS: [&str; 5] = ["hello", "world", "user", "assistant", "."];

/// A LLaDA-like folder: the tiny word-level tokenizer, plus whatever files are given.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tokenizer.json",
        &word_level_tokenizer(&LLADA_SPECIALS, &WORDS),
    );
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    dir
}

fn load(dir: &Path) -> Result<ModelText, TextError> {
    ModelText::load(dir, None, TemplateChoice::Auto)
}

#[test]
fn encode_adds_no_special_tokens_and_decodes_back() {
    let dir = folder(&[]);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    // Specials are 0..6, words 6..11, [UNK] 11.
    assert_eq!(tok.encode("hello world").unwrap(), vec![6, 7]);
    assert_eq!(
        tok.encode("<|startoftext|>hello<|eot_id|>").unwrap(),
        vec![0, 6, 4]
    );
    assert_eq!(tok.encode("zebra").unwrap(), vec![11]);
    assert_eq!(
        tok.decode(&[0, 6, 4], false).unwrap(),
        "<|startoftext|> hello <|eot_id|>"
    );
    assert_eq!(tok.decode(&[0, 6, 4], true).unwrap(), "hello");
    assert_eq!(tok.vocab_size(), 12);
    assert_eq!(tok.token_to_id("<|mdm_mask|>"), Some(5));
    assert!(tok.is_special(5));
    assert!(!tok.is_special(6));
    assert_eq!(tok.special_ids(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(tok.token_text(5), "<|mdm_mask|>");
    assert_eq!(tok.token_text(6), "hello");
    assert_eq!(tok.token_text(500), "<id:500>");
}

#[test]
fn byte_level_pieces_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tok.json", &byte_level_tokenizer());
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.encode(" the").unwrap(), vec![6]);
    assert_eq!(tok.encode("the\n").unwrap(), vec![5, 7]);
    assert_eq!(tok.encode("é<|endoftext|>").unwrap(), vec![10, 11]);
    assert_eq!(tok.token_text(6), " the");
    assert_eq!(tok.token_text(7), "\n");
    assert_eq!(tok.token_text(10), "é");
    // Half of "é" on its own.
    assert_eq!(tok.token_text(8), "<0xC3>");
    assert_eq!(tok.token_text(11), "<|endoftext|>");
    assert_eq!(tok.token_text(12), "<tool>");
    assert!(tok.is_special(11) && !tok.is_special(12));
    assert_eq!(tok.decode(&[6, 7], false).unwrap(), " the\n");
    assert_eq!(tok.vocab_size(), 13);
}

#[test]
fn bad_tokenizer_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tokenizer.json", "{\"model\": 3}");
    let err = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot load tokenizer", path.display())),
        "{err}"
    );
    let err = ModelText::load(&dir.path().join("missing"), None, TemplateChoice::Auto)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing/tokenizer.json: cannot load tokenizer: no such file"),
        "{err}"
    );
}

#[test]
fn mask_from_tokenizer_when_no_config() {
    let dir = folder(&[]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.mask_id(), 5);
    // Named end tokens present in the tokenizer: <|endoftext|> 1 and <|eot_id|> 4.
    assert_eq!(text.eot_ids(), &[1, 4]);
    assert!(text.is_eot(4) && !text.is_eot(5));
    assert!(text.template().is_none());
    assert_eq!(text.describe_template(), "auto:none");
}

#[test]
fn mask_and_eos_from_config_files() {
    let dir = folder(&[
        (
            "config.json",
            r#"{"mask_token_id": 126336, "eos_token_id": 126081}"#,
        ),
        (
            "generation_config.json",
            r#"{"eos_token_id": [126348, 1], "mask_token_id": null}"#,
        ),
    ]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.mask_id(), 126336);
    assert_eq!(text.eot_ids(), &[1, 4, 126081, 126348]);
}

#[test]
fn generation_config_mask_and_tokenizer_config_mask() {
    let dir = folder(&[("generation_config.json", r#"{"mask_token_id": 9}"#)]);
    assert_eq!(load(dir.path()).unwrap().mask_id(), 9);
    // tokenizer_config.json's mask_token wins over the built-in names.
    let dir = folder(&[(
        "tokenizer_config.json",
        r#"{"mask_token": "<|eot_id|>", "eos_token": "hello"}"#,
    )]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.mask_id(), 4);
    // eos_token "hello" (id 6) joins the named end tokens; <|eot_id|> is the mask here, and a
    // mask is never an end id.
    assert_eq!(text.eot_ids(), &[1, 6]);
}

#[test]
fn no_mask_token_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tokenizer.json",
        &word_level_tokenizer(&["<|endoftext|>"], &WORDS),
    );
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, TextError::NoMaskToken { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("no mask token")
            && text.contains("<|mdm_mask|>")
            && text.contains("mask_token_id"),
        "{text}"
    );
}

#[test]
fn unknown_mask_token_in_tokenizer_config_names_the_key() {
    let dir = folder(&[("tokenizer_config.json", r#"{"mask_token": "<|mask|>"}"#)]);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json: key `mask_token`: the tokenizer"),
        "{err}"
    );
    assert!(err.contains("has no token \"<|mask|>\""), "{err}");
}

#[test]
fn wrong_types_in_config_name_file_and_key() {
    let dir = folder(&[("config.json", r#"{"mask_token_id": "126336"}"#)]);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "config.json: key `mask_token_id`: expected a token id, found the string \"126336\""
        ),
        "{err}"
    );
    let dir = folder(&[("generation_config.json", r#"{"eos_token_id": [1, "x"]}"#)]);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("generation_config.json: key `eos_token_id`"),
        "{err}"
    );
    let dir = folder(&[("config.json", "{\n  \"mask_token_id\": 5,\n}")]);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("config.json:3: invalid json"), "{err}");
}

#[test]
fn auto_template_from_tokenizer_config_and_encoding() {
    let llada =
        std::fs::read_to_string(crate::data("llada-8b-instruct/tokenizer_config.json")).unwrap();
    let dir = folder(&[("tokenizer_config.json", &llada)]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.describe_template(), "auto:tokenizer_config.json");
    let ids = text
        .encode_messages(&[cp_text::Message::user("hello world .")])
        .unwrap();
    // <|startoftext|> <|start_header_id|> user <|end_header_id|> hello world . <|eot_id|>
    // <|start_header_id|> assistant <|end_header_id|>
    assert_eq!(ids, vec![0, 2, 8, 3, 6, 7, 10, 4, 2, 9, 3]);
    // Asking for none leaves the text raw.
    let raw = ModelText::load(dir.path(), None, TemplateChoice::None).unwrap();
    assert_eq!(raw.describe_template(), "none");
    assert_eq!(
        raw.encode_messages(&[cp_text::Message::user("hello")])
            .unwrap(),
        vec![6]
    );
}

#[test]
fn chat_template_jinja_wins_and_file_choice() {
    let dir = folder(&[
        (
            "tokenizer_config.json",
            r#"{"bos_token": "<|startoftext|>", "chat_template": "unused"}"#,
        ),
        (
            "chat_template.jinja",
            "{{ bos_token }}{{ messages[0].content }}\n",
        ),
    ]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.describe_template(), "auto:chat_template.jinja");
    assert_eq!(
        text.template()
            .unwrap()
            .render(&[cp_text::Message::user("x")], true)
            .unwrap(),
        "<|startoftext|>x"
    );
    let other = write(dir.path(), "mine.jinja", "[{{ bos_token }}]");
    let text = ModelText::load(dir.path(), None, TemplateChoice::File(other.clone())).unwrap();
    assert_eq!(text.describe_template(), other.display().to_string());
    assert_eq!(
        text.template().unwrap().render(&[], true).unwrap(),
        "[<|startoftext|>]"
    );
}

#[test]
fn tokenizer_override_folder_is_searched_first() {
    // The model folder has only a config; the tokenizer and its template live elsewhere.
    let model = tempfile::tempdir().unwrap();
    write(model.path(), "config.json", r#"{"mask_token_id": 77}"#);
    let tok = folder(&[("tokenizer_config.json", r#"{"chat_template": "T"}"#)]);
    let text = ModelText::load(model.path(), Some(tok.path()), TemplateChoice::Auto).unwrap();
    assert_eq!(text.mask_id(), 77);
    assert_eq!(text.template().unwrap().render(&[], true).unwrap(), "T");
    let file = tok.path().join("tokenizer.json");
    let text = ModelText::load(model.path(), Some(&file), TemplateChoice::Auto).unwrap();
    assert_eq!(text.describe_template(), "auto:tokenizer_config.json");
}

/// A Dream-style folder: no tokenizer.json, a slow byte-level BPE tokenizer instead.
fn dream_like(class: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "vocab.json",
        r#"{"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "Ċ": 5}"#,
    );
    write(dir.path(), "merges.txt", "#version: 0.2\na b\nĠ ab\n");
    let cfg = serde_json::json!({
        "tokenizer_class": class,
        "eos_token": "<|endoftext|>",
        "added_tokens_decoder": {
            "6": {"content": "<|endoftext|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
            "7": {"content": "<|mask|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
            "8": {"content": "<|im_end|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}
        }
    });
    write(dir.path(), "tokenizer_config.json", &cfg.to_string());
    dir
}

#[test]
fn padding_ids_count_as_end_ids_but_never_the_mask() {
    // LLaDA-style: config.json pads with <|end_header_id|> (3) and lists two eos ids;
    // tokenizer_config.json pads with the mask token, which must not become an end id.
    let dir = folder(&[
        (
            "config.json",
            r#"{"mask_token_id": 5, "eos_token_id": [1, 4], "pad_token_id": 3}"#,
        ),
        ("tokenizer_config.json", r#"{"pad_token": "<|mdm_mask|>"}"#),
    ]);
    let text = load(dir.path()).unwrap();
    assert_eq!(text.mask_id(), 5);
    assert_eq!(text.eot_ids(), &[1, 3, 4]);
    assert!(!text.is_eot(5));
}

#[test]
fn dream_style_end_ids_are_im_end_endoftext_and_padding() {
    // Dream: <|endoftext|> (6) is eos and pad, <|im_end|> (8) ends a chat turn.
    let dir = dream_like("Qwen2Tokenizer");
    write(
        dir.path(),
        "generation_config.json",
        r#"{"eos_token_id": [6, 8], "pad_token_id": 6, "mask_token_id": 7}"#,
    );
    let text = load(dir.path()).unwrap();
    assert_eq!(text.eot_ids(), &[6, 8]);
}

#[test]
fn dream_slow_tokenizer_is_converted() {
    let dir = dream_like("DreamTokenizer");
    let text = load(dir.path()).unwrap();
    let tok = text.tokenizer();
    // The Qwen2 pattern splits "ab", " ab", "\n"; special tokens are matched first.
    assert_eq!(tok.encode("ab ab\n<|mask|>").unwrap(), vec![3, 4, 5, 7]);
    assert_eq!(tok.decode(&[3, 4, 5], false).unwrap(), "ab ab\n");
    assert_eq!(tok.token_text(4), " ab");
    assert!(tok.is_special(7) && !tok.is_special(4));
    assert_eq!(text.mask_id(), 7);
    assert_eq!(text.eot_ids(), &[6, 8]);
    assert_eq!(tok.vocab_size(), 9);
}

#[test]
fn slow_tokenizer_with_shifted_added_ids_is_refused() {
    let dir = dream_like("Qwen2Tokenizer");
    // One vocabulary entry fewer: the added tokens would land one id too low.
    write(
        dir.path(),
        "vocab.json",
        r#"{"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4}"#,
    );
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json: key `added_tokens_decoder`: token \"<|endoftext|>\" should have id 6 but gets 5"),
        "{err}"
    );
}

#[test]
fn unknown_slow_tokenizer_class_is_refused() {
    let dir = dream_like("GPT2Tokenizer");
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json: cannot load tokenizer: no such file, and the slow tokenizer class \"GPT2Tokenizer\""),
        "{err}"
    );
}
