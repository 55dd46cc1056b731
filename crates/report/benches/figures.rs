//! Times a full demo-sized report (two runs, 32 prompts × 64 masks × top-10, 32 generations):
//! every figure at both widths in SVG, PNG (300 dpi) and PDF, plus the HTML page. Target: < 2 s.
//!
//! `cargo bench -p cp-report --bench figures`

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::time::Instant;

use cp_report::{build_figures, render_report, ColumnWidth, ReportOptions};

fn main() {
    let inputs = fixture::demo_inputs();
    let dir = tempfile::tempdir().expect("temp dir");
    // One untimed run loads the font and warms caches.
    render_report(&inputs, &dir.path().join("warm"), &ReportOptions::default()).expect("report");

    let runs = 5;
    let ranks = inputs.effective_ranks();
    let widths = [ColumnWidth::Single, ColumnWidth::Double];
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..runs {
        n = build_figures(&inputs, ranks.as_ref(), None, &widths)
            .expect("figures")
            .len();
    }
    let svg_only = t.elapsed().as_secs_f64() / f64::from(runs);

    let t = Instant::now();
    let mut files = 0;
    for i in 0..runs {
        let out = render_report(
            &inputs,
            &dir.path().join(format!("r{i}")),
            &ReportOptions::default(),
        )
        .expect("report");
        files = out.figures.iter().map(|f| f.files.len()).sum::<usize>();
    }
    let full = t.elapsed().as_secs_f64() / f64::from(runs);
    println!("figures (SVG only): {n} figures in {:.3} s", svg_only);
    println!("full report: {files} figure files (svg+png@300dpi+pdf) + html + summary in {:.3} s (target < 2 s)", full);
}
