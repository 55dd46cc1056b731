//! The figures: which ones a report has, the data each one takes, and how each is drawn.
//!
//! Every figure is drawn by plotters into an SVG string in quarter-point units
//! (see [`crate::render`]); a figure whose data is absent is skipped, never drawn empty.

use std::collections::BTreeMap;

use cp_records::{CurvePoint, Metric, ProbeRecord};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::ReportError;
use crate::inputs::{split_metric_name, RankSource, ReportInputs, RunData, TokenRanks};
use crate::render::{set_size_in_points, UNITS_PER_PT};
use crate::style::{
    display_token, rank_bin_labels, rank_colours, series_colour, ColumnWidth, END_TOKEN_FILL,
    LABEL_PT, RANK_RAMP, TICK_PT, TITLE_PT,
};

/// Curve names the analysis writes (see crates/analysis METRICS.md).
pub mod curves {
    pub const ENTROPY: &str = "entropy";
    pub const FREQUENT_SHARE: &str = "frequent_share";
    pub const EOT_SHARE: &str = "eot_share";
    pub const GENERIC_SHARE: &str = "generic_share";
    pub const KL_UNIGRAM: &str = "kl_unigram";
    pub const XENT_UNIGRAM: &str = "xent_unigram";
    pub const JS_ADJACENT: &str = "js_adjacent";
    pub const UNSEEN_RATE: &str = "unseen_rate";
    pub const CORRUPT_NLL_BY_DECILE: &str = "corrupt_nll_by_decile";
    pub const CORRUPT_NLL_BY_RATIO: &str = "corrupt_nll_by_ratio";
    pub const CORRUPT_CONCENTRATION: &str = "corrupt_concentration";
    pub const CORRUPT_CONTEXT_GAIN: &str = "corrupt_context_gain";
}

/// Fraction of positions whose top-1 token is a frequent one above which the report marks collapse onset
/// when the analysis gives no onset metric.
pub const ONSET_SHARE: f64 = 0.5;

/// One drawn figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable name used in file names (`entropy`, `frequent_share`, `top_tokens`, ...).
    pub name: String,
    pub width: ColumnWidth,
    /// The SVG document (size in points).
    pub svg: String,
    /// A one-sentence caption: what is plotted, and how to read it.
    pub caption: String,
}

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(crate) fn u(pt: f64) -> i32 {
    (pt * UNITS_PER_PT).round() as i32
}

/// A text style of `pt` points (plotters writes `font-size = size / 1.24`).
pub(crate) fn font(pt: f64) -> TextStyle<'static> {
    ("sans-serif", pt * UNITS_PER_PT * 1.24)
        .into_font()
        .color(&BLACK)
}

pub(crate) fn draw_err<E: std::fmt::Debug>(figure: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Draw {
        figure: figure.to_owned(),
        message: format!("{e:?}"),
    }
}

/// Draws into a fresh SVG of `width` × `height_pt` points.
pub(crate) fn draw_svg(
    figure: &str,
    width: ColumnWidth,
    height_pt: f64,
    draw: impl FnOnce(&Area) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    crate::render::register_plotters_font();
    let (w, h) = (u(width.width_pt()) as u32, u(height_pt) as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(figure))?;
        draw(&root)?;
        root.present().map_err(draw_err(figure))?;
    }
    Ok(set_size_in_points(&svg, w, h))
}

// ---------------------------------------------------------------------------
// Legends: a strip above the plot, wrapped into rows, so a legend never hides data.

#[derive(Clone, Copy)]
pub(crate) enum Swatch {
    Line,
    Dashed,
    Box,
}

pub(crate) struct LegendItem {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    pub(crate) swatch: Swatch,
}

const SWATCH_PT: f64 = 12.0;
pub(crate) const LEGEND_ROW_PT: f64 = LABEL_PT * 1.5;

fn legend_layout(
    area: &Area,
    items: &[LegendItem],
    figure: &str,
) -> Result<Vec<Vec<(usize, i32)>>, ReportError> {
    let width = area.dim_in_pixel().0 as i32;
    let style = font(TICK_PT);
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut x = 0;
    for (i, item) in items.iter().enumerate() {
        let text_w = area
            .estimate_text_size(&item.label, &style)
            .map_err(draw_err(figure))?
            .0 as i32;
        let item_w = u(SWATCH_PT + 3.0) + text_w + u(8.0);
        if x + item_w > width && x > 0 {
            rows.push(Vec::new());
            x = 0;
        }
        rows.last_mut().expect("one row").push((i, x));
        x += item_w;
    }
    Ok(rows)
}

pub(crate) fn legend_height_pt(
    area: &Area,
    items: &[LegendItem],
    figure: &str,
) -> Result<f64, ReportError> {
    if items.len() < 2 {
        return Ok(0.0);
    }
    Ok(legend_layout(area, items, figure)?.len() as f64 * LEGEND_ROW_PT + 2.0)
}

