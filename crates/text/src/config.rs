//! Reading the JSON files of a Hugging Face model folder that concern text:
//! `config.json`, `generation_config.json` and `tokenizer_config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::Value;
use serde_json::Map;

use crate::TextError;

/// The special-token attributes `transformers` passes to chat templates
/// (`SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES`, less the list).
const TOKEN_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A JSON object file, or `None` when the file does not exist.
pub(crate) fn read_json_object(
    path: &Path,
) -> Result<Option<Map<String, serde_json::Value>>, TextError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TextError::io(path, e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| TextError::Json {
        path: path.to_path_buf(),
        line: Some(e.line()),
        message: strip_serde_position(&e),
    })?;
    match value {
        serde_json::Value::Object(m) => Ok(Some(m)),
        other => Err(TextError::Json {
            path: path.to_path_buf(),
            line: None,
            message: format!("expected an object, found {}", json_type(&other)),
        }),
    }
}

/// serde_json appends " at line L column C"; the line is reported separately.
pub(crate) fn strip_serde_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &text[..i], e.column()),
        None => text,
    }
}

/// A JSON type as a user would name it, for messages.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A token id key that holds one id, or `null`/absent.
pub(crate) fn read_id(
    map: &Map<String, serde_json::Value>,
    key: &str,
    path: &Path,
) -> Result<Option<u32>, TextError> {
    match map.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => as_id(v).map(Some).ok_or_else(|| {
            TextError::config(
                path,
                key,
                format!("expected a token id, found {}", describe(v)),
            )
        }),
    }
}

/// A token id key that holds one id or a list of ids (`eos_token_id`), or `null`/absent.
pub(crate) fn read_ids(
    map: &Map<String, serde_json::Value>,
    key: &str,
    path: &Path,
) -> Result<Vec<u32>, TextError> {
    match map.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                as_id(v).ok_or_else(|| {
                    TextError::config(
                        path,
                        key,
                        format!("expected a list of token ids, found {} in it", describe(v)),
                    )
                })
            })
            .collect(),
        Some(v) => as_id(v).map(|id| vec![id]).ok_or_else(|| {
            TextError::config(
                path,
                key,
                format!(
                    "expected a token id or a list of them, found {}",
                    describe(v)
                ),
            )
        }),
    }
}

fn as_id(v: &serde_json::Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn describe(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("the string {s:?}"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        other => json_type(other).to_string(),
    }
}

/// The parts of `tokenizer_config.json` that matter here.
#[derive(Debug, Clone)]
pub(crate) struct TokenizerConfig {
    pub path: PathBuf,
    /// `bos_token`, `eos_token`, ... as plain strings (an `AddedToken` dict gives its `content`).
    pub tokens: BTreeMap<String, String>,
    /// `additional_special_tokens`.
    pub additional: Vec<String>,
    /// The template source: `chat_template` as a string, or the `default` entry of a list.
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Reads and checks a `tokenizer_config.json`; a missing file is an error.
    pub fn read(path: &Path) -> Result<Self, TextError> {
        match Self::read_if_exists(path)? {
            Some(c) => Ok(c),
            None => Err(TextError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            )),
        }
    }

    /// Reads a `tokenizer_config.json`, or `None` when there is none.
    pub fn read_if_exists(path: &Path) -> Result<Option<Self>, TextError> {
        let Some(map) = read_json_object(path)? else {
            return Ok(None);
        };
        let mut tokens = BTreeMap::new();
        for key in TOKEN_KEYS {
            if let Some(v) = map.get(key) {
                if let Some(s) = token_content(v).map_err(|m| TextError::config(path, key, m))? {
                    tokens.insert(key.to_string(), s);
                }
            }
        }
        let mut additional = Vec::new();
        match map.get("additional_special_tokens") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    if let Some(s) = token_content(item)
                        .map_err(|m| TextError::config(path, "additional_special_tokens", m))?
                    {
                        additional.push(s);
                    }
                }
            }
            Some(other) => {
                return Err(TextError::config(
                    path,
                    "additional_special_tokens",
                    format!("expected a list, found {}", json_type(other)),
                ))
            }
        }
        let chat_template = match map.get("chat_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => Some(default_template(list, path)?),
            Some(other) => {
                return Err(TextError::config(
                    path,
                    "chat_template",
                    format!(
                        "expected a string or a list of {{name, template}}, found {}",
                        json_type(other)
                    ),
                ))
            }
        };
        Ok(Some(TokenizerConfig {
            path: path.to_path_buf(),
            tokens,
            additional,
            chat_template,
        }))
    }

    /// The variables a chat template is rendered with, as `transformers` passes its
    /// `special_tokens_map`.
    pub fn template_variables(&self) -> BTreeMap<String, Value> {
        let mut vars: BTreeMap<String, Value> = self
            .tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        if !self.additional.is_empty() {
            vars.insert(
                "additional_special_tokens".into(),
                Value::from_serialize(&self.additional),
            );
        }
        vars
    }
}

