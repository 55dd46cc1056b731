//! `[sweep]`: which stage a run repeats, at which values, and which schedules take part.

use serde::{Deserialize, Serialize};

pub use cp_records::SweepParam;

use crate::spec::{ScheduleSection, Spec};

/// `[sweep]`: run the swept stage once per value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub param: SweepParam,
    pub values: Vec<f64>,
}

impl SweepSpec {
    /// `param=value` folder names (`masks=64`, `threshold=0.9`), in the order of `values`.
    pub fn labels(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|v| format!("{}={}", self.param.name(), fmt_value(*v)))
            .collect()
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Spec {
    /// The sweep a run performs: the spec's `[sweep]`, or, without one, a `tokens_per_step`
    /// sweep over the values that imported trajectories declare, each file one point of its
    /// series.
    pub fn run_sweep(&self) -> Option<SweepSpec> {
        if let Some(sweep) = &self.sweep {
            return Some(sweep.clone());
        }
        let mut values: Vec<f64> = self
            .schedules
            .iter()
            .filter(|s| s.trajectories.is_some())
            .filter_map(|s| s.tokens_per_step)
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        (!values.is_empty()).then_some(SweepSpec {
            param: SweepParam::TokensPerStep,
            values,
        })
    }

    /// Whether the schedules the run decodes are decoded again at each value: only in the
    /// spec's own sweep of a schedule parameter (a `masks` sweep repeats the probe instead).
    pub fn sweep_decodes_schedules(&self) -> bool {
        self.sweep
            .as_ref()
            .is_some_and(|s| s.param != SweepParam::Masks)
    }

    /// Whether imported trajectories take part in the run's sweep; every swept metric then
    /// names its series, since the values hold different folders.
    pub fn imports_in_sweep(&self) -> bool {
        self.schedules
            .iter()
            .any(|s| s.trajectories.is_some() && s.tokens_per_step.is_some())
    }
}

impl ScheduleSection {
    /// Whether these imported trajectories are the point at `value` of their series in `sweep`.
    pub fn at_sweep_value(&self, sweep: &SweepSpec, value: f64) -> bool {
        sweep.param == SweepParam::TokensPerStep
            && self.trajectories.is_some()
            && self.tokens_per_step == Some(value)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const IMPORTS: &str = r#"
[model]
path = "m"
[prompts]
path = "p.txt"
[[schedule]]
name = "llada"
spec = "llada:gen_length=32,steps=32"
[[schedule]]
name = "mine-k4"
trajectories = "k4.jsonl"
tokens_per_step = 4
series = "mine"
[[schedule]]
name = "mine-k2"
trajectories = "k2.jsonl"
tokens_per_step = 2
series = "mine"
[[schedule]]
name = "other"
trajectories = "o.jsonl"
"#;

    #[test]
    fn imported_series_make_a_tokens_per_step_sweep_of_their_own() {
        let spec = Spec::parse(IMPORTS, Path::new("probes/x.toml")).unwrap();
        let sweep = spec.run_sweep().expect("a sweep of the imported series");
        assert_eq!(sweep.param, SweepParam::TokensPerStep);
        assert_eq!(sweep.values, [2.0, 4.0]);
        assert_eq!(sweep.labels(), ["tokens_per_step=2", "tokens_per_step=4"]);
        assert!(spec.imports_in_sweep());
        // Built-in schedules are not decoded again in a sweep made of imports.
        assert!(!spec.sweep_decodes_schedules());
        let at_2: Vec<&str> = spec
            .schedules
            .iter()
            .filter(|s| s.at_sweep_value(&sweep, 2.0))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(at_2, ["mine-k2"]);
    }

    #[test]
    fn the_specs_own_sweep_comes_first() {
        let text = format!("{IMPORTS}[sweep]\nparam = \"tokens_per_step\"\nvalues = [1, 2, 4]\n");
        let spec = Spec::parse(&text, Path::new("probes/x.toml")).unwrap();
        assert_eq!(spec.run_sweep().unwrap().values, [1.0, 2.0, 4.0]);
        assert!(spec.sweep_decodes_schedules());
        let masks = text.replace("\"tokens_per_step\"\nvalues", "\"masks\"\nvalues");
        // A masks sweep repeats the probe; imported series that declare their tokens per step
        // cannot join it, and the spec says so.
        let err = Spec::parse(&masks, Path::new("probes/x.toml")).unwrap_err();
        assert!(err.to_string().contains("varies `masks`"), "{err}");
    }
}