pub(crate) fn draw_legend(
    area: &Area,
    items: &[LegendItem],
    figure: &str,
) -> Result<(), ReportError> {
    let rows = legend_layout(area, items, figure)?;
    let style = font(TICK_PT).pos(Pos::new(HPos::Left, VPos::Center));
    let left = u(6.0);
    for (r, row) in rows.iter().enumerate() {
        let y = u(LEGEND_ROW_PT * (r as f64 + 0.5) + 1.0);
        for &(i, x) in row {
            let item = &items[i];
            let (x0, x1) = (left + x, left + x + u(SWATCH_PT));
            match item.swatch {
                Swatch::Line => area
                    .draw(&PathElement::new(
                        vec![(x0, y), (x1, y)],
                        item.colour.stroke_width(u(1.2) as u32),
                    ))
                    .map_err(draw_err(figure))?,
                Swatch::Dashed => {
                    let dash = u(2.5);
                    let mut xs = x0;
                    while xs < x1 {
                        area.draw(&PathElement::new(
                            vec![(xs, y), ((xs + dash).min(x1), y)],
                            item.colour.stroke_width(u(1.0) as u32),
                        ))
                        .map_err(draw_err(figure))?;
                        xs += 2 * dash;
                    }
                }
                Swatch::Box => area
                    .draw(&Rectangle::new(
                        [(x0, y - u(3.0)), (x1, y + u(3.0))],
                        item.colour.filled(),
                    ))
                    .map_err(draw_err(figure))?,
            }
            area.draw(&Text::new(
                item.label.clone(),
                (x1 + u(3.0), y),
                style.clone(),
            ))
            .map_err(draw_err(figure))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Line charts with interquartile bands.

/// One line of a line chart.
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    pub(crate) points: Vec<CurvePoint>,
    pub(crate) markers: bool,
}

/// One panel of a line-chart figure.
pub(crate) struct Panel {
    pub(crate) title: Option<String>,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) lines: Vec<Line>,
    /// Fixed y range (e.g. 0–1 for fractions); otherwise from the data, starting at zero.
    pub(crate) y_range: Option<(f64, f64)>,
    /// Vertical marker lines: x, label, colour.
    pub(crate) markers: Vec<(f64, String, RGBColor)>,
    /// Draw the interquartile band (q25–q75) behind each line.
    pub(crate) bands: bool,
    /// The points' x are log2 of the value; ticks are labelled with the value (1, 2, 4, ...).
    pub(crate) log2_x: bool,
}

pub(crate) fn nice_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if a >= 1000.0 || a.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn data_range(panel: &Panel) -> Option<((f64, f64), (f64, f64))> {
    let pts = panel.lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in pts {
        x0 = x0.min(p.x);
        x1 = x1.max(p.x);
        let (lo, hi) = if panel.bands {
            (p.mean.min(p.q25), p.mean.max(p.q75))
        } else {
            (p.mean, p.mean)
        };
        if lo.is_finite() {
            y0 = y0.min(lo);
        }
        if hi.is_finite() {
            y1 = y1.max(hi);
        }
    }
    if !x0.is_finite() || !y0.is_finite() {
        return None;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    // Lone points (one per schedule) would sit on the frame's edges: leave a margin.
    if panel.lines.iter().all(|l| l.points.len() <= 1) {
        let pad = (x1 - x0) * 0.08;
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let (y0, y1) = match panel.y_range {
        Some(r) => r,
        None => {
            // Information quantities and rates are non-negative: anchor the axis at zero so curves compare by height.
            let lo = y0.min(0.0);
            let hi = if y1 > lo {
                y1 + (y1 - lo) * 0.06
            } else {
                lo + 1.0
            };
            (lo, hi)
        }
    };
    Some(((x0, x1), (y0, y1)))
}

fn draw_panel(area: &Area, panel: &Panel, figure: &str) -> Result<(), ReportError> {
    let Some(((x0, x1), (y0, y1))) = data_range(panel) else {
        return Ok(());
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(u(4.0))
        .margin_right(u(6.0))
        .margin_left(u(2.0))
        .margin_bottom(u(2.0))
        .x_label_area_size(u(TICK_PT + LABEL_PT + 8.0))
        .y_label_area_size(u(TICK_PT * 2.2 + LABEL_PT + 6.0));
    if let Some(title) = &panel.title {
        builder.caption(title, font(TITLE_PT));
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err(figure))?;
    let grid = RGBColor(0xDD, 0xDD, 0xDD);
    let log2_x = panel.log2_x;
    // A parameter with whole values only (masks, steps) gets no fractional tick labels.
    let integral_x = !log2_x
        && panel
            .lines
            .iter()
            .flat_map(|l| &l.points)
            .all(|p| p.x.fract() == 0.0);
    let x_fmt = move |v: &f64| {
        if integral_x && v.fract().abs() > 1e-9 {
            String::new()
        } else if !log2_x {
            nice_label(*v)
        } else if (v - v.round()).abs() < 1e-9 {
            nice_label(v.round().exp2())
        } else {
            // Only whole powers of two are labelled on a log2 axis.
            String::new()
        }
    };
    let y_fmt = |v: &f64| nice_label(*v);
    chart
        .configure_mesh()
        .bold_line_style(grid.stroke_width(u(0.4) as u32))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(u(0.6) as u32))
        .set_all_tick_mark_size(u(2.5))
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(font(TICK_PT))
        .axis_desc_style(font(LABEL_PT))
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .draw()
        .map_err(draw_err(figure))?;

    if panel.bands {
        for line in &panel.lines {
            let upper = line.points.iter().map(|p| (p.x, p.q75.clamp(y0, y1)));
            let lower = line.points.iter().rev().map(|p| (p.x, p.q25.clamp(y0, y1)));
            let polygon: Vec<(f64, f64)> = upper.chain(lower).collect();
            if line.points.len() > 1 {
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        polygon,
                        line.colour.mix(0.18).filled(),
                    )))
                    .map_err(draw_err(figure))?;
            }
        }
    }
    for (i, (x, label, colour)) in panel.markers.iter().enumerate() {
        if *x < x0 || *x > x1 {
            continue;
        }
        let top = y1 - (y1 - y0) * 0.02;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*x, y0), (*x, top)],
                u(3.0) as u32,
                u(2.0) as u32,
                colour.stroke_width(u(0.8) as u32),
            ))
            .map_err(draw_err(figure))?;
        let right_side = (*x - x0) > (x1 - x0) * 0.7;
        let anchor = if right_side { HPos::Right } else { HPos::Left };
        let (px, py) = chart.backend_coord(&(*x, top));
        let dx = if right_side { -u(2.0) } else { u(2.0) };
        // Backend coordinates are absolute; the panel's own area starts at its pixel-range origin.
        let (ax, ay) = (
            area.get_pixel_range().0.start,
            area.get_pixel_range().1.start,
        );
        area.draw(&Text::new(
            label.clone(),
            // Labels of several runs step down one line each, so close onsets stay readable.
            (px + dx - ax, py - ay + i as i32 * u(TICK_PT * 1.3)),
            font(TICK_PT).color(colour).pos(Pos::new(anchor, VPos::Top)),
        ))
        .map_err(draw_err(figure))?;
    }
    for line in &panel.lines {
        let pts: Vec<(f64, f64)> = line.points.iter().map(|p| (p.x, p.mean)).collect();
        chart
            .draw_series(LineSeries::new(
                pts.clone(),
                line.colour.stroke_width(u(1.1) as u32),
            ))
            .map_err(draw_err(figure))?;
        if line.markers {
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| Circle::new(p, u(1.6), line.colour.filled())),
                )
                .map_err(draw_err(figure))?;
        }
    }
    Ok(())
}