/// A special token written as a string, an `AddedToken` dict (`{"content": ...}`) or null.
fn token_content(v: &serde_json::Value) -> Result<Option<String>, String> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Object(m) => match m.get("content") {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            _ => Err("expected a token dict with a string `content`".to_string()),
        },
        other => Err(format!(
            "expected a string or a token dict, found {}",
            json_type(other)
        )),
    }
}

/// `transformers` takes the entry named `default` from a list of named templates.
fn default_template(list: &[serde_json::Value], path: &Path) -> Result<String, TextError> {
    let mut names = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let name = entry.get("name").and_then(|n| n.as_str());
        let template = entry.get("template").and_then(|t| t.as_str());
        match (name, template) {
            (Some("default"), Some(t)) => return Ok(t.to_string()),
            (Some(n), Some(_)) => names.push(n.to_string()),
            _ => {
                return Err(TextError::config(
                    path,
                    "chat_template",
                    format!("entry {i} is not an object with string `name` and `template`"),
                ))
            }
        }
    }
    Err(TextError::config(
        path,
        "chat_template",
        format!(
            "a list of templates without a `default` entry (names: {})",
            names.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ids_accept_int_list_and_null() {
        let p = Path::new("config.json");
        let m = obj(json!({"a": 5, "b": [7, 3], "c": null, "d": "x", "e": [1, -2]}));
        assert_eq!(read_ids(&m, "a", p).unwrap(), vec![5]);
        assert_eq!(read_ids(&m, "b", p).unwrap(), vec![7, 3]);
        assert_eq!(read_ids(&m, "c", p).unwrap(), Vec::<u32>::new());
        assert_eq!(read_ids(&m, "missing", p).unwrap(), Vec::<u32>::new());
        let err = read_ids(&m, "d", p).unwrap_err().to_string();
        assert_eq!(
            err,
            "config.json: key `d`: expected a token id or a list of them, found the string \"x\""
        );
        let err = read_ids(&m, "e", p).unwrap_err().to_string();
        assert!(
            err.contains("key `e`") && err.contains("the number -2"),
            "{err}"
        );
        assert_eq!(read_id(&m, "a", p).unwrap(), Some(5));
        assert!(read_id(&m, "b", p).is_err());
    }

    #[test]
    fn token_content_reads_strings_and_dicts() {
        assert_eq!(token_content(&json!("<s>")).unwrap(), Some("<s>".into()));
        assert_eq!(
            token_content(&json!({"__type": "AddedToken", "content": "</s>", "lstrip": false}))
                .unwrap(),
            Some("</s>".into())
        );
        assert_eq!(token_content(&json!(null)).unwrap(), None);
        assert!(token_content(&json!(3)).is_err());
    }

    #[test]
    fn template_list_takes_default() {
        let p = Path::new("tokenizer_config.json");
        let list =
            json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]);
        assert_eq!(default_template(list.as_array().unwrap(), p).unwrap(), "D");
        let list = json!([{"name": "tool_use", "template": "T"}]);
        let err = default_template(list.as_array().unwrap(), p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `chat_template`") && err.contains("tool_use"),
            "{err}"
        );
    }
}
