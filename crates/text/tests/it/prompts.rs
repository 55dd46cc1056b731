//! Prompt files of every format, and every kind of bad record, read from disk.

use std::path::PathBuf;

use cp_text::{
    read_prompts, ChatTemplate, Message, ModelText, Prompt, PromptContent, PromptFile,
    PromptFormat, TextError, Tokenizer,
};

use crate::write;

/// Writes `text` as `name` in a fresh folder and reads it with `format`.
fn read(
    name: &str,
    text: &str,
    format: Option<PromptFormat>,
) -> (tempfile::TempDir, PathBuf, Result<PromptFile, TextError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, text);
    let result = read_prompts(&path, format);
    (dir, path, result)
}

fn ok(name: &str, text: &str) -> PromptFile {
    read(name, text, None).2.unwrap()
}

/// The error for a bad file must start with `path:line: ` and contain `fragment`.
fn check_err(name: &str, text: &str, format: Option<PromptFormat>, line: usize, fragment: &str) {
    let (_dir, path, result) = read(name, text, format);
    let err = result.expect_err("the file is bad").to_string();
    let prefix = format!("{}:{line}: ", path.display());
    assert!(
        err.starts_with(&prefix),
        "want prefix {prefix:?} in {err:?}"
    );
    assert!(err.contains(fragment), "want {fragment:?} in {err:?}");
}

fn contents(f: &PromptFile) -> Vec<(&str, usize, &PromptContent)> {
    f.iter()
        .map(|p| (p.id.as_str(), p.line, &p.content))
        .collect()
}

fn text(s: &str) -> PromptContent {
    PromptContent::Text(s.to_string())
}

#[test]
fn plain_text() {
    let f = ok("p.txt", "The capital of France is\n\n  \nI like\n");
    assert_eq!(f.format, PromptFormat::Text);
    assert_eq!(
        contents(&f),
        vec![
            ("0", 1, &text("The capital of France is")),
            ("1", 4, &text("I like"))
        ]
    );
}

#[test]
fn jsonl_with_and_without_ids() {
    let f = ok("p.jsonl", "{\"prompt\": \"a\", \"id\": \"q1\"}\n\n{\"prompt\": \"b\", \"id\": 7}\n{\"prompt\": \"c\"}\n");
    assert_eq!(f.format, PromptFormat::Jsonl);
    assert_eq!(
        contents(&f),
        vec![
            ("q1", 1, &text("a")),
            ("7", 3, &text("b")),
            ("2", 4, &text("c"))
        ]
    );
}

#[test]
fn alpaca_joins_input_after_a_blank_line() {
    let f = ok(
        "a.json",
        "[\n {\"instruction\": \"Translate.\", \"input\": \"Bonjour\", \"output\": \"Hello\"},\n {\"instruction\": \"Count.\", \"input\": \"\"}\n]\n",
    );
    assert_eq!(f.format, PromptFormat::Alpaca);
    assert_eq!(
        contents(&f),
        vec![
            ("0", 2, &text("Translate.\n\nBonjour")),
            ("1", 3, &text("Count."))
        ]
    );
}

#[test]
fn lima_takes_the_first_turn() {
    let f = ok(
        "l.jsonl",
        "{\"conversations\": [\"Q?\", \"A.\", \"Q2?\"], \"source\": \"x\"}\n",
    );
    assert_eq!(f.format, PromptFormat::Lima);
    assert_eq!(contents(&f), vec![("0", 1, &text("Q?"))]);
}

#[test]
fn chat_drops_a_trailing_assistant_turn() {
    let f = ok(
        "c.jsonl",
        r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]}"#,
    );
    assert_eq!(f.format, PromptFormat::Chat);
    assert_eq!(
        f.prompts[0].content,
        PromptContent::Messages(vec![Message::new("system", "S"), Message::user("U")])
    );
}

#[test]
fn pre_tokenized() {
    let f = ok(
        "i.jsonl",
        "{\"input_ids\": [1, 2, 126336], \"id\": \"x\"}\n",
    );
    assert_eq!(f.format, PromptFormat::Ids);
    assert_eq!(f.prompts[0].content, PromptContent::Ids(vec![1, 2, 126336]));
}

#[test]
fn forced_format_overrides_detection() {
    // A .txt file that holds JSON lines is read as JSON when asked.
    let (_d, _p, f) = read("p.txt", "{\"prompt\": \"a\"}\n", Some(PromptFormat::Jsonl));
    assert_eq!(f.unwrap().prompts[0].content, text("a"));
    // And a .jsonl file as text.
    let (_d, _p, f) = read("p.jsonl", "{\"prompt\": \"a\"}\n", Some(PromptFormat::Text));
    assert_eq!(f.unwrap().prompts[0].content, text("{\"prompt\": \"a\"}"));
}

