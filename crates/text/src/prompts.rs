//! Prompt files: plain text, JSON Lines, Alpaca, LIMA, chat and pre-tokenized.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::config::{json_type, strip_serde_position};
use crate::template::Message;
use crate::{ModelText, TextError};

/// The layout of a prompt file.
///
/// | format   | one prompt is                                   | key(s) detected            |
/// |----------|-------------------------------------------------|----------------------------|
/// | `text`   | a non-blank line                                | (`.txt`, or not JSON)      |
/// | `jsonl`  | `{"prompt": "...", "id": ...}`                  | `prompt`                   |
/// | `alpaca` | `{"instruction": "...", "input": "..."}`        | `instruction`              |
/// | `lima`   | `{"conversations": ["...", ...]}`               | `conversations`            |
/// | `chat`   | `{"messages": [{"role": ..., "content": ...}]}` | `messages`                 |
/// | `ids`    | `{"input_ids": [1, 2, 3]}`                      | `input_ids`                |
///
/// JSON formats are read one object per line, or from a file holding one JSON array of
/// objects. Every record may carry an `id` (string or integer); without one a prompt's
/// id is its 0-based index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PromptFormat {
    /// Detect from the extension and the keys of the first record.
    #[default]
    Auto,
    /// One prompt per non-blank line, kept exactly as written (without the line break).
    Text,
    /// `prompt` (string).
    Jsonl,
    /// `instruction` and an optional `input`; a non-empty input is appended after a blank
    /// line (`instruction + "\n\n" + input`), with no `### Instruction:` headers.
    Alpaca,
    /// `conversations`, a list of strings alternating user and assistant; the first is the prompt.
    Lima,
    /// `messages`, a list of `{role, content}`; a trailing assistant turn (the reference
    /// answer) is dropped so the model is asked to write it.
    Chat,
    /// `input_ids`, a list of token ids used as they are: no template, no tokenizer.
    Ids,
}

impl PromptFormat {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptFormat::Auto => "auto",
            PromptFormat::Text => "text",
            PromptFormat::Jsonl => "jsonl",
            PromptFormat::Alpaca => "alpaca",
            PromptFormat::Lima => "lima",
            PromptFormat::Chat => "chat",
            PromptFormat::Ids => "ids",
        }
    }

    /// The key that marks a record of this format.
    fn key(self) -> Option<&'static str> {
        match self {
            PromptFormat::Jsonl => Some("prompt"),
            PromptFormat::Alpaca => Some("instruction"),
            PromptFormat::Lima => Some("conversations"),
            PromptFormat::Chat => Some("messages"),
            PromptFormat::Ids => Some("input_ids"),
            PromptFormat::Auto | PromptFormat::Text => None,
        }
    }
}

/// Record formats in detection order: the first whose key a record has wins.
const DETECT_ORDER: [PromptFormat; 5] = [
    PromptFormat::Ids,
    PromptFormat::Chat,
    PromptFormat::Lima,
    PromptFormat::Alpaca,
    PromptFormat::Jsonl,
];

impl FromStr for PromptFormat {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => PromptFormat::Auto,
            "text" => PromptFormat::Text,
            "jsonl" => PromptFormat::Jsonl,
            "alpaca" => PromptFormat::Alpaca,
            "lima" => PromptFormat::Lima,
            "chat" => PromptFormat::Chat,
            "ids" => PromptFormat::Ids,
            _ => {
                return Err(TextError::Parse {
                    what: "prompt format",
                    value: s.to_string(),
                    expected: "one of auto, text, jsonl, alpaca, lima, chat, ids",
                })
            }
        })
    }
}

impl fmt::Display for PromptFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a prompt holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptContent {
    /// One user turn (text, jsonl, alpaca and lima files).
    Text(String),
    /// A conversation (chat files), never ending with an assistant turn.
    Messages(Vec<Message>),
    /// Token ids, used as they are.
    Ids(Vec<u32>),
}

/// One prompt of a prompt file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The record's `id`, or its 0-based index in the file.
    pub id: String,
    /// 1-based line of the record in its file.
    pub line: usize,
    pub content: PromptContent,
}

impl Prompt {
    /// The prompt's token ids for a model.
    ///
    /// With a chat template, the prompt (as one user turn, or its conversation) is
    /// rendered with `add_generation_prompt = true`; without one, the raw text is used
    /// (a conversation's contents joined by `"\n\n"`). The text is then encoded without
    /// added special tokens (the template writes its own BOS). Pre-tokenized prompts are
    /// returned unchanged.
    pub fn to_ids(&self, text: &ModelText) -> Result<Vec<u32>, TextError> {
        match &self.content {
            PromptContent::Ids(ids) => Ok(ids.clone()),
            PromptContent::Text(s) => match text.template() {
                Some(_) => text.encode_messages(&[Message::user(s.as_str())]),
                None => text.encode_plain(s),
            },
            PromptContent::Messages(m) => text.encode_messages(m),
        }
    }

