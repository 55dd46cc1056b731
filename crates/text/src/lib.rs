//! Prompt files, tokenizers and chat templates: everything between a prompt file on disk
//! and the token ids a masked diffusion model sees. Never links libtorch.
//!
//! - [`read_prompts`] reads a [`PromptFile`] (plain text, JSON Lines, Alpaca, LIMA,
//!   chat or pre-tokenized; see [`PromptFormat`]); every error names the file and line.
//! - [`Tokenizer`] wraps a Hugging Face `tokenizer.json` (or converts Dream's slow
//!   `vocab.json` + `merges.txt`); [`Tokenizer::encode`] adds no special tokens,
//!   [`Tokenizer::token_text`] shows one token readably; [`CorpusEncoder`] gives the same
//!   ids for whole corpora, several times faster.
//! - [`ChatTemplate`] renders a conversation the way `transformers`'
//!   `apply_chat_template` does (same Jinja settings, `raise_exception`, `tojson`).
//! - [`ModelText::load`] reads a model folder: tokenizer, mask id, end-of-text ids and
//!   chat template ([`TemplateChoice`]); [`Prompt::to_ids`] turns a prompt into ids.
//!
//! ```no_run
//! use cp_text::{read_prompts, ModelText, TemplateChoice};
//! let text = ModelText::load("models/LLaDA-8B-Instruct".as_ref(), None, TemplateChoice::Auto)?;
//! let prompts = read_prompts("prompts.jsonl".as_ref(), None)?;
//! for p in &prompts {
//!     let ids = p.to_ids(&text)?;
//!     println!("{}: {} ids, mask id {}", p.id, ids.len(), text.mask_id());
//! }
//! # Ok::<(), cp_text::TextError>(())
//! ```

mod config;
mod corpus_encoder;
mod error;
mod model;
mod prompts;
mod template;
mod tokenizer;

pub use crate::corpus_encoder::CorpusEncoder;
pub use crate::error::TextError;
pub use crate::model::{ModelText, EOT_TOKEN_NAMES, MASK_TOKEN_NAMES};
pub use crate::prompts::{
    parse_prompts, read_prompts, Prompt, PromptContent, PromptFile, PromptFormat,
};
pub use crate::template::{ChatTemplate, Message, TemplateChoice};
pub use crate::tokenizer::Tokenizer;