/// Draws line-chart panels side by side (double width) or stacked (single width) under one legend.
pub(crate) fn line_figure(
    name: &str,
    width: ColumnWidth,
    panels: &[Panel],
    legend: &[LegendItem],
) -> Result<String, ReportError> {
    let stacked = width == ColumnWidth::Single && panels.len() > 1;
    let base = width.line_height_pt();
    let panel_h = if stacked { base * 0.85 } else { base };
    // The legend's height depends on text widths, so it is measured on a scratch area first.
    let mut scratch = String::new();
    let legend_pt = {
        crate::render::register_plotters_font();
        let area = SVGBackend::with_string(&mut scratch, (u(width.width_pt()) as u32, 10))
            .into_drawing_area();
        legend_height_pt(&area, legend, name)?
    };
    let height = legend_pt
        + if stacked {
            panel_h * panels.len() as f64
        } else {
            panel_h
        };
    draw_svg(name, width, height, |root| {
        let (top, body) = root.split_vertically(u(legend_pt));
        if legend_pt > 0.0 {
            draw_legend(&top, legend, name)?;
        }
        let areas = if stacked {
            body.split_evenly((panels.len(), 1))
        } else {
            body.split_evenly((1, panels.len()))
        };
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, panel, name)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Which data each figure takes.

/// The series of `curve` across runs, labelled for a legend shared by all runs.
fn run_lines(runs: &[RunData], curve: &str, markers: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    for run in runs {
        let series = run.curve(curve);
        let several = series.len() > 1;
        for (s, points) in series {
            let label = match (runs.len() > 1, several) {
                (true, true) => format!("{} {s}", run.label),
                (true, false) => run.label.clone(),
                (false, true) => s.clone(),
                (false, false) => {
                    if s == "all" {
                        run.label.clone()
                    } else {
                        s.clone()
                    }
                }
            };
            lines.push(Line {
                label,
                colour: series_colour(lines.len()),
                points,
                markers,
            });
        }
    }
    lines
}

/// Per-distance mean and quartiles of one probe column, for when the analysis has no such curve.
fn probe_curve(
    records: &[ProbeRecord],
    curve: &str,
    value: impl Fn(&ProbeRecord) -> Option<f32>,
) -> Vec<CurvePoint> {
    let mut by_distance: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for r in records {
        if let Some(v) = value(r).filter(|v| v.is_finite()) {
            by_distance
                .entry(r.distance)
                .or_default()
                .push(f64::from(v));
        }
    }
    by_distance
        .into_iter()
        .map(|(d, mut vs)| {
            vs.sort_by(f64::total_cmp);
            let q = |p: f64| {
                // Linear interpolation between order statistics (numpy's default).
                let h = p * (vs.len() - 1) as f64;
                let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
                vs[lo] + (vs[hi] - vs[lo]) * (h - lo as f64)
            };
            CurvePoint {
                curve: curve.to_owned(),
                series: "all".into(),
                x: f64::from(d),
                mean: vs.iter().sum::<f64>() / vs.len() as f64,
                median: q(0.5),
                q25: q(0.25),
                q75: q(0.75),
                n: vs.len() as u64,
            }
        })
        .collect()
}

/// The lines of `curve`: from the analyses, or computed from the probe records when no analysis has it.
fn lines_or_probe(
    inputs: &ReportInputs,
    curve: &str,
    value: impl Fn(&ProbeRecord) -> Option<f32>,
) -> Vec<Line> {
    let lines = run_lines(&inputs.runs, curve, false);
    if !lines.is_empty() {
        return lines;
    }
    match &inputs.probe {
        Some(probe) => {
            let points = probe_curve(&probe.records, curve, value);
            if points.is_empty() {
                return Vec::new();
            }
            vec![Line {
                label: "probe".into(),
                colour: series_colour(0),
                points,
                markers: false,
            }]
        }
        None => Vec::new(),
    }
}

pub(crate) fn legend_for(lines: &[Line]) -> Vec<LegendItem> {
    lines
        .iter()
        .map(|l| LegendItem {
            label: l.label.clone(),
            colour: l.colour,
            swatch: Swatch::Line,
        })
        .collect()
}

/// The collapse onset of a run: the analysis's `collapse.onset` if it has one, else the first distance
/// where the mean generic (else frequent) share reaches [`ONSET_SHARE`].
pub fn collapse_onset(run: &RunData) -> Option<(f64, &'static str)> {
    if let Some(m) = run.metrics.as_ref().and_then(|m| {
        m.metrics
            .iter()
            .find(|m| split_metric_name(&m.name).0 == "collapse.onset")
    }) {
        if m.value.is_finite() {
            return Some((m.value, "analysis"));
        }
    }
    let mut series = run.curve(curves::GENERIC_SHARE);
    if series.is_empty() {
        series = run.curve(curves::FREQUENT_SHARE);
    }
    let (_, points) = series.iter().find(|(s, _)| s == "all").or(series.first())?;
    points
        .iter()
        .find(|p| p.mean >= ONSET_SHARE)
        .map(|p| (p.x, "threshold"))
}

const DISTANCE_LABEL: &str = "distance from prompt (tokens)";

fn entropy_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let lines = lines_or_probe(inputs, curves::ENTROPY, |r| Some(r.entropy));
    if lines.is_empty() {
        return Ok(None);
    }
    let panel = Panel {
        title: None,
        x_label: DISTANCE_LABEL.into(),
        y_label: "predictive entropy (nats)".into(),
        lines,
        y_range: None,
        markers: Vec::new(),
        bands: true,
        log2_x: false,
    };
    let legend = legend_for(&panel.lines);
    let svg = line_figure("entropy", width, std::slice::from_ref(&panel), &legend)?;
    Ok(Some(Figure {
        name: "entropy".into(),
        width,
        svg,
        caption: "Entropy of the model's predictive distribution at each mask position, by distance from the end of \
                  the prompt: mean over prompts (line) and interquartile range (band). Rising entropy far from the \
                  prompt means the model knows less about what goes there."
            .into(),
    }))
}

fn frequent_share_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    // One run: its two faces of collapse (frequent words, end tokens) and their union. Several
    // runs: the union (the share the onset is defined on), one line per run.
    let has = |curve| inputs.runs.iter().any(|r| !r.curve(curve).is_empty());
    let faces = [
        (curves::FREQUENT_SHARE, "frequent words"),
        (curves::EOT_SHARE, "end tokens"),
        (curves::GENERIC_SHARE, "either (generic share)"),
    ];
    // Without a single end token among the predictions the three lines would be two, one hiding
    // the other: then the frequent share alone is drawn.
    let end_tokens_predicted = inputs.runs.iter().any(|r| {
        r.curve(curves::EOT_SHARE)
            .iter()
            .any(|(_, points)| points.iter().any(|p| p.mean > 0.0))
    });
    let lines = if inputs.runs.len() == 1 && has(curves::GENERIC_SHARE) && end_tokens_predicted {
        let mut lines = Vec::new();
        for (curve, label) in faces {
            for mut line in run_lines(&inputs.runs, curve, false) {
                line.label = if line.label == inputs.runs[0].label {
                    label.to_string()
                } else {
                    format!("{label} {}", line.label)
                };
                line.colour = series_colour(lines.len());
                lines.push(line);
            }
        }
        lines
    } else if has(curves::GENERIC_SHARE) && end_tokens_predicted {
        run_lines(&inputs.runs, curves::GENERIC_SHARE, false)
    } else {
        run_lines(&inputs.runs, curves::FREQUENT_SHARE, false)
    };
    if lines.is_empty() {
        return Ok(None);
    }
    let mut markers = Vec::new();
    for run in &inputs.runs {
        if let Some((x, _)) = collapse_onset(run) {
            let colour = lines
                .iter()
                .find(|l| l.label.starts_with(&run.label))
                .map(|l| l.colour)
                .unwrap_or(BLACK);
            let label = if inputs.runs.len() > 1 {
                format!("onset {} = {}", run.label, nice_label(x))
            } else {
                format!("onset = {}", nice_label(x))
            };
            markers.push((x, label, colour));
        }
    }
    let panel = Panel {
        title: None,
        x_label: DISTANCE_LABEL.into(),
        y_label: "share of top-k that is generic (fraction)".into(),
        lines,
        y_range: Some((0.0, 1.0)),
        markers,
        bands: false,
        log2_x: false,
    };
    let mut legend = legend_for(&panel.lines);
    if !panel.markers.is_empty() && legend.len() > 1 {
        legend.push(LegendItem {
            label: "collapse onset".into(),
            colour: BLACK,
            swatch: Swatch::Dashed,
        });
    }
    let svg = line_figure(
        "frequent_share",
        width,
        std::slice::from_ref(&panel),
        &legend,
    )?;
    Ok(Some(Figure {
        name: "frequent_share".into(),
        width,
        svg,
        caption: format!(
            "Share of each mask position's top-k predictions that are generic, by distance from the prompt: one of \
             the corpus's most frequent tokens, an end-of-text / end-of-turn / padding token, or either (the \
             generic share, on which the onset is defined). The dashed line marks the collapse onset (the analysis's \
             onset metric, or else the first distance where the share reaches {ONSET_SHARE})."
        ),
    }))
}

