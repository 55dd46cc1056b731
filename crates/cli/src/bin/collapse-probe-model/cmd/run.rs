//! `collapse-probe run SPEC --out DIR`: the whole pipeline of a probe spec in one run folder.
//!
//! ```text
//! DIR/manifest.json            kind "run": the spec, its SHA-256, the stage folders
//! DIR/index/                   built from the spec's reference corpus (when it names one)
//! DIR/probe/                   records.parquet
//! DIR/decode/<schedule>/       steps.parquet, generations.parquet
//! DIR/corrupt/<scheme>/        corrupt.parquet, texts.parquet (with a [corrupt] section)
//! DIR/analysis/                metrics.json, curves.parquet (what `collapse-probe check` reads)
//! DIR/report/                  report.html, summary.md, figures
//! DIR/sweep/<param>=<value>/   the swept stage and its analysis, once per value
//! DIR/sweep/metrics.json       every metric of every value, named `<metric>@<param>=<value>`
//! DIR/sweep/curves.parquet     curve `sweep:<metric>`: x = the value, q25/q75 = value -/+ one stderr
//! ```
//!
//! The model is loaded once and shared by the probe and every schedule. The analysis, report and
//! index stages go through the same argument conversion as their own subcommands, so a run folder's
//! stage folders are exactly what `probe`/`decode`/`analyze`/`report` would have written.
//! Each stage folder is written atomically; a failed stage leaves the earlier ones in place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use cp_analysis::{combine_sweep, SweptValue};
use cp_gate::{ScheduleSection, ScheduleSource, Spec, SweepParam};
use cp_model::{ProbeSettings, ScheduleSpec};
use cp_records::{files, write_json, write_table, Format, Manifest, MetricsFile};

use crate::cmd;
use crate::common::{GlobalArgs, ModelArgs, PromptArgs, Session};
use crate::stages::{self, DecodeStage};

/// Arguments of `collapse-probe run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The probe spec (probes/*.toml): model, prompts, probe settings, schedules, reference, metrics, report, sweep.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The run folder to write (created; an earlier run's stage folders in it are replaced, and its
    /// schedule and sweep folders removed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub resume: crate::common::ResumeArgs,
    /// Run only shard i of n of the model stages (probe, decode, corrupt, the sweep's): each
    /// writes its part into `<stage folder>/shard=i/`, and the run stops before the analysis.
    /// Every shard of a run writes into the same DIR; `run SPEC --out DIR --merge` then analyses
    /// them together.
    #[command(flatten)]
    pub shard: crate::common::ShardArgs,
    /// Analyse the shards that `--shard` runs wrote into DIR, write the sweep's table and the
    /// report (the model stages are not run again).
    #[arg(long, conflicts_with = "shard")]
    pub merge: bool,
}

