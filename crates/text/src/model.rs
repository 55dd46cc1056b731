//! Everything textual about one model: tokenizer, mask id, end-of-text ids, chat template.

use std::path::{Path, PathBuf};

use crate::config::{read_id, read_ids, read_json_object, TokenizerConfig};
use crate::template::{ChatTemplate, Message, TemplateChoice};
use crate::{TextError, Tokenizer};

/// Mask tokens of known masked diffusion models, tried in this order when neither
/// `config.json` nor `tokenizer_config.json` gives the mask: LLaDA, Dream, BERT-style, RoBERTa-style.
pub const MASK_TOKEN_NAMES: [&str; 4] = ["<|mdm_mask|>", "<|mask|>", "[MASK]", "<mask>"];

/// Tokens that end a text or a turn, counted as end ids when the tokenizer has them.
pub const EOT_TOKEN_NAMES: [&str; 6] = [
    "<|endoftext|>",
    "<|eot_id|>",
    "<|im_end|>",
    "<|end_of_text|>",
    "</s>",
    "<|eos|>",
];

/// The tokenizer, mask id, end-of-text ids and chat template of one model.
#[derive(Debug, Clone)]
pub struct ModelText {
    tokenizer: Tokenizer,
    mask_id: u32,
    eot_ids: Vec<u32>,
    template: Option<ChatTemplate>,
    template_description: String,
    /// Whether plain-text prompts get the tokenizer's special tokens (see [`Self::encode_plain`]).
    plain_special_tokens: bool,
}

impl ModelText {
    /// Reads a Hugging Face model folder.
    ///
    /// - Tokenizer: `tokenizer_override` (a `tokenizer.json` file or a folder) if given,
    ///   else `model_dir`; a folder is read with [`Tokenizer::from_dir`] (which also
    ///   converts Dream's `vocab.json` + `merges.txt`). `tokenizer_config.json` and
    ///   `chat_template.jinja` are looked for beside the tokenizer first, then in `model_dir`.
    /// - Mask id: `mask_token_id` of `config.json`, else of `generation_config.json`, else
    ///   the `mask_token` of `tokenizer_config.json`, else the first of
    ///   [`MASK_TOKEN_NAMES`] the tokenizer knows; none of them is an error.
    /// - End ids (end-of-text, end-of-turn and padding): `eos_token_id` and `pad_token_id`
    ///   (a number or a list) of `config.json` and `generation_config.json`, the `eos_token`
    ///   and `pad_token` of `tokenizer_config.json`, and every token of [`EOT_TOKEN_NAMES`]
    ///   the tokenizer knows; sorted, without duplicates, never the mask id. Padding counts
    ///   because instruct models are fine-tuned on answers padded with it: it is what they
    ///   put after an answer.
    /// - Template: see [`TemplateChoice`].
    ///
    /// `model_dir` may also be a file (a TorchScript model); then only the tokenizer
    /// side is read and `tokenizer_override` is required.
    pub fn load(
        model_dir: &Path,
        tokenizer_override: Option<&Path>,
        template: TemplateChoice,
    ) -> Result<Self, TextError> {
        Self::load_with_mask_id(model_dir, tokenizer_override, template, None)
    }