fn divergence_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let kl = lines_or_probe(inputs, curves::KL_UNIGRAM, |r| r.kl_unigram);
    let js = lines_or_probe(inputs, curves::JS_ADJACENT, |r| r.js_prev);
    let mut panels = Vec::new();
    let mut legend = Vec::new();
    for (lines, y_label, title) in [
        (kl, "KL(p ‖ unigram) (nats)", "KL to corpus unigram"),
        (js, "JS(p_d, p_{d−1}) (nats)", "JS to previous position"),
    ] {
        if lines.is_empty() {
            continue;
        }
        if legend.is_empty() {
            legend = legend_for(&lines);
        }
        panels.push(Panel {
            title: Some(title.into()),
            x_label: DISTANCE_LABEL.into(),
            y_label: y_label.replace("p_{d−1}", "p_d−1"),
            lines,
            y_range: None,
            markers: Vec::new(),
            bands: true,
            log2_x: false,
        });
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let svg = line_figure("divergence", width, &panels, &legend)?;
    Ok(Some(Figure {
        name: "divergence".into(),
        width,
        svg,
        caption: "Left: KL divergence from each position's predictive distribution to the corpus unigram distribution \
                  (falling towards zero = the model predicts corpus frequencies, i.e. frequency collapse). Right: \
                  Jensen–Shannon divergence between adjacent mask positions (near zero = neighbouring positions \
                  predict the same distribution). Line: mean over prompts; band: interquartile range."
            .into(),
    }))
}

fn unseen_rate_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let lines = run_lines(&inputs.runs, curves::UNSEEN_RATE, true);
    if lines.is_empty() {
        return Ok(None);
    }
    let panel = Panel {
        title: None,
        x_label: "distance of the n-gram's first token (tokens)".into(),
        y_label: "unseen n-gram rate (fraction)".into(),
        lines,
        y_range: None,
        markers: Vec::new(),
        bands: false,
        log2_x: false,
    };
    let legend = legend_for(&panel.lines);
    let svg = line_figure("unseen_rate", width, std::slice::from_ref(&panel), &legend)?;
    Ok(Some(Figure {
        name: "unseen_rate".into(),
        width,
        svg,
        caption: "Fraction of generated n-grams that never occur in the reference corpus, by the distance of the \
                  n-gram's first token from the prompt (one line per n and run). Compare runs with different \
                  tokens per step: a rate that grows with tokens per step is the marginal trap."
            .into(),
    }))
}

// ---------------------------------------------------------------------------
// Metrics against a parameter: the parallelism trade-off and sweeps.

/// A line of one metric against a parameter: (x, value, standard error) points, sorted by x,
/// drawn with a ±1 standard error band.
fn metric_line(
    label: String,
    colour: RGBColor,
    mut points: Vec<(f64, f64, Option<f64>)>,
    log2_x: bool,
) -> Line {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let points = points
        .into_iter()
        .map(|(x, v, se)| {
            let se = se.filter(|s| s.is_finite()).unwrap_or(0.0);
            CurvePoint {
                curve: String::new(),
                series: String::new(),
                x: if log2_x { x.log2() } else { x },
                mean: v,
                median: v,
                q25: v - se,
                q75: v + se,
                n: 0,
            }
        })
        .collect();
    Line {
        label,
        colour,
        points,
        markers: true,
    }
}

/// True when a positive parameter spans a factor of 8 or more: it is drawn on a log2 axis.
fn wants_log2(xs: impl Iterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for x in xs {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    lo > 0.0 && hi / lo >= 8.0
}

/// The n of an unseen-n-gram-rate metric name (`trap.unseen_3gram_rate` → 3).
fn unseen_order(base: &str) -> Option<u32> {
    base.strip_prefix("trap.unseen_")?
        .strip_suffix("gram_rate")?
        .parse()
        .ok()
}

const TOKENS_PER_STEP_METRIC: &str = "trap.tokens_per_step";

/// A plotted point: x, y and y's standard error when it has one.
type Point = (f64, f64, Option<f64>);

/// Unseen n-gram rate against the mean number of tokens committed per step, one line per n and
/// per schedule (and run). Points come from the sweep when there is one (a line per swept
/// schedule), else from every decode folder of every analysis (one point per schedule).
fn tradeoff_points(inputs: &ReportInputs) -> BTreeMap<(String, u32), Vec<Point>> {
    // (series, group) -> metrics of one decode run
    let mut groups: BTreeMap<(String, String), Vec<&Metric>> = BTreeMap::new();
    match &inputs.sweep {
        Some(sweep) => {
            for m in &sweep.metrics {
                if let Some((_, schedule, value)) = sweep.value_of(&m.name) {
                    groups
                        .entry((schedule, format!("{value}")))
                        .or_default()
                        .push(m);
                }
            }
        }
        None => {
            let several = inputs.runs.len() > 1;
            for run in &inputs.runs {
                let Some(file) = &run.metrics else { continue };
                for m in &file.metrics {
                    // One series per schedule: a line between different samplers would
                    // suggest a curve that no one decoded.
                    let group = split_metric_name(&m.name).1.join("@");
                    let series = match (several, group.is_empty()) {
                        (true, true) => run.label.clone(),
                        (true, false) => format!("{}, {group}", run.label),
                        (false, _) => group.clone(),
                    };
                    groups.entry((series, group)).or_default().push(m);
                }
            }
        }
    }
    let mut out: BTreeMap<(String, u32), Vec<Point>> = BTreeMap::new();
    for ((series, _), metrics) in &groups {
        let Some(tps) = metrics
            .iter()
            .find(|m| split_metric_name(&m.name).0 == TOKENS_PER_STEP_METRIC)
        else {
            continue;
        };
        if !(tps.value.is_finite() && tps.value > 0.0) {
            continue;
        }
        for m in metrics {
            if let Some(n) =
                unseen_order(split_metric_name(&m.name).0).filter(|_| m.value.is_finite())
            {
                out.entry((series.clone(), n))
                    .or_default()
                    .push((tps.value, m.value, m.stderr));
            }
        }
    }
    out
}

fn tradeoff_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let points = tradeoff_points(inputs);
    let xs = || points.values().flatten().map(|p| p.0);
    let mut distinct: Vec<f64> = xs().collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 2 {
        return Ok(None);
    }
    let log2_x = wants_log2(xs());
    // One panel per n-gram order; each schedule keeps its colour across panels.
    let series: Vec<&String> = points
        .keys()
        .map(|(s, _)| s)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let orders: Vec<u32> = points
        .keys()
        .map(|(_, n)| *n)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let colour_of = |s: &String| series_colour(series.iter().position(|x| *x == s).unwrap_or(0));
    let panels: Vec<Panel> = orders
        .iter()
        .map(|&n| Panel {
            title: (orders.len() > 1).then(|| format!("{n}-grams")),
            x_label: if log2_x {
                "tokens committed per step (log scale)"
            } else {
                "tokens committed per step"
            }
            .into(),
            y_label: format!("unseen {n}-gram rate (fraction)"),
            lines: points
                .iter()
                .filter(|((_, order), _)| *order == n)
                .map(|((s, _), pts)| {
                    let label = if s.is_empty() {
                        format!("{n}-grams")
                    } else {
                        s.clone()
                    };
                    metric_line(label, colour_of(s), pts.clone(), log2_x)
                })
                .collect(),
            y_range: None,
            markers: Vec::new(),
            bands: true,
            log2_x,
        })
        .collect();
    // The legend names each schedule once (or each order, when there are no schedules).
    let mut legend = Vec::new();
    for p in &panels {
        for item in legend_for(&p.lines) {
            if !legend.iter().any(|l: &LegendItem| l.label == item.label) {
                legend.push(item);
            }
        }
    }
    let svg = line_figure("tradeoff", width, &panels, &legend)?;
    Ok(Some(Figure {
        name: "tradeoff".into(),
        width,
        svg,
        caption: "The parallelism trade-off: fraction of generated n-grams that never occur in the reference corpus \
                  against the mean number of tokens committed per decoding step (one point per schedule or swept \
                  value; band: ±1 bootstrap standard error). A rate that climbs with tokens per step is the \
                  marginal trap: tokens sampled together from independent marginals form combinations the corpus \
                  never has."
            .into(),
    }))
}

