//! Integration tests of cp-report: figures from hand-made data, folders on disk, the HTML page in Chromium.

mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cp_records::{write_json, write_table, Format, Manifest, MetricsFile};
use cp_report::{
    render_report, ColumnWidth, FigureFormat, InputPaths, ProbeData, ReportError, ReportInputs,
    ReportOptions, RunData,
};
use resvg::tiny_skia::Pixmap;
use resvg::usvg;

fn quick_options() -> ReportOptions {
    ReportOptions {
        png_dpi: 150.0,
        ..ReportOptions::default()
    }
}

fn figure_names(out: &cp_report::ReportOutput, width: ColumnWidth) -> Vec<String> {
    out.figures
        .iter()
        .filter(|f| f.width == width)
        .map(|f| f.name.clone())
        .collect()
}

#[test]
fn demo_report_writes_every_figure_in_every_format_and_width() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("report");
    let out = render_report(&fixture::demo_inputs(), &out_dir, &quick_options()).unwrap();
    let expected = [
        "entropy",
        "frequent_share",
        "top_tokens",
        "divergence",
        "unseen_rate",
        "tradeoff",
        "same_step",
        "sweep",
    ];
    assert_eq!(figure_names(&out, ColumnWidth::Single), expected);
    assert_eq!(figure_names(&out, ColumnWidth::Double), expected);
    for fig in &out.figures {
        assert_eq!(fig.files.len(), 3, "{}", fig.name);
        let [svg, png, pdf] = [&fig.files[0], &fig.files[1], &fig.files[2]];
        assert!(
            svg.ends_with(format!("figures/{}_{}.svg", fig.name, fig.width.name())),
            "{}",
            svg.display()
        );

        let text = std::fs::read_to_string(svg).unwrap();
        let tree = usvg::Tree::from_str(&text, &usvg::Options::default())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", svg.display()));
        // The SVG declares its size in points: 3.4 in = 244.8 pt or 7 in = 504 pt, at 96 dpi in CSS pixels.
        let width_pt = fig.width.width_pt();
        assert!(
            (f64::from(tree.size().width()) - width_pt * 96.0 / 72.0).abs() < 1.0,
            "{}: {:?}",
            fig.name,
            tree.size()
        );

        let pdf_bytes = std::fs::read(pdf).unwrap();
        assert!(pdf_bytes.starts_with(b"%PDF"), "{}", pdf.display());
        // The font is embedded (a FontFile2 stream of the DejaVu subset), not referenced.
        assert!(
            contains(&pdf_bytes, b"FontFile2"),
            "{}: no embedded font",
            pdf.display()
        );

        let pixmap = Pixmap::decode_png(&std::fs::read(png).unwrap()).unwrap();
        let expected_w = (width_pt / 72.0 * 150.0).round() as u32;
        assert!(
            pixmap.width().abs_diff(expected_w) <= 1,
            "{}: {} px wide, expected {expected_w}",
            fig.name,
            pixmap.width()
        );
        // Single-column panels stack, so a figure may be taller than wide, but never absurdly.
        assert!(
            pixmap.height() > 100 && pixmap.height() < 2 * pixmap.width(),
            "{}: {}x{}",
            fig.name,
            pixmap.width(),
            pixmap.height()
        );
        // Something other than background was drawn.
        let dark = pixmap
            .pixels()
            .iter()
            .filter(|p| p.red() < 128 && p.green() < 128)
            .count();
        assert!(dark > 500, "{}: only {dark} dark pixels", fig.name);
    }
    assert!(out.html.is_file() && out.summary.is_file() && out.manifest.is_file());
    let manifest: Manifest = cp_records::read_json(&out.manifest).unwrap();
    assert_eq!(manifest.kind, "report");
    assert_eq!(manifest.files.len(), 2 + 8 * 2 * 3);
    // Nothing is left staged beside the report.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("report")]);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn absent_curves_skip_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = fixture::run("only-entropy", 16, 0.0);
    run.curves.retain(|p| p.curve == "entropy");
    run.metrics = None;
    let inputs = ReportInputs {
        runs: vec![run],
        ..ReportInputs::default()
    };
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Single],
        ..quick_options()
    };
    let out = render_report(&inputs, &dir.path().join("r"), &opts).unwrap();
    assert_eq!(figure_names(&out, ColumnWidth::Single), ["entropy"]);
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("No probe records were given"));
    assert!(html.contains("No metrics.json"));
}

