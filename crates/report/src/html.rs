//! `report.html`: one self-contained page (inline SVG figures, inline CSS and JS, no network).
//!
//! All text that comes from records (token strings, prompt ids, generated text, labels) is either
//! escaped here with [`escape`] or handed to the page's script as JSON and inserted with
//! `textContent`, never as markup.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use cp_records::{Generation, Manifest, StepRecord};
use serde::Serialize;

use crate::figures::Figure;
use crate::findings::{findings, Verdict};
use crate::information_loss::{corrupt_folders, folder_rows, ratio_table};
use crate::inputs::{RankSource, ReportInputs, TokenRanks};
use crate::markdown::{better_symbol, format_number, format_value, metric_tables};
use crate::style::{hex, rank_bin_labels, ColumnWidth, RANK_BIN_UPPER, RANK_RAMP};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in HTML text; show them as escapes.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `<` is escaped so no string can close the block.
fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("report data serialises");
    json.replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// What the page's script gets.
#[derive(Serialize)]
struct PageData<'a> {
    rank_source: String,
    /// Ramp colours (lightest first) and the upper rank of each bin (darkest first), mirrored from `style`.
    ramp: Vec<String>,
    bin_upper: &'a [u32],
    /// Token id → [text, rank or null].
    tokens: BTreeMap<u32, (String, Option<u32>)>,
    prompts: Vec<BrowserPrompt>,
    truncated_prompts: usize,
}

#[derive(Serialize)]
struct BrowserPrompt {
    id: String,
    index: u32,
    prompt_len: u32,
    /// One entry per mask position, by distance.
    positions: Vec<BrowserPosition>,
}

#[derive(Serialize)]
struct BrowserPosition {
    d: u32,
    ids: Vec<u32>,
    /// Probabilities, rounded to 4 decimals to keep the page small.
    p: Vec<f32>,
    /// Entropy, nats.
    h: f32,
}

fn round4(v: f32) -> f32 {
    (v * 1e4).round() / 1e4
}

fn page_data<'a>(
    inputs: &ReportInputs,
    ranks: Option<&TokenRanks>,
    max_prompts: usize,
) -> PageData<'a> {
    let mut tokens = BTreeMap::new();
    let mut prompts: BTreeMap<(u32, String), BrowserPrompt> = BTreeMap::new();
    if let Some(probe) = &inputs.probe {
        for r in &probe.records {
            let key = (r.prompt_index, r.prompt_id.clone());
            if !prompts.contains_key(&key) && prompts.len() >= max_prompts {
                continue;
            }
            let entry = prompts.entry(key).or_insert_with(|| BrowserPrompt {
                id: r.prompt_id.clone(),
                index: r.prompt_index,
                prompt_len: r.prompt_len,
                positions: Vec::new(),
            });
            for (i, &id) in r.top_ids.iter().enumerate() {
                tokens.entry(id).or_insert_with(|| {
                    (
                        r.top_tokens.get(i).cloned().unwrap_or_default(),
                        ranks.and_then(|t| t.rank(id)),
                    )
                });
            }
            entry.positions.push(BrowserPosition {
                d: r.distance,
                ids: r.top_ids.clone(),
                p: r.top_probs.iter().map(|&p| round4(p)).collect(),
                h: round4(r.entropy),
            });
        }
    }
    let total_prompts = inputs
        .probe
        .as_ref()
        .map(|p| {
            let mut ids: Vec<(u32, &str)> = p
                .records
                .iter()
                .map(|r| (r.prompt_index, r.prompt_id.as_str()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        })
        .unwrap_or(0);
    let mut prompts: Vec<BrowserPrompt> = prompts.into_values().collect();
    for p in &mut prompts {
        p.positions.sort_by_key(|x| x.d);
    }
    PageData {
        rank_source: match ranks.map(|r| &r.source) {
            Some(RankSource::Corpus(s)) => format!("corpus frequency rank ({s})"),
            Some(RankSource::Predictions) => {
                "frequency rank among the probe's predictions (no corpus table given)".into()
            }
            None => "no ranks".into(),
        },
        ramp: RANK_RAMP.iter().map(|&c| hex(c)).collect(),
        bin_upper: &RANK_BIN_UPPER,
        tokens,
        truncated_prompts: total_prompts.saturating_sub(prompts.len()),
        prompts,
    }
}

/// What the page needs besides the inputs.
pub(crate) struct PageParts<'a> {
    pub title: &'a str,
    pub figures: &'a [Figure],
    /// Figure files written next to the page, relative paths, by figure name.
    pub files: &'a HashMap<String, Vec<String>>,
    pub ranks: Option<&'a TokenRanks>,
    pub max_prompts: usize,
    pub max_samples: usize,
    pub tool_version: &'a str,
}

