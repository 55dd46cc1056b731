//! Every metric on inputs whose answer can be computed by hand, through one helper.

use cp_analysis::{
    analyze_decode, analyze_probe, onset, Analysis, Bootstrap, CollapseSettings, NgramIndex,
    ProbeColumns, TrapSettings, Unigram,
};
use cp_records::{Generation, ProbeRecord};

/// What to analyse.
enum Input {
    /// Probe rows and, optionally, corpus unigram counts by token id.
    Probe {
        rows: Vec<ProbeRecord>,
        unigram: Option<Vec<u64>>,
        settings: CollapseSettings,
    },
    /// Generations as (tokens, commit steps) and, optionally, the reference corpus documents.
    Decode {
        gens: Vec<(Vec<u32>, Vec<i32>)>,
        corpus: Option<Vec<Vec<u32>>>,
        settings: TrapSettings,
    },
}

fn run(input: &Input) -> Analysis {
    match input {
        Input::Probe {
            rows,
            unigram,
            settings,
        } => {
            let u = unigram.clone().map(Unigram::from_counts);
            analyze_probe(
                &ProbeColumns::from_records(rows),
                u.as_ref(),
                settings,
                "all",
            )
            .unwrap()
        }
        Input::Decode {
            gens,
            corpus,
            settings,
        } => {
            let index = corpus
                .as_ref()
                .map(|c| NgramIndex::from_documents(c).unwrap());
            analyze_decode(&generations(gens), index.as_ref(), settings, "all").unwrap()
        }
    }
}