    /// The conversation a chat template sees: one user turn for text prompts, `None`
    /// for pre-tokenized ones.
    pub fn messages(&self) -> Option<Vec<Message>> {
        match &self.content {
            PromptContent::Text(s) => Some(vec![Message::user(s.as_str())]),
            PromptContent::Messages(m) => Some(m.clone()),
            PromptContent::Ids(_) => None,
        }
    }

    /// The text encoded when there is no template (a conversation's contents joined by
    /// `"\n\n"`); `None` for pre-tokenized prompts.
    pub fn plain_text(&self) -> Option<String> {
        match &self.content {
            PromptContent::Text(s) => Some(s.clone()),
            PromptContent::Messages(m) => Some(
                m.iter()
                    .map(|t| t.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            ),
            PromptContent::Ids(_) => None,
        }
    }
}

/// The prompts of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFile {
    pub path: PathBuf,
    /// The detected or forced format; never [`PromptFormat::Auto`].
    pub format: PromptFormat,
    /// At least one prompt, ids unique.
    pub prompts: Vec<Prompt>,
}

impl PromptFile {
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Always false for a file returned by [`read_prompts`].
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Prompt> {
        self.prompts.iter()
    }
}

impl<'a> IntoIterator for &'a PromptFile {
    type Item = &'a Prompt;
    type IntoIter = std::slice::Iter<'a, Prompt>;

    fn into_iter(self) -> Self::IntoIter {
        self.prompts.iter()
    }
}

/// Reads a prompt file.
///
/// `format` `None` or [`PromptFormat::Auto`] detects it: `.txt` files are text; `.json`,
/// `.jsonl` and `.ndjson` files are JSON and their first record's keys give the format
/// (see [`PromptFormat`]); other files are JSON if their first non-blank character is
/// `{` or `[`, else text. Every record of a detected JSON file must have the same format.
///
/// Errors name the file and the 1-based line at fault: invalid JSON, a missing key, a
/// value of the wrong type, a record in another format than the first, a duplicate id.
/// A file with no prompt is an error.
pub fn read_prompts(path: &Path, format: Option<PromptFormat>) -> Result<PromptFile, TextError> {
    let bytes = std::fs::read(path).map_err(|e| TextError::io(path, e))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(TextError::prompt(path, line, "invalid utf-8"));
        }
    };
    parse_prompts(path, text, format.unwrap_or_default())
}

/// Parses the text of a prompt file; `path` is used for detection and messages.
pub fn parse_prompts(
    path: &Path,
    text: &str,
    format: PromptFormat,
) -> Result<PromptFile, TextError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_text = match format {
        PromptFormat::Text => true,
        PromptFormat::Auto => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            match ext.as_deref() {
                Some("txt" | "text") => true,
                Some("json" | "jsonl" | "ndjson") => false,
                _ => !matches!(text.trim_start().chars().next(), Some('{' | '[')),
            }
        }
        _ => false,
    };
    let (format, prompts) = if is_text {
        (PromptFormat::Text, text_prompts(text))
    } else {
        json_prompts(path, text, format)?
    };
    if prompts.is_empty() {
        return Err(TextError::NoPrompts {
            path: path.to_path_buf(),
        });
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for p in &prompts {
        if let Some(first) = seen.insert(&p.id, p.line) {
            return Err(TextError::prompt(
                path,
                p.line,
                format!("duplicate id `{}` (first used on line {first})", p.id),
            ));
        }
    }
    Ok(PromptFile {
        path: path.to_path_buf(),
        format,
        prompts,
    })
}

fn text_prompts(text: &str) -> Vec<Prompt> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .enumerate()
        .map(|(index, (i, l))| Prompt {
            id: index.to_string(),
            line: i + 1,
            content: PromptContent::Text(l.strip_suffix('\r').unwrap_or(l).to_string()),
        })
        .collect()
}

/// The JSON records of a file with their 1-based lines: the elements of a top-level
/// array, a single object spread over several lines, or one object per line.
fn json_records(path: &Path, text: &str) -> Result<Vec<(usize, Value)>, TextError> {
    let trimmed = text.trim_start();
    let first_line = text[..text.len() - trimmed.len()].matches('\n').count() + 1;
    if trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(text).map_err(|e| TextError::Json {
            path: path.to_path_buf(),
            line: Some(e.line()),
            message: strip_serde_position(&e),
        })?;
        let Value::Array(items) = value else {
            unreachable!("text starting with [ parsed as a non-array");
        };
        let lines = array_element_lines(text);
        debug_assert_eq!(lines.len(), items.len());
        return Ok(lines.into_iter().zip(items).collect());
    }
    if trimmed.starts_with('{') && trimmed.trim_end().contains('\n') {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
            return Ok(vec![(first_line, v)]);
        }
    }
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| TextError::Json {
            path: path.to_path_buf(),
            line: Some(i + 1),
            message: strip_serde_position(&e),
        })?;
        records.push((i + 1, value));
    }
    Ok(records)
}

