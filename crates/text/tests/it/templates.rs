//! The released chat templates render exactly as their Jinja logic says (expected strings
//! written by hand; see tests/data/README.md for where the templates come from).

use cp_text::{ChatTemplate, Message, TextError};

fn llada() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(&crate::data("llada-8b-instruct/tokenizer_config.json"))
        .unwrap()
        .expect("the LLaDA config has a template")
}

fn dream() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(&crate::data("dream-v0-instruct-7b/tokenizer_config.json"))
        .unwrap()
        .expect("the Dream config has a template")
}

fn check(template: &ChatTemplate, messages: &[Message], generation_prompt: bool, expected: &str) {
    let got = template.render(messages, generation_prompt).unwrap();
    assert_eq!(got, expected, "\n got: {got:?}\nwant: {expected:?}");
}

const LLADA_ASSISTANT: &str = "<|start_header_id|>assistant<|end_header_id|>\n\n";

#[test]
fn llada_single_turn() {
    let t = llada();
    assert_eq!(t.describe(), "auto:tokenizer_config.json");
    assert_eq!(t.token("bos_token"), Some("<|startoftext|>"));
    let expected = format!(
        "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>{LLADA_ASSISTANT}"
    );
    check(&t, &[Message::user("What is 2+2?")], true, &expected);
    // The released template has no `if add_generation_prompt`: the header is always there.
    check(&t, &[Message::user("What is 2+2?")], false, &expected);
}

#[test]
fn llada_trims_contents() {
    // `message['content'] | trim` binds tighter than `+`, so only the content is trimmed.
    check(
        &llada(),
        &[Message::user("  padded \n")],
        true,
        &format!("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>{LLADA_ASSISTANT}"),
    );
}

#[test]
fn llada_system_turn() {
    check(
        &llada(),
        &[Message::new("system", "Be brief."), Message::user("Hi")],
        true,
        &format!(
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>{LLADA_ASSISTANT}"
        ),
    );
}

#[test]
fn llada_multi_turn() {
    // BOS only before the first turn.
    check(
        &llada(),
        &[
            Message::user("A"),
            Message::new("assistant", "B"),
            Message::user("C"),
        ],
        true,
        &format!(
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nA<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nB<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nC<|eot_id|>{LLADA_ASSISTANT}"
        ),
    );
}

const DREAM_SYSTEM: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";

#[test]
fn dream_single_turn() {
    let t = dream();
    check(
        &t,
        &[Message::user("What is 2+2?")],
        true,
        &format!("{DREAM_SYSTEM}<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    );
    check(
        &t,
        &[Message::user("What is 2+2?")],
        false,
        &format!("{DREAM_SYSTEM}<|im_start|>user\nWhat is 2+2?<|im_end|>\n"),
    );
}

#[test]
fn dream_keeps_contents_untrimmed() {
    check(
        &dream(),
        &[Message::user(" x ")],
        true,
        &format!("{DREAM_SYSTEM}<|im_start|>user\n x <|im_end|>\n<|im_start|>assistant\n"),
    );
}

#[test]
fn dream_own_system_turn_replaces_default() {
    check(
        &dream(),
        &[Message::new("system", "Be brief."), Message::user("Hi")],
        true,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
}

#[test]
fn dream_multi_turn_matches_the_dream_demo() {
    // The shape printed at the end of DreamLM/Dream demo_multiturn_chat.py.
    check(
        &dream(),
        &[
            Message::user("what if"),
            Message::new("assistant", "If so."),
            Message::user("yes"),
        ],
        true,
        &format!(
            "{DREAM_SYSTEM}<|im_start|>user\nwhat if<|im_end|>\n<|im_start|>assistant\nIf so.<|im_end|>\n\
             <|im_start|>user\nyes<|im_end|>\n<|im_start|>assistant\n"
        ),
    );
}

#[test]
fn raise_exception_in_a_real_style_template() {
    // Mistral-style alternation check, as many released templates have.
    let src = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";
    let t = ChatTemplate::new(
        "mistral.jinja",
        src,
        &[("bos_token", "<s>"), ("eos_token", "</s>")],
    )
    .unwrap();
    assert_eq!(
        t.render(&[Message::user("hi")], true).unwrap(),
        "<s>[INST] hi [/INST]"
    );
    let err = t
        .render(&[Message::user("a"), Message::user("b")], true)
        .unwrap_err();
    assert!(matches!(err, TextError::TemplateRaised { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "mistral.jinja: chat template raised an exception: Conversation roles must alternate user/assistant/user/assistant/..."
    );
}

#[test]
fn chat_template_jinja_file_and_list_form() {
    let dir = tempfile::tempdir().unwrap();
    // A list of named templates: `default` is used.
    let cfg = crate::write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"eos_token": {"content": "</s>", "lstrip": false}, "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ messages[0].content }}{{ eos_token }}"}]}"#,
    );
    let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap().unwrap();
    assert_eq!(t.render(&[Message::user("x")], true).unwrap(), "x</s>");
    // A template file rendered with that config's tokens.
    let file = crate::write(dir.path(), "t.jinja", "[{{ eos_token }}]\n");
    let t = ChatTemplate::from_file(&file, Some(&cfg)).unwrap();
    assert_eq!(t.render(&[], true).unwrap(), "[</s>]");
    assert_eq!(t.describe(), file.display().to_string());
}