/// The sweep figure's panels: a y label and the metrics it draws, each with its legend name.
fn sweep_panels() -> Vec<(&'static str, Vec<(String, String)>)> {
    let unseen = (1..=8)
        .map(|n| (format!("trap.unseen_{n}gram_rate"), format!("{n}-grams")))
        .collect();
    let named = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(m, l)| (m.to_string(), l.to_string()))
            .collect()
    };
    vec![
        ("unseen n-gram rate (fraction)", unseen),
        (
            "repetition (fraction)",
            named(&[
                ("trap.adjacent_duplicate_rate", "adjacent duplicates"),
                ("trap.rep_2", "rep-2"),
            ]),
        ),
        (
            "frequent-token share (fraction)",
            named(&[
                ("collapse.frequent_share.near", "near prompt"),
                ("collapse.frequent_share.far", "far from prompt"),
            ]),
        ),
        (
            "predictive entropy (nats)",
            named(&[
                ("collapse.entropy.near", "near prompt"),
                ("collapse.entropy.far", "far from prompt"),
            ]),
        ),
    ]
}

/// Axis label of a swept parameter.
fn sweep_axis_label(param: &str) -> String {
    match param {
        "masks" => "masks appended to the prompt".into(),
        "tokens_per_step" => "tokens committed per step (swept)".into(),
        "steps" => "decoding steps".into(),
        "threshold" => "confidence threshold τ".into(),
        other => other.replace('_', " "),
    }
}

