//! One look for every figure: the Okabe–Ito palette, column widths, type sizes,
//! and the sequential scale that shades tokens by corpus-frequency rank.

use plotters::style::RGBColor;

/// Okabe & Ito (2008) colour-blind-safe palette, in the order series take it.
/// Yellow comes last: it is the weakest on white.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];

/// The colour of the `i`-th series (wrapping after eight).
pub fn series_colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `#rrggbb` of a colour, for HTML and hand-written SVG.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Paul Tol's sequential YlOrBr scale (colour-blind safe, prints in grey as a monotone ramp),
/// light to dark. Frequent tokens get the dark end.
pub const RANK_RAMP: [RGBColor; 9] = [
    RGBColor(0xFF, 0xFF, 0xE5),
    RGBColor(0xFF, 0xF7, 0xBC),
    RGBColor(0xFE, 0xE3, 0x91),
    RGBColor(0xFE, 0xC4, 0x4F),
    RGBColor(0xFB, 0x9A, 0x29),
    RGBColor(0xEC, 0x70, 0x14),
    RGBColor(0xCC, 0x4C, 0x02),
    RGBColor(0x99, 0x34, 0x04),
    RGBColor(0x66, 0x25, 0x06),
];

/// The sequential scale of the information-loss heat map: viridis (van der Walt and Smith,
/// matplotlib), perceptually uniform and colour-blind safe, from light (little loss) to dark
/// (much loss). Not the frequency ramp: in one report dark would then mean two things.
pub const LOSS_RAMP: [RGBColor; 9] = [
    RGBColor(0xFD, 0xE7, 0x25),
    RGBColor(0xAD, 0xDC, 0x30),
    RGBColor(0x5E, 0xC9, 0x62),
    RGBColor(0x28, 0xAE, 0x80),
    RGBColor(0x21, 0x91, 0x8C),
    RGBColor(0x2C, 0x72, 0x8E),
    RGBColor(0x3B, 0x52, 0x8B),
    RGBColor(0x47, 0x2D, 0x7B),
    RGBColor(0x44, 0x01, 0x54),
];

/// The colour of `t` in [0, 1] on [`LOSS_RAMP`] (linear between its stops; clamped), and the
/// text colour that reads on it (white on the darker half).
pub fn loss_colours(t: f64) -> (RGBColor, RGBColor) {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let h = t * (LOSS_RAMP.len() - 1) as f64;
    let (i, f) = (h.floor() as usize, h.fract());
    let (a, b) = (LOSS_RAMP[i], LOSS_RAMP[(i + 1).min(LOSS_RAMP.len() - 1)]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    let fill = RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2));
    let text = if t > 0.45 {
        RGBColor(0xFF, 0xFF, 0xFF)
    } else {
        RGBColor(0, 0, 0)
    };
    (fill, text)
}

/// Fill of a token cell that holds an end-of-text, end-of-turn or padding token: blue, off the
/// frequency ramp, so collapse to end-of-text reads apart from collapse to frequent words.
pub const END_TOKEN_FILL: RGBColor = RGBColor(0x21, 0x4F, 0x8C);

/// Rank bins of the ramp, on a log scale: rank 1–3 is darkest, then ≤10, ≤30, ≤100, …, >30000 lightest.
pub const RANK_BIN_UPPER: [u32; 8] = [3, 10, 30, 100, 300, 1000, 3000, 30000];

/// The ramp index of a 1-based frequency rank (0 = lightest = rarest).
pub fn rank_bin(rank: u32) -> usize {
    let darkest = RANK_RAMP.len() - 1;
    match RANK_BIN_UPPER.iter().position(|&upper| rank <= upper) {
        Some(i) => darkest - i,
        None => 0,
    }
}

/// Fill and text colour of a token cell of that rank (white text on the three darkest fills).
pub fn rank_colours(rank: Option<u32>) -> (RGBColor, RGBColor) {
    match rank {
        None => (RGBColor(0xEE, 0xEE, 0xEE), RGBColor(0x44, 0x44, 0x44)),
        Some(r) => {
            let bin = rank_bin(r);
            let text = if bin >= RANK_RAMP.len() - 3 {
                RGBColor(0xFF, 0xFF, 0xFF)
            } else {
                RGBColor(0, 0, 0)
            };
            (RANK_RAMP[bin], text)
        }
    }
}