#[test]
fn empty_files_are_errors() {
    for (name, body) in [
        ("e.txt", ""),
        ("e.txt", "\n  \n"),
        ("e.jsonl", "\n"),
        ("e.json", "[]"),
    ] {
        let (_d, path, result) = read(name, body, None);
        let err = result.unwrap_err();
        assert!(
            matches!(err, TextError::NoPrompts { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{}: no prompts in file", path.display())
        );
    }
}

#[test]
fn invalid_json_line() {
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n",
        None,
        2,
        "invalid json: EOF while parsing",
    );
}

#[test]
fn invalid_json_inside_an_array() {
    check_err(
        "p.json",
        "[\n {\"prompt\": \"a\"},\n {\"prompt\" \"b\"}\n]",
        None,
        3,
        "invalid json: expected `:`",
    );
}

#[test]
fn record_that_is_not_an_object() {
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\"}\n[1, 2]\n",
        None,
        2,
        "expected a json object, found a list",
    );
}

#[test]
fn unrecognised_first_record() {
    let body = "{\"text\": \"a\", \"label\": 1}\n";
    check_err(
        "p.jsonl",
        body,
        None,
        1,
        "cannot tell the prompt format: the record has keys",
    );
    check_err("p.jsonl", body, None, 1, "`text`");
    check_err(
        "p.jsonl",
        body,
        None,
        1,
        "expected one of `prompt` (jsonl), `instruction` (alpaca)",
    );
}

#[test]
fn missing_key_in_a_later_record() {
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\"}\n{\"id\": 3}\n",
        None,
        2,
        "missing key `prompt` (format jsonl)",
    );
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\"}\n",
        Some(PromptFormat::Alpaca),
        1,
        "missing key `instruction` (format alpaca)",
    );
}

#[test]
fn mixed_formats() {
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\"}\n{\"instruction\": \"b\"}\n",
        None,
        2,
        "mixed formats: this record is alpaca (key `instruction`) but the first record (line 1) is jsonl (key `prompt`)",
    );
}

#[test]
fn wrong_types() {
    check_err(
        "p.jsonl",
        "{\"prompt\": 3}\n",
        None,
        1,
        "key `prompt`: expected a string, found a number",
    );
    check_err(
        "p.jsonl",
        "{\"prompt\": \"\"}\n",
        None,
        1,
        "key `prompt`: empty string",
    );
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\", \"id\": [1]}\n",
        None,
        1,
        "key `id`: expected a string or an integer, found a list",
    );
    check_err(
        "p.jsonl",
        "{\"instruction\": \"a\", \"input\": 5}\n",
        None,
        1,
        "key `input`: expected a string, found a number",
    );
    check_err(
        "p.jsonl",
        "{\"conversations\": \"a\"}\n",
        None,
        1,
        "key `conversations`: expected a list of strings, found a string",
    );
    check_err(
        "p.jsonl",
        "{\"conversations\": []}\n",
        None,
        1,
        "key `conversations`: empty list",
    );
    check_err(
        "p.jsonl",
        "{\"conversations\": [{\"from\": \"human\"}]}\n",
        None,
        1,
        "found an object as the first turn",
    );
    check_err(
        "p.jsonl",
        "{\"messages\": {}}\n",
        None,
        1,
        "key `messages`: expected a list of {role, content}, found an object",
    );
    check_err(
        "p.jsonl",
        "{\"messages\": [\"hi\"]}\n",
        None,
        1,
        "turn 0 must be an object with `role` and `content`, found a string",
    );
    check_err(
        "p.jsonl",
        "{\"messages\": [{\"role\": \"user\"}]}\n",
        None,
        1,
        "turn 0 has no `content`",
    );
    check_err(
        "p.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}\n",
        None,
        1,
        "turn 0: `content` must be a string, found a list",
    );
    check_err(
        "p.jsonl",
        "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}\n",
        None,
        1,
        "no turn left once a trailing assistant turn is dropped",
    );
    check_err(
        "p.jsonl",
        "{\"input_ids\": \"1 2\"}\n",
        None,
        1,
        "key `input_ids`: expected a list of token ids, found a string",
    );
    check_err(
        "p.jsonl",
        "{\"input_ids\": []}\n",
        None,
        1,
        "key `input_ids`: empty list",
    );
    check_err(
        "p.jsonl",
        "{\"input_ids\": [1, -2]}\n",
        None,
        1,
        "key `input_ids`: item 1 is not a token id (found -2)",
    );
    check_err(
        "p.jsonl",
        "{\"input_ids\": [4294967296]}\n",
        None,
        1,
        "item 0 is not a token id",
    );
}

#[test]
fn duplicate_ids() {
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\", \"id\": \"x\"}\n{\"prompt\": \"b\", \"id\": \"x\"}\n",
        None,
        2,
        "duplicate id `x` (first used on line 1)",
    );
    // An explicit id may collide with another record's index.
    check_err(
        "p.jsonl",
        "{\"prompt\": \"a\", \"id\": 1}\n{\"prompt\": \"b\"}\n",
        None,
        2,
        "duplicate id `1`",
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.txt");
    std::fs::write(&path, b"ok\nbad \xff\n").unwrap();
    let err = read_prompts(&path, None).unwrap_err().to_string();
    assert_eq!(err, format!("{}:2: invalid utf-8", path.display()));
}

