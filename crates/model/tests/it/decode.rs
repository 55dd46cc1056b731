//! Decoding schedules: parity with the official LLaDA and Dream samplers (replayed logits and,
//! when the loader is there, the real tiny models), determinism, and hand-computable schedules.

use std::path::{Path, PathBuf};

use cp_model::{
    decode, load_model, DecodeOptions, DecodeOutput, LoadOptions, MaskedDenoiser, ProbeError,
    ScheduleSpec,
};
use serde_json::Value;

use crate::fakes::Constant;
use crate::trace_specs::{ids, preset_spec_of, spec_of};
use tch::{Device, Tensor};

fn parity_dir(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/parity")
        .join(model)
}

// ---------------------------------------------------------------------------------------------
// Replay: a denoiser that answers with the logits the upstream model gave for the same ids.

/// Looks up the recorded raw logits of the exact input ids; Dream's recorded logits are
/// unshifted, so the replay shifts them as the Dream model's trait implementation does.
struct Replay {
    calls: Vec<(Vec<i64>, Tensor)>,
    dream_shift: bool,
}

impl Replay {
    fn load(model: &str) -> Replay {
        let path = parity_dir(model).join("decode_step_logits.safetensors");
        let tensors = Tensor::read_safetensors(&path).expect("read decode_step_logits.safetensors");
        let mut calls = Vec::new();
        for (name, ids) in tensors
            .iter()
            .filter(|(n, _)| n.ends_with("_step_input_ids"))
        {
            let stem = name.trim_end_matches("_step_input_ids");
            let logits = &tensors
                .iter()
                .find(|(n, _)| *n == format!("{stem}_step_logits"))
                .expect("logits")
                .1;
            for s in 0..ids.size()[0] {
                calls.push((Vec::<i64>::try_from(&ids.get(s)).unwrap(), logits.get(s)));
            }
        }
        Replay {
            calls,
            dream_shift: model.starts_with("dream"),
        }
    }
}

impl MaskedDenoiser for Replay {
    fn mask_id(&self) -> i64 {
        319
    }
    fn vocab_size(&self) -> i64 {
        320
    }
    fn max_len(&self) -> Option<usize> {
        Some(256)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn supports_padding(&self) -> bool {
        false
    }
    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        assert!(valid.is_none(), "the replay serves unpadded rows only");
        let len = ids.size()[1];
        let mut rows = Vec::new();
        for b in 0..ids.size()[0] {
            let row = Vec::<i64>::try_from(&ids.get(b)).unwrap();
            let (_, raw) = self
                .calls
                .iter()
                .find(|(recorded, _)| *recorded == row)
                .ok_or_else(|| ProbeError::Input(format!("no recorded logits for ids {row:?}")))?;
            let aligned = if self.dream_shift {
                Tensor::cat(&[raw.narrow(0, 0, 1), raw.narrow(0, 0, len - 1)], 0)
            } else {
                raw.shallow_clone()
            };
            rows.push(aligned.narrow(0, from, len - from));
        }
        Ok(Tensor::stack(&rows, 0))
    }
}

// ---------------------------------------------------------------------------------------------
// The traces.

#[derive(Clone)]
struct Trace {
    name: String,
    schedule: ScheduleSpec,
    seed: u64,
    prompt: Vec<i64>,
    output: Vec<i64>,
    history: Vec<Vec<i64>>,
    diagnostics: Vec<Value>,
}

impl Trace {
    /// Trace `t` of a trace file, to be decoded with `spec`.
    fn from_json(t: &Value, spec: &str) -> Trace {
        Trace {
            name: t["name"].as_str().unwrap().to_owned(),
            schedule: ScheduleSpec::parse(spec).unwrap_or_else(|e| panic!("{}: {e}", t["name"])),
            seed: t["params"]["rng_seed"].as_u64().unwrap_or(0),
            prompt: ids(&t["prompt_ids"]),
            output: ids(&t["output_ids"]),
            history: t["history"].as_array().unwrap().iter().map(ids).collect(),
            diagnostics: t["steps_diagnostics"].as_array().unwrap().clone(),
        }
    }
}

