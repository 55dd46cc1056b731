//! The probe, decode and corrupt stages on an open [`Session`]: what `probe`, `decode`,
//! `corrupt` and `run` share.
//!
//! Each stage writes one folder atomically (staged, then renamed into place) with its tables and a
//! manifest, and reports what it did; the subcommands and `run` only differ in where the settings
//! come from and what they print.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use cp_model::{
    corrupt, decode, mask_probe, CorruptScheme, CorruptSettings, DecodeOptions, DecodeProgress,
    ProbeSettings, ScheduleSpec,
};
use cp_records::{
    files, read_table, write_json, write_table, Checkpoint, CorruptRecord, CorruptText, Format,
    Generation, OutputDir, ProbeRecord, Shard, ShardInfo, StepDistribution, StepRecord, Table,
};

use crate::common::{list_files, GlobalArgs, Session};

/// The corpus unigram distribution of an index folder over the model's vocabulary, for the probe's
/// distribution-level statistics. Add-one smoothing keeps KL to the unigram finite at tokens the
/// corpus never shows.
pub fn unigram_probabilities(session: &Session, index: &Path) -> anyhow::Result<Vec<f32>> {
    let table = cp_analysis::Unigram::load(index)
        .with_context(|| format!("the unigram table of index {}", index.display()))?;
    Ok(table
        .probabilities(session.model.vocab_size() as usize, 1.0)
        .into_iter()
        .map(|p| p as f32)
        .collect())
}

/// What the probe stage did.
pub struct ProbeDone {
    pub dir: PathBuf,
    pub prompts: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// Which part of a stage's batches a process runs, and what becomes of the batches an
/// interrupted run kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Part {
    /// Only this shard's batches (`--shard`).
    pub shard: Option<Shard>,
    /// Throw away the batches an interrupted run of the same command kept (`--restart`).
    pub restart: bool,
    /// Keep the batches once the output is written (`run` removes them when it is done).
    pub keep_batches: bool,
}

/// The probe stage: `settings.masks` masks after every prompt of the session, records written to
/// `out` in `format` with a manifest. `unigram_index` names the index the unigram came from.
///
/// With a shard, only its part of the prompts, in whole batches of `settings.batch_size` (the
/// records of a prompt do not depend on its batch, so the shards' records together are the
/// whole run's); the manifest says which. Each batch is kept in a [`Checkpoint`] once done, so
/// that the same command started again after the process was killed continues from there.
pub fn run_probe(
    session: &Session,
    settings: &ProbeSettings,
    unigram_index: Option<&Path>,
    format: Format,
    out: &Path,
    part: Part,
    global: &GlobalArgs,
) -> anyhow::Result<ProbeDone> {
    let all = session.inputs();
    let total = all.len();
    let inputs = shard_part(all, settings.batch_size, part.shard);
    settings.validate(session.model.as_ref(), &inputs)?;
    // The stage's settings, in its manifest's params and in the command its kept batches
    // belong to.
    let given = serde_json::json!({
        "masks": settings.masks,
        "top_k": settings.top_k,
        "batch_size": settings.batch_size,
        "eot_ids": settings.eot_ids,
        "unigram": unigram_index.map(|p| p.display().to_string()),
        "format": format.extension(),
    });
    let command = with_keys(
        &given,
        serde_json::json!({
            "stage": "probe",
            "model": session.model.info,
            "prompts": session.prompts_info,
            "shard": part.shard,
        }),
    );
    let checkpoint = Checkpoint::open(out, &command, part.restart)?;

    let bar = global.progress(
        inputs.len() as u64,
        "{spinner} probe {pos}/{len} prompts [{elapsed_precise}] {wide_bar} {msg}",
    );
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let batch = settings.batch_size.max(1);
    let first_batch = inputs
        .first()
        .map_or(0, |p| p.prompt_index as usize / batch);
    let chunks: Vec<&[cp_model::ProbeInput]> = inputs.chunks(batch).collect();
    let mut prompts_before = 0;
    for (k, chunk) in chunks.iter().enumerate() {
        let b = first_batch + k;
        if !checkpoint.has(b) {
            let records = mask_probe(
                session.model.as_ref(),
                chunk,
                settings,
                &|id| session.token_text(id),
                &mut |done, n| {
                    tokens += n;
                    bar.set_position((prompts_before + done) as u64);
                    bar.set_message(format!(
                        "{:.0} tokens/s",
                        tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)
                    ));
                },
            )?;
            checkpoint.write_batch(b, |dir| {
                write_table(dir, files::PROBE_RECORDS, &records, format).map(|_| ())
            })?;
        }
        prompts_before += chunk.len();
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let tokens_per_second = tokens as f64 / seconds.max(1e-9);

    let batch_dirs: Vec<PathBuf> = (first_batch..first_batch + chunks.len())
        .map(|b| checkpoint.batch_dir(b))
        .collect();
    let records: Vec<ProbeRecord> = read_batches(&batch_dirs, files::PROBE_RECORDS)?;
    let staged = OutputDir::create(out)?;
    write_table(staged.path(), files::PROBE_RECORDS, &records, format)?;
    let params = with_keys(
        &given,
        serde_json::json!({
            "threads": tch::get_num_threads(),
            "forward_seconds": seconds,
            "tokens_per_second": tokens_per_second,
        }),
    );
    let mut file_list = list_files(staged.path());
    file_list.push(files::MANIFEST_JSON.to_string());
    let mut manifest = session.manifest("probe", 0, params, file_list);
    manifest.shard = shard_info(part.shard, total, &inputs);
    write_json(&staged.path().join(files::MANIFEST_JSON), &manifest)?;
    let dir = staged.commit()?;
    if !part.keep_batches {
        checkpoint.finish()?;
    }
    Ok(ProbeDone {
        dir,
        prompts: inputs.len(),
        seconds,
        tokens_per_second,
    })
}

