//! Parity traces as schedule strings: the upstream samplers' parameters, as recorded in
//! `fixtures/parity/*/decode_traces.json` and `schedule_traces.json`, written with the option
//! names collapse-probe takes. Shared by the library tests and the command-line tests
//! (`crates/cli/tests/it/traces.rs` includes this file).

use std::path::Path;

use serde_json::Value;

/// A JSON list of token ids.
pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// The trace's parameters as a spec string: LLaDA's `generate()` arguments, or the
/// generation config Dream's `diffusion_generate()` resolved.
pub fn spec_of(model: &str, params: &Value) -> String {
    let num = |v: &Value| match v {
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    };
    if model == "llada" {
        format!(
            "llada:steps={},gen_length={},block_length={},temperature={},cfg_scale={},remasking={}",
            params["steps"],
            params["gen_length"],
            params["block_length"],
            params["temperature"],
            params["cfg_scale"],
            params["remasking"].as_str().unwrap()
        )
    } else {
        let c = &params["resolved_generation_config"];
        format!(
            "dream:steps={},max_new_tokens={},eps={},temperature={},top_p={},top_k={},alg={},alg_temp={}",
            c["steps"],
            c["max_new_tokens"],
            c["eps"],
            c["temperature"],
            num(&c["top_p"]),
            num(&c["top_k"]),
            c["alg"].as_str().unwrap(),
            c["alg_temp"]
        )
    }
}

/// The schedule string of a trace of `schedule_traces.json`, with the option names the
/// presets take; `background` is the JSON file of PC-Sampler's frequencies.
pub fn preset_spec_of(params: &Value, background: &Path) -> String {
    let p = |k: &str| params[k].to_string();
    let opt = |k: &str| match &params[k] {
        Value::Null => String::new(),
        v => format!(",{k}={v}"),
    };
    match params["kind"].as_str().unwrap() {
        "fastdllm" => format!(
            "fastdllm:gen_length={},steps={},block_length={}{}{}",
            p("gen_length"),
            p("steps"),
            p("block_length"),
            opt("threshold"),
            opt("factor")
        ),
        "eb" => format!("eb:gen_length={},gamma={}", p("gen_length"), p("gamma")),
        "pc" => format!(
            "pc:gen_length={},steps={},block_length={},lambda={},alpha={},background={}",
            p("gen_length"),
            p("steps"),
            p("block_length"),
            p("lambd"),
            p("alpha"),
            background.display()
        ),
        "klass" => format!(
            "klass:gen_length={},steps={},block_length={},conf_threshold={},kl_threshold={},history={}",
            p("gen_length"),
            p("steps"),
            p("block_length"),
            p("conf_threshold"),
            p("kl_threshold"),
            p("kl_history_length")
        ),
        "llada2" => format!(
            "llada2:max_new_tokens={},block_size={},steps_per_block={},threshold={},minimal_topk={}",
            p("max_new_tokens"),
            p("block_size"),
            p("steps_per_block"),
            p("threshold"),
            p("minimal_topk")
        ),
        other => panic!("unknown kind {other}"),
    }
}