fn traces(model_dir: &str) -> Vec<Trace> {
    let text = std::fs::read_to_string(parity_dir(model_dir).join("decode_traces.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let model = json["model"].as_str().unwrap();
    json["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Trace::from_json(t, &spec_of(model, &t["params"])))
        .collect()
}

/// Decodes `trace` on `model` and compares every history row, the output, and the positions
/// each step changed with the upstream record. Returns a description of the first difference.
fn check_trace(model: &dyn MaskedDenoiser, trace: &Trace) -> Result<(), String> {
    let opts = DecodeOptions {
        seed: trace.seed,
        ..Default::default()
    };
    let out = decode(
        model,
        std::slice::from_ref(&trace.prompt),
        &trace.schedule,
        &opts,
    )
    .map_err(|e| e.to_string())?;
    let t = &out.trajectories[0];
    if t.steps() + 1 != trace.history.len() {
        return Err(format!(
            "{} history rows, upstream {}",
            t.steps() + 1,
            trace.history.len()
        ));
    }
    for (k, row) in trace.history.iter().enumerate() {
        if t.sequence_at(k) != *row {
            return Err(format!(
                "history row {k}: {:?}\n upstream: {row:?}",
                t.sequence_at(k)
            ));
        }
    }
    if t.sequence_at(t.steps()) != trace.output {
        return Err("final sequence differs from output_ids".into());
    }
    for d in &trace.diagnostics {
        let step = d["step"].as_u64().unwrap() as u32;
        let changed: Vec<u64> = t
            .commits
            .iter()
            .filter(|c| c.step == step)
            .map(|c| (trace.prompt.len() as u32 + c.gen_index) as u64)
            .collect();
        if changed.len() as u64 != d["n_changed"].as_u64().unwrap() {
            return Err(format!(
                "step {step}: {} commits, upstream changed {}",
                changed.len(),
                d["n_changed"]
            ));
        }
        if let Some(selected) = d["selected_positions"].as_array() {
            let selected: Vec<u64> = selected.iter().map(|x| x.as_u64().unwrap()).collect();
            if !changed.iter().all(|p| selected.contains(p)) {
                return Err(format!(
                    "step {step}: committed {changed:?}, upstream selected {selected:?}"
                ));
            }
        }
    }
    Ok(())
}

fn check_all(model: &dyn MaskedDenoiser, dir: &str, names: &[&str]) {
    let all = traces(dir);
    let mut failures = Vec::new();
    for name in names {
        let trace = all
            .iter()
            .find(|t| t.name == *name)
            .unwrap_or_else(|| panic!("no trace {name}"));
        if let Err(e) = check_trace(model, trace) {
            failures.push(format!("{dir}/{name} ({}): {e}", trace.schedule));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn llada_traces_replay_exactly() {
    check_all(&Replay::load("llada-tiny"), "llada-tiny", &["i", "ii"]);
}

#[test]
fn dream_traces_replay_exactly() {
    // entropy_default_topk50 makes the same calls as entropy (top-50 filtering does not change
    // its order here), so its logits are on record too; the other top-50 runs diverge.
    check_all(
        &Replay::load("dream-tiny"),
        "dream-tiny",
        &[
            "maskgit_plus",
            "topk_margin",
            "entropy",
            "entropy_default_topk50",
        ],
    );
}

/// Every trace of a folder, through the tiny model loaded from its checkpoint.
fn check_real_model(dir: &str) {
    let loaded = load_model(
        &parity_dir(dir),
        &LoadOptions {
            device: cp_model::DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .expect("load the tiny checkpoint");
    let names: Vec<String> = traces(dir).into_iter().map(|t| t.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    check_all(&*loaded.denoiser, dir, &names);
}

#[test]
fn all_llada_traces_reproduce_on_the_real_tiny_model() {
    check_real_model("llada-tiny");
}

#[test]
fn all_dream_traces_reproduce_on_the_real_tiny_model() {
    check_real_model("dream-tiny");
}

// ---------------------------------------------------------------------------------------------
// The published 2025 samplers (`schedule_traces.json`, rules in `fixtures/parity/SCHEDULES.md`).

/// The traces of `schedule_traces.json`, with PC-Sampler's frequencies written to `dir`.
fn schedule_traces(dir: &Path) -> Vec<Trace> {
    let text =
        std::fs::read_to_string(parity_dir("llada-tiny").join("schedule_traces.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let background = dir.join("pc_background.json");
    std::fs::write(&background, json["pc_sampler_bg_freq"].to_string()).unwrap();
    json["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Trace::from_json(t, &preset_spec_of(&t["params"], &background)))
        .collect()
}

#[test]
fn all_schedule_traces_reproduce_on_the_real_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load_model(
        &parity_dir("llada-tiny"),
        &LoadOptions {
            device: cp_model::DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let traces = schedule_traces(tmp.path());
    assert_eq!(traces.len(), 10);
    // The trace file itself also serves as PC-Sampler's background.
    let whole = parity_dir("llada-tiny").join("schedule_traces.json");
    let mut pc = traces
        .iter()
        .find(|t| t.name == "pc_sampler")
        .unwrap()
        .clone();
    let spec = pc.schedule.to_string();
    let (head, _) = spec.split_once(",background=").unwrap();
    pc.schedule = ScheduleSpec::parse(&format!("{head},background={}", whole.display())).unwrap();
    check_trace(&*loaded.denoiser, &pc).unwrap();
    let failures: Vec<String> = traces
        .iter()
        .filter_map(|t| {
            check_trace(&*loaded.denoiser, t)
                .err()
                .map(|e| format!("{} ({}): {e}", t.name, t.schedule))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_changed_preset_option_breaks_its_trace() {
    // The comparison can fail: KLASS with another KL threshold, Fast-dLLM with another factor.
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load_model(&parity_dir("llada-tiny"), &LoadOptions::default()).unwrap();
    for (name, from, to) in [
        ("klass", "kl_threshold=0.5", "kl_threshold=0.05"),
        ("fastdllm_factor", "factor=2.7", "factor=1.5"),
        ("eb_gamma", "gamma=9.5", "gamma=2"),
    ] {
        let mut t = schedule_traces(tmp.path())
            .into_iter()
            .find(|t| t.name == name)
            .unwrap();
        let spec = t.schedule.to_string().replace(from, to);
        assert_ne!(spec, t.schedule.to_string());
        t.schedule = ScheduleSpec::parse(&spec).unwrap();
        assert!(
            check_trace(&*loaded.denoiser, &t).is_err(),
            "{name} with {to}"
        );
    }
}

#[test]
fn compose_strings_reproduce_the_presets() {
    // Each preset written out part by part reproduces the preset's upstream trace.
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load_model(&parity_dir("llada-tiny"), &LoadOptions::default()).unwrap();
    let bg = tmp.path().join("pc_background.json");
    let cases = [
        ("fastdllm_topk", "compose:gen_length=24,block_length=8,steps=12,loop=until_filled,score=confidence64,count=top_k".to_owned()),
        ("fastdllm_factor", "compose:gen_length=24,block_length=8,steps=12,loop=until_filled,score=confidence64,count=factor,factor=2.7".to_owned()),
        ("eb_gamma", "compose:gen_length=20,score=neg_entropy,count=entropy_budget,gamma=9.5".to_owned()),
        ("pc_sampler_clip", format!("compose:gen_length=32,block_length=16,steps=8,score=pc,lambda=0.5,alpha=0.6,background={}", bg.display())),
        ("klass", "compose:gen_length=24,block_length=8,steps=24,loop=at_most,score=confidence64,count=ready_else_top_k,conf_threshold=0.1,kl_threshold=0.5,history=2".to_owned()),
        ("llada2_threshold_topk", "compose:gen_length=22,blocks=aligned,block_length=8,steps_per_block=4,loop=at_most,count=threshold_else_top_k,threshold=0.12".to_owned()),
    ];
    let all = schedule_traces(tmp.path());
    for (name, spec) in cases {
        let mut t = all.iter().find(|t| t.name == name).unwrap().clone();
        t.schedule = ScheduleSpec::parse(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        if let Err(e) = check_trace(&*loaded.denoiser, &t) {
            panic!("{name} as {spec}: {e}");
        }
    }
}

#[test]
fn llada_is_a_composition_of_parts_too() {
    // LLaDA's `generate()`, written as parts, reproduces every official trace through the
    // parts runner: greedy in one block and in four, random remasking with its seeded draws,
    // and classifier-free guidance.
    let loaded = load_model(&parity_dir("llada-tiny"), &LoadOptions::default()).unwrap();
    let all = traces("llada-tiny");
    for (name, spec) in [
        ("i", "compose:gen_length=16,block_length=16,steps=8"),
        ("ii", "compose:gen_length=16,block_length=4,steps=8"),
        ("iii", "compose:gen_length=16,block_length=16,steps=16"),
        (
            "extra_random_remask",
            "compose:gen_length=16,block_length=8,steps=8,score=random",
        ),
        (
            "extra_cfg",
            "compose:gen_length=16,block_length=16,steps=8,cfg_scale=1",
        ),
    ] {
        let mut t = all.iter().find(|t| t.name == name).unwrap().clone();
        t.schedule = ScheduleSpec::parse(spec).unwrap();
        if let Err(e) = check_trace(&*loaded.denoiser, &t) {
            panic!("{name} as {spec}: {e}");
        }
    }
}

#[test]
fn dream_is_a_composition_of_parts_too() {
    // Dream's `diffusion_generate()`, written as parts (one block of fixed calls over every
    // mask, Dream's token rule, the alg's score over the timestep count, or the origin draw),
    // reproduces the official traces: each alg, greedy and with the default top-k of 50, and
    // origin with its seeded draws.
    let loaded = load_model(&parity_dir("dream-tiny"), &LoadOptions::default()).unwrap();
    let all = traces("dream-tiny");
    let base = "compose:gen_length=16,steps=8,eligible=all,token=dream";
    for (name, parts) in [
        ("maskgit_plus", "score=confidence,count=timesteps"),
        ("topk_margin", "score=margin,count=timesteps"),
        ("entropy", "score=sum_p_log_p,count=timesteps"),
        (
            "entropy_default_topk50",
            "score=sum_p_log_p,count=timesteps,top_k=50",
        ),
        ("origin_seeded", "count=bernoulli"),
    ] {
        let spec = format!("{base},{parts}");
        let mut t = all.iter().find(|t| t.name == name).unwrap().clone();
        t.schedule = ScheduleSpec::parse(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        if let Err(e) = check_trace(&*loaded.denoiser, &t) {
            panic!("{name} as {spec}: {e}");
        }
    }
    // Bernoulli draws its positions: no score, and Dream's token rule.
    for (bad, says) in [
        ("count=bernoulli,score=margin", "reads no score"),
        ("count=bernoulli,token=gumbel_max", "token=dream"),
    ] {
        let spec = format!("compose:gen_length=16,steps=8,eligible=all,{bad}");
        let e = ScheduleSpec::parse(&spec).unwrap_err().to_string();
        assert!(e.contains(says), "{spec}: {e}");
    }
}

#[test]
fn threshold_and_fixed_are_presets_of_parts() {
    // The crate's own `threshold` and `fixed` schedules are presets of parts; written out as
    // `compose:` strings they decode the text fixture alike (greedy, and with random order).
    // Before they moved onto the parts this test compared them with their tuned loop.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text-llada");
    let loaded = load_model(&dir, &LoadOptions::default()).unwrap();
    let m = &*loaded.denoiser;
    let prompts = vec![
        vec![5, 17, 300, 41],
        vec![9, 1200, 7, 7],
        vec![77, 78, 79, 80],
    ];
    for (engine, parts) in [
        (
            "threshold:gen_length=24,block_length=8,tau=0.3",
            "compose:gen_length=24,block_length=8,loop=until_filled,count=threshold,threshold=0.3,forbid_mask=true",
        ),
        (
            "threshold:gen_length=24,block_length=24,tau=0.05",
            "compose:gen_length=24,block_length=24,loop=until_filled,count=threshold,threshold=0.05,forbid_mask=true",
        ),
        (
            "fixed:gen_length=24,k=5",
            "compose:gen_length=24,steps=5,count=fixed_k,k=5,forbid_mask=true",
        ),
        (
            "fixed:gen_length=24,k=2,order=random",
            "compose:gen_length=24,steps=12,count=fixed_k,k=2,score=random,forbid_mask=true",
        ),
    ] {
        let opts = DecodeOptions {
            seed: 3,
            ..Default::default()
        };
        let a = run(m, &prompts, engine, &opts);
        let b = run(m, &prompts, parts, &opts);
        for (x, y) in a.trajectories.iter().zip(&b.trajectories) {
            assert_eq!(x.history, y.history, "{engine} vs {parts}");
        }
    }
}

/// Counts the model calls of the denoiser it wraps.
struct Counted<'a> {
    inner: &'a dyn MaskedDenoiser,
    calls: std::cell::Cell<usize>,
}

impl MaskedDenoiser for Counted<'_> {
    fn mask_id(&self) -> i64 {
        self.inner.mask_id()
    }
    fn vocab_size(&self) -> i64 {
        self.inner.vocab_size()
    }
    fn max_len(&self) -> Option<usize> {
        self.inner.max_len()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn supports_padding(&self) -> bool {
        self.inner.supports_padding()
    }
    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.logits(ids, valid, from)
    }
}

#[test]
fn composed_schedules_pad_prompts_of_different_lengths_into_one_call() {
    let loaded = load_model(&parity_dir("llada-tiny"), &LoadOptions::default()).unwrap();
    let m = Counted {
        inner: &*loaded.denoiser,
        calls: std::cell::Cell::new(0),
    };
    let prompts: Vec<Vec<i64>> = [3usize, 7, 5, 9]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n as i64)
                .map(|j| (i as i64 * 31 + j * 7) % 300)
                .collect()
        })
        .collect();
    for spec in [
        "pc:gen_length=16,steps=8,block_length=8,lambda=0.5,alpha=1,background=BG",
        "klass:gen_length=16,steps=8,block_length=8,conf_threshold=0.1,kl_threshold=0.5",
        "fixed:gen_length=16,k=2",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let bg = tmp.path().join("bg.json");
        std::fs::write(&bg, serde_json::to_string(&vec![1.0 / 320.0; 320]).unwrap()).unwrap();
        let schedule = ScheduleSpec::parse(&spec.replace("BG", bg.to_str().unwrap())).unwrap();
        let run = |batch_size| {
            m.calls.set(0);
            let out = decode(
                &m,
                &prompts,
                &schedule,
                &DecodeOptions {
                    batch_size,
                    ..Default::default()
                },
            )
            .unwrap();
            (out, m.calls.get())
        };
        let (alone, calls_alone) = run(1);
        let (together, calls_together) = run(4);
        for (a, b) in alone.trajectories.iter().zip(&together.trajectories) {
            assert_eq!(a.history, b.history, "{spec}");
        }
        // One call per step for the whole batch: as many calls as the longest trajectory.
        let steps: Vec<usize> = alone.trajectories.iter().map(|t| t.steps()).collect();
        assert_eq!(calls_alone, steps.iter().sum::<usize>(), "{spec}");
        assert_eq!(calls_together, *steps.iter().max().unwrap(), "{spec}");
    }
}

#[test]
fn composed_schedules_batch_and_save_distributions_without_changing_trajectories() {
    // Data-dependent step counts: rows finish at different calls and leave the batch.
    let loaded = load_model(&parity_dir("llada-tiny"), &LoadOptions::default()).unwrap();
    let model = &*loaded.denoiser;
    let prompts: Vec<Vec<i64>> = (0..5)
        .map(|i| (0..7).map(|j| (i * 37 + j * 11) % 300).collect())
        .collect();
    for spec in [
        "fastdllm:gen_length=16,steps=8,block_length=8,threshold=0.1",
        "eb:gen_length=16,gamma=5",
        "klass:gen_length=16,steps=8,block_length=8,conf_threshold=0.1,kl_threshold=0.5",
        "llada2:max_new_tokens=16,block_size=8,steps_per_block=4,threshold=0.15",
        "compose:gen_length=16,block_length=8,steps=8,eligible=dilated,groups=2,score=margin,count=cosine",
    ] {
        let schedule = ScheduleSpec::parse(spec).unwrap();
        let one = |batch_size: usize, save: Option<usize>| {
            decode(
                model,
                &prompts,
                &schedule,
                &DecodeOptions {
                    batch_size,
                    save_step_distributions: save,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let alone = one(1, None);
        let batched = one(4, Some(3));
        let steps: Vec<usize> = alone.trajectories.iter().map(|t| t.steps()).collect();
        for (a, b) in alone.trajectories.iter().zip(&batched.trajectories) {
            // Tokens and steps alike; probabilities may differ in the last bits, since a
            // model call on more rows takes other matrix-multiply paths.
            assert_eq!(a.history, b.history, "{spec}");
            let key = |t: &cp_model::Trajectory| -> Vec<(u32, u32, i64)> {
                t.commits
                    .iter()
                    .map(|c| (c.step, c.gen_index, c.token_id))
                    .collect()
            };
            assert_eq!(key(a), key(b), "{spec}");
            assert!(a.distributions.is_empty());
            // Every still-masked position of every step, with its top 3.
            let masked: usize = a.history[..a.steps()]
                .iter()
                .map(|row| row.iter().filter(|&&t| t == model.mask_id()).count())
                .sum();
            if !spec.starts_with("llada2") {
                assert_eq!(b.distributions.len(), masked, "{spec}");
            }
            assert!(b.distributions.iter().all(|d| d.top_ids.len() == 3));
        }
        if spec.starts_with("fastdllm") {
            assert!(steps.iter().any(|&s| s != steps[0]), "{spec}: {steps:?}");
        }
    }
}

#[test]
fn replay_detects_a_wrong_schedule() {
    // The same trace with block_length 8 instead of 4 must not match: the comparison can fail.
    let replay = Replay::load("llada-tiny");
    let mut trace = traces("llada-tiny")
        .into_iter()
        .find(|t| t.name == "ii")
        .unwrap();
    trace.schedule = ScheduleSpec::parse("llada:steps=8,gen_length=16,block_length=8").unwrap();
    assert!(check_trace(&replay, &trace).is_err());
}

// ---------------------------------------------------------------------------------------------
// Hand-computable schedules on a denoiser with fixed, position-ranked logits.

/// Ignores the ids: generated position `j` (counted from `from`) has logit `gen - j` on
/// token `j + 1` and 0 elsewhere, so confidence falls with `j` and every answer is known.
/// Rows may be left-padded; `valid` only has to be consistent.
struct Peaked {
    vocab: i64,
    mask: i64,
    /// Positions (0-based among the generated ones) whose peak is on the mask id instead.
    mask_peaks: Vec<i64>,
}

impl Peaked {
    fn new() -> Self {
        Peaked {
            vocab: 32,
            mask: 31,
            mask_peaks: Vec::new(),
        }
    }
}

impl MaskedDenoiser for Peaked {
    fn mask_id(&self) -> i64 {
        self.mask
    }
    fn vocab_size(&self) -> i64 {
        self.vocab
    }
    fn max_len(&self) -> Option<usize> {
        Some(64)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn supports_padding(&self) -> bool {
        true
    }
    fn logits(
        &self,
        ids: &Tensor,
        _valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (b, l) = (ids.size()[0], ids.size()[1]);
        let g = l - from;
        let mut host = vec![0f32; (b * g * self.vocab) as usize];
        for r in 0..b {
            for j in 0..g {
                let tok = if self.mask_peaks.contains(&j) {
                    self.mask
                } else {
                    j + 1
                };
                host[((r * g + j) * self.vocab + tok) as usize] = (g - j) as f32;
            }
        }
        Ok(Tensor::from_slice(&host).view([b, g, self.vocab]))
    }
}

fn run(
    model: &dyn MaskedDenoiser,
    prompts: &[Vec<i64>],
    spec: &str,
    opts: &DecodeOptions,
) -> DecodeOutput {
    decode(model, prompts, &ScheduleSpec::parse(spec).unwrap(), opts).unwrap()
}

/// Decodes one prompt and compares the step that committed each position.
fn check_commit_steps(model: &dyn MaskedDenoiser, spec: &str, expected: &[i32]) {
    let out = run(model, &[vec![1, 2, 3]], spec, &DecodeOptions::default());
    assert_eq!(out.trajectories[0].commit_steps(), expected, "{spec}");
}

#[test]
fn schedules_commit_in_the_order_computed_by_hand() {
    let m = Peaked::new();
    check_commit_steps(&m, "fixed:gen_length=6,k=1", &[0, 1, 2, 3, 4, 5]);
    check_commit_steps(&m, "fixed:gen_length=6,k=4", &[0, 0, 0, 0, 1, 1]);
    check_commit_steps(&m, "fixed:gen_length=6,k=all", &[0, 0, 0, 0, 0, 0]);
    // 6 positions over 4 steps: 2, 2, 1, 1.
    check_commit_steps(&m, "llada:gen_length=6,steps=4", &[0, 0, 1, 1, 2, 3]);
    // Blocks of 2, one step each: the block decides, not the confidence.
    check_commit_steps(
        &m,
        "llada:gen_length=6,block_length=2,steps=3",
        &[0, 0, 1, 1, 2, 2],
    );
    // Random order with a fixed seed still commits one position per step.
    let out = run(
        &m,
        &[vec![1]],
        "fixed:gen_length=6,k=1,order=random",
        &DecodeOptions::default(),
    );
    let mut steps = out.trajectories[0].commit_steps();
    steps.sort();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn threshold_commits_everything_above_tau_and_always_one() {
    let m = Peaked::new();
    // Generated position j has confidence e^(6-j) / (e^(6-j) + 31): 0.929, 0.827, 0.638, 0.393, 0.192, 0.081.
    check_commit_steps(&m, "threshold:gen_length=6,tau=0.7", &[0, 0, 1, 2, 3, 4]);
    check_commit_steps(&m, "threshold:gen_length=6,tau=1", &[0, 1, 2, 3, 4, 5]);
    // Logits are recomputed per step with `g` = 6 fixed, so the ranks do not shift.
    check_commit_steps(&m, "threshold:gen_length=6,tau=0.05", &[0, 0, 0, 0, 0, 0]);
    // Blocks of 3: the second block starts only when the first is full.
    check_commit_steps(
        &m,
        "threshold:gen_length=6,block_length=3,tau=0.5",
        &[0, 0, 0, 1, 2, 3],
    );
}

#[test]
fn threshold_rows_are_independent_of_their_batch() {
    let m = Peaked::new();
    let prompts = vec![vec![1, 2, 3], vec![4]];
    let batched = run(
        &m,
        &prompts,
        "threshold:gen_length=6,tau=0.5",
        &DecodeOptions {
            batch_size: 2,
            ..Default::default()
        },
    );
    let single = run(
        &m,
        &prompts,
        "threshold:gen_length=6,tau=0.5",
        &DecodeOptions::default(),
    );
    assert_eq!(batched, single);
    assert_eq!(single.trajectories[0].steps(), 4);
}

#[test]
fn mask_id_argmax_leaves_the_position_masked_in_llada() {
    let m = Peaked {
        mask_peaks: vec![1],
        ..Peaked::new()
    };
    // Upstream LLaDA writes the argmax even when it is the mask id: position 1 stays masked,
    // is picked again in step 1 (it is still the most confident), and crowds out position 3.
    let out = run(
        &m,
        &[vec![1]],
        "llada:gen_length=4,steps=2",
        &DecodeOptions::default(),
    );
    let t = &out.trajectories[0];
    assert_eq!(t.commit_steps(), [0, -1, 1, -1]);
    assert_eq!(t.gen_ids(), [1, 31, 3, 31]);
    // Threshold and fixed never commit the mask id.
    let out = run(
        &m,
        &[vec![1]],
        "fixed:gen_length=4,k=2",
        &DecodeOptions::default(),
    );
    assert!(!out.trajectories[0].gen_ids().contains(&31));
}

#[test]
fn forbid_eot_removes_the_caller_ids() {
    let m = Peaked::new();
    let opts = DecodeOptions {
        eot_ids: vec![1, 2],
        ..Default::default()
    };
    let out = run(
        &m,
        &[vec![5]],
        "fixed:gen_length=3,k=all,forbid_eot=true",
        &opts,
    );
    // Positions 0 and 1 lose their peaks (tokens 1 and 2); every other logit is 0 and the
    // argmax takes the first, token 0.
    assert_eq!(out.trajectories[0].gen_ids(), [0, 0, 3]);
    let e = decode(
        &m,
        &[vec![5]],
        &ScheduleSpec::parse("llada:gen_length=2,forbid_eot=true").unwrap(),
        &DecodeOptions::default(),
    );
    assert!(e.unwrap_err().to_string().contains("forbid_eot"));
}

#[test]
fn records_follow_the_commits() {
    let m = Peaked::new();
    let opts = DecodeOptions {
        save_step_distributions: Some(3),
        ..Default::default()
    };
    let out = run(
        &m,
        &[vec![7, 8], vec![9]],
        "llada:gen_length=4,steps=2",
        &opts,
    );
    let steps = out.step_records(&|id| format!("<{id}>"));
    assert_eq!(steps.len(), 8);
    let first = &steps[0];
    assert_eq!(
        (
            first.prompt_index,
            first.step,
            first.position,
            first.distance
        ),
        (0, 0, 2, 1)
    );
    assert_eq!(
        (first.token_id, first.token.as_str(), first.masked_after),
        (1, "<1>", 2)
    );
    let expected_prob = 4f32.exp() / (4f32.exp() + 31.0);
    assert!(
        (first.prob.unwrap() - expected_prob).abs() < 1e-6
            && (first.confidence.unwrap() - expected_prob).abs() < 1e-6
    );
    let gens = out.generations(&["a".into(), "b".into()], &|ids| format!("{ids:?}"));
    assert_eq!(gens[1].prompt_id, "b");
    assert_eq!(gens[1].gen_ids, [1, 2, 3, 4]);
    assert_eq!(gens[1].commit_step, [0, 0, 1, 1]);
    assert_eq!(gens[1].text, "[1, 2, 3, 4]");
    assert_eq!(gens[1].steps, 2);
    // Step 0 sees 4 masked positions, step 1 the remaining 2: 6 rows per prompt.
    let dists = out.step_distributions();
    assert_eq!(dists.len(), 12);
    assert_eq!(dists[0].top_ids[0], 1);
    assert!(dists[0].top_probs[0] > dists[0].top_probs[1]);
}

#[test]
fn bad_requests_are_errors_naming_the_problem() {
    let m = Peaked::new();
    let err = |prompts: &[Vec<i64>], spec: &str| {
        decode(
            &m,
            prompts,
            &ScheduleSpec::parse(spec).unwrap(),
            &DecodeOptions::default(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(err(&[vec![1; 60]], "fixed:gen_length=8").contains("maximum length 64"));
    assert!(err(&[vec![1], vec![]], "fixed:gen_length=8").contains("prompt 1 is empty"));
    assert!(err(&[vec![1, 31]], "fixed:gen_length=8").contains("mask id"));
}

// ---------------------------------------------------------------------------------------------
// Determinism, on a denoiser whose logits depend on the ids.

/// Logits at position j mix fixed random vectors of the left and right neighbours' ids and of
/// j, so every commit changes the next step's logits. Left padding is honoured: padded slots
/// count as "no neighbour" and positions are counted from the first valid token.
struct Toy {
    table: Vec<f32>,
    vocab: i64,
}

impl Toy {
    fn new() -> Toy {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let vocab = 24;
        Toy {
            table: (0..(3 * 64 * vocab))
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect(),
            vocab,
        }
    }
}

impl MaskedDenoiser for Toy {
    fn mask_id(&self) -> i64 {
        self.vocab - 1
    }
    fn vocab_size(&self) -> i64 {
        self.vocab
    }
    fn max_len(&self) -> Option<usize> {
        Some(64)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn supports_padding(&self) -> bool {
        true
    }
    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (b, l) = (ids.size()[0], ids.size()[1]);
        let v = self.vocab as usize;
        let ids: Vec<i64> = Vec::try_from(&ids.flatten(0, -1)).unwrap();
        let valid: Vec<bool> = match valid {
            Some(t) => Vec::try_from(&t.flatten(0, -1)).unwrap(),
            None => vec![true; ids.len()],
        };
        let mut out = Vec::new();
        for r in 0..b as usize {
            let row = &ids[r * l as usize..(r + 1) * l as usize];
            let ok = &valid[r * l as usize..(r + 1) * l as usize];
            let start = ok.iter().position(|&x| x).unwrap();
            for j in from as usize..l as usize {
                let vec =
                    |k: usize, id: usize| &self.table[(k * 64 + id) * v..(k * 64 + id + 1) * v];
                let mut logit: Vec<f32> = vec(2, j - start).to_vec();
                if j > start {
                    logit
                        .iter_mut()
                        .zip(vec(0, row[j - 1] as usize))
                        .for_each(|(a, b)| *a += b);
                }
                if j + 1 < l as usize {
                    logit
                        .iter_mut()
                        .zip(vec(1, row[j + 1] as usize))
                        .for_each(|(a, b)| *a += b);
                }
                out.extend(logit);
            }
        }
        Ok(Tensor::from_slice(&out).view([b, l - from, self.vocab]))
    }
}

const RANDOM_SPECS: [&str; 6] = [
    "llada:gen_length=12,steps=6,block_length=6,temperature=0.8",
    "llada:gen_length=12,steps=6,remasking=random,cfg_scale=0.5",
    "dream:max_new_tokens=12,steps=6,temperature=0.7,top_p=0.9,alg=entropy,alg_temp=0.5",
    "dream:max_new_tokens=12,steps=6,temperature=1,top_k=5,alg=origin",
    "threshold:gen_length=12,block_length=4,tau=0.3,temperature=1.5",
    "fixed:gen_length=12,k=3,order=random,temperature=1",
];

#[test]
fn same_seed_same_output_different_seed_different_output() {
    let m = Toy::new();
    let prompts = vec![vec![1, 2, 3], vec![4, 5], vec![6]];
    for spec in RANDOM_SPECS {
        let opts = |seed| DecodeOptions {
            seed,
            batch_size: 2,
            save_step_distributions: Some(2),
            ..Default::default()
        };
        let a = run(&m, &prompts, spec, &opts(11));
        let b = run(&m, &prompts, spec, &opts(11));
        assert_eq!(a, b, "{spec}");
        let c = run(&m, &prompts, spec, &opts(12));
        assert_ne!(
            a.trajectories, c.trajectories,
            "{spec}: seeds 11 and 12 gave the same trajectories"
        );
    }
}

/// Saving distributions computes logits for more positions; it must not move any random draw.
#[test]
fn saving_distributions_does_not_change_the_draws() {
    let m = Toy::new();
    let prompts = vec![vec![1, 2, 3], vec![4, 5], vec![6]];
    for spec in RANDOM_SPECS {
        let opts = |save| DecodeOptions {
            seed: 3,
            batch_size: 2,
            save_step_distributions: save,
            ..Default::default()
        };
        let plain = run(&m, &prompts, spec, &opts(None));
        let saved = run(&m, &prompts, spec, &opts(Some(3)));
        for (a, b) in plain.trajectories.iter().zip(&saved.trajectories) {
            assert_eq!((&a.history, &a.commits), (&b.history, &b.commits), "{spec}");
            assert!(a.distributions.is_empty());
            // One distribution per still-masked position per step.
            let masked: usize = a.history[..a.steps()]
                .iter()
                .map(|h| h.iter().filter(|&&t| t == m.mask_id()).count())
                .sum();
            assert_eq!(b.distributions.len(), masked, "{spec}");
        }
    }
}

/// Runs `specs` on the text fixture with and without saved distributions (which read every
/// masked position's logits), and requires the same histories and the same probability and
/// confidence bits: saving distributions moves no decision and no random draw.
fn decides_alike_with_saved_distributions(specs: &[&str], eot_ids: Vec<i64>, seed: u64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text-llada");
    let loaded = load_model(
        &dir,
        &LoadOptions {
            device: cp_model::DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let m = &*loaded.denoiser;
    let prompts = vec![
        vec![5, 17, 300, 41],
        vec![9, 1200],
        vec![77, 78, 79, 80, 81, 82],
    ];
    for spec in specs {
        let opts = |save| DecodeOptions {
            seed,
            batch_size: 2,
            eot_ids: eot_ids.clone(),
            save_step_distributions: save,
            ..Default::default()
        };
        let saved = run(m, &prompts, spec, &opts(Some(2)));
        let plain = run(m, &prompts, spec, &opts(None));
        for (a, b) in saved.trajectories.iter().zip(&plain.trajectories) {
            assert_eq!(a.history, b.history, "{spec}");
            // Probabilities and confidences bit for bit (`Commit` compares floats by value).
            let bits = |t: &cp_model::Trajectory| {
                t.commits
                    .iter()
                    .map(|c| {
                        (
                            c.step,
                            c.gen_index,
                            c.token_id,
                            c.prob.to_bits(),
                            c.confidence.to_bits(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(b), "{spec}");
        }
    }
}

/// Dream's steps, with every `alg`, filters and draws, decide alike with saved distributions.
#[test]
fn dream_steps_decide_alike_with_saved_distributions() {
    let specs = [
        "dream:max_new_tokens=24,steps=12,alg=entropy,top_k=50",
        "dream:max_new_tokens=24,steps=12,alg=maskgit_plus,top_k=20,temperature=0.7",
        "dream:max_new_tokens=24,steps=12,alg=topk_margin,top_k=5,temperature=1",
        "dream:max_new_tokens=24,steps=8,alg=entropy,top_k=1",
        "dream:max_new_tokens=24,steps=12,alg=entropy,top_k=50,temperature=0.5,forbid_eot=true",
        "dream:max_new_tokens=24,steps=12,alg=origin,temperature=0.7,top_p=0.9",
        "dream:max_new_tokens=24,steps=12,alg=origin,top_k=50",
    ];
    decides_alike_with_saved_distributions(&specs, vec![0], 4);
}

/// The LLaDA-style steps decide alike with saved distributions.
#[test]
fn llada_style_steps_decide_alike_with_saved_distributions() {
    let specs = [
        "llada:gen_length=24,steps=12,block_length=12",
        "llada:gen_length=24,steps=8,cfg_scale=1,temperature=0.8",
        "llada:gen_length=24,steps=12,remasking=random,temperature=1",
        "threshold:gen_length=24,block_length=8,tau=0.3",
        "threshold:gen_length=24,block_length=24,tau=0.05,temperature=0.5",
        "fixed:gen_length=24,k=3",
        "fixed:gen_length=24,k=2,order=random,temperature=0.7",
    ];
    decides_alike_with_saved_distributions(&specs, Vec::new(), 9);
}

#[test]
fn greedy_rows_are_independent_of_batching_and_padding() {
    let m = Toy::new();
    let prompts = vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7, 8, 9]];
    for spec in [
        "llada:gen_length=8,steps=4,block_length=4",
        "llada:gen_length=8,steps=4,cfg_scale=1",
        "dream:max_new_tokens=8,steps=4,alg=topk_margin,top_k=6",
        "threshold:gen_length=8,block_length=4,tau=0.2",
        "fixed:gen_length=8,k=3",
    ] {
        let one = run(&m, &prompts, spec, &DecodeOptions::default());
        let four = run(
            &m,
            &prompts,
            spec,
            &DecodeOptions {
                batch_size: 4,
                ..Default::default()
            },
        );
        assert_eq!(one, four, "{spec}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling: the drawn tokens follow the distribution the schedule samples from.

#[test]
fn sampled_tokens_follow_the_sampling_distribution() {
    let weights = [0.4f64, 0.25, 0.15, 0.1, 0.05, 0.05, 0.0];
    let mut logits: Vec<f32> = weights.iter().map(|&w| w.ln() as f32).collect();
    logits.push(f32::NEG_INFINITY); // the mask id
    let m = Constant { logits };
    let prompts: Vec<Vec<i64>> = (0..40).map(|i| vec![i % 6]).collect();
    for temperature in [1.0, 0.5] {
        // softmax(ln(w) / T) is proportional to w^(1/T).
        let powered: Vec<f64> = weights.iter().map(|&w| w.powf(1.0 / temperature)).collect();
        let total: f64 = powered.iter().sum();
        // Every position is committed, with a sampled token, in the one step.
        for spec in [
            format!("llada:gen_length=48,steps=1,temperature={temperature}"),
            format!("fixed:gen_length=48,k=all,temperature={temperature}"),
            format!("dream:max_new_tokens=48,steps=1,temperature={temperature},alg=maskgit_plus"),
        ] {
            let out = run(
                &m,
                &prompts,
                &spec,
                &DecodeOptions {
                    seed: 5,
                    batch_size: 8,
                    ..Default::default()
                },
            );
            let mut counts = vec![0usize; weights.len() + 1];
            for t in &out.trajectories {
                for c in &t.commits {
                    counts[c.token_id as usize] += 1;
                }
            }
            let n: usize = counts.iter().sum();
            assert_eq!(n, 40 * 48, "{spec}");
            for (tok, &w) in powered.iter().enumerate() {
                let (p, freq) = (w / total, counts[tok] as f64 / n as f64);
                let se = (p * (1.0 - p) / n as f64).sqrt();
                assert!(
                    (freq - p).abs() <= 5.0 * se + 1e-12,
                    "{spec}: token {tok} drawn {freq:.4}, expected {p:.4}"
                );
            }
            assert_eq!(counts[weights.len()], 0, "{spec}: the mask id was drawn");
        }
    }
}