/// Bootstrap replicates of the analysis' standard errors (the `analyze` default).
const BOOTSTRAP: usize = 1000;

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let spec = Spec::load(&args.spec)?;
    // Parse every schedule before any work, so a typo fails in a second rather than after the probe.
    let mut schedules: Vec<(String, ScheduleSpec)> = Vec::new();
    let mut imports: Vec<&ScheduleSection> = Vec::new();
    for s in &spec.schedules {
        let schedule = match s.source() {
            ScheduleSource::Inline(text) => ScheduleSpec::parse(text),
            ScheduleSource::File(path) => ScheduleSpec::from_toml_file(path),
            ScheduleSource::Trajectories(_) => {
                imports.push(s);
                continue;
            }
        }
        .with_context(|| format!("{}: schedule `{}`", args.spec.display(), s.name))?;
        schedules.push((s.name.clone(), schedule));
    }
    if let Some((name, _)) = schedules
        .iter()
        .find(|(_, s)| s.lacks_background() && spec.reference.is_none())
    {
        bail!(
            "{}: schedule `{name}` needs option `background` or a [reference] section",
            args.spec.display()
        );
    }
    if let Some(sweep) = &spec.sweep {
        for &v in &sweep.values {
            for (name, s) in &schedules {
                s.swept(sweep.param, v).with_context(|| {
                    format!("sweep over `{}`, schedule `{name}`", sweep.param.name())
                })?;
            }
        }
    }
    let sweep = spec.run_sweep();
    // Then the inputs: every missing path at once, each with the key that names it.
    let missing = spec.missing_paths();
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(k, p)| format!("`{k}` = {}", p.display()))
            .collect();
        bail!(
            "{}: these paths do not exist: {}",
            args.spec.display(),
            list.join(", ")
        );
    }
    // Imported trajectories are read, checked and tabled now (it takes no model), so a bad
    // line fails before the probe rather than after it; each is then written where needed.
    let prepared: Vec<cmd::import::Prepared> = imports
        .iter()
        .map(|s| {
            cmd::import::prepare(&import_args(&spec, s))
                .with_context(|| format!("{}: schedule `{}`", args.spec.display(), s.name))
        })
        .collect::<anyhow::Result<_>>()?;

    let out = args.out.clone();
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the run folder", out.display()))?;
    // Rerunning into a run folder: its manifest (written last, so only a finished run has one) and
    // the schedule and sweep folders of the earlier spec go first, so nothing stale survives.
    // The batches an interrupted run kept (`.NAME.resume/` beside each stage folder) stay, unless
    // --restart: the same spec continues from them.
    // A sharded run's shards and its merge share the folder: nothing is removed for them.
    let stale_folders: &[&str] = match args.shard.shard.is_some() || args.merge {
        true => &[files::MANIFEST_JSON],
        false => &[files::MANIFEST_JSON, "decode", "corrupt", "sweep"],
    };
    for &stale in stale_folders {
        let path = out.join(stale);
        let removed: anyhow::Result<()> = if path.is_dir() && !args.resume.restart {
            cp_records::Checkpoint::keep_only_checkpoints(&path).map_err(Into::into)
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(Into::into)
        } else if path.is_file() {
            std::fs::remove_file(&path).map_err(Into::into)
        } else {
            Ok(())
        };
        removed.with_context(|| {
            format!(
                "{}: cannot remove what an earlier run left there",
                path.display()
            )
        })?;
    }
    // A merge needs every shard first: checked on the probe stage before anything is written.
    if args.merge && cp_records::shard_folders(&out.join("probe"))?.is_none() {
        bail!(
            "--merge: {} holds no shard folders (shard=i/); run `collapse-probe run {} --out {} --shard i/n` for every shard first",
            out.join("probe").display(),
            args.spec.display(),
            out.display()
        );
    }
    let corrupt_schemes = spec.corrupt.as_ref().map_or(0, |c| c.schemes.len());
    let n_stages = 3
        + schedules.len()
        + imports.len()
        + corrupt_schemes
        + usize::from(spec.report.enabled)
        + usize::from(sweep.is_some());
    let mut stage = 0;
    let mut announce = |what: &str| {
        stage += 1;
        if !global.quiet {
            eprintln!("[{stage}/{n_stages}] {what}");
        }
    };

    // Stage folders, relative to the run folder, for the manifest.
    let mut stages = serde_json::Map::new();

    // The reference index: built from a corpus into the run folder, or an existing one.
    let model_tokenizer = spec.model.path.join("tokenizer.json");
    let index: Option<PathBuf> = match &spec.reference {
        Some(r)
            if r.corpus.is_some()
                && (args.shard.shard.is_some() || args.merge)
                && out.join("index").join("index.json").is_file() =>
        {
            // One shard (or an earlier run) built it; the others use it.
            announce("use the reference index in the run folder");
            stages.insert("index".into(), "index".into());
            Some(out.join("index"))
        }
        Some(r) if r.corpus.is_some() => {
            announce("index the reference corpus");
            let dir = out.join("index");
            let tokenizer = r
                .tokenizer
                .clone()
                .unwrap_or_else(|| model_tokenizer.clone());
            cmd::index::run(
                cmd::index::Command::Build(cmd::index::BuildArgs {
                    tokenizer,
                    corpus: vec![r.corpus.clone().expect("matched")],
                    out: dir.clone(),
                    text_field: "text".into(),
                    split: r.split,
                    tokens: Vec::new(),
                    token_dtype: None,
                    doc_separator: None,
                    shard_tokens: None,
                }),
                global,
            )?;
            stages.insert("index".into(), "index".into());
            Some(dir)
        }
        Some(r) => {
            announce("use the reference index");
            r.index.clone()
        }
        None => {
            announce("no reference index (frequency and unseen n-gram metrics are skipped)");
            None
        }
    };

    let model_args = ModelArgs {
        model: Some(spec.model.path.clone()),
        torchscript: None,
        mask_id: spec.model.mask_id,
        tokenizer: None,
        dtype: spec.model.dtype.unwrap_or_default(),
        device: spec.model.device.clone().unwrap_or_else(|| "auto".into()),
        block_length: spec.model.block_length,
        timestep: spec.model.timestep,
    };
    let prompt_args = PromptArgs {
        prompts: spec.prompts.path.clone(),
        prompt_format: spec.prompts.format.clone().unwrap_or_else(|| "auto".into()),
        chat_template: spec
            .prompts
            .chat_template
            .clone()
            .unwrap_or_else(|| "auto".into()),
        no_special_tokens: !spec.prompts.special_tokens.unwrap_or(true),
    };
    let mut session = Session::open(&model_args, &prompt_args, global)
        .context("loading the model and prompts")?;
    if let Some(limit) = spec.prompts.limit {
        session.prompts.prompts.truncate(limit);
        session.ids.truncate(limit);
        session.prompts_info.count = session.ids.len();
    }
    let unigram = index
        .as_deref()
        .map(|dir| stages::unigram_probabilities(&session, dir))
        .transpose()?;

    // Where each model stage writes (its shard's folder with --shard) and whether it runs (not
    // with --merge, which analyses what the shards wrote).
    let part = stages::Part {
        shard: args.shard.shard,
        restart: args.resume.restart,
        // A killed run reuses even the stages it finished; the run removes them when done.
        keep_batches: true,
    };
    let part_dir = |dir: &Path| match part.shard {
        Some(s) => dir.join(s.folder_name()),
        None => dir.to_owned(),
    };
    let model_stages = !args.merge;

    // Probe.
    announce(&format!(
        "probe: {} prompts x {} masks",
        session.ids.len(),
        spec.probe.masks
    ));
    let probe_dir = out.join("probe");
    if model_stages {
        run_probe(
            &session,
            &spec,
            spec.probe.masks as usize,
            (unigram.clone(), index.as_deref()),
            &part_dir(&probe_dir),
            part,
            global,
        )?;
    }
    stages.insert("probe".into(), "probe".into());

    // PC-Sampler's background defaults to the reference index.
    for (name, schedule) in schedules.iter_mut() {
        if schedule.lacks_background() {
            let Some(dir) = index.as_deref() else {
                bail!(
                    "{}: schedule `{name}` needs option `background` or a [reference] section",
                    args.spec.display()
                );
            };
            *schedule = schedule
                .with_option("background", &dir.display().to_string())
                .expect("a composed schedule")?;
        }
    }

    // Decode, once per schedule.
    let mut decode_dirs = Vec::new();
    let mut decode_stages = serde_json::Map::new();
    for (name, schedule) in &schedules {
        announce(&format!("decode `{name}`: {schedule}"));
        let dir = out.join("decode").join(name);
        if model_stages {
            run_decode(&session, &spec, schedule, &part_dir(&dir), part, global)?;
        }
        decode_stages.insert(name.clone(), format!("decode/{name}").into());
        decode_dirs.push(dir);
    }
    // Imported trajectories are the whole run's: the merge writes them, not the shards.
    let whole_imports = if part.shard.is_some() {
        &[][..]
    } else {
        &imports[..]
    };
    for (s, tables) in whole_imports.iter().zip(&prepared) {
        announce(&format!(
            "import `{}`: {}",
            s.name,
            s.trajectories.as_deref().expect("an import").display()
        ));
        let dir = out.join("decode").join(&s.name);
        tables.write(&dir)?;
        decode_stages.insert(s.name.clone(), format!("decode/{}", s.name).into());
        decode_dirs.push(dir);
    }
    if !decode_stages.is_empty() {
        stages.insert("decode".into(), decode_stages.into());
    }

    // The corruption probe, once per scheme, over the prompts as clean texts.
    let mut corrupt_dirs = Vec::new();
    if let Some(c) = &spec.corrupt {
        let index = index
            .as_deref()
            .expect("validated: [corrupt] needs [reference]");
        // Other texts than the prompts take the prompts' place for this stage only.
        let prompts = match &c.texts {
            Some(path) => {
                let texts = session
                    .read_prompts(path)
                    .with_context(|| format!("{}: `corrupt.texts`", args.spec.display()))?;
                Some(session.swap_prompts(texts))
            }
            None => None,
        };
        let mut corrupt_stages = serde_json::Map::new();
        for scheme in &c.schemes {
            announce(&format!(
                "corrupt `{scheme}`: {} texts x {} ratios x {} samples",
                session.ids.len(),
                c.ratios.len(),
                c.samples
            ));
            let dir = out.join("corrupt").join(scheme);
            let stage = stages::CorruptStage {
                ratios: c.ratios.clone(),
                samples: c.samples as usize,
                scheme: scheme.parse()?,
                seed: spec.seed,
                top_k: c.top_k as usize,
                batch_size: spec.probe.batch_size as usize,
                format: Format::Parquet,
                part,
            };
            if model_stages {
                stages::run_corrupt(&session, &stage, index, &part_dir(&dir), global)?;
            }
            corrupt_stages.insert(scheme.clone(), format!("corrupt/{scheme}").into());
            corrupt_dirs.push(dir);
        }
        if let Some(prompts) = prompts {
            session.swap_prompts(prompts);
        }
        stages.insert("corrupt".into(), corrupt_stages.into());
    }

    // Analysis of the probe, every schedule and every corruption scheme together (a shard
    // stops before it; the merge analyses the folders of shard folders).
    let shard_only = part.shard.is_some();
    let analysis_dir = out.join("analysis");
    if !shard_only {
        announce("analyze");
        let mut records = vec![probe_dir.clone()];
        records.extend(decode_dirs.iter().cloned());
        records.extend(corrupt_dirs.iter().cloned());
        run_analysis(
            &spec,
            records,
            index.as_deref(),
            &model_tokenizer,
            &analysis_dir,
            false,
            global,
        )?;
        stages.insert("analysis".into(), "analysis".into());
    }

    // The sweep: the swept stage once per value, each with its own analysis, then one table of curves.
    if let Some(sweep) = &sweep {
        announce(&format!(
            "sweep `{}` over {} values",
            sweep.param.name(),
            sweep.values.len()
        ));
        let mut per_value = Vec::new();
        for (label, &v) in sweep.labels().iter().zip(&sweep.values) {
            let dir = out.join("sweep").join(label);
            if !global.quiet {
                eprintln!("      {label}");
            }
            let mut records = Vec::new();
            if sweep.param == SweepParam::Masks {
                let p = dir.join("probe");
                if model_stages {
                    run_probe(
                        &session,
                        &spec,
                        v as usize,
                        (unigram.clone(), index.as_deref()),
                        &part_dir(&p),
                        part,
                        global,
                    )?;
                }
                records.push(p);
            } else {
                // Built-in schedules are decoded again only in the spec's own sweep.
                let decoded = if spec.sweep_decodes_schedules() {
                    schedules.as_slice()
                } else {
                    &[]
                };
                for (name, schedule) in decoded {
                    let s = schedule.swept(sweep.param, v)?;
                    let p = dir.join("decode").join(name);
                    if model_stages {
                        run_decode(&session, &spec, &s, &part_dir(&p), part, global)?;
                    }
                    records.push(p);
                }
                // Imported trajectories join the value they declare, under their series' name.
                for (s, tables) in whole_imports
                    .iter()
                    .zip(&prepared)
                    .filter(|(s, _)| s.at_sweep_value(sweep, v))
                {
                    let p = dir.join("decode").join(s.series());
                    tables.write(&p)?;
                    records.push(p);
                }
            }
            if shard_only {
                continue;
            }
            let a = dir.join("analysis");
            // The main analysis has already reported what it skipped; once is enough.
            let quiet = GlobalArgs {
                quiet: true,
                ..global.clone()
            };
            // With imported series the values hold different folders, so every metric names
            // its series even where a value holds one folder.
            run_analysis(
                &spec,
                records,
                index.as_deref(),
                &model_tokenizer,
                &a,
                spec.imports_in_sweep(),
                &quiet,
            )?;
            let metrics: MetricsFile = cp_records::read_json(&a.join(files::METRICS_JSON))?;
            per_value.push(SweptValue {
                label: label.clone(),
                value: v,
                metrics,
            });
        }
        if shard_only {
            return shard_done(&args, global);
        }
        write_sweep(&out.join("sweep"), sweep.param, &per_value)?;
        stages.insert(
            "sweep".into(),
            serde_json::json!({
                "param": sweep.param.name(),
                "values": sweep.values,
                "folders": sweep.labels().iter().map(|l| format!("sweep/{l}")).collect::<Vec<_>>(),
                "metrics": "sweep/metrics.json",
                "curves": "sweep/curves.parquet",
            }),
        );
    }

    if shard_only {
        return shard_done(&args, global);
    }

    // Report.
    if spec.report.enabled {
        announce("report");
        let title = spec
            .report
            .title
            .clone()
            .or_else(|| spec.description.clone())
            .unwrap_or_else(|| spec.name.clone());
        cmd::report::render(
            cmd::report::Args {
                analysis: vec![analysis_dir.clone()],
                probe: Some(probe_dir.clone()),
                decode: decode_dirs.first().cloned(),
                labels: Some(vec![spec.name.clone()]),
                index: index.clone(),
                token_ranks: None,
                sweep: sweep.as_ref().map(|_| out.join("sweep")),
                prompt: None,
                out: out.join("report"),
                formats: spec.report.formats.clone(),
                width: cmd::report::WidthArg::Both,
                dpi: 300.0,
                title,
                max_prompts: spec.report.max_prompts,
                max_samples: spec.report.max_samples,
            },
            global,
        )?;
        stages.insert("report".into(), "report".into());
    }

    let spec_sha256 = cp_records::sha256_file(&args.spec)?;
    let manifest = Manifest {
        schema_version: cp_records::SCHEMA_VERSION,
        kind: "run".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        started_unix,
        wall_time_s: t0.elapsed().as_secs_f64(),
        seed: spec.seed,
        model: Some(session.model.info.clone()),
        tokenizer: session
            .text
            .as_ref()
            .map(|t| t.tokenizer().path().display().to_string()),
        prompts: Some(session.prompts_info.clone()),
        libtorch_version: Some(crate::common::LIBTORCH_VERSION.into()),
        end_ids: Some(session.eot_ids()),
        shard: None,
        params: serde_json::json!({
            "spec_path": args.spec.display().to_string(),
            "spec_sha256": spec_sha256,
            "spec": spec,
            "stages": stages,
        }),
        files: vec![files::MANIFEST_JSON.into()],
    };
    cp_records::Checkpoint::remove_all_under(&out)
        .with_context(|| format!("{}: removing the kept batches", out.display()))?;
    write_json(&out.join(files::MANIFEST_JSON), &manifest)?;
    if !global.quiet {
        eprintln!(
            "run `{}` done in {:.1}s -> {}",
            spec.name,
            t0.elapsed().as_secs_f64(),
            out.display()
        );
    }
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The probe stage with `masks` masks and the spec's other probe settings; `reference` is the
/// unigram of the reference index and the index. Batches are kept until the run is done.
fn run_probe(
    session: &Session,
    spec: &Spec,
    masks: usize,
    reference: (Option<Vec<f32>>, Option<&Path>),
    dir: &Path,
    part: stages::Part,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let (unigram, index) = reference;
    let settings = ProbeSettings {
        masks,
        top_k: spec.probe.top_k as usize,
        batch_size: spec.probe.batch_size as usize,
        eot_ids: session.eot_ids(),
        unigram,
    };
    stages::run_probe(
        session,
        &settings,
        index,
        Format::Parquet,
        dir,
        part,
        global,
    )?;
    Ok(())
}

