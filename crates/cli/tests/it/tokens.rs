//! `index build --tokens`: a pre-tokenized corpus (.npy, raw ids, Parquet) gives the same index,
//! file for file, as the text it was tokenized from.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cp_analysis::{read_documents, BuildSettings};
use cp_records::{write_table, CorruptText, Format};
use cp_text::Tokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

/// A version-1 `.npy` header and data.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "index.json")
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `collapse-probe index build --tokenizer TOKENIZER --out OUT ARGS...`.
fn index_build(tokenizer: &Path, out: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "index",
        "build",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run(&all)
}

/// [`index_build`], which must succeed; returns `out`.
fn index_built(tokenizer: &Path, out: PathBuf, args: &[&str]) -> PathBuf {
    let o = index_build(tokenizer, &out, args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn pre_tokenized_corpora_index_like_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let tokenizer_path = model.join("tokenizer.json");
    let corpus = model.join("corpus.txt");
    let text_index = index_built(
        &tokenizer_path,
        dir.path().join("text"),
        &["--corpus", corpus.to_str().unwrap()],
    );

    // The same documents, tokenized here.
    let tokenizer = Tokenizer::from_file(&tokenizer_path).unwrap();
    let mut docs: Vec<Vec<u32>> = Vec::new();
    read_documents(&corpus, &BuildSettings::default(), |batch, _| {
        docs.extend(batch.iter().map(|d| tokenizer.encode(d).unwrap()));
        Ok(())
    })
    .unwrap();
    assert!(docs.len() > 10);
    let sep: u32 = 65_535;
    let flat: Vec<u32> = docs
        .iter()
        .flat_map(|d| d.iter().copied().chain([sep]))
        .collect();

    let u16_bytes: Vec<u8> = flat
        .iter()
        .flat_map(|&t| (t as u16).to_le_bytes())
        .collect();
    let u32_bytes: Vec<u8> = flat.iter().flat_map(|&t| t.to_le_bytes()).collect();
    let npy_path = dir.path().join("kjv.npy");
    std::fs::write(
        &npy_path,
        npy("<u2", &format!("({},)", flat.len()), &u16_bytes),
    )
    .unwrap();
    let bin_path = dir.path().join("kjv.bin");
    std::fs::write(&bin_path, &u32_bytes).unwrap();
    let rows: Vec<CorruptText> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| CorruptText {
            text_index: i as u32,
            text_id: i.to_string(),
            ids: d.clone(),
        })
        .collect();
    write_table(dir.path(), "kjv", &rows, Format::Parquet).unwrap();
    let parquet_path = dir.path().join("kjv.parquet");

    let expected = files_of(&text_index);
    let sep_text = sep.to_string();
    for (name, extra) in [
        (
            "npy",
            vec![npy_path.to_str().unwrap(), "--doc-separator", &sep_text],
        ),
        (
            "bin",
            vec![
                bin_path.to_str().unwrap(),
                "--token-dtype",
                "u32",
                "--doc-separator",
                &sep_text,
            ],
        ),
        (
            "parquet",
            vec![parquet_path.to_str().unwrap(), "--text-field", "ids"],
        ),
    ] {
        let mut args = vec!["--tokens"];
        args.extend(extra);
        let out = index_built(&tokenizer_path, dir.path().join(name), &args);
        assert!(files_of(&out) == expected, "{name}: the index files differ");
    }

    // A raw file without its width, and ids outside the vocabulary, are refused by name.
    let x = dir.path().join("x");
    let o = index_build(
        &tokenizer_path,
        &x,
        &["--tokens", bin_path.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kjv.bin") && err.contains("--token-dtype"),
        "{err}"
    );
    let o = index_build(
        &tokenizer_path,
        &x,
        &["--tokens", npy_path.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kjv.npy") && err.contains("65535"), "{err}");
    assert!(!x.exists());
}

/// An index built in shards answers every query as the one-piece index of the same corpus,
/// and `analyze` gives the same metrics with either.
#[test]
fn sharded_index_answers_like_one_piece() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let tokenizer_path = model.join("tokenizer.json");
    let corpus = model.join("corpus.txt");
    let build = |name: &str, extra: &[&str]| {
        let mut args = vec!["--corpus", corpus.to_str().unwrap(), "--split", "line"];
        args.extend_from_slice(extra);
        index_built(&tokenizer_path, dir.path().join(name), &args)
    };
    let whole = build("whole", &[]);
    let sharded = build("sharded", &["--shard-tokens", "200000"]);
    let header: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sharded.join("index.json")).unwrap())
            .unwrap();
    let shards = header["shards"].as_array().unwrap().len();
    assert!(shards >= 5, "{shards} shards");
    let a = cp_analysis::NgramIndex::open(&whole, None).unwrap();
    let b = cp_analysis::NgramIndex::open(&sharded, None).unwrap();
    assert_eq!(a.token_count(), b.token_count());
    assert_eq!(a.unigram(), b.unigram());
    assert_eq!(a.header().doc_count, b.header().doc_count);
    // Every n-gram of some verses (seen) and of the same verses reversed (mostly unseen).
    let tokenizer = Tokenizer::from_file(&tokenizer_path).unwrap();
    let text = std::fs::read_to_string(&corpus).unwrap();
    let mut queries: Vec<Vec<u32>> = text
        .lines()
        .step_by(997)
        .map(|l| tokenizer.encode(l).unwrap())
        .collect();
    queries.extend(queries.clone().into_iter().map(|mut q| {
        q.reverse();
        q
    }));
    for q in &queries {
        assert_eq!(a.match_lengths(q, 8), b.match_lengths(q, 8), "{q:?}");
        for n in 1..=q.len().min(4) {
            for g in q.windows(n) {
                assert_eq!(a.count(g), b.count(g), "{g:?}");
                assert_eq!(a.contains(g), b.contains(g), "{g:?}");
            }
        }
    }
    // A shard size below one document: every document in a shard of its own, still whole.
    let small = dir.path().join("small.txt");
    std::fs::write(
        &small,
        "in the beginning\nand god said\nlet there be light\n",
    )
    .unwrap();
    let out = index_built(
        &tokenizer_path,
        dir.path().join("tiny"),
        &[
            "--corpus",
            small.to_str().unwrap(),
            "--split",
            "line",
            "--shard-tokens",
            "2",
        ],
    );
    let tiny = cp_analysis::NgramIndex::open(&out, None).unwrap();
    assert_eq!(tiny.header().shards.len(), 3);
    let light = tokenizer.encode("let there be light").unwrap();
    assert_eq!(tiny.count(&light), 1);
    assert_eq!(tiny.match_lengths(&light, 8)[0], light.len());

    // And the analysis of a decode reads the same from either: metrics.json byte for byte.
    let decoded = dir.path().join("decode");
    let o = run(&[
        "decode",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        root().join("probes/prompts/kjv.txt").to_str().unwrap(),
        "--chat-template",
        "none",
        "--schedule",
        "llada:gen_length=16,steps=8,block_length=16",
        "--out",
        decoded.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = |index: &Path, out: &str| {
        let out = dir.path().join(out);
        let o = run(&[
            "analyze",
            "--records",
            decoded.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("metrics.json")).unwrap()
    };
    assert!(metrics(&whole, "a-whole") == metrics(&sharded, "a-sharded"));
}

/// Indexes built apart from two halves of a corpus, merged, answer as the index of the whole;
/// `index info` lists the shards; indexes of another tokenizer are refused by name.
#[test]
fn merged_indexes_answer_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let tokenizer_path = model.join("tokenizer.json");
    let text = std::fs::read_to_string(model.join("corpus.txt")).unwrap();
    let books: Vec<&str> = text.split("\n\n").collect();
    let half = books.len() / 2;
    let first = dir.path().join("first.txt");
    let second = dir.path().join("second.txt");
    std::fs::write(&first, books[..half].join("\n\n")).unwrap();
    std::fs::write(&second, books[half..].join("\n\n")).unwrap();
    let build = |name: &str, corpus: &[&Path]| {
        let mut args = vec!["--corpus"];
        args.extend(corpus.iter().map(|p| p.to_str().unwrap()));
        index_built(&tokenizer_path, dir.path().join(name), &args)
    };
    let a = build("a", &[&first]);
    let b = build("b", &[&second]);
    let whole = build("whole", &[&first, &second]);
    let merged = dir.path().join("merged");
    let o = run(&[
        "index",
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (m, w) = (
        cp_analysis::NgramIndex::open(&merged, None).unwrap(),
        cp_analysis::NgramIndex::open(&whole, None).unwrap(),
    );
    assert_eq!(m.header().shards.len(), 2);
    assert_eq!(m.unigram(), w.unigram());
    assert_eq!(
        (m.token_count(), m.header().doc_count),
        (w.token_count(), w.header().doc_count)
    );
    let tokenizer = Tokenizer::from_file(&tokenizer_path).unwrap();
    for line in text.lines().step_by(1500) {
        let q = tokenizer.encode(line).unwrap();
        assert_eq!(m.match_lengths(&q, 6), w.match_lengths(&q, 6));
        for g in q.windows(3) {
            assert_eq!(m.count(g), w.count(g));
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .args(["index", "info", merged.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(
        info.contains("shards\t2") && info.contains("shard-00001"),
        "{info}"
    );

    // An index of another tokenizer does not merge.
    let toy = root().join("fixtures/toy-trap");
    let corpus = dir.path().join("toy.txt");
    std::fs::write(&corpus, "he likes apple\n").unwrap();
    let other = index_built(
        &toy.join("tokenizer.json"),
        dir.path().join("other"),
        &["--corpus", corpus.to_str().unwrap()],
    );
    let bad = dir.path().join("bad");
    let o = run(&[
        "index",
        "merge",
        a.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("other") && err.contains("one tokenizer"),
        "{err}"
    );
    assert!(!bad.exists());
}