/// The whole page.
pub(crate) fn report_html(inputs: &ReportInputs, parts: &PageParts) -> String {
    let mut h = String::with_capacity(1 << 16);
    let title = escape(parts.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header><h1>{title}</h1><p class=\"sub\">collapse-probe {} · frequency collapse and the marginal trap in masked diffusion LMs</p>\n",
        escape(parts.tool_version)
    );
    let corrupt = !corrupt_folders(inputs).is_empty();
    h.push_str("<nav><a href=\"#findings\">Findings</a> <a href=\"#figures\">Figures</a> ");
    if corrupt {
        h.push_str("<a href=\"#information-loss\">Information loss</a> ");
    }
    h.push_str(
        "<a href=\"#metrics\">Headline metrics</a> \
         <a href=\"#runs\">Runs</a> <a href=\"#prompts\">Per prompt</a> <a href=\"#browser\">Predictions by position</a> \
         <a href=\"#samples\">Generated samples</a></nav></header>\n<main>\n",
    );
    // The verdicts first, then the figures they cite, then the full tables.
    findings_section(&mut h, inputs, parts);
    figures_section(&mut h, parts);
    if corrupt {
        information_loss_section(&mut h, inputs, parts);
    }
    metrics_section(&mut h, inputs);
    runs_section(&mut h, inputs);
    per_prompt_section(&mut h, inputs, parts.max_prompts);
    browser_section(&mut h, inputs);
    samples_section(&mut h, inputs, parts.max_samples);
    h.push_str("</main>\n");
    let data = page_data(inputs, parts.ranks, parts.max_prompts);
    let _ = write!(
        h,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>{JS}</script>\n</body>\n</html>\n",
        script_json(&data)
    );
    h
}

fn manifest_rows(
    label: &str,
    role: &str,
    m: Option<&Manifest>,
    dir: Option<&std::path::Path>,
) -> String {
    let dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
    let Some(m) = m else {
        return format!(
            "<tr><td>{}</td><td>{}</td><td colspan=\"5\" class=\"muted\">no manifest.json</td><td><code>{}</code></td></tr>\n",
            escape(label),
            escape(role),
            escape(&dir)
        );
    };
    let model = m
        .model
        .as_ref()
        .map(|mi| {
            format!(
                "{} ({}, {}, {})",
                mi.path, mi.model_type, mi.dtype, mi.device
            )
        })
        .unwrap_or_default();
    let prompts = m
        .prompts
        .as_ref()
        .map(|p| format!("{} ({} prompts, {})", p.path, p.count, p.format))
        .unwrap_or_default();
    let json = serde_json::to_string_pretty(m).unwrap_or_default();
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td>\
         <td><details><summary><code>{}</code></summary><pre>{}</pre></details></td><td><code>{}</code></td></tr>\n",
        escape(label),
        escape(&m.kind),
        escape(&model),
        escape(&prompts),
        m.seed,
        m.wall_time_s,
        escape(&m.command.join(" ")),
        escape(&json),
        escape(&dir)
    )
}