/// The decode stage of one schedule, seeded by the spec.
fn run_decode(
    session: &Session,
    spec: &Spec,
    schedule: &ScheduleSpec,
    dir: &Path,
    part: stages::Part,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let stage = DecodeStage {
        seed: spec.seed,
        batch_size: spec.probe.batch_size as usize,
        save_step_distributions: None,
        format: Format::Parquet,
        shard: part.shard,
        restart: part.restart,
        keep_batches: part.keep_batches,
    };
    stages::run_decode(session, schedule, &stage, dir, global)?;
    Ok(())
}

/// `collapse-probe import` arguments for an imported `[[schedule]]`: the spec's model folder
/// gives the tokenizer, mask id, end ids and vocabulary bound, as for a decoded schedule.
fn import_args(spec: &Spec, s: &ScheduleSection) -> cmd::import::Args {
    cmd::import::Args {
        input: s.trajectories.clone().expect("an imported schedule"),
        model: Some(spec.model.path.clone()),
        tokenizer: None,
        mask_id: s.mask_id.or(spec.model.mask_id),
        vocab_size: None,
        eos_id: Vec::new(),
        allow_remasking: s.allow_remasking.unwrap_or(false),
        name: Some(s.name.clone()),
        // Prepared tables are written where `run` puts them, not here.
        out: PathBuf::new(),
        format: Format::Parquet,
    }
}

