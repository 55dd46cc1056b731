//! The information-loss figures, from the curves of corrupt folders: the NLL heat map by
//! frequency decile and masked ratio, the loss concentration on rare positions, and the
//! context gain by distance to the nearest clean token.
//!
//! Each is drawn only when some analysis has its curve, with one panel or line per corrupt
//! folder (a scheme, when the folders are one per scheme).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::ReportError;
use crate::figures::{
    curves, draw_err, draw_svg, font, legend_for, line_figure, u, Area, Figure, LegendItem, Line,
    Panel, Swatch,
};
use crate::information_loss::{corrupt_folders, CorruptFolder};
use crate::inputs::ReportInputs;
use crate::style::{loss_colours, series_colour, ColumnWidth, LABEL_PT, TICK_PT, TITLE_PT};

/// Figure names, in report order.
pub(crate) const HEATMAP: &str = "corrupt_heatmap";
pub(crate) const CONCENTRATION: &str = "corrupt_concentration";
pub(crate) const CONTEXT_GAIN: &str = "corrupt_context_gain";
pub(crate) const FIGURES: [&str; 3] = [HEATMAP, CONCENTRATION, CONTEXT_GAIN];

const DECILES: usize = 10;
const RATIO_LABEL: &str = "masked ratio";

/// The ratio a series `ratio=R` names: `R` as written and as a number.
fn ratio_of(series: &str) -> Option<(&str, f64)> {
    let r = series.strip_prefix("ratio=")?;
    Some((r, r.parse().ok()?))
}

/// One heat-map panel: a folder's mean NLL per (ratio, decile) cell.
struct Grid {
    name: String,
    /// Ratio columns, ascending: the ratio as written, and the mean NLL of deciles 1..10
    /// (`None`: no masked token of that decile at that ratio).
    columns: Vec<(String, [Option<f64>; DECILES])>,
}

fn grid(folder: &CorruptFolder) -> Option<Grid> {
    let mut columns: Vec<(String, f64, [Option<f64>; DECILES])> = Vec::new();
    for (series, points) in folder.series(curves::CORRUPT_NLL_BY_DECILE) {
        let Some((ratio, value)) = ratio_of(&series) else {
            continue;
        };
        let mut cells = [None; DECILES];
        for p in points {
            if p.x.fract() == 0.0 && (1.0..=DECILES as f64).contains(&p.x) {
                cells[p.x as usize - 1] = Some(p.mean);
            }
        }
        columns.push((ratio.to_owned(), value, cells));
    }
    columns.sort_by(|a, b| a.1.total_cmp(&b.1));
    (!columns.is_empty()).then(|| Grid {
        name: folder.name.clone(),
        columns: columns.into_iter().map(|(r, _, c)| (r, c)).collect(),
    })
}

/// The text of a cell: one decimal is what a reader compares at a glance.
fn cell_text(v: f64) -> String {
    format!("{v:.1}")
}