fn runs_section(h: &mut String, inputs: &ReportInputs) {
    h.push_str(
        "<section id=\"runs\"><h2>Runs</h2>\n<table class=\"runs\"><thead><tr><th>label</th><th>kind</th><th>model</th>\
         <th>prompts</th><th>seed</th><th>wall time</th><th>command (click for the manifest)</th><th>folder</th></tr></thead><tbody>\n",
    );
    for run in &inputs.runs {
        h.push_str(&manifest_rows(
            &run.label,
            "analysis",
            run.manifest.as_ref(),
            run.dir.as_deref(),
        ));
    }
    if let Some(p) = &inputs.probe {
        h.push_str(&manifest_rows(
            "probe",
            "probe",
            p.manifest.as_ref(),
            p.dir.as_deref(),
        ));
    }
    if let Some(d) = &inputs.decode {
        h.push_str(&manifest_rows(
            "decode",
            "decode",
            d.manifest.as_ref(),
            d.dir.as_deref(),
        ));
    }
    h.push_str("</tbody></table></section>\n");
}

fn metrics_section(h: &mut String, inputs: &ReportInputs) {
    h.push_str("<section id=\"metrics\"><h2>Headline metrics</h2>\n");
    let tables = metric_tables(inputs);
    if tables.is_empty() {
        let why = if corrupt_folders(inputs).is_empty() {
            "No metrics.json in the analysis folders."
        } else {
            "Every headline metric is an information-loss one: see <a href=\"#information-loss\">Information loss</a>."
        };
        let _ = writeln!(h, "<p class=\"muted\">{why}</p></section>");
        return;
    }
    for table in &tables {
        if !table.title.is_empty() {
            let _ = writeln!(h, "<h3>Metrics {}</h3>", escape(table.title));
        }
        h.push_str("<table class=\"metrics\"><thead><tr><th>metric</th><th>unit</th><th title=\"which direction is better\">better</th>");
        for c in &table.columns {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("<th>n</th></tr></thead><tbody>\n");
        for (name, row) in &table.rows {
            let first = row.iter().flatten().next().expect("a row has a value");
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"c\">{}</td>",
                escape(name),
                escape(&first.unit),
                better_symbol(first.better)
            );
            for m in row {
                let _ = write!(
                    h,
                    "<td class=\"num\">{}</td>",
                    m.map(|m| escape(&format_value(m)))
                        .unwrap_or_else(|| "–".into())
                );
            }
            let ns: Vec<String> = row
                .iter()
                .map(|m| m.map(|m| m.n.to_string()).unwrap_or_else(|| "–".into()))
                .collect();
            let _ = writeln!(h, "<td class=\"num\">{}</td></tr>", escape(&ns.join(" / ")));
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str(
        "<p class=\"muted\">± is the bootstrap standard error over prompts.</p></section>\n",
    );
}

/// Per-prompt metrics shown in the page, in this order, when the analysis has them.
const PER_PROMPT_COLUMNS: [&str; 7] = [
    "collapse.onset",
    "collapse.entropy.far",
    "collapse.frequent_share.far",
    "collapse.kl_unigram.far",
    "trap.unseen_2gram_rate",
    "trap.adjacent_duplicate_rate",
    "trap.tokens_per_step",
];

/// One row per prompt, one column per (run, source, metric) of [`PER_PROMPT_COLUMNS`]; the
/// columns sort on click (earliest collapse onset first is the usual question).
fn per_prompt_section(h: &mut String, inputs: &ReportInputs, max_prompts: usize) {
    // (run, source, metric) of every column with data.
    let mut columns: Vec<(usize, &str, &str)> = Vec::new();
    for (r, run) in inputs.runs.iter().enumerate() {
        for metric in PER_PROMPT_COLUMNS {
            for p in run.per_prompt.iter().filter(|p| p.metric == metric) {
                if !columns
                    .iter()
                    .any(|&(cr, cs, cm)| cr == r && cs == p.source && cm == metric)
                {
                    columns.push((r, p.source.as_str(), metric));
                }
            }
        }
    }
    if columns.is_empty() {
        return;
    }
    let mut prompts: Vec<u32> = inputs
        .runs
        .iter()
        .flat_map(|r| r.per_prompt.iter().map(|p| p.prompt_index))
        .collect();
    prompts.sort_unstable();
    prompts.dedup();
    let shown = prompts.len().min(max_prompts);
    h.push_str("<section id=\"prompts\"><h2>Per prompt</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"muted\">Each prompt's own value (per_prompt.parquet), {shown} of {} prompts; click a column to sort.</p>",
        prompts.len()
    );
    h.push_str("<table class=\"metrics sortable\"><thead><tr><th>prompt</th>");
    let several_runs = inputs.runs.len() > 1;
    for &(r, source, metric) in &columns {
        let mut head = metric.to_owned();
        if several_runs {
            head = format!("{} · {head}", inputs.runs[r].label);
        }
        let _ = write!(
            h,
            "<th title=\"{}\">{}<br><span class=\"muted\">{}</span></th>",
            escape(source),
            escape(&head),
            escape(source)
        );
    }
    h.push_str("</tr></thead><tbody>\n");
    for &prompt in &prompts[..shown] {
        let _ = write!(h, "<tr><td class=\"num\">{prompt}</td>");
        for &(r, source, metric) in &columns {
            let v = inputs.runs[r]
                .per_prompt
                .iter()
                .find(|p| p.prompt_index == prompt && p.source == source && p.metric == metric);
            match v {
                Some(p) => {
                    let _ = write!(
                        h,
                        "<td class=\"num\" data-v=\"{}\">{}</td>",
                        p.value,
                        format_number(p.value)
                    );
                }
                None => h.push_str("<td class=\"num\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn findings_section(h: &mut String, inputs: &ReportInputs, parts: &PageParts) {
    h.push_str("<section id=\"findings\"><h2>Findings</h2>\n");
    let found = findings(inputs);
    if found.is_empty() {
        h.push_str("<p class=\"muted\">No finding: the analyses hold neither collapse nor trap metrics.</p>\n");
    }
    for f in &found {
        let _ = write!(
            h,
            "<div class=\"finding {}\"><h3>{}: {}</h3><p>{}</p>",
            match f.verdict {
                Verdict::Present => "present",
                Verdict::Absent => "absent",
                Verdict::NotMeasured => "unmeasured",
            },
            escape(&f.title),
            f.verdict.as_str(),
            escape(&f.text)
        );
        let shown: Vec<&str> = f
            .figures
            .iter()
            .copied()
            .filter(|name| parts.figures.iter().any(|fig| fig.name == *name))
            .collect();
        if !shown.is_empty() {
            h.push_str("<p class=\"muted\">Shown in: ");
            for (i, name) in shown.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(h, "{sep}<a href=\"#fig-{0}\">{0}</a>", escape(name));
            }
            h.push_str("</p>");
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

/// The figures `wanted` keeps, each once, at double width when it was drawn at both.
fn shown_figures<'a>(parts: &PageParts<'a>, wanted: impl Fn(&str) -> bool) -> Vec<&'a Figure> {
    let mut shown: Vec<&Figure> = Vec::new();
    for f in parts.figures.iter().filter(|f| wanted(&f.name)) {
        match shown.iter().position(|s| s.name == f.name) {
            Some(i) if f.width == ColumnWidth::Double => shown[i] = f,
            Some(_) => {}
            None => shown.push(f),
        }
    }
    shown
}

/// One figure: its inline SVG, caption and files.
fn figure_html(h: &mut String, f: &Figure, parts: &PageParts) {
    let svg = f.svg.find("<svg").map(|i| &f.svg[i..]).unwrap_or(&f.svg);
    let _ = write!(
        h,
        "<figure id=\"fig-{}\" class=\"{}\">{}<figcaption><b>{}.</b> {}",
        escape(&f.name),
        f.width.name(),
        svg,
        escape(&f.name),
        escape(&f.caption)
    );
    if let Some(files) = parts.files.get(&f.name) {
        h.push_str(" <span class=\"files\">Files:");
        for file in files {
            let _ = write!(h, " <a href=\"{0}\">{0}</a>", escape(file));
        }
        h.push_str("</span>");
    }
    h.push_str("</figcaption></figure>\n");
}

fn figures_section(h: &mut String, parts: &PageParts) {
    h.push_str("<section id=\"figures\"><h2>Figures</h2>\n");
    // The information-loss figures have their own section.
    let shown = shown_figures(parts, |name| {
        !crate::corrupt_figures::FIGURES.contains(&name)
    });
    if shown.is_empty() {
        let more = if parts
            .figures
            .iter()
            .any(|f| crate::corrupt_figures::FIGURES.contains(&f.name.as_str()))
        {
            " (the information-loss figures are in their own section)"
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<p class=\"muted\">No figure: the inputs hold none of the curves the figures need{more}.</p>"
        );
    }
    for f in shown {
        figure_html(h, f, parts);
    }
    h.push_str("</section>\n");
}

/// The corrupt folders' figures and metrics: the loss by frequency decile and masked ratio.
fn information_loss_section(h: &mut String, inputs: &ReportInputs, parts: &PageParts) {
    h.push_str(
        "<section id=\"information-loss\"><h2>Information loss</h2>\n<p>What the model loses at masked \
         positions of clean texts (<code>collapse-probe corrupt</code>): the negative log-likelihood (NLL) of the \
         true token by the share of positions masked, by the token's corpus-frequency decile (1 most frequent, \
         10 rarest), and how much of it the rarest positions carry. Definitions: crates/analysis/METRICS.md, \
         \u{201c}Information loss\u{201d}.</p>\n",
    );
    for f in shown_figures(parts, |name| {
        crate::corrupt_figures::FIGURES.contains(&name)
    }) {
        figure_html(h, f, parts);
    }
    let folders = corrupt_folders(inputs);
    let table = ratio_table(&folders);
    if !table.rows.is_empty() {
        h.push_str("<table class=\"metrics\"><thead><tr><th>metric</th><th>folder</th><th>unit</th><th title=\"which direction is better\">better</th>");
        for r in &table.ratios {
            let _ = write!(h, "<th>ratio={}</th>", escape(r));
        }
        h.push_str("</tr></thead><tbody>\n");
        for (base, what, folder, cells) in &table.rows {
            let first = cells.iter().flatten().next().expect("a row has a value");
            let _ = write!(
                h,
                "<tr><td><code>{}</code> <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td class=\"c\">{}</td>",
                escape(base),
                escape(what),
                escape(folder),
                escape(&first.unit),
                better_symbol(first.better)
            );
            for m in cells {
                let _ = write!(
                    h,
                    "<td class=\"num\">{}</td>",
                    m.map(|m| escape(&format_value(m)))
                        .unwrap_or_else(|| "–".into())
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
    let rows = folder_rows(&folders);
    if !rows.is_empty() {
        h.push_str("<table class=\"metrics\"><thead><tr><th>metric</th><th>unit</th><th title=\"which direction is better\">better</th>");
        for f in &folders {
            let _ = write!(h, "<th>{}</th>", escape(&f.name));
        }
        h.push_str("</tr></thead><tbody>\n");
        for (base, cells) in &rows {
            let first = cells.iter().flatten().next().expect("a row has a value");
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"c\">{}</td>",
                escape(base),
                escape(&first.unit),
                better_symbol(first.better)
            );
            for m in cells {
                let _ = write!(
                    h,
                    "<td class=\"num\">{}</td>",
                    m.map(|m| escape(&format_value(m)))
                        .unwrap_or_else(|| "–".into())
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str(
        "<p class=\"muted\">± is the bootstrap standard error over texts. The fragility metrics compare the \
         lowest and the highest masked ratio: the rise of the rarest (or most frequent) decile's NLL, and the \
         gap between the two.</p></section>\n",
    );
}

fn browser_section(h: &mut String, inputs: &ReportInputs) {
    h.push_str("<section id=\"browser\"><h2>Top-k predictions by position</h2>\n");
    if inputs.probe.is_none() {
        h.push_str("<p class=\"muted\">No probe records were given (<code>--probe</code>).</p></section>\n");
        return;
    }
    h.push_str(
        "<p>Each row is one mask position (distance from the end of the prompt); each cell one of its top-k \
         predictions with its probability. Cells are shaded by the token's frequency rank: darker is more frequent.</p>\n\
         <div class=\"controls\"><label>Prompt <select id=\"prompt-select\"></select></label> \
         <button type=\"button\" id=\"prev-prompt\">◀</button><button type=\"button\" id=\"next-prompt\">▶</button> \
         <span id=\"rank-source\" class=\"muted\"></span></div>\n<div id=\"rank-legend\" class=\"legend\">",
    );
    for (bin, label) in rank_bin_labels() {
        let _ = write!(
            h,
            "<span class=\"tok\" style=\"background:{};color:{}\">{}</span>",
            hex(RANK_RAMP[bin]),
            if bin >= RANK_RAMP.len() - 3 {
                "#fff"
            } else {
                "#000"
            },
            escape(&label)
        );
    }
    h.push_str("</div>\n<div id=\"browser-table\" class=\"scroll\"></div></section>\n");
}

/// Token strings of each generated position of one prompt, from the committed steps.
fn generated_tokens(g: &Generation, steps: &[&StepRecord]) -> Vec<Option<String>> {
    let mut tokens = vec![None; g.gen_ids.len()];
    for s in steps {
        let i = s.distance as usize;
        if i >= 1 && i <= tokens.len() {
            tokens[i - 1] = Some(s.token.clone());
        }
    }
    tokens
}

/// Groups of adjacent generated positions committed in the same step (two or more positions).
pub fn same_step_runs(commit_step: &[i32]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=commit_step.len() {
        if i == commit_step.len() || commit_step[i] != commit_step[start] || commit_step[start] < 0
        {
            if i - start >= 2 && commit_step[start] >= 0 {
                runs.push(start..i);
            }
            start = i;
        }
    }
    runs
}

fn samples_section(h: &mut String, inputs: &ReportInputs, max_samples: usize) {
    h.push_str("<section id=\"samples\"><h2>Generated samples</h2>\n");
    let Some(decode) = &inputs.decode else {
        h.push_str("<p class=\"muted\">No decode records were given (<code>--decode</code>).</p></section>\n");
        return;
    };
    h.push_str(
        "<p>Generated tokens in order. Neighbouring tokens committed <span class=\"same g0\">in the same</span> \
         <span class=\"same g1\">parallel step</span> are underlined together (alternating colours tell adjacent groups \
         apart); hover a token for its step. Those pairs come from independent marginals: the marginal trap shows \
         up there.</p>\n",
    );
    let mut by_prompt: HashMap<u32, Vec<&StepRecord>> = HashMap::new();
    for s in &decode.steps {
        by_prompt.entry(s.prompt_index).or_default().push(s);
    }
    let mut gens: Vec<&Generation> = decode.generations.iter().collect();
    gens.sort_by_key(|g| g.prompt_index);
    for g in gens.iter().take(max_samples) {
        let steps = by_prompt
            .get(&g.prompt_index)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let tokens = generated_tokens(g, steps);
        let runs = same_step_runs(&g.commit_step);
        let mut group_of = vec![None; tokens.len()];
        for (k, r) in runs.iter().enumerate() {
            for i in r.clone() {
                group_of[i] = Some(k);
            }
        }
        let _ = write!(
            h,
            "<div class=\"sample\"><div class=\"sample-head\">prompt <code>{}</code> · {} steps · {} tokens · {} same-step groups</div><p class=\"gen\">",
            escape(&g.prompt_id),
            g.steps,
            tokens.len(),
            runs.len()
        );
        for (i, tok) in tokens.iter().enumerate() {
            let step = g.commit_step.get(i).copied().unwrap_or(-1);
            let text = match tok {
                Some(t) => escape(t),
                None => "[MASK]".into(),
            };
            let class = match group_of[i] {
                Some(k) => format!("tok-g same g{}", k % 2),
                None if step < 0 => "tok-g masked".into(),
                None => "tok-g".into(),
            };
            let _ = write!(
                h,
                "<span class=\"{class}\" title=\"position {} · step {step}\">{text}</span>",
                i + 1
            );
        }
        h.push_str("</p></div>\n");
    }
    if gens.len() > max_samples {
        let _ = writeln!(
            h,
            "<p class=\"muted\">{} more generations not shown.</p>",
            gens.len() - max_samples
        );
    }
    h.push_str("</section>\n");
}

const CSS: &str = r##"
:root{--fg:#1a1a1a;--muted:#666;--line:#ddd;--accent:#0072B2}
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);margin:0;line-height:1.45;font-size:15px;background:#fff}
header{padding:1.2rem 2rem .6rem;border-bottom:1px solid var(--line)}
header h1{margin:0;font-size:1.5rem}
.sub{margin:.2rem 0 .6rem;color:var(--muted)}
nav a{margin-right:1rem;color:var(--accent);text-decoration:none}
main{padding:0 2rem 3rem;max-width:1200px}
section{margin-top:2rem}
h2{font-size:1.2rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.9rem}
th,td{border-bottom:1px solid var(--line);padding:.25rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.c{text-align:center}
.muted{color:var(--muted)}
details pre{max-width:60rem;overflow:auto;background:#f6f6f6;padding:.5rem;font-size:.8rem}
figure{margin:1.5rem 0}
figure svg{width:100%;height:auto;display:block}
figure.double svg{max-width:7in}
figure.single svg{max-width:3.4in}
figcaption{font-size:.9rem;max-width:7in;margin-top:.3rem}
.files{color:var(--muted);font-size:.8rem}
.files a{color:var(--muted)}
.controls{margin:.5rem 0}
.controls button{margin-left:.2rem}
.legend{margin:.4rem 0 .8rem}
.scroll{max-height:34rem;overflow:auto;border:1px solid var(--line)}
.tok{display:inline-block;padding:0 .3rem;margin:0 .1rem;border-radius:2px;font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:.85rem;white-space:pre}
#browser-table table{width:100%}
#browser-table td{white-space:nowrap}
#browser-table td.tokcell{padding:.15rem .25rem}
#browser-table .p{font-size:.7rem;opacity:.75;margin-left:.25rem}
.sample{margin:.8rem 0;padding:.5rem .8rem;border-left:3px solid var(--line)}
.sample-head{font-size:.85rem;color:var(--muted)}
.gen{white-space:pre-wrap;font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:.9rem;margin:.3rem 0}
.same{text-decoration:underline;text-decoration-thickness:3px;text-underline-offset:3px}
.same.g0{text-decoration-color:#D55E00;background:#fbe3d2}
.same.g1{text-decoration-color:#0072B2;background:#d5e8f4}
.masked{color:#999}
.finding{margin:.8rem 0;padding:.4rem .9rem;border-left:4px solid var(--line)}
.finding h3{margin:.2rem 0;font-size:1rem}
.finding p{margin:.3rem 0;max-width:60rem}
.finding.present{border-left-color:#D55E00}
.finding.absent{border-left-color:#009E73}
"##;

const JS: &str = r##"
(function () {
  "use strict";
  window.addEventListener("error", function (e) { document.body.dataset.reportError = String(e.message); });
  var data = JSON.parse(document.getElementById("report-data").textContent);
  function bin(rank) {
    var darkest = data.ramp.length - 1;
    for (var i = 0; i < data.bin_upper.length; i++) { if (rank <= data.bin_upper[i]) return darkest - i; }
    return 0;
  }
  function show(tok) {
    var t = tok.replace(/\u0120/g, " ").replace(/\u2581/g, " ").replace(/\u010a/g, "\n");
    if (t.length === 0) return "\u2205";
    return t.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, function (c) {
      return "\\x" + ("0" + c.charCodeAt(0).toString(16)).slice(-2);
    });
  }
  function cell(id, p) {
    var td = document.createElement("td");
    td.className = "tokcell";
    var span = document.createElement("span");
    span.className = "tok";
    var info = data.tokens[String(id)] || ["?", null];
    var rank = info[1];
    if (rank !== null) {
      var b = bin(rank);
      span.style.background = data.ramp[b];
      span.style.color = b >= data.ramp.length - 3 ? "#fff" : "#000";
    } else {
      span.style.background = "#eee";
    }
    span.textContent = show(info[0]);
    span.title = "id " + id + (rank !== null ? " \u00b7 rank " + rank : " \u00b7 rank unknown") + " \u00b7 p = " + p;
    td.appendChild(span);
    var ps = document.createElement("span");
    ps.className = "p";
    ps.textContent = p.toFixed(3);
    td.appendChild(ps);
    return td;
  }
  function render(i) {
    var host = document.getElementById("browser-table");
    if (!host) return;
    host.textContent = "";
    var prompt = data.prompts[i];
    if (!prompt) return;
    var table = document.createElement("table");
    table.id = "browser-grid";
    var k = 0;
    prompt.positions.forEach(function (pos) { k = Math.max(k, pos.ids.length); });
    var head = document.createElement("tr");
    ["distance", "entropy (nats)"].concat(Array.from({ length: k }, function (_, j) { return "top-" + (j + 1); }))
      .forEach(function (t) { var th = document.createElement("th"); th.textContent = t; head.appendChild(th); });
    var thead = document.createElement("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = document.createElement("tbody");
    prompt.positions.forEach(function (pos) {
      var tr = document.createElement("tr");
      var d = document.createElement("td"); d.className = "num"; d.textContent = pos.d; tr.appendChild(d);
      var h = document.createElement("td"); h.className = "num"; h.textContent = pos.h.toFixed(2); tr.appendChild(h);
      pos.ids.forEach(function (id, j) { tr.appendChild(cell(id, pos.p[j])); });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    host.appendChild(table);
  }
  var select = document.getElementById("prompt-select");
  if (select) {
    data.prompts.forEach(function (p, i) {
      var o = document.createElement("option");
      o.value = String(i);
      o.textContent = p.id + " (" + p.positions.length + " positions)";
      select.appendChild(o);
    });
    if (data.truncated_prompts > 0) {
      var o = document.createElement("option");
      o.disabled = true;
      o.textContent = data.truncated_prompts + " more prompts not embedded";
      select.appendChild(o);
    }
    select.addEventListener("change", function () { render(Number(select.value)); });
    function step(delta) {
      var n = data.prompts.length;
      if (n === 0) return;
      var i = (Number(select.value) + delta + n) % n;
      select.value = String(i);
      render(i);
    }
    document.getElementById("prev-prompt").addEventListener("click", function () { step(-1); });
    document.getElementById("next-prompt").addEventListener("click", function () { step(1); });
    document.getElementById("rank-source").textContent = "Shading: " + data.rank_source + ".";
    render(0);
  }
  // Sortable tables: a click on a header sorts by that column (numbers by data-v), again to reverse.
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (t) {
    var ths = t.querySelectorAll("thead th");
    Array.prototype.forEach.call(ths, function (th, col) {
      th.style.cursor = "pointer";
      th.addEventListener("click", function () {
        var asc = th.dataset.sort !== "asc";
        Array.prototype.forEach.call(ths, function (o) { delete o.dataset.sort; });
        th.dataset.sort = asc ? "asc" : "desc";
        var body = t.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(r) {
          var c = r.cells[col];
          var v = c.dataset.v !== undefined ? Number(c.dataset.v) : Number(c.textContent);
          return isNaN(v) ? Infinity : v;
        }
        rows.sort(function (a, b) { return asc ? key(a) - key(b) : key(b) - key(a); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.dataset.reportReady = "1";
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_markup_quotes_and_controls() {
        assert_eq!(escape("<b>&\"'</b>"), "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;");
        assert_eq!(escape("a\u{1}b\nc"), "a\\x01b\nc");
    }

    #[test]
    fn script_json_cannot_close_the_script_block() {
        let s = script_json(&vec!["</script><script>alert(1)</script>"]);
        assert!(!s.contains("</"), "{s}");
        let back: Vec<String> = serde_json::from_str(&s).unwrap();
        assert_eq!(back[0], "</script><script>alert(1)</script>");
    }

    #[test]
    fn same_step_runs_find_adjacent_positions_of_one_step() {
        let check = |steps: &[i32], expected: &[std::ops::Range<usize>]| {
            assert_eq!(same_step_runs(steps), expected, "{steps:?}")
        };
        check(&[0, 0, 1, 2, 2, 2, 3], &[0..2, 3..6]);
        check(&[0, 1, 2], &[]);
        check(&[-1, -1, 4, 4], std::slice::from_ref(&(2..4)));
        check(&[], &[]);
        check(&[5, 5], std::slice::from_ref(&(0..2)));
    }
}