/// Options of the decode stage besides the schedule.
pub struct DecodeStage {
    pub seed: u64,
    pub batch_size: usize,
    pub save_step_distributions: Option<usize>,
    pub format: Format,
    /// Decode only this shard's batches.
    pub shard: Option<Shard>,
    /// Throw away the batches an interrupted run of the same command kept.
    pub restart: bool,
    /// Keep the batches once the output is written (`run` removes them when it is done).
    pub keep_batches: bool,
}

/// Shard `shard`'s part of the prompts `all`: a contiguous range of whole batches of
/// `batch_size` (all of them without a shard).
fn shard_part(
    all: Vec<cp_model::ProbeInput>,
    batch_size: usize,
    shard: Option<Shard>,
) -> Vec<cp_model::ProbeInput> {
    let Some(shard) = shard else {
        return all;
    };
    let (total, batch) = (all.len(), batch_size.max(1));
    let batches = shard.range(total.div_ceil(batch));
    all[(batches.start * batch).min(total)..(batches.end * batch).min(total)].to_vec()
}

/// What a shard's manifest records: which shard, of how many prompts, and which it covered.
fn shard_info(
    shard: Option<Shard>,
    total: usize,
    inputs: &[cp_model::ProbeInput],
) -> Option<ShardInfo> {
    shard.map(|s| ShardInfo {
        index: s.index,
        count: s.count,
        total_prompts: total,
        prompts: inputs.iter().map(|p| p.prompt_index as usize).collect(),
    })
}

/// What the decode stage did.
pub struct DecodeDone {
    pub dir: PathBuf,
    pub generations: usize,
    pub seconds: f64,
}