#[test]
fn probe_records_alone_give_entropy_divergence_and_token_figures() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = ReportInputs {
        probe: Some(ProbeData {
            records: fixture::probe_records(4, 20, 5, 3),
            ..ProbeData::default()
        }),
        ..ReportInputs::default()
    };
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Double],
        ..quick_options()
    };
    let out = render_report(&inputs, &dir.path().join("r"), &opts).unwrap();
    assert_eq!(
        figure_names(&out, ColumnWidth::Double),
        ["entropy", "top_tokens", "divergence"]
    );
    // Without a corpus table the tokens are ranked among the predictions, and the caption says so.
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("no corpus unigram table was given"));
}

#[test]
fn token_text_is_escaped_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_report(
        &fixture::demo_inputs(),
        &dir.path().join("r"),
        &ReportOptions {
            formats: vec![FigureFormat::Svg],
            widths: vec![ColumnWidth::Double],
            ..quick_options()
        },
    )
    .unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    // Only the page's own two script elements open; the token `<script>` is always escaped.
    assert_eq!(html.matches("<script").count(), 2);
    assert!(
        html.contains("&lt;script&gt;"),
        "the sample tokens show the text"
    );
    assert!(!html.contains("a<b"));
    // The prompt id `p<1>&"x"` reaches the page only as JSON with `<` escaped.
    assert!(html.contains(r#"p\u003c1>&\"x\""#));
    assert!(!html.contains("p<1>"));
    // The top-tokens SVG escapes too (it parses, checked above); here the inline copy:
    let svg_start = html.find("<figure id=\"fig-top_tokens\"").unwrap();
    let svg_end = svg_start + html[svg_start..].find("</svg>").unwrap();
    assert!(!html[svg_start..svg_end].contains("a<b"));
}

#[test]
fn summary_lists_every_metric_for_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Single],
        ..quick_options()
    };
    let out = render_report(&fixture::demo_inputs(), &dir.path().join("r"), &opts).unwrap();
    let md = std::fs::read_to_string(&out.summary).unwrap();
    assert!(
        md.contains("| metric | unit | better | llada-low-confidence | llada-random |"),
        "{md}"
    );
    assert!(md.contains("| `trap.same_step_unseen_bigram_rate` | fraction | ↓ | 0.2100 ± 0.0150 | 0.2300 ± 0.0150 |"), "{md}");
    assert!(md.contains("- `figures/top_tokens_single.svg`"), "{md}");
}

/// Writes a probe, a decode and an analysis folder the way the pipeline does; the analysis names
/// the others in `metrics.json`'s `sources`, relative to its parent folder.
fn pipeline_folders(root: &Path) -> PathBuf {
    let probe = root.join("probe");
    let decode = root.join("decode");
    let analysis = root.join("analysis");
    for d in [&probe, &decode, &analysis] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_table(
        &probe,
        "records",
        &fixture::probe_records(3, 12, 5, 1),
        Format::Parquet,
    )
    .unwrap();
    let dec = fixture::decode(3, 12, 3, 2);
    write_table(&decode, "steps", &dec.steps, Format::Jsonl).unwrap();
    write_table(&decode, "generations", &dec.generations, Format::Parquet).unwrap();
    let run = fixture::run("x", 12, 0.0);
    write_table(&analysis, "curves", &run.curves, Format::Parquet).unwrap();
    let metrics = MetricsFile {
        sources: vec!["probe".into(), "decode".into()],
        ..run.metrics.unwrap()
    };
    write_json(&analysis.join("metrics.json"), &metrics).unwrap();
    analysis
}