/// The analysis stage, through `collapse-probe analyze`'s own argument conversion.
fn run_analysis(
    spec: &Spec,
    records: Vec<PathBuf>,
    index: Option<&Path>,
    model_tokenizer: &Path,
    out: &Path,
    label: bool,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    // The index was built with (or must match) the model's tokenizer; analyze checks the hash.
    let tokenizer = match &spec.reference {
        Some(r) if r.tokenizer.is_some() => r.tokenizer.clone(),
        _ => model_tokenizer
            .is_file()
            .then(|| model_tokenizer.to_owned()),
    };
    cmd::analyze::run(
        cmd::analyze::Args {
            records,
            index: index.map(Path::to_owned),
            tokenizer: index.and(tokenizer),
            out: out.to_owned(),
            top_frequent: spec.metrics.top_frequent as usize,
            onset_threshold: spec.metrics.onset_threshold,
            unseen_n: spec
                .metrics
                .ngram_orders
                .iter()
                .map(|&n| n as usize)
                .collect(),
            // The probe and decode manifests record the model's end ids; analyze reads them.
            eos_id: Vec::new(),
            keep_eos: false,
            seed: spec.seed,
            bootstrap: BOOTSTRAP,
            label,
        },
        global,
    )?;
    Ok(())
}

/// Writes `sweep/metrics.json` (every metric of every value, suffixed `@param=value`) and
/// `sweep/curves.parquet` (one curve per metric against the swept value).
fn write_sweep(dir: &Path, param: SweepParam, values: &[SweptValue]) -> anyhow::Result<()> {
    let (metrics, curves) = combine_sweep(param, values);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    write_json(&dir.join(files::METRICS_JSON), &metrics)?;
    write_table(dir, files::CURVES, &curves, Format::Parquet)?;
    Ok(())
}

/// A shard's model stages are written: says what comes next.
fn shard_done(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !global.quiet {
        eprintln!(
            "shard {} of `{}` written into {}; once every shard is, run `collapse-probe run {} --out {} --merge`",
            args.shard.shard.map(|s| s.to_string()).unwrap_or_default(),
            args.spec.display(),
            args.out.display(),
            args.spec.display(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
