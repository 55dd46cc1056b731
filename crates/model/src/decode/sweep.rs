//! What sweeping a parameter means for each schedule: the schedule a `[sweep]` runs at one value.

use cp_records::SweepParam;

use super::parts::BlocksLayout;
use super::spec::{ScheduleSpec, TokensPerStep};
use crate::error::ProbeError;

impl ScheduleSpec {
    /// This schedule with the swept parameter set to `value`, checked as its schedule string
    /// would be; an error for a schedule the parameter does not apply to.
    ///
    /// Tokens per step becomes the steps that give it on average (`ceil(gen_length / n)`, per
    /// block for `llada2`), and steps of `fixed` the tokens per step that give them. Sweeping
    /// the masks of the probe leaves every schedule as it is.
    pub fn swept(&self, param: SweepParam, value: f64) -> Result<ScheduleSpec, ProbeError> {
        let invalid = |message: String| Err(ProbeError::Input(message));
        let n = value as usize;
        if param.is_integer() && param != SweepParam::Masks && n == 0 {
            return invalid(format!("{} must be at least 1", param.name()));
        }
        let mut s = self.clone();
        match (param, &mut s) {
            (SweepParam::Masks, _) => {}
            (SweepParam::TokensPerStep, ScheduleSpec::Fixed(p)) => p.k = TokensPerStep::Count(n),
            (SweepParam::TokensPerStep, ScheduleSpec::Llada(p)) => {
                p.steps = p.gen_length.div_ceil(n)
            }
            (SweepParam::TokensPerStep, ScheduleSpec::Dream(p)) => {
                p.steps = p.max_new_tokens.div_ceil(n)
            }
            (SweepParam::Steps, ScheduleSpec::Llada(p)) => p.steps = n,
            (SweepParam::Steps, ScheduleSpec::Dream(p)) => p.steps = n,
            (SweepParam::Steps, ScheduleSpec::Fixed(p)) => {
                p.k = TokensPerStep::Count(p.gen_length.div_ceil(n))
            }
            (SweepParam::Threshold, ScheduleSpec::Threshold(p)) => p.tau = value,
            (param, ScheduleSpec::Parts(c)) => {
                let (key, v) = match (param, c.name) {
                    (SweepParam::Threshold, "klass") => ("conf_threshold", value.to_string()),
                    (SweepParam::Threshold, _) => ("threshold", value.to_string()),
                    (SweepParam::Factor, _) => ("factor", value.to_string()),
                    (SweepParam::Gamma, _) => ("gamma", value.to_string()),
                    (SweepParam::Lambda, _) => ("lambda", value.to_string()),
                    (SweepParam::Steps, "llada2") => ("steps_per_block", n.to_string()),
                    (SweepParam::Steps, _) => ("steps", n.to_string()),
                    (SweepParam::TokensPerStep, "llada2") => {
                        let size = match c.blocks.layout {
                            BlocksLayout::Aligned { size } => size,
                            _ => c.gen_length,
                        };
                        ("steps_per_block", size.div_ceil(n).to_string())
                    }
                    (SweepParam::TokensPerStep, _) => {
                        ("steps", c.gen_length.div_ceil(n).to_string())
                    }
                    (SweepParam::Masks, _) => unreachable!("handled above"),
                };
                let name = c.name;
                let swept = self.with_option(key, &v).expect("a composed schedule");
                return swept.map_err(|e| {
                    ProbeError::Input(format!(
                        "sweeping `{}` over a `{name}` schedule: {e}",
                        param.name()
                    ))
                });
            }
            (param, s) => {
                return invalid(format!(
                    "a `{}` schedule has no `{}` to sweep",
                    s.name(),
                    param.name()
                ))
            }
        }
        // Through the schedule string, so that the schedule's own checks (block divisibility,
        // ...) run on the swept value.
        ScheduleSpec::parse(&s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept(spec: &str, param: SweepParam, value: f64) -> Result<String, String> {
        ScheduleSpec::parse(spec)
            .unwrap()
            .swept(param, value)
            .map(|s| s.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_per_step_becomes_the_steps_that_give_it() {
        let s = swept(
            "llada:gen_length=64,steps=64,block_length=32",
            SweepParam::TokensPerStep,
            4.0,
        )
        .unwrap();
        assert!(s.contains("steps=16"), "{s}");
        let s = swept(
            "llada2:max_new_tokens=64,block_size=32",
            SweepParam::TokensPerStep,
            4.0,
        )
        .unwrap();
        assert!(s.contains("steps_per_block=8"), "{s}");
        let s = swept(
            "klass:gen_length=64,steps=64,block_length=32",
            SweepParam::Threshold,
            0.5,
        )
        .unwrap();
        assert!(s.contains("conf_threshold=0.5"), "{s}");
    }

    #[test]
    fn a_parameter_the_schedule_lacks_is_named() {
        let err = swept("llada:gen_length=64,steps=64", SweepParam::Gamma, 0.1).unwrap_err();
        assert!(
            err.contains("a `llada` schedule has no `gamma` to sweep"),
            "{err}"
        );
        let err = swept("fixed:gen_length=8,k=1", SweepParam::TokensPerStep, 0.0).unwrap_err();
        assert!(err.contains("tokens_per_step must be at least 1"), "{err}");
        // The schedule's own checks run on the swept value: 64 steps do not split into 3 blocks.
        let err = swept(
            "llada:gen_length=96,steps=96,block_length=32",
            SweepParam::Steps,
            64.0,
        )
        .unwrap_err();
        assert!(
            err.contains("option `steps` (64) must be divisible by the number of blocks"),
            "{err}"
        );
    }
}
