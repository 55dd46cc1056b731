//! A sweep's results as one table: the metrics of every value side by side, and each metric as
//! a curve over the swept value.

use cp_records::{CurvePoint, Metric, MetricsFile, SweepParam, SCHEMA_VERSION};

/// One swept value's analysis: its label (`threshold=0.9`), the value, and its metrics.
pub struct SweptValue {
    pub label: String,
    pub value: f64,
    pub metrics: MetricsFile,
}

/// Every metric of every value, named `<metric>@<label>`, and curve `sweep:<metric>` per metric
/// with x the swept value and q25/q75 the value -/+ one standard error (the value itself where a
/// metric has none).
pub fn combine_sweep(param: SweepParam, values: &[SweptValue]) -> (MetricsFile, Vec<CurvePoint>) {
    let mut metrics: Vec<Metric> = Vec::new();
    let mut curves: Vec<CurvePoint> = Vec::new();
    let mut sources = Vec::new();
    for v in values {
        sources.extend(v.metrics.sources.iter().cloned());
        for m in &v.metrics.metrics {
            metrics.push(Metric {
                name: format!("{}@{}", m.name, v.label),
                ..m.clone()
            });
            let se = m.stderr.unwrap_or(0.0);
            curves.push(CurvePoint {
                curve: format!("sweep:{}", m.name),
                series: param.name().into(),
                x: v.value,
                mean: m.value,
                median: m.value,
                q25: m.value - se,
                q75: m.value + se,
                n: m.n,
            });
        }
    }
    let file = MetricsFile {
        schema_version: SCHEMA_VERSION,
        sources,
        metrics,
    };
    (file, curves)
}

#[cfg(test)]
mod tests {
    use cp_records::Better;

    use super::*;

    fn metric(name: &str, value: f64, stderr: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: "fraction".into(),
            better: Better::Lower,
            stderr,
            n: 4,
        }
    }

    #[test]
    fn each_metric_is_named_by_its_value_and_drawn_over_the_values() {
        let values: Vec<SweptValue> = [(1.0, 0.1), (4.0, 0.3)]
            .into_iter()
            .map(|(x, rate)| SweptValue {
                label: format!("tokens_per_step={x}"),
                value: x,
                metrics: MetricsFile {
                    schema_version: SCHEMA_VERSION,
                    sources: vec![format!("decode/{x}")],
                    metrics: vec![
                        metric("trap.unseen_2gram_rate", rate, Some(0.02)),
                        metric("trap.dup_rate", rate / 2.0, None),
                    ],
                },
            })
            .collect();
        let (file, curves) = combine_sweep(SweepParam::TokensPerStep, &values);
        let names: Vec<&str> = file.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "trap.unseen_2gram_rate@tokens_per_step=1",
                "trap.dup_rate@tokens_per_step=1",
                "trap.unseen_2gram_rate@tokens_per_step=4",
                "trap.dup_rate@tokens_per_step=4",
            ]
        );
        assert_eq!(file.sources, ["decode/1", "decode/4"]);
        let unseen: Vec<&CurvePoint> = curves
            .iter()
            .filter(|c| c.curve == "sweep:trap.unseen_2gram_rate")
            .collect();
        assert_eq!(unseen.len(), 2);
        assert_eq!((unseen[1].x, unseen[1].mean), (4.0, 0.3));
        assert!((unseen[1].q25 - 0.28).abs() < 1e-12 && (unseen[1].q75 - 0.32).abs() < 1e-12);
        let dup = curves
            .iter()
            .find(|c| c.curve == "sweep:trap.dup_rate")
            .unwrap();
        assert_eq!(
            (dup.q25, dup.q75, dup.series.as_str()),
            (0.05, 0.05, "tokens_per_step")
        );
    }
}