#[test]
fn folders_are_found_through_the_analysis_sources() {
    let dir = tempfile::tempdir().unwrap();
    let analysis = pipeline_folders(dir.path());
    let inputs = ReportInputs::load(&InputPaths {
        analysis: vec![analysis.clone()],
        ..InputPaths::default()
    })
    .unwrap();
    assert_eq!(inputs.runs[0].label, "analysis");
    assert_eq!(inputs.probe.as_ref().unwrap().records.len(), 3 * 12);
    assert_eq!(inputs.decode.as_ref().unwrap().generations.len(), 3);
    assert!(inputs.token_ranks.is_none());

    let err = ReportInputs::load(&InputPaths {
        analysis: vec![analysis.clone()],
        labels: Some(vec!["a".into(), "b".into()]),
        ..InputPaths::default()
    })
    .unwrap_err();
    assert!(matches!(err, ReportError::Options(_)), "{err}");
    assert_eq!(err.to_string(), "2 labels given for 1 analysis folders");

    let err = ReportInputs::load(&InputPaths {
        analysis: vec![dir.path().join("probe")],
        ..InputPaths::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("not an analysis folder"), "{err}");

    // An analysis folder that lost its metrics.json, and a run folder given instead of its
    // analysis: refused, naming the missing file (and where the analysis is).
    std::fs::remove_file(analysis.join("metrics.json")).unwrap();
    let err = ReportInputs::load(&InputPaths {
        analysis: vec![analysis.clone()],
        ..InputPaths::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("not an analysis folder: metrics.json is missing"),
        "{err}"
    );
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("manifest.json"),
        serde_json::json!({"schema_version": 1, "kind": "run", "tool_version": "0", "command": [],
            "started_unix": 0, "wall_time_s": 0.0, "seed": 0, "model": null, "tokenizer": null,
            "prompts": null, "libtorch_version": null, "params": {}, "files": []})
        .to_string(),
    )
    .unwrap();
    let err = ReportInputs::load(&InputPaths {
        analysis: vec![run.clone()],
        ..InputPaths::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("metrics.json is missing; it is a `run` folder, whose analysis is"),
        "{err}"
    );
}

#[test]
fn an_unknown_prompt_is_an_error_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        prompt: Some("nope".into()),
        ..quick_options()
    };
    let err = render_report(&fixture::demo_inputs(), &dir.path().join("r"), &opts).unwrap_err();
    assert_eq!(err.to_string(), "prompt `nope` is not in the probe records");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn runs_without_data_still_give_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunData {
        label: "empty".into(),
        metrics: Some(MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics: vec![],
        }),
        ..RunData::default()
    };
    let out = render_report(
        &ReportInputs {
            runs: vec![run],
            ..ReportInputs::default()
        },
        &dir.path().join("r"),
        &quick_options(),
    )
    .unwrap();
    assert!(out.figures.is_empty());
    assert!(std::fs::read_to_string(&out.html)
        .unwrap()
        .contains("No figure"));
}

// ---------------------------------------------------------------------------
// The page in a real browser.

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Runs headless Chromium with `args` and the page, killing it after `limit`; returns (stdout, stderr).
fn chromium(binary: &Path, args: &[String], limit: Duration) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        // Output goes to files: a page's DOM outgrows a pipe buffer, and nobody reads the pipe while we wait.
        .stdout(Stdio::from(
            std::fs::File::create(profile.path().join("stdout")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(profile.path().join("stderr")).unwrap(),
        ))
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |name: &str| {
        String::from_utf8_lossy(&std::fs::read(profile.path().join(name)).unwrap()).into_owned()
    };
    (read("stdout"), read("stderr"))
}

#[test]
fn html_report_loads_in_headless_chromium_without_errors() {
    let Some(binary) = find_chromium() else {
        // `just test` (and so CI) requires it; a plain `cargo test` may skip it.
        if std::env::var_os("CI").is_some()
            || std::env::var_os("COLLAPSE_PROBE_REQUIRE_CHROMIUM").is_some()
        {
            panic!("chromium is required by `just test` and CI (apt-get install chromium) but was not found on PATH");
        }
        eprintln!("SKIPPED html_report_loads_in_headless_chromium_without_errors: no chromium on PATH (`just test` makes this fail)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Double],
        ..quick_options()
    };
    let out = render_report(&fixture::demo_inputs(), &dir.path().join("r"), &opts).unwrap();
    let url = format!("file://{}", out.html.display());

    let (dom, log) = chromium(
        &binary,
        &["--dump-dom".into(), url.clone()],
        Duration::from_secs(120),
    );
    assert!(
        dom.contains("data-report-ready=\"1\""),
        "the page script did not finish; log:\n{log}"
    );
    assert!(
        !dom.contains("data-report-error"),
        "script error; log:\n{log}"
    );
    // The script built the prediction grid of the first prompt: 64 rows, each with ten tokens.
    assert!(
        dom.contains("id=\"browser-grid\""),
        "no prediction grid in the DOM"
    );
    assert_eq!(dom.matches("class=\"tokcell\"").count(), 64 * 10);
    // The per-prompt table: one row per prompt, sortable columns of both runs.
    assert!(
        dom.contains("id=\"prompts\"") && dom.contains("class=\"metrics sortable\""),
        "no per-prompt table"
    );
    assert!(
        dom.contains("llada-low-confidence · collapse.onset")
            && dom.contains("llada-random · collapse.entropy.far")
    );
    // Token text went in as text: the `<script>` token shows escaped, never as an element.
    assert!(dom.contains("&lt;script&gt;"));
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );

    // A screenshot for people to look at (a build artefact under target/, not in git).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &binary,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,3000".into(),
            "--hide-scrollbars".into(),
            url,
        ],
        Duration::from_secs(120),
    );
    let pixmap = Pixmap::decode_png(&std::fs::read(&shot).expect("screenshot written")).unwrap();
    assert_eq!((pixmap.width(), pixmap.height()), (1280, 3000));
}