/// Runs the analysis and compares the named metrics (to 1e-9); `None` means "absent".
fn check(input: Input, expected: &[(&str, Option<f64>)]) {
    let got = run(&input);
    for &(name, want) in expected {
        let value = got.metrics.iter().find(|m| m.name == name).map(|m| m.value);
        match (value, want) {
            (Some(v), Some(w)) => assert!((v - w).abs() < 1e-9, "{name}: got {v}, expected {w}"),
            (None, None) => {}
            _ => panic!(
                "{name}: got {value:?}, expected {want:?}; metrics: {:?}",
                got.metrics
                    .iter()
                    .map(|m| (&m.name, m.value))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

fn generations(gens: &[(Vec<u32>, Vec<i32>)]) -> Vec<Generation> {
    gens.iter()
        .enumerate()
        .map(|(i, (ids, steps))| Generation {
            prompt_index: i as u32,
            prompt_id: i.to_string(),
            prompt_ids: vec![0],
            gen_ids: ids.clone(),
            commit_step: steps.clone(),
            text: String::new(),
            steps: steps
                .iter()
                .copied()
                .max()
                .map_or(0, |m| m.max(0) as u32 + 1),
            remask_count: None,
        })
        .collect()
}

/// A probe row at `distance` of prompt `prompt` with the given top-k and entropy.
fn row(
    prompt: u32,
    distance: u32,
    top_ids: &[u32],
    top_probs: &[f32],
    entropy: f32,
) -> ProbeRecord {
    ProbeRecord {
        prompt_index: prompt,
        prompt_id: prompt.to_string(),
        prompt_len: 4,
        position: 3 + distance,
        distance,
        top_ids: top_ids.to_vec(),
        top_tokens: top_ids.iter().map(|t| t.to_string()).collect(),
        top_probs: top_probs.to_vec(),
        entropy,
        max_prob: top_probs.first().copied().unwrap_or(0.0),
        margin: 0.0,
        eot_mass: 0.0,
        kl_unigram: Some(distance as f32),
        xent_unigram: None,
        js_prev: (distance > 1).then_some(0.5),
    }
}

fn no_bootstrap() -> Bootstrap {
    Bootstrap {
        replicates: 0,
        seed: 0,
    }
}

fn decode(gens: Vec<(Vec<u32>, Vec<i32>)>, corpus: Option<Vec<Vec<u32>>>) -> Input {
    Input::Decode {
        gens,
        corpus,
        settings: TrapSettings {
            bootstrap: no_bootstrap(),
            ..Default::default()
        },
    }
}

#[test]
fn entropy_of_uniform_predictions_is_ln_k() {
    // The probe writes ln k for a uniform distribution over k tokens; near and far average it.
    let k = 8f32;
    let rows = (1..=8)
        .map(|d| row(0, d, &[1, 2], &[0.125, 0.125], k.ln()))
        .collect();
    let settings = CollapseSettings {
        bootstrap: no_bootstrap(),
        ..Default::default()
    };
    check(
        Input::Probe {
            rows,
            unigram: None,
            settings,
        },
        &[
            ("collapse.entropy.near", Some((8f32).ln() as f64)),
            ("collapse.entropy.far", Some((8f32).ln() as f64)),
            // Near = distances 1..=2, far = 7..=8 (a quarter of 8 each).
            ("collapse.kl_unigram.near", Some(1.5)),
            ("collapse.kl_unigram.far", Some(7.5)),
            ("collapse.js_adjacent.near", Some(0.5)),
            ("collapse.frequent_share.near", None),
            ("collapse.onset", None),
        ],
    );
    // A generation using k distinct tokens once each has sample entropy ln k.
    check(
        decode(vec![(vec![1, 2, 3, 4], vec![0, 0, 1, 1])], None),
        &[("trap.sample_entropy", Some(4f64.ln()))],
    );
    check(
        decode(vec![(vec![7, 7, 7], vec![0, 1, 2])], None),
        &[("trap.sample_entropy", Some(0.0))],
    );
}

/// Two prompts over distances 1..=4: prompt 0's top-2 holds token 0 from distance 3 on, prompt
/// 1's from distance 4 on; each row's entropy comes from `e0` / `e1` of the distance.
fn two_prompts(e0: impl Fn(u32) -> f32, e1: impl Fn(u32) -> f32) -> Vec<ProbeRecord> {
    let mut rows = Vec::new();
    for d in 1..=4u32 {
        let p0 = if d >= 3 { [0, 5] } else { [5, 6] };
        let p1 = if d >= 4 { [7, 0] } else { [7, 6] };
        rows.push(row(0, d, &p0, &[0.5, 0.25], e0(d)));
        rows.push(row(1, d, &p1, &[0.5, 0.25], e1(d)));
    }
    rows
}

#[test]
fn frequency_metrics_and_onset() {
    // Token 0 is the corpus's single most frequent token (F = 1). Prompt 0's top-2 holds it from
    // distance 3 on, prompt 1's from distance 4 on: shares 1/2 there, mean curve 0, 0, 0.25, 0.5.
    // Threshold 0.5 → onset 4; 0.25 → onset 3 (reaching the threshold counts as collapsed);
    // 0.75 → 5, one past the window: no collapse.
    let rows = two_prompts(|_| 1.0, |_| 1.0);
    let unigram = Some(vec![100, 1, 1, 1, 1, 50, 40, 30]);
    let settings = |t| CollapseSettings {
        top_frequent: 1,
        onset_threshold: t,
        bootstrap: no_bootstrap(),
        ..Default::default()
    };
    check(
        Input::Probe {
            rows: rows.clone(),
            unigram: unigram.clone(),
            settings: settings(0.5),
        },
        &[
            ("collapse.onset", Some(4.0)),
            ("collapse.frequent_share.near", Some(0.0)),
            // Far = distance 4: both prompts have share 1/2.
            ("collapse.frequent_share.far", Some(0.5)),
            // Prompt 0 carries 0.5 on token 0 at distance 4, prompt 1 carries 0.25.
            ("collapse.frequent_mass.far", Some(0.375)),
            // Ranks: 0→1, 5→2, 6→3, 7→4. Top-1 at distance 1: tokens 5 and 7 → median of 2 and 4.
            ("collapse.top1_rank.near", Some(3.0)),
            ("collapse.top1_rank.far", Some(2.5)),
        ],
    );
    check(
        Input::Probe {
            rows: rows.clone(),
            unigram: unigram.clone(),
            settings: settings(0.25),
        },
        &[("collapse.onset", Some(3.0))],
    );
    check(
        Input::Probe {
            rows,
            unigram,
            settings: settings(0.75),
        },
        &[("collapse.onset", Some(5.0))],
    );
    assert_eq!(onset(&[0.1, 0.6, 0.4, 0.7, 0.9], 0.5), 4);
    assert_eq!(onset(&[0.9, 0.6], 0.5), 1, "collapsed from the first mask");
    assert_eq!(
        onset(&[0.9, 0.1], 0.5),
        3,
        "not collapsed within the window: window + 1"
    );
    assert_eq!(
        onset(&[0.2, f64::NAN, 0.9], 0.5),
        2,
        "distances without data are skipped"
    );
}

#[test]
fn text_against_an_index_of_itself_has_no_unseen_ngrams() {
    let text = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
    let steps = (0..text.len() as i32).map(|i| i / 3).collect();
    check(
        decode(vec![(text.clone(), steps)], Some(vec![text])),
        &[
            ("trap.unseen_2gram_rate", Some(0.0)),
            ("trap.unseen_3gram_rate", Some(0.0)),
            ("trap.unseen_4gram_rate", Some(0.0)),
            ("trap.unseen_5gram_rate", Some(0.0)),
            ("trap.same_step_unseen_bigram_rate", Some(0.0)),
            ("trap.diff_step_unseen_bigram_rate", Some(0.0)),
        ],
    );
    // Without an index the unseen metrics are absent, not zero.
    check(
        decode(vec![(vec![1, 2], vec![0, 0])], None),
        &[
            ("trap.unseen_2gram_rate", None),
            ("trap.same_vs_diff_ratio", None),
        ],
    );
}

#[test]
fn simctg_rep_n_drops_the_last_ngram() {
    // 1 2 1 2 1. Bigrams 12 21 12 21; SimCTG counts all but the last: 12 21 12 → 2 unique of 3.
    // Trigrams 121 212 121 → SimCTG 121 212 → 2 of 2. 4-grams 1212 2121 → SimCTG 1212 → 1 of 1.
    let g = vec![(vec![1, 2, 1, 2, 1], vec![0, 1, 2, 3, 4])];
    check(
        decode(g, None),
        &[
            ("trap.rep_2", Some(1.0 / 3.0)),
            ("trap.rep_3", Some(0.0)),
            ("trap.rep_4", Some(0.0)),
            ("trap.diversity", Some(2.0 / 3.0)),
            // seq-rep-n and distinct-n count every n-gram.
            ("trap.seq_rep_2", Some(0.5)),
            ("trap.seq_rep_3", Some(1.0 - 2.0 / 3.0)),
            ("trap.distinct_1", Some(2.0 / 5.0)),
            ("trap.distinct_2", Some(2.0 / 4.0)),
            ("trap.adjacent_duplicate_rate", Some(0.0)),
        ],
    );
    // rep-n sums unique counts per generation: two identical generations are not repeats of
    // each other, while distinct-n pools one set over both.
    let g = vec![
        (vec![1, 2, 3], vec![0, 0, 0]),
        (vec![1, 2, 3], vec![0, 0, 0]),
    ];
    check(
        decode(g, None),
        &[
            ("trap.rep_2", Some(0.0)),
            ("trap.distinct_2", Some(0.5)),
            ("trap.distinct_1", Some(0.5)),
        ],
    );
}

#[test]
fn co_committed_split() {
    // Pairs: (5,6) same step, seen; (6,7) different, seen; (7,8) same, unseen (it spans a
    // corpus document boundary); (8,9) different, seen; (9,5) different, unseen.
    let g = vec![(vec![5, 6, 7, 8, 9, 5], vec![0, 0, 1, 1, 2, 3])];
    let corpus = Some(vec![vec![5, 6, 7], vec![8, 9]]);
    check(
        decode(g, corpus),
        &[
            ("trap.same_step_unseen_bigram_rate", Some(0.5)),
            ("trap.diff_step_unseen_bigram_rate", Some(1.0 / 3.0)),
            ("trap.same_vs_diff_ratio", Some(1.5)),
            ("trap.same_step_pair_fraction", Some(2.0 / 5.0)),
            ("trap.unseen_2gram_rate", Some(2.0 / 5.0)),
            // 6 tokens committed over 4 steps.
            ("trap.tokens_per_step", Some(1.5)),
        ],
    );
}

#[test]
fn duplicates_and_truncation() {
    // 3 3 4 4 4: four adjacent pairs, three duplicates; the co-committed ones are 2 of 2.
    let g = vec![(vec![3, 3, 4, 4, 4], vec![0, 0, 1, 1, 2])];
    check(
        decode(g, None),
        &[
            ("trap.adjacent_duplicate_rate", Some(0.75)),
            ("trap.same_step_duplicate_rate", Some(1.0)),
            ("trap.diff_step_duplicate_rate", Some(0.5)),
        ],
    );
    // A generation is cut at the first end-of-text id and at the first never-committed position.
    let settings = TrapSettings {
        eos_ids: vec![9],
        bootstrap: no_bootstrap(),
        ..Default::default()
    };
    let gens = vec![
        (vec![1, 2, 9, 9, 9], vec![0, 1, 2, 2, 2]),
        (vec![4, 4, 0, 5], vec![0, 0, -1, 1]),
    ];
    check(
        Input::Decode {
            gens,
            corpus: None,
            settings,
        },
        &[
            ("trap.gen_length", Some(2.0)),
            ("trap.adjacent_duplicate_rate", Some(0.5)),
        ],
    );
}

#[test]
fn bootstrap_errors_are_deterministic_given_a_seed() {
    let gens: Vec<(Vec<u32>, Vec<i32>)> = (0..20u32)
        .map(|i| {
            (
                (0..10).map(|j| (i * j) % 4).collect(),
                (0..10).map(|j| j / 2).collect(),
            )
        })
        .collect();
    let with = |seed| {
        let settings = TrapSettings {
            bootstrap: Bootstrap {
                replicates: 200,
                seed,
            },
            ..Default::default()
        };
        run(&Input::Decode {
            gens: gens.clone(),
            corpus: Some(vec![vec![0, 1, 2, 3, 0, 2]]),
            settings,
        })
        .metrics
    };
    let (a, b, c) = (with(7), with(7), with(8));
    assert_eq!(a, b, "same seed, same errors");
    let err = |m: &[cp_records::Metric], name: &str| {
        m.iter()
            .find(|x| x.name == name)
            .and_then(|x| x.stderr)
            .unwrap()
    };
    assert!(err(&a, "trap.rep_2") > 0.0);
    assert_ne!(
        err(&a, "trap.rep_2"),
        err(&c, "trap.rep_2"),
        "another seed, another resample"
    );
    assert!(a
        .iter()
        .find(|m| m.name == "trap.distinct_2")
        .unwrap()
        .stderr
        .is_none());
}

/// The value of `metric` for `prompt` in the per-prompt table.
fn per_prompt(a: &Analysis, metric: &str, prompt: u32) -> Option<f64> {
    a.per_prompt
        .iter()
        .find(|p| p.metric == metric && p.prompt_index == prompt)
        .map(|p| p.value)
}

#[test]
fn per_prompt_values_are_each_prompts_own() {
    // The frequency example above, per prompt: prompt 0 collapses at distance 3, prompt 1 at 4;
    // far (distance 4) both hold token 0 at half their top-2; prompt 0 puts 0.5 on it, prompt 1 0.25.
    let rows = two_prompts(|d| d as f32, |d| 2.0 * d as f32);
    let settings = CollapseSettings {
        top_frequent: 1,
        onset_threshold: 0.5,
        bootstrap: no_bootstrap(),
        ..Default::default()
    };
    let a = run(&Input::Probe {
        rows,
        unigram: Some(vec![100, 1, 1, 1, 1, 50, 40, 30]),
        settings,
    });
    assert_eq!(per_prompt(&a, "collapse.onset", 0), Some(3.0));
    assert_eq!(per_prompt(&a, "collapse.onset", 1), Some(4.0));
    assert_eq!(per_prompt(&a, "collapse.frequent_mass.far", 0), Some(0.5));
    assert_eq!(per_prompt(&a, "collapse.frequent_mass.far", 1), Some(0.25));
    // Entropy d at distance d for prompt 0, 2d for prompt 1: near = distance 1, far = distance 4.
    assert_eq!(per_prompt(&a, "collapse.entropy.near", 1), Some(2.0));
    assert_eq!(per_prompt(&a, "collapse.entropy.far", 0), Some(4.0));
    // The headline mean is the mean of the per-prompt values.
    let far = a
        .metrics
        .iter()
        .find(|m| m.name == "collapse.entropy.far")
        .unwrap()
        .value;
    assert_eq!(far, (4.0 + 8.0) / 2.0);

    // Generations: the first has 1 unseen bigram of 2, the second none of 1; pooled 1/3.
    let gens = vec![(vec![5, 6, 9], vec![0, 0, 1]), (vec![5, 6], vec![0, 1])];
    let a = run(&decode(gens, Some(vec![vec![5, 6, 7]])));
    assert_eq!(per_prompt(&a, "trap.unseen_2gram_rate", 0), Some(0.5));
    assert_eq!(per_prompt(&a, "trap.unseen_2gram_rate", 1), Some(0.0));
    assert_eq!(per_prompt(&a, "trap.tokens_per_step", 0), Some(1.5));
    let pooled = a
        .metrics
        .iter()
        .find(|m| m.name == "trap.unseen_2gram_rate")
        .unwrap()
        .value;
    assert!((pooled - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn collapse_to_end_tokens_counts_as_generic_collapse() {
    // Token 0 is the one frequent token (F = 1), 9 an end token. Top-2 by distance 1..4:
    //   prompt 0: [5 6] [9 6] [9 8] [9 8]   end shares 0 ½ ½ ½, frequent 0 0 0 0
    //   prompt 1: [7 6] [7 6] [9 6] [9 0]   end shares 0 0 ½ ½, frequent 0 0 0 ½
    // Mean curves: end 0 ¼ ½ ½, frequent 0 0 0 ¼, generic (either) 0 ¼ ½ ¾.
    let tops: [[[u32; 2]; 4]; 2] = [
        [[5, 6], [9, 6], [9, 8], [9, 8]],
        [[7, 6], [7, 6], [9, 6], [9, 0]],
    ];
    let mut rows = Vec::new();
    for (p, prompt) in tops.iter().enumerate() {
        for (d, top) in prompt.iter().enumerate() {
            rows.push(row(p as u32, d as u32 + 1, top, &[0.5, 0.25], 1.0));
        }
    }
    let unigram = Some(vec![100, 1, 1, 1, 1, 50, 40, 30, 20, 0]);
    let settings = |end_ids: Vec<u32>| CollapseSettings {
        top_frequent: 1,
        onset_threshold: 0.5,
        end_ids,
        bootstrap: no_bootstrap(),
    };
    check(
        Input::Probe {
            rows: rows.clone(),
            unigram: unigram.clone(),
            settings: settings(vec![9]),
        },
        &[
            ("collapse.onset", Some(3.0)),
            ("collapse.eot_onset", Some(3.0)),
            // The frequent share never reaches ½: no collapse to frequent words in the window.
            ("collapse.frequent_onset", Some(5.0)),
            ("collapse.eot_share.near", Some(0.0)),
            ("collapse.eot_share.far", Some(0.5)),
            ("collapse.generic_share.far", Some(0.75)),
            ("collapse.frequent_share.far", Some(0.25)),
        ],
    );
    // Without end ids the generic share is the frequent share.
    check(
        Input::Probe {
            rows: rows.clone(),
            unigram: unigram.clone(),
            settings: settings(Vec::new()),
        },
        &[
            ("collapse.onset", Some(5.0)),
            ("collapse.frequent_onset", Some(5.0)),
            ("collapse.eot_onset", None),
            ("collapse.eot_share.far", None),
            ("collapse.generic_share.far", Some(0.25)),
        ],
    );
    // Without an index only the end-token side is known.
    check(
        Input::Probe {
            rows,
            unigram: None,
            settings: settings(vec![9]),
        },
        &[
            ("collapse.onset", None),
            ("collapse.frequent_onset", None),
            ("collapse.eot_onset", Some(3.0)),
            ("collapse.eot_share.far", Some(0.5)),
        ],
    );
}

/// Three generations with end token 9: an answer whose padding was committed first, an empty
/// answer (all padding), and an answer without end tokens. Steps are 0-based; each
/// generation ran max(step) + 1 steps.
fn padded_answers() -> Vec<(Vec<u32>, Vec<i32>)> {
    vec![
        (vec![1, 2, 9, 9, 9], vec![2, 3, 0, 0, 1]),
        (vec![9, 9, 9, 9], vec![0, 0, 1, 1]),
        (vec![3, 3, 4, 4], vec![0, 0, 1, 2]),
    ]
}

fn with_end_ids(keep_eos: bool) -> TrapSettings {
    TrapSettings {
        eos_ids: vec![9],
        cut_at_end: !keep_eos,
        unseen_ns: vec![2],
        bootstrap: no_bootstrap(),
        ..Default::default()
    }
}

#[test]
fn ngram_rates_read_answers_not_padding() {
    // Answers: [1 2], [], [3 3 4 4]. Corpus bigrams: 1-2, 2-3, 3-4.
    // Pairs: (1,2) seen; (3,3) unseen dup, (3,4) seen, (4,4) unseen dup → 2 of 4 unseen,
    // 2 of 4 duplicates. Lengths 2, 0, 4.
    let corpus = Some(vec![vec![1, 2, 3, 4]]);
    let answers = Input::Decode {
        gens: padded_answers(),
        corpus: corpus.clone(),
        settings: with_end_ids(false),
    };
    check(
        answers,
        &[
            ("trap.unseen_2gram_rate", Some(0.5)),
            ("trap.adjacent_duplicate_rate", Some(0.5)),
            ("trap.gen_length", Some(2.0)),
            // One empty answer of three.
            ("trap.empty_rate", Some(1.0 / 3.0)),
            // End tokens: 3 + 4 + 0 of 5 + 4 + 4 positions.
            ("trap.eos_fraction", Some(7.0 / 13.0)),
            // Only the first has both: end tokens at steps 0 0 1 (mean ⅓), its answer at 2 3
            // (mean 2.5), over 4 steps: (⅓ − 2.5) / 4 = −13/24. Padding first → negative.
            ("trap.early_eos_step", Some(-13.0 / 24.0)),
        ],
    );
    // --keep-eos: whole generations. Pairs 4 + 3 + 3 = 10; duplicates 2 + 3 + 2 = 7;
    // unseen: (2,9) (9,9) (9,9), three (9,9), (3,3) (4,4) = 8. The end-token metrics stay.
    check(
        Input::Decode {
            gens: padded_answers(),
            corpus,
            settings: with_end_ids(true),
        },
        &[
            ("trap.unseen_2gram_rate", Some(0.8)),
            ("trap.adjacent_duplicate_rate", Some(0.7)),
            ("trap.gen_length", Some(13.0 / 3.0)),
            ("trap.empty_rate", Some(1.0 / 3.0)),
            ("trap.eos_fraction", Some(7.0 / 13.0)),
        ],
    );
    // Without end ids nothing is cut and the end-token metrics are absent.
    check(
        decode(padded_answers(), None),
        &[
            ("trap.gen_length", Some(13.0 / 3.0)),
            ("trap.empty_rate", None),
            ("trap.eos_fraction", None),
            ("trap.early_eos_step", None),
        ],
    );
}

#[test]
fn generations_without_answers_give_no_ngram_rates() {
    // Every generation is padding: the n-gram rates would be about padding alone, so they are
    // absent, and the analysis says why.
    let input = Input::Decode {
        gens: vec![(vec![9, 9], vec![0, 0]), (vec![9, 9, 9], vec![0, 1, 1])],
        corpus: Some(vec![vec![1, 2, 3]]),
        settings: with_end_ids(false),
    };
    let got = run(&input);
    assert!(
        got.skipped
            .iter()
            .any(|s| s.contains("none of the 2 generations has an answer")),
        "{:?}",
        got.skipped
    );
    check(
        input,
        &[
            ("trap.unseen_2gram_rate", None),
            ("trap.adjacent_duplicate_rate", None),
            ("trap.rep_2", None),
            ("trap.distinct_1", None),
            ("trap.empty_rate", Some(1.0)),
            ("trap.eos_fraction", Some(1.0)),
            ("trap.early_eos_step", None),
        ],
    );
}
