//! Chat templates, rendered the way `transformers`' `apply_chat_template` renders them.
//!
//! `transformers` compiles the Jinja source with `trim_blocks=True, lstrip_blocks=True`
//! (and Jinja's default `keep_trailing_newline=False`), adds a `raise_exception`
//! function, a `strftime_now` function and its own `tojson` filter (`json.dumps` with
//! `ensure_ascii=False`, not Jinja's HTML-escaping one), and renders with `messages`,
//! `tools=None`, `documents=None`, `add_generation_prompt` and every special token of
//! `tokenizer_config.json` (`bos_token`, `eos_token`, ...). This module does the same
//! with minijinja; Python string and dict methods (`.strip()`, `.items()`) come from
//! minijinja-contrib's `pycompat`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::config::TokenizerConfig;
use crate::TextError;

/// One turn of a conversation, as chat templates see it (`message['role']`,
/// `message['content']`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may accept others).
    pub role: String,
    pub content: String,
}

impl Message {
    /// A turn with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

/// Which chat template to use: parsed from `auto`, `none` or a file path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TemplateChoice {
    /// The tokenizer's own template (`chat_template.jinja` beside the tokenizer, else
    /// `chat_template` in `tokenizer_config.json`), or none if it has none.
    #[default]
    Auto,
    /// No template: prompts are encoded as raw text.
    None,
    /// A Jinja template file.
    File(PathBuf),
}

impl FromStr for TemplateChoice {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(TemplateChoice::Auto),
            "none" => Ok(TemplateChoice::None),
            "" => Err(TextError::Parse {
                what: "chat template",
                value: s.to_string(),
                expected: "`auto`, `none` or a template file",
            }),
            path => Ok(TemplateChoice::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for TemplateChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateChoice::Auto => f.write_str("auto"),
            TemplateChoice::None => f.write_str("none"),
            TemplateChoice::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The name the template is registered under; it shows in minijinja's messages.
const TEMPLATE_NAME: &str = "chat_template";
/// Prefix that marks errors raised by the template's own `raise_exception` call.
const RAISE_MARKER: &str = "\u{0}raise_exception\u{0}";

/// A compiled chat template together with the special tokens it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    /// Where the template came from, for messages (a file path).
    origin: String,
    /// How the manifest records it (`auto:tokenizer_config.json`, a file path).
    description: String,
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, ... as given to the template.
    tokens: BTreeMap<String, Value>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("description", &self.description)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles a template from source. `origin` names it in error messages (and is its
    /// description); `tokens` are the special-token variables (`("bos_token", "<s>")`).
    pub fn new(
        origin: impl Into<String>,
        source: impl Into<String>,
        tokens: &[(&str, &str)],
    ) -> Result<Self, TextError> {
        let origin = origin.into();
        let tokens = tokens
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        Self::build(origin.clone(), origin, source.into(), tokens)
    }

    /// Reads the template of a `tokenizer_config.json` (its `chat_template` key: a string,
    /// or a list of `{name, template}` from which `default` is taken), with the special
    /// tokens that file defines. `Ok(None)` when the file has no template.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>, TextError> {
        let cfg = TokenizerConfig::read(path)?;
        let Some(source) = cfg.chat_template.clone() else {
            return Ok(None);
        };
        Self::build(
            path.display().to_string(),
            "auto:tokenizer_config.json".to_string(),
            source,
            cfg.template_variables(),
        )
        .map(Some)
    }

    /// Reads a Jinja template file; the special tokens come from `config` (the
    /// tokenizer's `tokenizer_config.json`) when given.
    pub fn from_file(path: &Path, config: Option<&Path>) -> Result<Self, TextError> {
        let config = config.map(TokenizerConfig::read).transpose()?;
        Self::from_file_config(path, config.as_ref())
    }

    pub(crate) fn from_file_config(
        path: &Path,
        config: Option<&TokenizerConfig>,
    ) -> Result<Self, TextError> {
        let source = std::fs::read_to_string(path).map_err(|e| TextError::io(path, e))?;
        let tokens = config.map(|c| c.template_variables()).unwrap_or_default();
        let name = path.display().to_string();
        Self::build(name.clone(), name, source, tokens)
    }

    /// Finds a folder's own template: `chat_template.jinja` if present (recent
    /// `transformers` save it there and prefer it), else the `chat_template` of `config`
    /// if that `tokenizer_config.json` lies in this folder. The special tokens always
    /// come from `config`.
    pub(crate) fn discover(
        dir: &Path,
        config: Option<&TokenizerConfig>,
    ) -> Result<Option<Self>, TextError> {
        let tokens = config.map(|c| c.template_variables()).unwrap_or_default();
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|e| TextError::io(&jinja, e))?;
            let t = Self::build(
                jinja.display().to_string(),
                "auto:chat_template.jinja".to_string(),
                source,
                tokens,
            )?;
            return Ok(Some(t));
        }
        let local = config.filter(|c| c.path.parent() == Some(dir));
        match local.and_then(|c| c.chat_template.clone().map(|s| (c, s))) {
            Some((c, source)) => Self::build(
                c.path.display().to_string(),
                "auto:tokenizer_config.json".to_string(),
                source,
                tokens,
            )
            .map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn build(
        origin: String,
        description: String,
        source: String,
        tokens: BTreeMap<String, Value>,
    ) -> Result<Self, TextError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| template_error(&origin, &e))?;
        Ok(ChatTemplate {
            origin,
            description,
            env,
            tokens,
        })
    }

    /// Renders a conversation to text, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let mut ctx = self.tokens.clone();
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        // transformers passes these as None, so `tools is not none` is false.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        tmpl.render(Value::from_serialize(&ctx))
            .map_err(|e| template_error(&self.origin, &e))
    }

    /// Where the template came from (a file path), as used in error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How a manifest records the template: `auto:tokenizer_config.json`,
    /// `auto:chat_template.jinja`, or the path of a template file.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The value of a special-token variable (`bos_token`), if the tokenizer defines it.
    pub fn token(&self, name: &str) -> Option<&str> {
        self.tokens.get(name).and_then(|v| v.as_str())
    }
}