/// Writes the demo report to `target/report-demo/` for people to look at
/// (`cargo test -p cp-report --test it -- --ignored write_demo_report`).
#[test]
#[ignore]
fn write_demo_report() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("report-demo");
    let out = render_report(&fixture::demo_inputs(), &target, &ReportOptions::default()).unwrap();
    eprintln!("{}", out.html.display());
}

/// The trade-off figure plots unseen rates against tokens per step: from an analysis with several
/// decode folders, or from a sweep; one tokens-per-step value alone is no trade-off and gets no figure.
#[test]
fn tradeoff_and_sweep_figures_need_two_values() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Double],
        ..quick_options()
    };
    let run = fixture::run("r", 16, 0.0);
    let out = render_report(
        &ReportInputs {
            runs: vec![run.clone()],
            ..ReportInputs::default()
        },
        &dir.path().join("a"),
        &opts,
    )
    .unwrap();
    assert!(figure_names(&out, ColumnWidth::Double).contains(&"tradeoff".to_string()));
    let svg = std::fs::read_to_string(dir.path().join("a/figures/tradeoff_double.svg")).unwrap();
    assert!(
        svg.contains("2-grams")
            && svg.contains("3-grams")
            && svg.contains("tokens committed per step (log scale)"),
        "one line per n, log axis for 1..8"
    );

    let mut one = run.clone();
    one.metrics
        .as_mut()
        .unwrap()
        .metrics
        .retain(|m| !m.name.ends_with("@k8"));
    let inputs = ReportInputs {
        runs: vec![one],
        sweep: Some(fixture::sweep(&[4.0])),
        ..ReportInputs::default()
    };
    let out = render_report(&inputs, &dir.path().join("b"), &opts).unwrap();
    let names = figure_names(&out, ColumnWidth::Double);
    assert!(
        !names.contains(&"tradeoff".to_string()) && !names.contains(&"sweep".to_string()),
        "{names:?}"
    );

    let inputs = ReportInputs {
        runs: vec![run],
        sweep: Some(fixture::sweep(&[1.0, 2.0, 3.0])),
        ..ReportInputs::default()
    };
    render_report(&inputs, &dir.path().join("c"), &opts).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("c/figures/sweep_double.svg")).unwrap();
    assert!(
        svg.contains("tokens committed per step (swept)") && svg.contains("adjacent duplicates")
    );
    assert!(
        !svg.contains(">1.5<"),
        "an integer parameter gets no fractional ticks"
    );
}