/// The decode stage: one schedule over every prompt of the session, trajectories written to `out`
/// with a manifest.
///
/// The batches are decoded one at a time, each kept in a [`Checkpoint`] beside `out` once done,
/// so that the same command started again after the process was killed continues from its last
/// completed batch (`stage.restart` throws them away); the output is assembled from the kept
/// batches, so it is the same whether or not the run was interrupted.
pub fn run_decode(
    session: &Session,
    schedule: &ScheduleSpec,
    stage: &DecodeStage,
    out: &Path,
    global: &GlobalArgs,
) -> anyhow::Result<DecodeDone> {
    if stage.batch_size == 0 {
        anyhow::bail!("the batch size must be at least 1");
    }
    let model = session.model.as_ref();
    let all = cp_model::batch_count(model, &session.ids, stage.batch_size);
    let ours = stage.shard.map_or(0..all, |s| s.range(all));
    let eot_ids: Vec<i64> = session.eot_ids().into_iter().map(i64::from).collect();
    let format = stage.format;
    // The stage's settings, in its manifest's params and in the command its kept batches
    // belong to.
    let given = serde_json::json!({
        "schedule_spec": schedule.to_string(),
        "batch_size": stage.batch_size,
        "eot_ids": eot_ids,
        "save_step_distributions": stage.save_step_distributions,
        "format": format.extension(),
    });
    let command = with_keys(
        &given,
        serde_json::json!({
            "stage": "decode",
            "model": session.model.info,
            "prompts": session.prompts_info,
            "seed": stage.seed,
            "shard": stage.shard,
        }),
    );
    let checkpoint = Checkpoint::open(out, &command, stage.restart)?;

    let bar = global.progress(
        session.ids.len() as u64,
        "{spinner} decode {pos}/{len} prompts [{elapsed_precise}] {wide_bar} {msg}",
    );
    let mut schedule = schedule.clone();
    if let Some(background) = schedule.index_background() {
        let dir = background
            .index_to_read()
            .expect("an index to read")
            .to_owned();
        let table = cp_analysis::Unigram::load(&dir).with_context(|| {
            format!(
                "option `background`: the unigram table of index {}",
                dir.display()
            )
        })?;
        background.set_counts(table.counts().to_vec());
    }
    let schedule = &schedule;
    let prompt_ids: Vec<String> = session
        .prompts
        .prompts
        .iter()
        .map(|p| p.id.clone())
        .collect();
    let t0 = Instant::now();
    let mut prompts_before = 0;
    for b in ours.clone() {
        if checkpoint.has(b) {
            continue;
        }
        let progress = |p: &DecodeProgress| {
            bar.set_position((prompts_before + p.prompts_in_batch) as u64);
            bar.set_message(match p.steps {
                Some(n) => format!("batch {b}, step {}/{n}", p.step),
                None => format!("batch {b}, step {}", p.step),
            });
        };
        let opts = DecodeOptions {
            seed: stage.seed,
            batch_size: stage.batch_size,
            eot_ids: eot_ids.clone(),
            save_step_distributions: stage.save_step_distributions,
            progress: Some(&progress),
            batches: Some(b..b + 1),
        };
        let output = decode(model, &session.ids, schedule, &opts)?;
        prompts_before += output.prompt_indices.len();
        checkpoint.write_batch(b, |dir| {
            write_table(
                dir,
                files::DECODE_STEPS,
                &output.step_records(&|id| session.token_text(id)),
                format,
            )?;
            write_table(
                dir,
                files::DECODE_GENERATIONS,
                &output.generations(&prompt_ids, &|ids| session.decode_text(ids)),
                format,
            )?;
            if stage.save_step_distributions.is_some() {
                write_table(
                    dir,
                    files::DECODE_STEP_DISTRIBUTIONS,
                    &output.step_distributions(),
                    format,
                )?;
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();

    // The kept batches, in prompt order (batches without padding group prompts by length).
    let batch_dirs: Vec<PathBuf> = ours.map(|b| checkpoint.batch_dir(b)).collect();
    let mut steps: Vec<StepRecord> = read_batches(&batch_dirs, files::DECODE_STEPS)?;
    let mut generations: Vec<Generation> = read_batches(&batch_dirs, files::DECODE_GENERATIONS)?;
    steps.sort_by_key(|r| r.prompt_index);
    generations.sort_by_key(|g| g.prompt_index);
    let staged = OutputDir::create(out)?;
    write_table(staged.path(), files::DECODE_STEPS, &steps, format)?;
    write_table(
        staged.path(),
        files::DECODE_GENERATIONS,
        &generations,
        format,
    )?;
    if stage.save_step_distributions.is_some() {
        let mut dists: Vec<StepDistribution> =
            read_batches(&batch_dirs, files::DECODE_STEP_DISTRIBUTIONS)?;
        dists.sort_by_key(|d| d.prompt_index);
        write_table(
            staged.path(),
            files::DECODE_STEP_DISTRIBUTIONS,
            &dists,
            format,
        )?;
    }
    let params = with_keys(
        &given,
        serde_json::json!({
            "schedule": schedule,
            "threads": tch::get_num_threads(),
            "decode_seconds": seconds,
        }),
    );
    let mut file_list = list_files(staged.path());
    file_list.push(files::MANIFEST_JSON.to_string());
    let mut manifest = session.manifest("decode", stage.seed, params, file_list);
    manifest.shard = stage.shard.map(|s| ShardInfo {
        index: s.index,
        count: s.count,
        total_prompts: session.ids.len(),
        prompts: generations
            .iter()
            .map(|g| g.prompt_index as usize)
            .collect(),
    });
    write_json(&staged.path().join(files::MANIFEST_JSON), &manifest)?;
    let dir = staged.commit()?;
    if !stage.keep_batches {
        checkpoint.finish()?;
    }
    Ok(DecodeDone {
        dir,
        generations: generations.len(),
        seconds,
    })
}

/// Options of the corrupt stage (`collapse-probe corrupt`, a spec's `[corrupt]`).
pub struct CorruptStage {
    pub ratios: Vec<f64>,
    pub samples: usize,
    pub scheme: CorruptScheme,
    pub seed: u64,
    pub top_k: usize,
    pub batch_size: usize,
    pub format: Format,
    /// Which texts (`--shard`, in whole batches), and what becomes of kept batches.
    pub part: Part,
}

/// What the corrupt stage did.
pub struct CorruptDone {
    pub dir: PathBuf,
    pub records: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// 1-based corpus frequency rank of every id of a `vocab`-sized vocabulary: by count, most
/// frequent first, ties by id; ids the corpus never shows come after every id it does.
pub fn frequency_ranks(counts: &[u64], vocab: usize) -> Vec<u32> {
    let count = |id: usize| counts.get(id).copied().unwrap_or(0);
    let mut order: Vec<usize> = (0..vocab).collect();
    order.sort_by(|&a, &b| count(b).cmp(&count(a)).then(a.cmp(&b)));
    let mut rank = vec![0u32; vocab];
    for (r, &id) in order.iter().enumerate() {
        rank[id] = r as u32 + 1;
    }
    rank
}

/// The corrupt stage: every text of the session masked at every ratio and sample under the
/// scheme, one forward pass per masked sequence; `corrupt` and `texts` tables and a manifest
/// written to `out`. `index` gives the frequency ranks and the unigram of the context gain; it
/// must have been built with the session's tokenizer.
pub fn run_corrupt(
    session: &Session,
    stage: &CorruptStage,
    index: &Path,
    out: &Path,
    global: &GlobalArgs,
) -> anyhow::Result<CorruptDone> {
    let header: cp_analysis::IndexHeader = cp_records::read_json(&index.join("index.json"))
        .with_context(|| format!("--index {}: not an index folder", index.display()))?;
    if let (Some(text), Some(built)) = (&session.text, header.tokenizer_sha256.as_deref()) {
        let ours = cp_records::sha256_file(text.tokenizer().path())?;
        if ours != built {
            anyhow::bail!(
                "--index {}: built with another tokenizer (SHA-256 {built}) than the model's {} ({ours})",
                index.display(),
                text.tokenizer().path().display()
            );
        }
    }
    let table = cp_analysis::Unigram::load(index)
        .with_context(|| format!("--index {}: the unigram table", index.display()))?;
    let vocab = session.model.vocab_size() as usize;
    let log_unigram: Vec<f32> = unigram_probabilities(session, index)?
        .into_iter()
        .map(|p| p.ln())
        .collect();
    let all = session.inputs();
    let total = all.len();
    // Special tokens (BOS, end of text, template markers) are never masked: they carry no text.
    // They are read from every text, so that every shard of a run keeps the same ones.
    let mut keep: Vec<u32> = Vec::new();
    if let Some(text) = &session.text {
        let mut seen: Vec<i64> = all.iter().flat_map(|t| t.ids.iter().copied()).collect();
        seen.sort_unstable();
        seen.dedup();
        keep = seen
            .into_iter()
            .map(|id| id as u32)
            .filter(|&id| {
                text.tokenizer()
                    .decode(&[id], true)
                    .is_ok_and(|s| s.is_empty())
            })
            .collect();
    }
    let texts = shard_part(all, stage.batch_size, stage.part.shard);
    let settings = CorruptSettings {
        ratios: stage.ratios.clone(),
        samples: stage.samples,
        scheme: stage.scheme,
        seed: stage.seed,
        top_k: stage.top_k,
        batch_size: stage.batch_size,
        freq_rank: frequency_ranks(table.counts(), vocab),
        log_unigram,
        keep,
    };
    settings
        .validate(session.model.as_ref(), &texts)
        .with_context(|| format!("texts {}", session.prompts_info.path))?;

    // The stage's settings, in its manifest's params and in the command its kept batches
    // belong to.
    let given = serde_json::json!({
        "scheme": stage.scheme.name(),
        "ratios": stage.ratios,
        "samples": stage.samples,
        "seed": stage.seed,
        "top_k": stage.top_k,
        "batch_size": stage.batch_size,
        "index": index.display().to_string(),
        "format": stage.format.extension(),
    });
    let command = with_keys(
        &given,
        serde_json::json!({
            "stage": "corrupt",
            "model": session.model.info,
            "texts": session.prompts_info,
            "shard": stage.part.shard,
        }),
    );
    let checkpoint = Checkpoint::open(out, &command, stage.part.restart)?;

    let jobs = (texts.len() * stage.ratios.len() * stage.samples) as u64;
    let bar = global.progress(
        jobs,
        "{spinner} corrupt {pos}/{len} sequences [{elapsed_precise}] {wide_bar} {msg}",
    );
    let t0 = Instant::now();
    let mut tokens = 0usize;
    // Kept `batch_size` texts at a time: a text's records do not depend on the other texts.
    let batch = stage.batch_size.max(1);
    let first_batch = texts.first().map_or(0, |t| t.prompt_index as usize / batch);
    let chunks: Vec<&[cp_model::ProbeInput]> = texts.chunks(batch).collect();
    let mut jobs_before = 0;
    for (k, chunk) in chunks.iter().enumerate() {
        let b = first_batch + k;
        if !checkpoint.has(b) {
            let records = corrupt(session.model.as_ref(), chunk, &settings, &mut |done, n| {
                tokens += n;
                bar.set_position((jobs_before + done) as u64);
                bar.set_message(format!(
                    "{:.0} tokens/s",
                    tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)
                ));
            })?;
            checkpoint.write_batch(b, |dir| {
                write_table(dir, files::CORRUPT_RECORDS, &records, stage.format).map(|_| ())
            })?;
        }
        jobs_before += chunk.len() * stage.ratios.len() * stage.samples;
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let tokens_per_second = tokens as f64 / seconds.max(1e-9);
    let batch_dirs: Vec<PathBuf> = (first_batch..first_batch + chunks.len())
        .map(|b| checkpoint.batch_dir(b))
        .collect();
    let records: Vec<CorruptRecord> = read_batches(&batch_dirs, files::CORRUPT_RECORDS)?;

    let staged = OutputDir::create(out)?;
    write_table(
        staged.path(),
        files::CORRUPT_RECORDS,
        &records,
        stage.format,
    )?;
    let rows: Vec<CorruptText> = texts
        .iter()
        .map(|t| CorruptText {
            text_index: t.prompt_index,
            text_id: t.prompt_id.clone(),
            ids: t.ids.iter().map(|&i| i as u32).collect(),
        })
        .collect();
    write_table(staged.path(), files::CORRUPT_TEXTS, &rows, stage.format)?;
    let params = with_keys(
        &given,
        serde_json::json!({
        "index_tokenizer_sha256": header.tokenizer_sha256,
        "never_masked": settings.keep,
        "threads": tch::get_num_threads(),
        "forward_seconds": seconds,
        "tokens_per_second": tokens_per_second,
        }),
    );
    let mut file_list = list_files(staged.path());
    file_list.push(files::MANIFEST_JSON.to_string());
    let mut manifest = session.manifest("corrupt", stage.seed, params, file_list);
    manifest.shard = shard_info(stage.part.shard, total, &texts);
    write_json(&staged.path().join(files::MANIFEST_JSON), &manifest)?;
    let dir = staged.commit()?;
    if !stage.part.keep_batches {
        checkpoint.finish()?;
    }
    Ok(CorruptDone {
        dir,
        records: records.len(),
        seconds,
        tokens_per_second,
    })
}

/// The rows of table `name` of every folder of `dirs`, in order.
fn read_batches<T: Table>(dirs: &[PathBuf], name: &str) -> anyhow::Result<Vec<T>> {
    let mut rows = Vec::new();
    for dir in dirs {
        rows.extend(read_table::<T>(&Format::find(dir, name)?)?);
    }
    Ok(rows)
}

/// The JSON object `base` with the keys of the object `extra` added.
fn with_keys(base: &serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut out = base.clone();
    if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    out
}
