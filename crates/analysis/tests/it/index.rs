//! The n-gram index against a naive counter, and its on-disk format.

use std::collections::HashMap;
use std::path::Path;

use cp_analysis::{
    build_index, AnalysisError, BuildSettings, DocSplit, IndexBuilder, NgramIndex, Unigram,
};
use proptest::prelude::*;

fn naive_counts(docs: &[Vec<u32>], max_n: usize) -> HashMap<Vec<u32>, u64> {
    let mut m = HashMap::new();
    for d in docs {
        for n in 1..=max_n {
            for w in d.windows(n) {
                *m.entry(w.to_vec()).or_insert(0) += 1;
            }
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn counts_match_a_naive_counter(
        docs in prop::collection::vec(prop::collection::vec(0u32..5, 0..14), 0..8),
        queries in prop::collection::vec(prop::collection::vec(0u32..6, 1..6), 1..20),
    ) {
        let index = NgramIndex::from_documents(&docs).unwrap();
        let naive = naive_counts(&docs, 6);
        for q in naive.keys().chain(queries.iter()) {
            let expected = naive.get(q).copied().unwrap_or(0);
            prop_assert_eq!(index.count(q), expected, "ngram {:?}", q);
            prop_assert_eq!(index.contains(q), expected > 0, "ngram {:?}", q);
            let longest = (0..=q.len()).rev().find(|&n| n == 0 || naive.contains_key(&q[..n])).unwrap();
            prop_assert_eq!(index.longest_prefix(q), longest, "ngram {:?}", q);
        }
        let total: usize = docs.iter().map(Vec::len).sum();
        prop_assert_eq!(index.count(&[]), total as u64);
    }

    #[test]
    fn suffix_array_is_sorted(text in prop::collection::vec(0u32..4, 0..300)) {
        let sa = cp_analysis::suffix_array(&text, 3);
        let mut expected: Vec<u32> = (0..text.len() as u32).collect();
        expected.sort_by(|&a, &b| text[a as usize..].cmp(&text[b as usize..]));
        prop_assert_eq!(sa, expected);
    }
}

/// Buckets large enough for the sampled search (every 16th suffix) to narrow them, over a
/// small alphabet so that long n-grams repeat; checked against the naive counter.
#[test]
fn counts_match_a_naive_counter_on_large_buckets() {
    let mut x = 7u64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for alphabet in [2u64, 3, 6] {
        let docs: Vec<Vec<u32>> = (0..60)
            .map(|_| (0..next(120)).map(|_| next(alphabet) as u32).collect())
            .collect();
        let index = NgramIndex::from_documents(&docs).unwrap();
        let naive = naive_counts(&docs, 6);
        let queries: Vec<Vec<u32>> = (0..3000)
            .map(|_| {
                (0..1 + next(6))
                    .map(|_| next(alphabet + 1) as u32)
                    .collect()
            })
            .collect();
        for q in naive.keys().chain(queries.iter()) {
            let expected = naive.get(q).copied().unwrap_or(0);
            assert_eq!(index.count(q), expected, "ngram {q:?}");
            assert_eq!(index.contains(q), expected > 0, "ngram {q:?}");
        }
    }
}

/// Whitespace "tokenizer" over the ids written as numbers.
fn ids(text: &str) -> Result<Vec<u32>, String> {
    text.split_whitespace()
        .map(|w| w.parse::<u32>().map_err(|e| format!("{w}: {e}")))
        .collect()
}

fn build_dir(dir: &Path, corpus: &str) -> cp_analysis::IndexHeader {
    let src = dir.join("corpus.txt");
    std::fs::write(&src, corpus).unwrap();
    let settings = BuildSettings {
        split: DocSplit::Paragraph,
        vocab_size: 10,
        tokenizer_sha256: Some("abc".into()),
        ..Default::default()
    };
    build_index(&[src], &settings, ids, &|_| {}, &dir.join("idx")).unwrap()
}

#[test]
fn built_folder_reopens_with_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let header = build_dir(dir.path(), "1 2 3\n4 1 2\n\n2 3 3\n");
    assert_eq!(
        (header.token_count, header.doc_count, header.vocab_size),
        (9, 2, 10)
    );
    // 4 bytes per token in tokens.bin (plus separators) and suffix.bin, 8 per vocabulary entry.
    assert_eq!(
        header.file_bytes.values().sum::<u64>(),
        (16 + 4 * 11) + (16 + 4 * 9) + (16 + 8 * 10)
    );
    let index = NgramIndex::open(&dir.path().join("idx"), Some("abc")).unwrap();
    assert_eq!(index.count(&[1, 2]), 2);
    assert_eq!(
        index.count(&[3, 4]),
        1,
        "a newline inside a paragraph does not split it"
    );
    assert_eq!(index.count(&[2, 2]), 0, "paragraphs are separate documents");
    assert_eq!(index.count(&[3, 3]), 1);
    let unigram = Unigram::load(&dir.path().join("idx")).unwrap();
    assert_eq!(unigram.counts(), &[0, 2, 3, 3, 1, 0, 0, 0, 0, 0]);
}

#[test]
fn damaged_indexes_are_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    build_dir(dir.path(), "1 2 3\n\n2 3\n");
    let idx = dir.path().join("idx");
    let err = NgramIndex::open(&idx, Some("def")).unwrap_err();
    assert!(
        matches!(err, AnalysisError::TokenizerMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("index.json"), "{err}");

    let suffix = idx.join("suffix.bin");
    let bytes = std::fs::read(&suffix).unwrap();
    std::fs::write(&suffix, &bytes[..bytes.len() - 4]).unwrap();
    let err = NgramIndex::open(&idx, None).unwrap_err().to_string();
    assert!(
        err.contains("suffix.bin") && err.contains("index.json says"),
        "{err}"
    );

    // A consistent size but a foreign file: bad magic.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(b"NOTANIDX");
    std::fs::write(&suffix, &bad).unwrap();
    let err = NgramIndex::open(&idx, None).unwrap_err().to_string();
    assert!(
        err.contains("suffix.bin") && err.contains("bad magic"),
        "{err}"
    );

    // A suffix pointing outside the text.
    let mut bad = bytes.clone();
    bad[16..20].copy_from_slice(&1000u32.to_le_bytes());
    std::fs::write(&suffix, &bad).unwrap();
    let err = NgramIndex::open(&idx, None).unwrap_err().to_string();
    assert!(
        err.contains("suffix.bin") && err.contains("past the end"),
        "{err}"
    );
}

#[test]
fn failed_build_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("corpus.txt");
    std::fs::write(&src, "1 2\n\nnot-a-number\n").unwrap();
    let err = build_index(
        &[src],
        &BuildSettings::default(),
        ids,
        &|_| {},
        &dir.path().join("idx"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("corpus.txt") && err.contains("document 1"),
        "{err}"
    );
    assert!(!dir.path().join("idx").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no staging folder left behind"
    );
}

#[test]
fn separator_id_is_refused() {
    let mut b = IndexBuilder::new();
    let err = b
        .push_document(&[1, u32::MAX], Path::new("x.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.jsonl") && err.contains("reserved"), "{err}");
}