fn template_error(origin: &str, err: &minijinja::Error) -> TextError {
    // A raise_exception error may come back wrapped; look through the chain.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(mj) = e.downcast_ref::<minijinja::Error>() {
            if let Some(msg) = mj.detail().and_then(|d| d.strip_prefix(RAISE_MARKER)) {
                return TextError::TemplateRaised {
                    origin: origin.to_string(),
                    message: msg.to_string(),
                };
            }
        }
        cur = e.source();
    }
    let message = match err.detail() {
        Some(d) => format!("{}: {d}", err.kind()),
        None => err.kind().to_string(),
    };
    TextError::Template {
        origin: origin.to_string(),
        line: err.line(),
        message,
    }
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISE_MARKER}{message}"),
    ))
}

/// `strftime_now(format)`: the current UTC time, formatted with the common `strftime`
/// codes (`%d %m %Y %y %b %B %a %A %H %M %S %j %%`). Templates (Llama 3.1) use it to
/// print today's date; unknown codes are kept as written.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

fn strftime(format: &str, unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let yday = days - days_from_civil(y, 1, 1) + 1;
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let wday = (days + 3).rem_euclid(7) as usize;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `tojson` as `transformers` defines it: Python's `json.dumps(value, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)`. Without an indent the
/// separators are `", "` and `": "`, as in Python.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer or a string",
                    )
                })?;
                Some(" ".repeat(n.max(0) as usize))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if !s.is_none() && !s.is_undefined() => {
            let item = s.get_item_by_index(0)?;
            let key = s.get_item_by_index(1)?;
            match (item.as_str(), key.as_str()) {
                (Some(i), Some(k)) => (i.to_string(), k.to_string()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    write_json(&mut out, &value, &opts, 0)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOpts,
    depth: usize,
) -> Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &opts.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let n = serde_json::to_value(value).map_err(|e| {
                minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"))
            })?;
            out.push_str(&n.to_string());
        }
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), opts),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, depth + 1);
                let key_text = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                write_json_str(out, &key_text, opts);
                out.push_str(&opts.key_sep);
                write_json(out, &value.get_item(key)?, opts, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => {
            let items: Vec<Value> = match value.try_iter() {
                Ok(it) => it.collect(),
                Err(_) => {
                    // Anything else (a plain object) is written as its string form.
                    write_json_str(out, &value.to_string(), opts);
                    return Ok(());
                }
            };
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, opts, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
    }
    Ok(())
}