/// The 1-based line on which each element of a valid top-level JSON array starts.
fn array_element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expecting = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && expecting && c != ']' {
            lines.push(line);
            expecting = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    lines
}

fn json_prompts(
    path: &Path,
    text: &str,
    requested: PromptFormat,
) -> Result<(PromptFormat, Vec<Prompt>), TextError> {
    let records = json_records(path, text)?;
    let mut prompts = Vec::with_capacity(records.len());
    // The file's format and the line that fixed it (0 when forced).
    let mut file_format: Option<(PromptFormat, usize)> = match requested {
        PromptFormat::Auto => None,
        f => Some((f, 0)),
    };
    for (index, (line, value)) in records.into_iter().enumerate() {
        let err = |message: String| TextError::prompt(path, line, message);
        let Value::Object(obj) = value else {
            return Err(err(format!(
                "expected a json object, found {}",
                json_type(&value)
            )));
        };
        let detected = DETECT_ORDER
            .into_iter()
            .find(|f| f.key().is_some_and(|k| obj.contains_key(k)));
        let format = match (file_format, detected) {
            (None, Some(d)) => {
                file_format = Some((d, line));
                d
            }
            (None, None) => {
                return Err(err(format!(
                    "cannot tell the prompt format: {}; expected one of `prompt` (jsonl), `instruction` (alpaca), `conversations` (lima), `messages` (chat), `input_ids` (ids)",
                    describe_keys(&obj)
                )))
            }
            (Some((f, first)), d) => {
                if let (true, Some(d)) = (first > 0, d) {
                    if d != f {
                        return Err(err(format!(
                            "mixed formats: this record is {d} (key `{}`) but the first record (line {first}) is {f} (key `{}`)",
                            d.key().unwrap_or_default(),
                            f.key().unwrap_or_default()
                        )));
                    }
                }
                f
            }
        };
        let content = parse_record(&obj, format).map_err(err)?;
        let id = match obj.get("id") {
            None | Some(Value::Null) => index.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(other) => {
                return Err(err(format!(
                    "key `id`: expected a string or an integer, found {}",
                    json_type(other)
                )))
            }
        };
        prompts.push(Prompt { id, line, content });
    }
    let format = file_format.map_or(requested, |(f, _)| f);
    Ok((format, prompts))
}

fn describe_keys(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "the record has no keys".to_string();
    }
    let keys: Vec<String> = obj.keys().map(|k| format!("`{k}`")).collect();
    format!("the record has keys {}", keys.join(", "))
}

fn missing(key: &str, format: PromptFormat) -> String {
    format!("missing key `{key}` (format {format})")
}

fn nonempty_string(
    obj: &Map<String, Value>,
    key: &str,
    format: PromptFormat,
) -> Result<String, String> {
    match obj.get(key) {
        None => Err(missing(key, format)),
        Some(Value::String(s)) if s.is_empty() => Err(format!("key `{key}`: empty string")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "key `{key}`: expected a string, found {}",
            json_type(other)
        )),
    }
}