    /// [`Self::load`], with the mask id given rather than looked up (a tokenizer that names no
    /// mask token is then no error).
    pub fn load_with_mask_id(
        model_dir: &Path,
        tokenizer_override: Option<&Path>,
        template: TemplateChoice,
        mask_id: Option<u32>,
    ) -> Result<Self, TextError> {
        let model_folder = model_dir.is_dir().then_some(model_dir);
        let (tokenizer, tok_dir): (Tokenizer, Option<PathBuf>) = match tokenizer_override {
            Some(p) if p.is_dir() => (Tokenizer::from_dir(p)?, Some(p.to_path_buf())),
            Some(p) => (Tokenizer::from_file(p)?, p.parent().map(Path::to_path_buf)),
            None => (
                Tokenizer::from_dir(model_dir)?,
                model_folder.map(Path::to_path_buf),
            ),
        };

        // Folders searched for tokenizer-side files, the tokenizer's own first.
        let mut search: Vec<PathBuf> = Vec::new();
        for d in tok_dir.iter().map(PathBuf::as_path).chain(model_folder) {
            if !search.iter().any(|s| s == d) {
                search.push(d.to_path_buf());
            }
        }
        let mut tok_config = None;
        for d in &search {
            if let Some(c) = TokenizerConfig::read_if_exists(&d.join("tokenizer_config.json"))? {
                tok_config = Some(c);
                break;
            }
        }
        let (config, generation) = match model_folder {
            Some(d) => {
                let c = d.join("config.json");
                let g = d.join("generation_config.json");
                (
                    read_json_object(&c)?.map(|m| (c, m)),
                    read_json_object(&g)?.map(|m| (g, m)),
                )
            }
            None => (None, None),
        };

        let mask_id = match mask_id {
            Some(id) => id,
            None => resolve_mask_id(
                &tokenizer,
                [config.as_ref(), generation.as_ref()],
                tok_config.as_ref(),
                model_dir,
            )?,
        };

        let mut eot_ids = Vec::new();
        for (path, map) in [config.as_ref(), generation.as_ref()].into_iter().flatten() {
            eot_ids.extend(read_ids(map, "eos_token_id", path)?);
            eot_ids.extend(read_ids(map, "pad_token_id", path)?);
        }
        if let Some(c) = &tok_config {
            for key in ["eos_token", "pad_token"] {
                if let Some(token) = c.tokens.get(key) {
                    eot_ids.extend(tokenizer.token_to_id(token));
                }
            }
        }
        eot_ids.extend(
            EOT_TOKEN_NAMES
                .iter()
                .filter_map(|t| tokenizer.token_to_id(t)),
        );
        // Some tokenizers pad with the mask token; a mask is never an end.
        eot_ids.retain(|&id| id != mask_id);
        eot_ids.sort_unstable();
        eot_ids.dedup();

        let (template, template_description) = match template {
            TemplateChoice::None => (None, "none".to_string()),
            TemplateChoice::File(path) => {
                let t = ChatTemplate::from_file_config(&path, tok_config.as_ref())?;
                let d = t.describe().to_string();
                (Some(t), d)
            }
            TemplateChoice::Auto => {
                let mut found = None;
                for d in &search {
                    found = ChatTemplate::discover(d, tok_config.as_ref())?;
                    if found.is_some() {
                        break;
                    }
                }
                match found {
                    Some(t) => {
                        let d = t.describe().to_string();
                        (Some(t), d)
                    }
                    None => (None, "auto:none".to_string()),
                }
            }
        };

        Ok(ModelText {
            tokenizer,
            mask_id,
            eot_ids,
            template,
            template_description,
            plain_special_tokens: true,
        })
    }

    /// Assembles a `ModelText` from parts (tests, fixture models without a folder).
    /// `eot_ids` are sorted and deduplicated.
    pub fn new(
        tokenizer: Tokenizer,
        mask_id: u32,
        mut eot_ids: Vec<u32>,
        template: Option<ChatTemplate>,
    ) -> Self {
        eot_ids.sort_unstable();
        eot_ids.dedup();
        let template_description = template
            .as_ref()
            .map_or_else(|| "none".to_string(), |t| t.describe().to_string());
        ModelText {
            tokenizer,
            mask_id,
            eot_ids,
            template,
            template_description,
            plain_special_tokens: true,
        }
    }

    /// Whether plain-text prompts (no chat template) are encoded with the tokenizer's special
    /// tokens, as the official pipelines' `tokenizer(prompt)` does (the default), or exactly as
    /// written (`false`).
    pub fn with_plain_special_tokens(mut self, on: bool) -> Self {
        self.plain_special_tokens = on;
        self
    }