fn sweep_figure(inputs: &ReportInputs, width: ColumnWidth) -> Result<Option<Figure>, ReportError> {
    let Some(sweep) = &inputs.sweep else {
        return Ok(None);
    };
    let log2_x = sweep.param != "threshold"
        && wants_log2(
            sweep
                .metrics
                .iter()
                .filter_map(|m| sweep.value_of(&m.name))
                .map(|v| v.2),
        );
    let mut panels = Vec::new();
    let mut legend_labels: Vec<String> = Vec::new();
    for (y_label, wanted) in sweep_panels() {
        // (metric, schedule) -> points
        let mut series: BTreeMap<(usize, String), Vec<Point>> = BTreeMap::new();
        for m in &sweep.metrics {
            let Some((base, schedule, value)) = sweep.value_of(&m.name) else {
                continue;
            };
            if let Some(i) = wanted
                .iter()
                .position(|(name, _)| name == base)
                .filter(|_| m.value.is_finite())
            {
                series
                    .entry((i, schedule))
                    .or_default()
                    .push((value, m.value, m.stderr));
            }
        }
        series.retain(|_, pts| pts.len() >= 2);
        if series.is_empty() {
            continue;
        }
        let lines: Vec<Line> = series
            .into_iter()
            .map(|((i, schedule), pts)| {
                let label = if schedule.is_empty() {
                    wanted[i].1.clone()
                } else {
                    format!("{}, {schedule}", wanted[i].1)
                };
                // One colour per legend entry across panels.
                let colour = match legend_labels.iter().position(|l| *l == label) {
                    Some(c) => series_colour(c),
                    None => {
                        legend_labels.push(label.clone());
                        series_colour(legend_labels.len() - 1)
                    }
                };
                metric_line(label, colour, pts, log2_x)
            })
            .collect();
        panels.push(Panel {
            title: None,
            x_label: if log2_x {
                format!("{} (log scale)", sweep_axis_label(&sweep.param))
            } else {
                sweep_axis_label(&sweep.param)
            },
            y_label: y_label.into(),
            lines,
            y_range: None,
            markers: Vec::new(),
            bands: true,
            log2_x,
        });
        if panels.len() == 3 {
            break;
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let mut legend: Vec<LegendItem> = Vec::new();
    for line in panels.iter().flat_map(|p| &p.lines) {
        if !legend.iter().any(|l| l.label == line.label) {
            legend.push(LegendItem {
                label: line.label.clone(),
                colour: line.colour,
                swatch: Swatch::Line,
            });
        }
    }
    let svg = line_figure("sweep", width, &panels, &legend)?;
    Ok(Some(Figure {
        name: "sweep".into(),
        width,
        svg,
        caption: format!(
            "Headline metrics against the swept parameter `{}` (one point per value; band: ±1 bootstrap \
             standard error over prompts).",
            sweep.param
        ),
    }))
}

/// Metric names of the same-step / different-step unseen-bigram comparison (crates/analysis/METRICS.md).
pub const SAME_STEP_METRIC: &str = "trap.same_step_unseen_bigram_rate";
pub const DIFF_STEP_METRIC: &str = "trap.diff_step_unseen_bigram_rate";

/// The same-step and different-step unseen-bigram rates of every decode folder of a run: its
/// `@label` (empty when the analysis had one decode folder) and whichever of the two it has. A
/// schedule committing one token per step has no same-step pairs, one committing all at once no
/// different-step pairs, so either may be absent; the two are never taken from different folders.
pub fn same_vs_cross(run: &RunData) -> Vec<(String, Option<Metric>, Option<Metric>)> {
    let mut out: Vec<(String, Option<Metric>, Option<Metric>)> = Vec::new();
    let Some(file) = &run.metrics else { return out };
    for m in file.metrics.iter().filter(|m| m.value.is_finite()) {
        let (base, label) = m.name.split_once('@').unwrap_or((m.name.as_str(), ""));
        let same = base == SAME_STEP_METRIC;
        if !same && base != DIFF_STEP_METRIC {
            continue;
        }
        let i = match out.iter().position(|(l, _, _)| l == label) {
            Some(i) => i,
            None => {
                out.push((label.to_owned(), None, None));
                out.len() - 1
            }
        };
        if same {
            out[i].1 = Some(m.clone());
        } else {
            out[i].2 = Some(m.clone());
        }
    }
    out
}

fn same_step_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let several = inputs.runs.len() > 1;
    let groups: Vec<(String, Option<Metric>, Option<Metric>)> = inputs
        .runs
        .iter()
        .flat_map(|r| {
            same_vs_cross(r).into_iter().map(move |(label, s, c)| {
                let name = match (several, label.is_empty()) {
                    (_, true) => r.label.clone(),
                    (true, false) => format!("{} · {label}", r.label),
                    (false, false) => label,
                };
                (name, s, c)
            })
        })
        .collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let name = "same_step";
    let colours = [series_colour(1), series_colour(0)];
    let legend = vec![
        LegendItem {
            label: "pairs committed in the same step".into(),
            colour: colours[0],
            swatch: Swatch::Box,
        },
        LegendItem {
            label: "pairs committed in different steps".into(),
            colour: colours[1],
            swatch: Swatch::Box,
        },
    ];
    let mut scratch = String::new();
    let legend_pt = {
        crate::render::register_plotters_font();
        let area = SVGBackend::with_string(&mut scratch, (u(width.width_pt()) as u32, 10))
            .into_drawing_area();
        legend_height_pt(&area, &legend, name)?
    };
    let height = legend_pt + width.line_height_pt();
    let y_max = groups
        .iter()
        .flat_map(|(_, s, c)| [s, c])
        .flatten()
        .map(|m| m.value + m.stderr.unwrap_or(0.0))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.12 } else { 1.0 };
    let svg = draw_svg(name, width, height, |root| {
        let (top, body) = root.split_vertically(u(legend_pt));
        draw_legend(&top, &legend, name)?;
        let n = groups.len() as f64;
        let mut chart = ChartBuilder::on(&body)
            .margin_top(u(4.0))
            .margin_right(u(6.0))
            .margin_left(u(2.0))
            .x_label_area_size(u(TICK_PT + 6.0))
            .y_label_area_size(u(TICK_PT * 2.2 + LABEL_PT + 6.0))
            .build_cartesian_2d(0.0..n, 0.0..y_max)
            .map_err(draw_err(name))?;
        let y_fmt = |v: &f64| nice_label(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD).stroke_width(u(0.4) as u32))
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK.stroke_width(u(0.6) as u32))
            .set_all_tick_mark_size(u(2.5))
            .y_labels(5)
            .y_label_formatter(&y_fmt)
            .label_style(font(TICK_PT))
            .axis_desc_style(font(LABEL_PT))
            .y_desc("unseen bigram rate (fraction)")
            .draw()
            .map_err(draw_err(name))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (n, 0.0)],
                BLACK.stroke_width(u(0.6) as u32),
            )))
            .map_err(draw_err(name))?;
        for (g, (label, same, cross)) in groups.iter().enumerate() {
            let g = g as f64;
            for (b, (m, colour)) in [(same, colours[0]), (cross, colours[1])]
                .into_iter()
                .enumerate()
            {
                // A schedule without pairs of this kind gets no bar.
                let Some(m) = m else { continue };
                let x0 = g + 0.18 + 0.32 * b as f64;
                let x1 = x0 + 0.30;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x1, m.value)],
                        colour.filled(),
                    )))
                    .map_err(draw_err(name))?;
                if let Some(se) = m.stderr.filter(|s| *s > 0.0) {
                    let xm = (x0 + x1) / 2.0;
                    let style = BLACK.stroke_width(u(0.7) as u32);
                    let (lo, hi) = ((m.value - se).max(0.0), m.value + se);
                    let cap = 0.05;
                    for seg in [
                        vec![(xm, lo), (xm, hi)],
                        vec![(xm - cap, lo), (xm + cap, lo)],
                        vec![(xm - cap, hi), (xm + cap, hi)],
                    ] {
                        chart
                            .draw_series(std::iter::once(PathElement::new(seg, style)))
                            .map_err(draw_err(name))?;
                    }
                }
            }
            // The root's coordinates are absolute, like the chart's backend coordinates.
            let (px, py) = chart.backend_coord(&(g + 0.5, 0.0));
            root.draw(&Text::new(
                label.clone(),
                (px, py + u(3.0)),
                font(TICK_PT).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err(name))?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        name: name.into(),
        width,
        svg,
        caption: "Unseen-bigram rate of adjacent generated pairs committed in the same parallel step against pairs \
                  committed in different steps, per decode folder (error bars: bootstrap standard error over \
                  prompts). A higher same-step bar is the marginal trap's signature; a schedule committing one \
                  token per step has no same-step pairs, one committing all at once no different-step pairs."
            .into(),
    }))
}

// ---------------------------------------------------------------------------
// The paper's view: top-3 tokens along the position axis, shaded by frequency rank.

/// Which distances get a column: all when they fit, else the first ones densely and the rest log-spaced
/// up to the last, so the far-field collapse stays in view.
pub fn grid_columns(distances: &[u32], max_cols: usize) -> Vec<u32> {
    let mut ds: Vec<u32> = distances.to_vec();
    ds.sort_unstable();
    ds.dedup();
    if ds.len() <= max_cols || max_cols < 4 {
        ds.truncate(max_cols.max(1));
        return ds;
    }
    let dense = (max_cols * 3).div_ceil(5);
    let sparse = max_cols - dense;
    let mut out: Vec<u32> = ds[..dense].to_vec();
    let rest = &ds[dense..];
    // Log-spaced indices into the remaining distances, always ending with the farthest.
    let (a, b) = (1.0f64, rest.len() as f64);
    for k in 1..=sparse {
        let t = k as f64 / sparse as f64;
        let idx = (a * (b / a).powf(t)).round() as usize - 1;
        let d = rest[idx.min(rest.len() - 1)];
        if out.last() != Some(&d) {
            out.push(d);
        }
    }
    out
}

