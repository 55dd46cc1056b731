//! The settings every stage names the same way: how a corpus is cut into documents, which
//! dtype a model runs in, which file format a figure is written in, which parameter a sweep
//! varies. Each is defined here once; the spec file (serde), the command line (clap, behind the
//! `clap` feature) and the library crates all use these types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a plain-text corpus file is cut into documents. N-grams never cross documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DocSplit {
    /// Blocks separated by one or more blank lines; single newlines stay inside the document,
    /// so the index sees the newline tokens a model generates.
    #[default]
    Paragraph,
    /// Every non-empty line is a document (its newline is not part of it).
    Line,
    /// The whole file is one document.
    File,
}

impl DocSplit {
    /// The name used on the command line, in specs and in `index.json`.
    pub fn name(self) -> &'static str {
        match self {
            DocSplit::Paragraph => "paragraph",
            DocSplit::Line => "line",
            DocSplit::File => "file",
        }
    }
}

/// The floating-point type a model's weights are held and computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DTypeChoice {
    /// On CUDA, the checkpoint's own dtype (`torch_dtype` in `config.json`, else the dtype
    /// holding most of the stored bytes). On the CPU, float32: reduced-precision matrix
    /// products are slow or unsupported on most CPUs, and float32 is what the parity
    /// references were computed in (unless float32 would not fit in memory).
    #[default]
    Auto,
    /// 32-bit float.
    #[serde(alias = "float32")]
    #[cfg_attr(feature = "clap", value(alias = "float32"))]
    F32,
    /// bfloat16, the released LLaDA/Dream weights' own type.
    #[serde(alias = "bfloat16")]
    #[cfg_attr(feature = "clap", value(alias = "bfloat16"))]
    Bf16,
    /// IEEE half precision.
    #[serde(alias = "float16")]
    #[cfg_attr(feature = "clap", value(alias = "float16"))]
    F16,
}

impl FromStr for DTypeChoice {
    type Err = String;

    /// `auto`, `f32`, `bf16` or `f16` (also `float32`, `bfloat16`, `float16`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DTypeChoice::Auto),
            "f32" | "float32" => Ok(DTypeChoice::F32),
            "bf16" | "bfloat16" => Ok(DTypeChoice::Bf16),
            "f16" | "float16" => Ok(DTypeChoice::F16),
            _ => Err(format!(
                "unknown dtype `{s}`; expected auto, f32, bf16 or f16"
            )),
        }
    }
}

impl fmt::Display for DTypeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DTypeChoice::Auto => "auto",
            DTypeChoice::F32 => "f32",
            DTypeChoice::Bf16 => "bf16",
            DTypeChoice::F16 => "f16",
        })
    }
}

/// File formats a figure is written in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FigureFormat {
    /// Scalable vector graphics; text references the `sans-serif` family (DejaVu Sans in PNG/PDF).
    #[default]
    Svg,
    /// Raster (300 dpi by default), white background.
    Png,
    /// Vector, one page the size of the figure, font subset embedded.
    Pdf,
}

impl FigureFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FigureFormat::Svg => "svg",
            FigureFormat::Png => "png",
            FigureFormat::Pdf => "pdf",
        }
    }
}

/// Parameters a sweep can vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepParam {
    /// `probe.masks`: the probe is run once per value.
    Masks,
    /// Tokens committed per step, for every schedule.
    TokensPerStep,
    /// Number of decoding steps, for every schedule.
    Steps,
    /// Confidence threshold of threshold-based (parallel) schedules: `threshold`'s `tau`, the
    /// `threshold` of `fastdllm`, `llada2` and `compose:`, KLASS's `conf_threshold`.
    Threshold,
    /// Fast-dLLM's `factor`.
    Factor,
    /// The EB-sampler's entropy budget `gamma`.
    Gamma,
    /// PC-Sampler's position-weight decay `lambda`.
    Lambda,
}

impl SweepParam {
    /// The name used in folder names and figures.
    pub fn name(self) -> &'static str {
        match self {
            SweepParam::Masks => "masks",
            SweepParam::TokensPerStep => "tokens_per_step",
            SweepParam::Steps => "steps",
            SweepParam::Threshold => "threshold",
            SweepParam::Factor => "factor",
            SweepParam::Gamma => "gamma",
            SweepParam::Lambda => "lambda",
        }
    }

    /// True for parameters that take whole numbers.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            SweepParam::Masks | SweepParam::TokensPerStep | SweepParam::Steps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip_and_accept_torch_spellings() {
        for d in [
            DTypeChoice::Auto,
            DTypeChoice::F32,
            DTypeChoice::Bf16,
            DTypeChoice::F16,
        ] {
            assert_eq!(d.to_string().parse::<DTypeChoice>(), Ok(d));
        }
        assert_eq!("bfloat16".parse::<DTypeChoice>(), Ok(DTypeChoice::Bf16));
        let err = "f8".parse::<DTypeChoice>().unwrap_err();
        assert!(err.contains("expected auto, f32, bf16 or f16"), "{err}");
    }
}
