//! The mask probe on a denoiser with known distributions.

use cp_model::{mask_probe, plan_batches, ProbeError, ProbeInput, ProbeSettings};

use crate::fakes::Constant;

fn input(i: u32, len: usize) -> ProbeInput {
    ProbeInput {
        prompt_index: i,
        prompt_id: i.to_string(),
        ids: vec![1; len],
    }
}

#[test]
fn uniform_distribution_has_entropy_ln_v_and_no_js() {
    let model = Constant {
        logits: vec![0.0; 8],
    };
    let settings = ProbeSettings {
        masks: 3,
        top_k: 2,
        batch_size: 2,
        eot_ids: vec![7],
        unigram: Some(vec![0.125; 8]),
    };
    let recs = mask_probe(
        &model,
        &[input(0, 2), input(1, 4)],
        &settings,
        &|i| format!("t{i}"),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(recs.len(), 6);
    for r in &recs {
        assert!((r.entropy - 8f32.ln()).abs() < 1e-5, "{}", r.entropy);
        assert!((r.eot_mass - 0.125).abs() < 1e-6);
        assert!(r.kl_unigram.unwrap().abs() < 1e-5);
        assert!((r.xent_unigram.unwrap() - 8f32.ln()).abs() < 1e-5);
        assert_eq!(r.js_prev.is_some(), r.distance > 1);
        assert!(r.js_prev.unwrap_or(0.0).abs() < 1e-6);
    }
    assert_eq!(
        (recs[3].prompt_len, recs[3].position, recs[3].distance),
        (4, 4, 1)
    );
}

#[test]
fn top_k_margin_and_text() {
    let model = Constant {
        logits: vec![
            (0.5f32).ln(),
            (0.3f32).ln(),
            (0.2f32).ln(),
            f32::NEG_INFINITY,
        ],
    };
    let settings = ProbeSettings {
        masks: 1,
        top_k: 1,
        batch_size: 1,
        eot_ids: vec![],
        unigram: None,
    };
    let recs = mask_probe(
        &model,
        &[input(0, 1)],
        &settings,
        &|i| format!("t{i}"),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(recs[0].top_ids, vec![0]);
    assert_eq!(recs[0].top_tokens, vec!["t0".to_string()]);
    assert!((recs[0].max_prob - 0.5).abs() < 1e-6);
    assert!((recs[0].margin - 0.2).abs() < 1e-6);
}

#[test]
fn bad_settings_are_refused() {
    let model = Constant {
        logits: vec![0.0; 8],
    };
    let s = |masks, top_k| ProbeSettings {
        masks,
        top_k,
        ..ProbeSettings::default()
    };
    let err = |r: Result<(), ProbeError>| r.unwrap_err().to_string();
    assert!(err(s(4, 9).validate(&model, &[input(0, 2)])).contains("--top-k 9"));
    assert!(err(s(63, 3).validate(&model, &[input(0, 2)]))
        .contains("longer than the model's context of 64"));
    assert!(s(62, 3).validate(&model, &[input(0, 2)]).is_ok());
}

#[test]
fn batches_without_padding_group_equal_lengths() {
    let prompts = [
        input(0, 2),
        input(1, 3),
        input(2, 2),
        input(3, 3),
        input(4, 2),
    ];
    assert_eq!(
        plan_batches(&prompts, 2, true),
        vec![vec![0, 1], vec![2, 3], vec![4]]
    );
    assert_eq!(
        plan_batches(&prompts, 2, false),
        vec![vec![0, 2], vec![1, 3], vec![4]]
    );
}