/// Legend text of each ramp bin (`1–3`, `4–10`, …, `>30000`) with its ramp index, most frequent first.
pub fn rank_bin_labels() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lower = 1;
    for (i, &upper) in RANK_BIN_UPPER.iter().enumerate() {
        out.push((RANK_RAMP.len() - 1 - i, format!("{lower}–{upper}")));
        lower = upper + 1;
    }
    out.push((0, format!(">{}", RANK_BIN_UPPER[RANK_BIN_UPPER.len() - 1])));
    out
}

/// How wide a figure is drawn.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ColumnWidth {
    /// One column of a two-column paper: 3.4 in (245 pt).
    Single,
    /// The full text width of a two-column paper: 7 in (504 pt).
    Double,
}

impl ColumnWidth {
    /// Width in points.
    pub fn width_pt(self) -> f64 {
        match self {
            ColumnWidth::Single => 244.8,
            ColumnWidth::Double => 504.0,
        }
    }
    /// Height of a one-row line chart in points.
    pub fn line_height_pt(self) -> f64 {
        match self {
            ColumnWidth::Single => 2.3 * 72.0,
            ColumnWidth::Double => 2.6 * 72.0,
        }
    }
    /// The name used in file names (`single`, `double`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnWidth::Single => "single",
            ColumnWidth::Double => "double",
        }
    }
}

/// Type sizes in points: papers set figure text at 7–9 pt.
pub const TICK_PT: f64 = 7.0;
pub const LABEL_PT: f64 = 8.0;
pub const TITLE_PT: f64 = 8.5;

/// A token as a figure or a page shows it: BPE space markers and whitespace made visible,
/// control characters escaped (they are not allowed in XML), long tokens cut.
pub fn display_token(token: &str, max_chars: usize) -> String {
    let token = token.replace(['Ġ', '▁'], " ").replace('Ċ', "\n");
    let trimmed = token.trim_matches(' ');
    let shown: String = if trimmed.is_empty() {
        if token.is_empty() {
            "∅".to_owned()
        } else {
            "␣".repeat(token.chars().count().min(3))
        }
    } else {
        let mut s = String::new();
        for c in trimmed.chars() {
            match c {
                '\n' => s.push('↵'),
                '\t' => s.push('⇥'),
                '\r' => s.push_str("\\r"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        s
    };
    if shown.chars().count() > max_chars && max_chars > 1 {
        let mut cut: String = shown.chars().take(max_chars - 1).collect();
        cut.push('…');
        cut
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_bins_follow_the_log_scale() {
        for (rank, bin) in [
            (1, 8),
            (3, 8),
            (4, 7),
            (10, 7),
            (11, 6),
            (100, 5),
            (30000, 1),
            (30001, 0),
        ] {
            assert_eq!(rank_bin(rank), bin, "rank {rank}");
        }
        let labels = rank_bin_labels();
        assert_eq!(labels.len(), RANK_RAMP.len());
        assert_eq!(labels[0], (8, "1–3".to_owned()));
        assert_eq!(labels[1], (7, "4–10".to_owned()));
        assert_eq!(labels[8], (0, ">30000".to_owned()));
    }

    #[test]
    fn tokens_are_displayed_visibly() {
        let check = |token: &str, max: usize, expected: &str| {
            assert_eq!(display_token(token, max), expected, "{token:?}")
        };
        check(" the", 8, "the");
        check("Ġthe", 8, "the");
        check("▁and", 8, "and");
        check(" ", 8, "␣");
        check("\n\n", 8, "↵↵");
        check("", 8, "∅");
        check("a\u{7}b", 8, "a\\x07b");
        check("<&\"'>", 8, "<&\"'>");
        check("internationalization", 6, "inter…");
    }

    #[test]
    fn loss_scale_runs_light_to_dark_and_clamps() {
        assert_eq!(loss_colours(0.0).0, LOSS_RAMP[0]);
        assert_eq!(loss_colours(1.0).0, LOSS_RAMP[8]);
        assert_eq!(loss_colours(2.0).0, LOSS_RAMP[8]);
        assert_eq!(loss_colours(f64::NAN).0, LOSS_RAMP[0]);
        // Halfway between the first two stops.
        assert_eq!(loss_colours(1.0 / 16.0).0, RGBColor(0xD5, 0xE2, 0x2B));
        assert_eq!(loss_colours(0.9).1, RGBColor(0xFF, 0xFF, 0xFF));
        assert_eq!(loss_colours(0.1).1, RGBColor(0, 0, 0));
    }

    #[test]
    fn widths_are_paper_columns() {
        assert_eq!(ColumnWidth::Single.width_pt(), 244.8);
        assert_eq!(ColumnWidth::Double.width_pt(), 504.0);
    }
}