fn top_tokens_figure(
    inputs: &ReportInputs,
    ranks: Option<&TokenRanks>,
    prompt: Option<&str>,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let Some(probe) = &inputs.probe else {
        return Ok(None);
    };
    let Some(prompt_id) = chosen_prompt(&probe.records, prompt)? else {
        return Ok(None);
    };
    let mut rows: Vec<&ProbeRecord> = probe
        .records
        .iter()
        .filter(|r| r.prompt_id == prompt_id)
        .collect();
    rows.sort_by_key(|r| r.distance);
    let k = rows
        .iter()
        .map(|r| r.top_tokens.len())
        .max()
        .unwrap_or(0)
        .min(3);
    if rows.is_empty() || k == 0 {
        return Ok(None);
    }
    let name = "top_tokens";
    let left_pt = 26.0;
    let min_cell_pt = 23.0;
    let max_cols = ((width.width_pt() - left_pt - 6.0) / min_cell_pt).floor() as usize;
    let distances: Vec<u32> = rows.iter().map(|r| r.distance).collect();
    let cols = grid_columns(&distances, max_cols);
    let gap_pt = 3.0;
    let gaps = cols.windows(2).filter(|w| w[1] != w[0] + 1).count() as f64;
    let cell_w_pt = (width.width_pt() - left_pt - 6.0 - gaps * gap_pt) / cols.len() as f64;
    let cell_h_pt = 13.0;
    let top_pt = 4.0;
    let grid_h = cell_h_pt * k as f64;
    let legend_h = 22.0;
    let height = top_pt + grid_h + TICK_PT + 4.0 + LABEL_PT + 6.0 + legend_h;
    let by_distance: BTreeMap<u32, &ProbeRecord> = rows.iter().map(|r| (r.distance, *r)).collect();
    let end_ids = inputs.end_ids().unwrap_or_default();
    let is_end = |id: Option<u32>| id.is_some_and(|id| end_ids.contains(&id));
    let shows_end = cols.iter().any(|d| {
        by_distance
            .get(d)
            .is_some_and(|rec| rec.top_ids.iter().take(k).any(|&id| is_end(Some(id))))
    });
    let source_label = match ranks.map(|r| &r.source) {
        Some(RankSource::Corpus(_)) => "corpus frequency rank",
        Some(RankSource::Predictions) => "frequency rank among predictions",
        None => "frequency rank",
    };
    let svg = draw_svg(name, width, height, |root| {
        let cell_font = font(6.5);
        let mut x = left_pt;
        for r in 0..k {
            let y = top_pt + cell_h_pt * (r as f64 + 0.5);
            root.draw(&Text::new(
                format!("top-{}", r + 1),
                (u(left_pt - 3.0), u(y)),
                font(TICK_PT).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_err(name))?;
        }
        for (c, &d) in cols.iter().enumerate() {
            if c > 0 && d != cols[c - 1] + 1 {
                // A gap marks skipped distances.
                root.draw(&Text::new(
                    "·",
                    (u(x + gap_pt / 2.0), u(top_pt + grid_h / 2.0)),
                    font(TICK_PT).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(draw_err(name))?;
                x += gap_pt;
            }
            let record = by_distance.get(&d);
            for r in 0..k {
                let y0 = top_pt + cell_h_pt * r as f64;
                let (token, id) = match record {
                    Some(rec) if r < rec.top_tokens.len() => {
                        (rec.top_tokens[r].as_str(), rec.top_ids.get(r).copied())
                    }
                    _ => ("", None),
                };
                let rank = id.and_then(|id| ranks.and_then(|t| t.rank(id)));
                let (fill, ink) = if is_end(id) {
                    (END_TOKEN_FILL, WHITE)
                } else {
                    rank_colours(rank)
                };
                root.draw(&Rectangle::new(
                    [
                        (u(x + 0.4), u(y0 + 0.4)),
                        (u(x + cell_w_pt - 0.4), u(y0 + cell_h_pt - 0.4)),
                    ],
                    fill.filled(),
                ))
                .map_err(draw_err(name))?;
                if id.is_some() {
                    let text = fit_token(root, token, &cell_font, u(cell_w_pt - 2.0), name)?;
                    root.draw(&Text::new(
                        text,
                        (u(x + cell_w_pt / 2.0), u(y0 + cell_h_pt / 2.0)),
                        cell_font
                            .color(&ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))
                    .map_err(draw_err(name))?;
                }
            }
            root.draw(&Text::new(
                d.to_string(),
                (u(x + cell_w_pt / 2.0), u(top_pt + grid_h + 2.0)),
                font(TICK_PT).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err(name))?;
            x += cell_w_pt;
        }
        let axis_y = top_pt + grid_h + TICK_PT + 4.0;
        root.draw(&Text::new(
            format!(
                "{DISTANCE_LABEL} — prompt {}",
                display_token(&prompt_id, 24)
            ),
            (u(left_pt + (width.width_pt() - left_pt) / 2.0), u(axis_y)),
            font(LABEL_PT).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_err(name))?;
        // The rank legend: one swatch per bin, most frequent first.
        let ly = axis_y + LABEL_PT + 8.0;
        let title = format!("{source_label}:");
        root.draw(&Text::new(
            title.clone(),
            (u(6.0), u(ly + 4.0)),
            font(TICK_PT).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_err(name))?;
        let title_w = root
            .estimate_text_size(&title, &font(TICK_PT))
            .map_err(draw_err(name))?
            .0 as f64
            / UNITS_PER_PT;
        let mut swatches: Vec<(RGBColor, String)> = rank_bin_labels()
            .into_iter()
            .map(|(bin, label)| (RANK_RAMP[bin], label))
            .collect();
        if shows_end {
            swatches.push((END_TOKEN_FILL, "end token".into()));
        }
        let avail = width.width_pt() - 6.0 - title_w - 10.0;
        let sw = (avail / swatches.len() as f64).min(40.0);
        let mut lx = 6.0 + title_w + 6.0;
        for (fill, label) in swatches {
            root.draw(&Rectangle::new(
                [(u(lx), u(ly)), (u(lx + sw - 1.0), u(ly + 8.0))],
                fill.filled(),
            ))
            .map_err(draw_err(name))?;
            root.draw(&Rectangle::new(
                [(u(lx), u(ly)), (u(lx + sw - 1.0), u(ly + 8.0))],
                RGBColor(0x99, 0x99, 0x99).stroke_width(u(0.3) as u32),
            ))
            .map_err(draw_err(name))?;
            root.draw(&Text::new(
                label,
                (u(lx + (sw - 1.0) / 2.0), u(ly + 9.0)),
                font(5.5).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err(name))?;
            lx += sw;
        }
        Ok(())
    })?;
    let end_note = if shows_end {
        "; blue cells are end-of-text, end-of-turn or padding tokens"
    } else {
        ""
    };
    let rank_note = match ranks.map(|r| &r.source) {
        Some(RankSource::Corpus(src)) => format!("their frequency rank in the reference corpus ({src})"),
        _ => "how often they appear among all the probe's top-k predictions (no corpus unigram table was given)".into(),
    };
    Ok(Some(Figure {
        name: name.into(),
        width,
        svg,
        caption: format!(
            "Top-{k} predicted tokens at each mask position of prompt `{prompt_id}`, shaded by {rank_note}; darker \
             = more frequent{end_note}. Columns after the first few are log-spaced distances (a dot marks skipped \
             ones). Frequency collapse shows as the drift from content words near the prompt to dark, frequent tokens \
             (or to end tokens) far from it."
        ),
    }))
}

/// Shortens a token until it fits `max_w` units in `style`.
fn fit_token(
    area: &Area,
    token: &str,
    style: &TextStyle,
    max_w: i32,
    figure: &str,
) -> Result<String, ReportError> {
    let mut max_chars = 12;
    loop {
        let text = display_token(token, max_chars);
        let w = area
            .estimate_text_size(&text, style)
            .map_err(draw_err(figure))?
            .0 as i32;
        if w <= max_w || max_chars <= 2 {
            return Ok(text);
        }
        max_chars -= 1;
    }
}

/// The prompt the token grid shows: the one asked for, else the first prompt in file order.
pub fn chosen_prompt(
    records: &[ProbeRecord],
    wanted: Option<&str>,
) -> Result<Option<String>, ReportError> {
    match wanted {
        Some(id) => {
            if records.iter().any(|r| r.prompt_id == id) {
                Ok(Some(id.to_owned()))
            } else {
                Err(ReportError::Options(format!(
                    "prompt `{id}` is not in the probe records"
                )))
            }
        }
        None => Ok(records
            .iter()
            .min_by_key(|r| (r.prompt_index, r.distance))
            .map(|r| r.prompt_id.clone())),
    }
}

/// Every figure the inputs allow, at every width asked for, in report order.
pub fn build_figures(
    inputs: &ReportInputs,
    ranks: Option<&TokenRanks>,
    prompt: Option<&str>,
    widths: &[ColumnWidth],
) -> Result<Vec<Figure>, ReportError> {
    let mut out = Vec::new();
    for &width in widths {
        let figures = [
            entropy_figure(inputs, width)?,
            frequent_share_figure(inputs, width)?,
            top_tokens_figure(inputs, ranks, prompt, width)?,
            divergence_figure(inputs, width)?,
            unseen_rate_figure(inputs, width)?,
            tradeoff_figure(inputs, width)?,
            same_step_figure(inputs, width)?,
            sweep_figure(inputs, width)?,
            crate::corrupt_figures::heatmap_figure(inputs, width)?,
            crate::corrupt_figures::concentration_figure(inputs, width)?,
            crate::corrupt_figures::context_gain_figure(inputs, width)?,
        ];
        out.extend(figures.into_iter().flatten());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_columns_keep_everything_that_fits() {
        assert_eq!(grid_columns(&[3, 1, 2, 2], 10), vec![1, 2, 3]);
    }

    #[test]
    fn grid_columns_sample_the_far_field_and_end_at_the_last_distance() {
        let ds: Vec<u32> = (1..=64).collect();
        let cols = grid_columns(&ds, 10);
        assert_eq!(&cols[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(*cols.last().unwrap(), 64);
        assert!(cols.len() <= 10);
        assert!(cols.windows(2).all(|w| w[0] < w[1]), "{cols:?}");
    }

    #[test]
    fn probe_curve_gives_mean_and_quartiles_per_distance() {
        let rec = |d: u32, e: f32| ProbeRecord {
            prompt_index: 0,
            prompt_id: "0".into(),
            prompt_len: 1,
            position: d,
            distance: d,
            top_ids: vec![],
            top_tokens: vec![],
            top_probs: vec![],
            entropy: e,
            max_prob: 0.0,
            margin: 0.0,
            eot_mass: 0.0,
            kl_unigram: None,
            xent_unigram: None,
            js_prev: None,
        };
        let rows = vec![
            rec(1, 1.0),
            rec(1, 2.0),
            rec(1, 3.0),
            rec(1, 4.0),
            rec(1, 5.0),
            rec(2, 7.0),
        ];
        let pts = probe_curve(&rows, "entropy", |r| Some(r.entropy));
        assert_eq!(pts.len(), 2);
        assert_eq!(
            (pts[0].mean, pts[0].median, pts[0].q25, pts[0].q75, pts[0].n),
            (3.0, 3.0, 2.0, 4.0, 5)
        );
        assert_eq!((pts[1].x, pts[1].mean, pts[1].q25), (2.0, 7.0, 7.0));
        assert!(probe_curve(&rows, "kl", |r| r.kl_unigram).is_empty());
    }

    #[test]
    fn share_figure_shows_end_tokens_only_when_they_are_predicted() {
        let point = |curve: &str, x: f64, mean: f64| CurvePoint {
            curve: curve.into(),
            series: "all".into(),
            x,
            mean,
            median: mean,
            q25: mean,
            q75: mean,
            n: 1,
        };
        let inputs = |eot: f64| ReportInputs {
            runs: vec![RunData {
                label: "run".into(),
                curves: [1.0, 2.0]
                    .iter()
                    .flat_map(|&x| {
                        [
                            point(curves::FREQUENT_SHARE, x, 0.4),
                            point(curves::EOT_SHARE, x, eot),
                            point(curves::GENERIC_SHARE, x, 0.4 + eot),
                        ]
                    })
                    .collect(),
                ..RunData::default()
            }],
            ..ReportInputs::default()
        };
        let with = frequent_share_figure(&inputs(0.3), ColumnWidth::Single)
            .unwrap()
            .unwrap();
        assert!(with.svg.contains("end tokens") && with.svg.contains("frequent words"));
        let without = frequent_share_figure(&inputs(0.0), ColumnWidth::Single)
            .unwrap()
            .unwrap();
        assert!(!without.svg.contains("end tokens"), "{}", without.svg);
    }

    #[test]
    fn onset_uses_the_metric_then_the_threshold() {
        let p = |x: f64, mean: f64| CurvePoint {
            curve: "frequent_share".into(),
            series: "all".into(),
            x,
            mean,
            median: mean,
            q25: mean,
            q75: mean,
            n: 1,
        };
        let mut run = RunData {
            curves: vec![p(1.0, 0.1), p(2.0, 0.4), p(3.0, 0.6), p(4.0, 0.9)],
            ..RunData::default()
        };
        assert_eq!(collapse_onset(&run), Some((3.0, "threshold")));
        let onset = |name: &str, value: f64| Metric {
            name: name.into(),
            value,
            unit: "distance".into(),
            better: cp_records::Better::Higher,
            stderr: None,
            n: 3,
        };
        // The frequent-words onset is not the onset: collapse.onset (on the generic share) is.
        run.metrics = Some(cp_records::MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics: vec![onset("collapse.frequent_onset", 9.0)],
        });
        assert_eq!(collapse_onset(&run), Some((3.0, "threshold")));
        run.metrics
            .as_mut()
            .unwrap()
            .metrics
            .push(onset("collapse.onset", 7.0));
        assert_eq!(collapse_onset(&run), Some((7.0, "analysis")));
    }

    #[test]
    fn same_and_different_step_rates_are_never_taken_from_different_schedules() {
        let m = |name: &str, value: f64| Metric {
            name: name.into(),
            value,
            unit: "fraction".into(),
            better: cp_records::Better::Lower,
            stderr: None,
            n: 1,
        };
        let run = RunData {
            metrics: Some(cp_records::MetricsFile {
                schema_version: 1,
                sources: vec![],
                metrics: vec![
                    m("trap.diff_step_unseen_bigram_rate@one", 0.02),
                    m("trap.same_step_unseen_bigram_rate@all", 0.47),
                    m("trap.same_step_unseen_bigram_rate@two", 0.3),
                    m("trap.diff_step_unseen_bigram_rate@two", 0.1),
                ],
            }),
            ..RunData::default()
        };
        let groups: Vec<(String, Option<f64>, Option<f64>)> = same_vs_cross(&run)
            .into_iter()
            .map(|(l, s, c)| (l, s.map(|m| m.value), c.map(|m| m.value)))
            .collect();
        assert_eq!(
            groups,
            vec![
                ("one".into(), None, Some(0.02)),
                ("all".into(), Some(0.47), None),
                ("two".into(), Some(0.3), Some(0.1))
            ]
        );
    }

    #[test]
    fn labels_are_short_numbers() {
        for (v, s) in [
            (0.0, "0"),
            (3.0, "3"),
            (0.25, "0.25"),
            (0.5, "0.5"),
            (12.34, "12.3"),
            (0.0125, "0.013"),
            (1500.0, "1500"),
        ] {
            assert_eq!(nice_label(v), s);
        }
    }
}