/// The shared colour scale: every panel's cells on one range, so panels compare by colour.
fn scale(grids: &[Grid]) -> (f64, f64) {
    let values = grids
        .iter()
        .flat_map(|g| g.columns.iter().flat_map(|(_, c)| c.iter().flatten()))
        .copied();
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

/// Draws the colour bar: its title, the ramp, and its lowest, middle and highest values.
fn colour_bar(
    root: &Area,
    (x0, y0): (f64, f64),
    right: f64,
    (lo, hi): (f64, f64),
) -> Result<(), ReportError> {
    let title = "mean NLL per masked token (nats):";
    root.draw(&Text::new(
        title,
        (u(x0), u(y0 + 3.5)),
        font(TICK_PT).pos(Pos::new(HPos::Left, VPos::Center)),
    ))
    .map_err(draw_err(HEATMAP))?;
    let title_w = root
        .estimate_text_size(title, &font(TICK_PT))
        .map_err(draw_err(HEATMAP))?
        .0 as f64
        / crate::render::UNITS_PER_PT;
    let bar_x = x0 + title_w + 8.0;
    let bar_w = (right - bar_x - 8.0).clamp(40.0, 160.0);
    const STEPS: usize = 48;
    for i in 0..STEPS {
        let (fill, _) = loss_colours((i as f64 + 0.5) / STEPS as f64);
        let a = bar_x + bar_w * i as f64 / STEPS as f64;
        let b = bar_x + bar_w * (i + 1) as f64 / STEPS as f64;
        root.draw(&Rectangle::new(
            [(u(a), u(y0)), (u(b) + 1, u(y0 + 7.0))],
            fill.filled(),
        ))
        .map_err(draw_err(HEATMAP))?;
    }
    for (t, v) in [(0.0, lo), (0.5, (lo + hi) / 2.0), (1.0, hi)] {
        root.draw(&Text::new(
            cell_text(v),
            (u(bar_x + bar_w * t), u(y0 + 8.0)),
            font(6.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_err(HEATMAP))?;
    }
    Ok(())
}

/// Mean NLL per masked token by frequency decile (rows, rarest on top) and masked ratio
/// (columns), one panel per corrupt folder, on one colour scale.
pub(crate) fn heatmap_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let grids: Vec<Grid> = corrupt_folders(inputs).iter().filter_map(grid).collect();
    if grids.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = scale(&grids);
    // Layout, in points: a band for the rotated axis title, then panels in rows.
    let left_band = LABEL_PT + 5.0;
    let ticks_w = 12.0;
    let (right_margin, gap) = (6.0, 10.0);
    let min_cell_w = 18.0;
    let avail = width.width_pt() - left_band - right_margin;
    let max_cols = grids.iter().map(|g| g.columns.len()).max().unwrap_or(1) as f64;
    let panel_w = |per_row: usize| (avail - (per_row - 1) as f64 * gap) / per_row as f64;
    let most = if width == ColumnWidth::Single { 2 } else { 4 };
    // As many panels side by side as keep every cell wide enough for its value.
    let mut per_row = grids.len().min(most);
    while per_row > 1 && panel_w(per_row) - ticks_w < min_cell_w * max_cols {
        per_row -= 1;
    }
    let rows = grids.len().div_ceil(per_row);
    let pw = panel_w(per_row);
    let titled = grids.len() > 1;
    let title_h = if titled { TITLE_PT + 5.0 } else { 0.0 };
    let cell_h = if width == ColumnWidth::Single {
        9.5
    } else {
        11.0
    };
    let grid_h = cell_h * DECILES as f64;
    let x_ticks_h = TICK_PT + 4.0;
    let x_desc_h = LABEL_PT + 6.0;
    let panel_h = title_h + grid_h + x_ticks_h + x_desc_h;
    let legend_h = 26.0;
    let height = legend_h + rows as f64 * panel_h;
    let svg = draw_svg(HEATMAP, width, height, |root| {
        // The axis title runs along the ten rows (and a little past them, into the empty band
        // beside the ratio labels); shortened where it would run further.
        let mut y_title = "frequency decile (10 = rarest)";
        let title_w = root
            .estimate_text_size(y_title, &font(LABEL_PT))
            .map_err(draw_err(HEATMAP))?
            .0;
        if f64::from(title_w) > u(grid_h + 2.0 * x_ticks_h) as f64 {
            y_title = "decile (10 = rarest)";
        }
        colour_bar(
            root,
            (left_band, 4.0),
            width.width_pt() - right_margin,
            (lo, hi),
        )?;
        for (i, g) in grids.iter().enumerate() {
            let (row, col) = (i / per_row, i % per_row);
            let px = left_band + col as f64 * (pw + gap);
            let py = legend_h + row as f64 * panel_h;
            let gx = px + ticks_w;
            let gy = py + title_h;
            let cols = g.columns.len();
            let cell_w = (pw - ticks_w) / cols as f64;
            if col == 0 {
                root.draw(&Text::new(
                    y_title,
                    (u(1.0), u(gy + grid_h / 2.0)),
                    font(LABEL_PT)
                        .transform(FontTransform::Rotate270)
                        .pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(draw_err(HEATMAP))?;
            }
            if titled {
                root.draw(&Text::new(
                    g.name.clone(),
                    (u(gx + (pw - ticks_w) / 2.0), u(py + 1.0)),
                    font(TITLE_PT).pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(draw_err(HEATMAP))?;
            }
            // The widest value decides the cell font: shrunk to fit, or left out below 4.5 pt.
            let widest = g
                .columns
                .iter()
                .flat_map(|(_, c)| c.iter().flatten())
                .map(|&v| cell_text(v))
                .max_by_key(|s| s.len())
                .unwrap_or_default();
            let mut cell_pt = 6.5;
            let fits = |pt: f64| -> Result<bool, ReportError> {
                let w = root
                    .estimate_text_size(&widest, &font(pt))
                    .map_err(draw_err(HEATMAP))?
                    .0 as f64;
                Ok(w <= u(cell_w - 2.0) as f64)
            };
            while cell_pt > 4.5 && !fits(cell_pt)? {
                cell_pt -= 0.5;
            }
            let show_values = fits(cell_pt)?;
            for d in 1..=DECILES {
                // Rarest on top: decile 10 is the first row.
                let y0 = gy + (DECILES - d) as f64 * cell_h;
                root.draw(&Text::new(
                    d.to_string(),
                    (u(gx - 2.5), u(y0 + cell_h / 2.0)),
                    font(TICK_PT).pos(Pos::new(HPos::Right, VPos::Center)),
                ))
                .map_err(draw_err(HEATMAP))?;
                for (c, (_, cells)) in g.columns.iter().enumerate() {
                    let x0 = gx + c as f64 * cell_w;
                    let rect = [
                        (u(x0 + 0.3), u(y0 + 0.3)),
                        (u(x0 + cell_w - 0.3), u(y0 + cell_h - 0.3)),
                    ];
                    match cells[d - 1] {
                        Some(v) => {
                            let (fill, ink) = loss_colours((v - lo) / (hi - lo));
                            root.draw(&Rectangle::new(rect, fill.filled()))
                                .map_err(draw_err(HEATMAP))?;
                            if show_values {
                                root.draw(&Text::new(
                                    cell_text(v),
                                    (u(x0 + cell_w / 2.0), u(y0 + cell_h / 2.0)),
                                    font(cell_pt)
                                        .color(&ink)
                                        .pos(Pos::new(HPos::Center, VPos::Center)),
                                ))
                                .map_err(draw_err(HEATMAP))?;
                            }
                        }
                        // An empty decile (a token that fills more than a tenth of the
                        // positions empties the next ones): pale, no value.
                        None => root
                            .draw(&Rectangle::new(rect, RGBColor(0xF2, 0xF2, 0xF2).filled()))
                            .map_err(draw_err(HEATMAP))?,
                    }
                }
            }
            for (c, (ratio, _)) in g.columns.iter().enumerate() {
                root.draw(&Text::new(
                    ratio.clone(),
                    (u(gx + (c as f64 + 0.5) * cell_w), u(gy + grid_h + 2.0)),
                    font(TICK_PT).pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(draw_err(HEATMAP))?;
            }
            root.draw(&Text::new(
                RATIO_LABEL,
                (u(gx + (pw - ticks_w) / 2.0), u(gy + grid_h + x_ticks_h)),
                font(LABEL_PT).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err(HEATMAP))?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        name: HEATMAP.into(),
        width,
        svg,
        caption: "Mean negative log-likelihood of the true token at masked positions, by the token's corpus-frequency \
                  decile (rows; decile 1 the most frequent tokens, 10 the rarest, deciles of the texts' masked \
                  positions) and the share of positions masked (columns), one panel per corrupt folder on one \
                  colour scale (darker = more lost). Rows that darken faster to the right lose more as the \
                  context disappears; pale cells have no token of that decile."
            .into(),
    }))
}

/// The share of the NLL carried by the rarest 10 % and 20 % of masked positions against the
/// masked ratio, one line per corrupt folder, ±1 standard error.
pub(crate) fn concentration_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let folders = corrupt_folders(inputs);
    let mut panels = Vec::new();
    for (series, percent) in [("top10", 10.0), ("top20", 20.0)] {
        let mut lines: Vec<Line> = Vec::new();
        for (i, folder) in folders.iter().enumerate() {
            if let Some((_, points)) = folder
                .series(curves::CORRUPT_CONCENTRATION)
                .into_iter()
                .find(|(s, _)| s == series)
            {
                lines.push(Line {
                    label: folder.name.clone(),
                    colour: series_colour(i),
                    points,
                    markers: true,
                });
            }
        }
        if lines.is_empty() {
            continue;
        }
        // Equal loss at every position gives the rarest p % a share of p %.
        let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.x));
        let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let share = percent / 100.0;
        let flat = |x: f64| cp_records::CurvePoint {
            curve: String::new(),
            series: String::new(),
            x,
            mean: share,
            median: share,
            q25: share,
            q75: share,
            n: 0,
        };
        lines.push(Line {
            label: "equal share per position".into(),
            colour: RGBColor(0x99, 0x99, 0x99),
            points: if x1 > x0 {
                vec![flat(x0), flat(x1)]
            } else {
                vec![flat(x0)]
            },
            markers: false,
        });
        panels.push(Panel {
            title: Some(format!("rarest {percent} % of masked positions")),
            x_label: RATIO_LABEL.into(),
            y_label: "share of the total NLL (fraction)".into(),
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
    let legend = legend_for(&panels[0].lines);
    let svg = line_figure(CONCENTRATION, width, &panels, &legend)?;
    Ok(Some(Figure {
        name: CONCENTRATION.into(),
        width,
        svg,
        caption: "Information concentration: the share of the total negative log-likelihood at a masked ratio that \
                  the rarest 10 % (first panel) and 20 % (second panel) of the masked positions carry, one line per corrupt folder \
                  (band: ±1 bootstrap standard error over texts). The grey line is the share they would carry if \
                  every position lost the same; above it, the rare tokens carry more than their share of what \
                  masking removes."
            .into(),
    }))
}

/// Context gain (what the visible context adds to the token's corpus probability) against the
/// distance to the nearest unmasked token, one line per ratio, one panel per corrupt folder.
/// Distances with fewer than [`MIN_POSITIONS_PER_DISTANCE`] masked positions are left out.
const MIN_POSITIONS_PER_DISTANCE: u64 = 10;

pub(crate) fn context_gain_figure(
    inputs: &ReportInputs,
    width: ColumnWidth,
) -> Result<Option<Figure>, ReportError> {
    let folders = corrupt_folders(inputs);
    // One colour per ratio across panels, ratios ascending.
    let mut ratios: Vec<(String, f64)> = Vec::new();
    type RatioSeries = Vec<(String, f64, Vec<cp_records::CurvePoint>)>;
    let per_folder: Vec<(&CorruptFolder, RatioSeries)> = folders
        .iter()
        .map(|f| {
            let mut series: RatioSeries = f
                .series(curves::CORRUPT_CONTEXT_GAIN)
                .into_iter()
                .filter_map(|(s, points)| {
                    let (r, v) = ratio_of(&s)?;
                    if !ratios.iter().any(|(x, _)| x == r) {
                        ratios.push((r.to_owned(), v));
                    }
                    // Far distances have a handful of positions each; their means are noise.
                    let points: Vec<_> = points
                        .into_iter()
                        .filter(|p| p.n >= MIN_POSITIONS_PER_DISTANCE)
                        .collect();
                    Some((r.to_owned(), v, points))
                })
                .collect();
            series.sort_by(|a, b| a.1.total_cmp(&b.1));
            (f, series)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if per_folder.is_empty() {
        return Ok(None);
    }
    ratios.sort_by(|a, b| a.1.total_cmp(&b.1));
    let colour_of = |r: &str| series_colour(ratios.iter().position(|(x, _)| x == r).unwrap_or(0));
    let several = per_folder.len() > 1;
    let panels: Vec<Panel> = per_folder
        .into_iter()
        .map(|(folder, series)| {
            let lines: Vec<Line> = series
                .into_iter()
                .map(|(r, _, points)| Line {
                    label: format!("ratio {r}"),
                    colour: colour_of(&r),
                    points,
                    markers: false,
                })
                .collect();
            Panel {
                title: several.then(|| folder.name.clone()),
                // Short: with four schemes side by side a long label runs into the next panel.
                x_label: "distance to clean context".into(),
                y_label: "context gain (nats)".into(),
                lines,
                y_range: None,
                markers: Vec::new(),
                bands: true,
                log2_x: false,
            }
        })
        .collect();
    let legend: Vec<LegendItem> = ratios
        .iter()
        .map(|(r, _)| LegendItem {
            label: format!("ratio {r}"),
            colour: colour_of(r),
            swatch: Swatch::Line,
        })
        .collect();
    let svg = line_figure(CONTEXT_GAIN, width, &panels, &legend)?;
    Ok(Some(Figure {
        name: CONTEXT_GAIN.into(),
        width,
        svg,
        caption: "Context gain, ln p_model(token) − ln p_unigram(token): how much more probable the visible context \
                  makes the true token than its corpus frequency does, against the distance from the masked \
                  position to the nearest unmasked one, one line per masked ratio (line: mean; band: \
                  interquartile range; distances with fewer than 10 masked positions left out). A gain that falls to zero with distance means the model is back to \
                  guessing by frequency."
            .into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_series_parse_and_others_do_not() {
        assert_eq!(ratio_of("ratio=0.25"), Some(("0.25", 0.25)));
        assert_eq!(ratio_of("top10"), None);
        assert_eq!(ratio_of("ratio=x"), None);
    }

    #[test]
    fn one_value_gets_a_unit_scale() {
        let g = Grid {
            name: "g".into(),
            columns: vec![("0.1".into(), [Some(2.0); DECILES])],
        };
        assert_eq!(scale(&[g]), (2.0, 3.0));
    }
}