/// An analysis of corrupt folders (one per scheme) gets the information-loss figures, its own
/// section in the page and in `summary.md`, and a rare-token finding; reports without one do not.
#[test]
fn corrupt_analysis_gets_an_information_loss_section_and_three_figures() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = ReportInputs {
        runs: vec![fixture::corrupt_run("schemes", &["uniform", "rare-first"])],
        ..ReportInputs::default()
    };
    let out = render_report(&inputs, &dir.path().join("r"), &quick_options()).unwrap();
    let expected = [
        "corrupt_heatmap",
        "corrupt_concentration",
        "corrupt_context_gain",
    ];
    for width in [ColumnWidth::Single, ColumnWidth::Double] {
        assert_eq!(figure_names(&out, width), expected);
    }
    for fig in &out.figures {
        assert_eq!(fig.files.len(), 3, "{}", fig.name);
        let text = std::fs::read_to_string(&fig.files[0]).unwrap();
        usvg::Tree::from_str(&text, &usvg::Options::default())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", fig.files[0].display()));
        assert!(std::fs::read(&fig.files[2]).unwrap().starts_with(b"%PDF"));
        let pixmap = Pixmap::decode_png(&std::fs::read(&fig.files[1]).unwrap()).unwrap();
        let expected_w = (fig.width.width_pt() / 72.0 * 150.0).round() as u32;
        assert!(pixmap.width().abs_diff(expected_w) <= 1, "{}", fig.name);
    }
    // The heat map: one panel per scheme, the values in the cells, the colour bar's title
    // (plotters puts every text element's content on a line of its own).
    let heatmap =
        std::fs::read_to_string(dir.path().join("r/figures/corrupt_heatmap_double.svg")).unwrap();
    for text in [
        "uniform",
        "rare-first",
        "frequency decile (10 = rarest)",
        "mean NLL per masked token (nats):",
        "0.7",
        // Decile 10 at ratio 0.7 of the second scheme: 1 + 4 + 0.7 × (1 + 3.6) = 8.22.
        "8.2",
    ] {
        assert!(
            heatmap.contains(&format!(">\n{text}\n<")),
            "no {text} in the heat map"
        );
    }
    let concentration = std::fs::read_to_string(
        dir.path()
            .join("r/figures/corrupt_concentration_single.svg"),
    )
    .unwrap();
    assert!(
        concentration.contains("rarest 10 % of masked positions")
            && concentration.contains("equal share per position")
    );
    let gain =
        std::fs::read_to_string(dir.path().join("r/figures/corrupt_context_gain_double.svg"))
            .unwrap();
    assert!(gain.contains("ratio 0.1") && gain.contains("ratio 0.7"));

    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("<section id=\"information-loss\"><h2>Information loss</h2>"));
    assert!(html.contains("href=\"#information-loss\""));
    // Each figure once, inside the section; the general figure section says where they went.
    let section = html.find("id=\"information-loss\"").unwrap();
    for name in expected {
        let anchor = format!("<figure id=\"fig-{name}\"");
        assert_eq!(html.matches(&anchor).count(), 1, "{name}");
        assert!(html.find(&anchor).unwrap() > section, "{name}");
    }
    assert!(html.contains("information-loss figures are in their own section"));
    assert!(
        html.contains("<th>ratio=0.1</th><th>ratio=0.3</th><th>ratio=0.5</th><th>ratio=0.7</th>")
    );
    assert!(html.contains("Rare-token fragility (uniform): present"));
    assert!(html.contains("Rare-token fragility (rare-first): present"));
    // The corrupt metrics are not mistaken for decode folders named `ratio=0.1`.
    assert!(!html.contains("Metrics per decode folder"));

    let md = std::fs::read_to_string(&out.summary).unwrap();
    assert!(md.contains("\n## Information loss\n"), "{md}");
    assert!(
        md.contains(
            "| metric | folder | unit | better | ratio=0.1 | ratio=0.3 | ratio=0.5 | ratio=0.7 |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| `corrupt.nll` (NLL per masked token) | uniform | nats | ↓ | 3.465 ± 0.0500 |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| `corrupt.fragility_gap` | nats | · | 1.620 ± 0.1000 | 1.944 ± 0.1000 |"),
        "{md}"
    );
    assert!(
        md.contains("Figures: `corrupt_heatmap`, `corrupt_concentration`, `corrupt_context_gain`"),
        "{md}"
    );
    assert!(
        md.contains("**Rare-token fragility (uniform): present.**"),
        "{md}"
    );
    assert!(!md.contains("per decode folder"), "{md}");

    // Beside other analyses: the demo's figures, then these; a report without a corrupt
    // analysis has no such section.
    let mut demo = fixture::demo_inputs();
    demo.runs
        .push(fixture::corrupt_run("corrupt", &["uniform"]));
    let opts = ReportOptions {
        formats: vec![FigureFormat::Svg],
        widths: vec![ColumnWidth::Double],
        ..quick_options()
    };
    let out = render_report(&demo, &dir.path().join("both"), &opts).unwrap();
    let names = figure_names(&out, ColumnWidth::Double);
    assert_eq!(names.len(), 8 + 3, "{names:?}");
    assert_eq!(&names[8..], expected);
    let md = std::fs::read_to_string(&out.summary).unwrap();
    assert!(
        md.contains("**Rare-token fragility (corrupt): present.**"),
        "{md}"
    );
    let out = render_report(&fixture::demo_inputs(), &dir.path().join("demo"), &opts).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(!html.contains("information-loss") && !html.contains("Rare-token"));
}