/// Python's string escaping: `"`, `\`, and control characters below 0x20; with
/// `ensure_ascii`, every non-ASCII character as `\uXXXX` (surrogate pairs above the BMP).
fn write_json_str(out: &mut String, s: &str, opts: &JsonOpts) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if opts.ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message], gen: bool) -> Result<String, TextError> {
        ChatTemplate::new(
            "test.jinja",
            source,
            &[("bos_token", "<s>"), ("eos_token", "</s>")],
        )?
        .render(messages, gen)
    }

    #[test]
    fn choice_parses_and_prints() {
        assert_eq!(
            "auto".parse::<TemplateChoice>().unwrap(),
            TemplateChoice::Auto
        );
        assert_eq!(
            "none".parse::<TemplateChoice>().unwrap(),
            TemplateChoice::None
        );
        assert_eq!(
            "t.jinja".parse::<TemplateChoice>().unwrap(),
            TemplateChoice::File("t.jinja".into())
        );
        assert!("".parse::<TemplateChoice>().is_err());
        assert_eq!(
            TemplateChoice::File("a/b.jinja".into()).to_string(),
            "a/b.jinja"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        // trim_blocks removes the newline after a block tag; lstrip_blocks removes the
        // indentation before one; the final newline of the source is dropped.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let out = render(src, &[Message::user("a"), Message::user("b")], false).unwrap();
        assert_eq!(out, "[a]\n[b]\n");
    }

    #[test]
    fn special_tokens_and_generation_flag_are_visible() {
        let src = "{{ bos_token }}{{ messages[0]['content'] }}{% if add_generation_prompt %}>{% else %}{{ eos_token }}{% endif %}";
        assert_eq!(render(src, &[Message::user("x")], true).unwrap(), "<s>x>");
        assert_eq!(
            render(src, &[Message::user("x")], false).unwrap(),
            "<s>x</s>"
        );
    }

    #[test]
    fn tools_is_none_not_undefined() {
        let src = "{% if tools is not none %}tools{% else %}no tools{% endif %}";
        assert_eq!(render(src, &[], false).unwrap(), "no tools");
    }

    #[test]
    fn raise_exception_carries_its_message() {
        let src = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok";
        let err = render(src, &[Message::new("system", "s")], false).unwrap_err();
        assert!(matches!(err, TextError::TemplateRaised { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("System role not supported"), "{text}");
        assert!(text.contains("test.jinja"), "{text}");
        assert_eq!(render(src, &[Message::user("u")], false).unwrap(), "ok");
    }

    #[test]
    fn syntax_error_names_origin_and_line() {
        let err = ChatTemplate::new("bad.jinja", "line one\n{% if %}", &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("bad.jinja: chat template line 2: syntax error"),
            "{text}"
        );
    }

    #[test]
    fn python_string_methods_work() {
        let src =
            "{{ messages[0].content.strip().upper() }}|{{ messages[0].content.startswith(' h') }}";
        // Booleans print as Python prints them, as in transformers.
        assert_eq!(
            render(src, &[Message::user(" hi ")], false).unwrap(),
            "HI|True"
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let src = "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é<' | tojson }}|{{ x | tojson(sort_keys=true) }}";
        let env_src = format!("{{% set x = {{'b': [1, 2.5, none], 'a': {{}}, 'c': true}} %}}{src}");
        let out = render(&env_src, &[], false).unwrap();
        let parts: Vec<&str> = out.split('|').collect();
        assert_eq!(parts[0], r#"{"b": [1, 2.5, null], "a": {}, "c": true}"#);
        assert_eq!(
            parts[1],
            "{\n  \"b\": [\n    1,\n    2.5,\n    null\n  ],\n  \"a\": {},\n  \"c\": true\n}"
        );
        assert_eq!(parts[2], "\"é<\"");
        assert_eq!(parts[3], r#"{"a": {}, "b": [1, 2.5, null], "c": true}"#);
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday, day 60 of a leap year.
        let t = 1_709_211_909;
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %j %H:%M:%S %y %m %%", t),
            "Thursday February 060 13:05:09 24 02 %"
        );
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
    }
}