    /// Whether plain-text prompts get the tokenizer's special tokens.
    pub fn plain_special_tokens(&self) -> bool {
        self.plain_special_tokens
    }

    /// Encodes a plain-text prompt (one without a chat template): as transformers'
    /// `tokenizer(text)` by default, so a base model sees the BOS its tokenizer adds; exactly
    /// as written after `with_plain_special_tokens(false)`. Templated prompts never go through
    /// here: a rendered template carries its own special tokens, and transformers encodes it
    /// without adding any.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, TextError> {
        if self.plain_special_tokens {
            self.tokenizer.encode_with_special_tokens(text)
        } else {
            self.tokenizer.encode(text)
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The id of the mask token.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// Ids that end a text or a turn, sorted, without duplicates (possibly empty).
    pub fn eot_ids(&self) -> &[u32] {
        &self.eot_ids
    }

    /// Whether an id ends a text or a turn.
    pub fn is_eot(&self, id: u32) -> bool {
        self.eot_ids.binary_search(&id).is_ok()
    }

    /// The chat template in use, if any.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// How the manifest records the template choice: `none` (none asked for),
    /// `auto:none` (asked for the tokenizer's own and it has none),
    /// `auto:tokenizer_config.json`, `auto:chat_template.jinja`, or a template file's path.
    pub fn describe_template(&self) -> &str {
        &self.template_description
    }

    /// The ids of a conversation: rendered with the chat template (with the generation
    /// prompt) when there is one, else the turns' contents joined by a blank line
    /// (`"\n\n"`); then encoded without added special tokens.
    pub fn encode_messages(&self, messages: &[Message]) -> Result<Vec<u32>, TextError> {
        let text = match &self.template {
            Some(t) => t.render(messages, true)?,
            None => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        self.tokenizer.encode(&text)
    }
}

type JsonFile = (PathBuf, serde_json::Map<String, serde_json::Value>);

fn resolve_mask_id(
    tokenizer: &Tokenizer,
    model_configs: [Option<&JsonFile>; 2],
    tok_config: Option<&TokenizerConfig>,
    model_dir: &Path,
) -> Result<u32, TextError> {
    for (path, map) in model_configs.into_iter().flatten() {
        if let Some(id) = read_id(map, "mask_token_id", path)? {
            return Ok(id);
        }
    }
    if let Some(c) = tok_config {
        if let Some(mask) = c.tokens.get("mask_token") {
            return tokenizer.token_to_id(mask).ok_or_else(|| {
                TextError::config(
                    &c.path,
                    "mask_token",
                    format!(
                        "the tokenizer {} has no token {mask:?}",
                        tokenizer.path().display()
                    ),
                )
            });
        }
    }
    if let Some(id) = MASK_TOKEN_NAMES
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
    {
        return Ok(id);
    }
    Err(TextError::NoMaskToken {
        path: model_dir.to_path_buf(),
        tried: format!(
            "looked for `mask_token_id` in config.json and generation_config.json, `mask_token` in tokenizer_config.json, and the tokens {} in {}",
            MASK_TOKEN_NAMES.join(", "),
            tokenizer.path().display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let json = r#"{"version": "1.0", "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "[UNK]": 2}, "unk_token": "[UNK]"}}"#;
        let inner = tokenizers::Tokenizer::from_bytes(json).unwrap();
        Tokenizer::from_tokenizer(inner, Path::new("mem.json"))
    }

    #[test]
    fn new_sorts_eot_ids_and_joins_turns_without_template() {
        let text = ModelText::new(tokenizer(), 2, vec![1, 0, 1], None);
        assert_eq!(text.eot_ids(), &[0, 1]);
        assert!(text.is_eot(0) && !text.is_eot(2));
        assert_eq!(text.describe_template(), "none");
        let ids = text
            .encode_messages(&[Message::new("system", "a"), Message::user("b a")])
            .unwrap();
        assert_eq!(ids, vec![0, 1, 0]);
    }
}