fn parse_record(obj: &Map<String, Value>, format: PromptFormat) -> Result<PromptContent, String> {
    match format {
        PromptFormat::Jsonl => Ok(PromptContent::Text(nonempty_string(obj, "prompt", format)?)),
        PromptFormat::Alpaca => {
            let instruction = nonempty_string(obj, "instruction", format)?;
            let input = match obj.get("input") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(format!(
                        "key `input`: expected a string, found {}",
                        json_type(other)
                    ))
                }
            };
            Ok(PromptContent::Text(if input.is_empty() {
                instruction
            } else {
                format!("{instruction}\n\n{input}")
            }))
        }
        PromptFormat::Lima => {
            let turns = match obj.get("conversations") {
                None => return Err(missing("conversations", format)),
                Some(Value::Array(t)) => t,
                Some(other) => {
                    return Err(format!(
                        "key `conversations`: expected a list of strings, found {}",
                        json_type(other)
                    ))
                }
            };
            match turns.first() {
                None => Err("key `conversations`: empty list".to_string()),
                Some(Value::String(s)) if s.is_empty() => {
                    Err("key `conversations`: the first turn is an empty string".to_string())
                }
                Some(Value::String(s)) => Ok(PromptContent::Text(s.clone())),
                Some(other) => Err(format!(
                    "key `conversations`: expected a list of strings, found {} as the first turn",
                    json_type(other)
                )),
            }
        }
        PromptFormat::Chat => {
            let turns = match obj.get("messages") {
                None => return Err(missing("messages", format)),
                Some(Value::Array(t)) => t,
                Some(other) => {
                    return Err(format!(
                        "key `messages`: expected a list of {{role, content}}, found {}",
                        json_type(other)
                    ))
                }
            };
            let mut messages = Vec::with_capacity(turns.len());
            for (i, turn) in turns.iter().enumerate() {
                let field = |k: &str| match turn.get(k) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    None => Err(format!("key `messages`: turn {i} has no `{k}`")),
                    Some(other) => Err(format!(
                        "key `messages`: turn {i}: `{k}` must be a string, found {}",
                        json_type(other)
                    )),
                };
                if !turn.is_object() {
                    return Err(format!(
                        "key `messages`: turn {i} must be an object with `role` and `content`, found {}",
                        json_type(turn)
                    ));
                }
                messages.push(Message {
                    role: field("role")?,
                    content: field("content")?,
                });
            }
            if messages.last().is_some_and(|m| m.role == "assistant") {
                messages.pop();
            }
            if messages.is_empty() {
                return Err(
                    "key `messages`: no turn left once a trailing assistant turn is dropped"
                        .to_string(),
                );
            }
            Ok(PromptContent::Messages(messages))
        }
        PromptFormat::Ids => {
            let ids = match obj.get("input_ids") {
                None => return Err(missing("input_ids", format)),
                Some(Value::Array(ids)) => ids,
                Some(other) => {
                    return Err(format!(
                        "key `input_ids`: expected a list of token ids, found {}",
                        json_type(other)
                    ))
                }
            };
            if ids.is_empty() {
                return Err("key `input_ids`: empty list".to_string());
            }
            ids.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("key `input_ids`: item {i} is not a token id (found {v})")
                        })
                })
                .collect::<Result<Vec<u32>, String>>()
                .map(PromptContent::Ids)
        }
        PromptFormat::Auto | PromptFormat::Text => unreachable!("not a record format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<PromptFile, TextError> {
        parse_prompts(Path::new(name), text, PromptFormat::Auto)
    }

    #[test]
    fn format_names_round_trip() {
        for f in [
            PromptFormat::Auto,
            PromptFormat::Text,
            PromptFormat::Jsonl,
            PromptFormat::Alpaca,
            PromptFormat::Lima,
            PromptFormat::Chat,
            PromptFormat::Ids,
        ] {
            assert_eq!(f.as_str().parse::<PromptFormat>().unwrap(), f);
        }
        let err = "yaml".parse::<PromptFormat>().unwrap_err().to_string();
        assert_eq!(err, "invalid prompt format `yaml`: expected one of auto, text, jsonl, alpaca, lima, chat, ids");
    }

    #[test]
    fn array_element_lines_skip_nested_and_strings() {
        let text = "[\n  {\"a\": [1, 2], \"s\": \"x,]\\\"{\"},\n\n  {\"b\": {\"c\": 1}}\n, 3]";
        assert_eq!(array_element_lines(text), vec![2, 4, 5]);
        assert_eq!(array_element_lines("[]"), Vec::<usize>::new());
    }

    #[test]
    fn text_lines_keep_spaces_and_skip_blanks() {
        let f = parse("p.txt", "  a b \r\n\n   \nc\n").unwrap();
        assert_eq!(f.format, PromptFormat::Text);
        let got: Vec<(&str, usize, &PromptContent)> = f
            .iter()
            .map(|p| (p.id.as_str(), p.line, &p.content))
            .collect();
        assert_eq!(
            got,
            vec![
                ("0", 1, &PromptContent::Text("  a b ".into())),
                ("1", 4, &PromptContent::Text("c".into())),
            ]
        );
    }

    #[test]
    fn unknown_extension_is_sniffed() {
        assert_eq!(
            parse("p.dat", "{\"prompt\": \"x\"}\n").unwrap().format,
            PromptFormat::Jsonl
        );
        assert_eq!(
            parse("p.dat", "hello {\n").unwrap().format,
            PromptFormat::Text
        );
    }

    #[test]
    fn multi_line_single_object() {
        let f = parse("p.json", "\n{\n  \"prompt\": \"x\"\n}\n").unwrap();
        assert_eq!(f.prompts[0].line, 2);
        assert_eq!(f.prompts[0].content, PromptContent::Text("x".into()));
    }

    #[test]
    fn forced_format_reports_missing_key() {
        let err = parse_prompts(
            Path::new("p.jsonl"),
            "{\"prompt\": \"x\"}\n",
            PromptFormat::Chat,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "p.jsonl:1: missing key `messages` (format chat)");
    }
}
