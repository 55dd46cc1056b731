//! The embedded font, and the conversion of a figure's SVG into PNG (resvg) and PDF (svg2pdf).
//!
//! Figures are drawn in an SVG whose user unit is a quarter of a point ([`UNITS_PER_PT`]) and
//! whose root says its size in points, so the PDF page is exactly the column width and
//! plotters' integer coordinates still have sub-point precision.

use std::sync::{Arc, Once, OnceLock};

use resvg::tiny_skia;
use resvg::usvg::{self, fontdb};

use crate::error::ReportError;

/// DejaVu Sans 2.37 (Debian `fonts-dejavu-core`), licence in `assets/DejaVuSans-LICENSE.txt`.
pub(crate) static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name inside [`FONT_TTF`].
pub(crate) const FONT_FAMILY: &str = "DejaVu Sans";
/// SVG user units per typographic point.
pub(crate) const UNITS_PER_PT: f64 = 4.0;

/// Registers the embedded font with plotters under the generic `sans-serif` name, once per process,
/// so its text measurement matches what resvg and svg2pdf draw.
pub(crate) fn register_plotters_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure here is a corrupted build.
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT_TTF)
            .unwrap_or_else(|_| panic!("embedded {FONT_FAMILY} does not parse"));
    });
}

/// A font database holding only the embedded font, also answering for `sans-serif`.
fn font_db() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_font_data(FONT_TTF.to_vec());
        db.set_sans_serif_family(FONT_FAMILY);
        Arc::new(db)
    })
    .clone()
}

/// Parses a figure's SVG with the embedded font and 72 dpi, so one SVG unit in points stays a point.
pub(crate) fn parse_svg(figure: &str, svg: &str) -> Result<usvg::Tree, ReportError> {
    let options = usvg::Options {
        dpi: 72.0,
        font_family: FONT_FAMILY.to_owned(),
        fontdb: font_db(),
        ..usvg::Options::default()
    };
    usvg::Tree::from_str(svg, &options).map_err(|e| ReportError::Svg {
        figure: figure.to_owned(),
        message: e.to_string(),
    })
}

/// Renders a parsed figure to PNG at `dpi`, on a white background (papers and slides are white).
pub(crate) fn to_png(figure: &str, tree: &usvg::Tree, dpi: f32) -> Result<Vec<u8>, ReportError> {
    let scale = dpi / 72.0;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| ReportError::Convert {
            figure: figure.to_owned(),
            format: "png",
            message: "figure has zero size".into(),
        })?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
        ReportError::Convert {
            figure: figure.to_owned(),
            format: "png",
            message: format!("cannot allocate {}x{} pixels", size.width(), size.height()),
        }
    })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| ReportError::Convert {
        figure: figure.to_owned(),
        format: "png",
        message: e.to_string(),
    })
}

/// Converts a parsed figure to a one-page PDF, text kept as text in an embedded font subset.
pub(crate) fn to_pdf(figure: &str, tree: &usvg::Tree) -> Result<Vec<u8>, ReportError> {
    svg2pdf::to_pdf(
        tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi: 72.0 },
    )
    .map_err(|e| ReportError::Convert {
        figure: figure.to_owned(),
        format: "pdf",
        message: e.to_string(),
    })
}

/// Rewrites plotters' root element so the figure declares its size in points
/// (plotters writes the size in user units, which a viewer would take as CSS pixels).
pub(crate) fn set_size_in_points(svg: &str, width_units: u32, height_units: u32) -> String {
    let from = format!("width=\"{width_units}\" height=\"{height_units}\"");
    let to = format!(
        "width=\"{:.2}pt\" height=\"{:.2}pt\"",
        f64::from(width_units) / UNITS_PER_PT,
        f64::from(height_units) / UNITS_PER_PT
    );
    svg.replacen(&from, &to, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_is_dejavu_sans() {
        let db = font_db();
        let families: Vec<String> = db
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
            .collect();
        assert_eq!(families, vec![FONT_FAMILY.to_owned()]);
    }

    #[test]
    fn size_is_rewritten_in_points() {
        let svg = "<svg width=\"980\" height=\"720\" viewBox=\"0 0 980 720\"></svg>";
        let out = set_size_in_points(svg, 980, 720);
        assert_eq!(
            out,
            "<svg width=\"245.00pt\" height=\"180.00pt\" viewBox=\"0 0 980 720\"></svg>"
        );
    }

    #[test]
    fn a_point_sized_svg_becomes_a_pdf_page_of_that_size() {
        let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"72pt\" height=\"36pt\" viewBox=\"0 0 288 144\">\
                   <text x=\"10\" y=\"100\" font-family=\"sans-serif\" font-size=\"40\">Ag</text></svg>";
        let tree = parse_svg("t", svg).unwrap();
        assert_eq!((tree.size().width(), tree.size().height()), (72.0, 36.0));
        let pdf = to_pdf("t", &tree).unwrap();
        assert!(pdf.starts_with(b"%PDF"));
        // 300 dpi: one inch by half an inch.
        let png = to_png("t", &tree, 300.0).unwrap();
        let decoded = tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (300, 150));
        // The text drew dark pixels: the font was found without any system font.
        assert!(decoded.pixels().iter().any(|p| p.red() < 100));
    }
}