#[test]
fn missing_file_names_it() {
    let err = read_prompts("/nonexistent/prompts.txt".as_ref(), None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/nonexistent/prompts.txt: "), "{err}");
}

/// The tiny word-level tokenizer with LLaDA's special tokens (ids 0–5) and hello 6, world 7,
/// user 8, assistant 9, system 10; `bos_post_processor` adds a post-processor that puts
/// `<|startoftext|>` first, as LLaDA's tokenizer.json does.
fn llada_word_tokenizer(bos_post_processor: bool) -> Tokenizer {
    let dir = tempfile::tempdir().unwrap();
    let specials = [
        "<|startoftext|>",
        "<|endoftext|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|mdm_mask|>",
    ];
    let mut json: serde_json::Value = serde_json::from_str(&crate::word_level_tokenizer(
        &specials,
        &["hello", "world", "user", "assistant", "system"],
    ))
    .unwrap();
    if bos_post_processor {
        json["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"<|startoftext|>": {"id": "<|startoftext|>", "ids": [0], "tokens": ["<|startoftext|>"]}}
        });
    }
    let path = write(dir.path(), "tokenizer.json", &json.to_string());
    Tokenizer::from_file(&path).unwrap()
}

fn llada_template() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(&crate::data("llada-8b-instruct/tokenizer_config.json"))
        .unwrap()
        .unwrap()
}

/// A model text with the tiny word-level tokenizer (no post-processor) and, optionally, the
/// LLaDA template.
fn model_text(with_template: bool) -> ModelText {
    let template = with_template.then(llada_template);
    ModelText::new(llada_word_tokenizer(false), 5, vec![4, 1, 4], template)
}

#[test]
fn to_ids_with_and_without_template() {
    let plain = model_text(false);
    let chat = model_text(true);
    assert_eq!(plain.eot_ids(), &[1, 4]);
    assert_eq!(chat.describe_template(), "auto:tokenizer_config.json");
    let p = |content| Prompt {
        id: "0".into(),
        line: 1,
        content,
    };
    // hello 6, world 7, user 8, assistant 9, system 10.
    assert_eq!(p(text("hello world")).to_ids(&plain).unwrap(), vec![6, 7]);
    assert_eq!(
        p(text("hello world")).to_ids(&chat).unwrap(),
        vec![0, 2, 8, 3, 6, 7, 4, 2, 9, 3]
    );
    let conv = PromptContent::Messages(vec![
        Message::new("system", "world"),
        Message::user("hello"),
    ]);
    assert_eq!(p(conv.clone()).to_ids(&plain).unwrap(), vec![7, 6]);
    assert_eq!(
        p(conv).to_ids(&chat).unwrap(),
        vec![0, 2, 10, 3, 7, 4, 2, 8, 3, 6, 4, 2, 9, 3]
    );
    // Pre-tokenized prompts bypass tokenizer and template, whatever the ids.
    assert_eq!(
        p(PromptContent::Ids(vec![9, 126336]))
            .to_ids(&chat)
            .unwrap(),
        vec![9, 126336]
    );
    assert_eq!(p(text("a")).plain_text().as_deref(), Some("a"));
    assert_eq!(p(PromptContent::Ids(vec![1])).messages(), None);
}

#[test]
fn plain_text_gets_the_tokenizers_own_special_tokens() {
    // A LLaDA-style tokenizer whose post-processor puts <|startoftext|> (0) first, as
    // transformers' tokenizer(text) applies it; a Qwen2-style one (no post-processor) adds
    // nothing.
    let p = |content| Prompt {
        id: "0".into(),
        line: 1,
        content,
    };
    let llada = ModelText::new(llada_word_tokenizer(true), 5, vec![1, 4], None);
    assert!(llada.plain_special_tokens());
    assert_eq!(
        p(text("hello world")).to_ids(&llada).unwrap(),
        vec![0, 6, 7]
    );
    let as_written = llada.with_plain_special_tokens(false);
    assert_eq!(
        p(text("hello world")).to_ids(&as_written).unwrap(),
        vec![6, 7]
    );
    // A rendered chat template carries its own BOS: nothing is added to it.
    let chat = ModelText::new(
        llada_word_tokenizer(true),
        5,
        vec![1, 4],
        Some(llada_template()),
    );
    assert_eq!(
        p(text("hello world")).to_ids(&chat).unwrap(),
        vec![0, 2, 8, 3, 6, 7, 4, 2, 9, 3]
    );
    // No post-processor (Qwen2-style): the default adds nothing.
    assert_eq!(
        p(text("hello world")).to_ids(&model_text(false)).unwrap(),
        vec![6, 7]
    );
}
