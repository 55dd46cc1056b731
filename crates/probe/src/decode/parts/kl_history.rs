//! KLASS's state across steps: each masked position's distribution at the previous call
//! and its recent KL divergences.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::view::StepView;
use crate::error::ProbeError;

/// Carried across every step and block of one sequence, never reset.
///
/// Upstream keeps `p_prev` and `kl_hist` for every position; only masked positions are ever
/// read, and a masked position was masked at every earlier call, so keeping the rows of the
/// masked positions gives the same values.
pub struct KlHistory {
    length: usize,
    /// Positions of the rows of `prev`.
    prev_positions: Vec<usize>,
    /// `ln(p + 1e-12)` of the float64 softmax `[prev_positions.len(), V]` at the previous
    /// call (none before the first), kept so that each call takes one logarithm, not two.
    prev: Option<Tensor>,
    /// The last `length` KL divergences of each position, oldest first (zeros at the start).
    recent: HashMap<usize, Vec<f64>>,
}

impl KlHistory {
    pub fn new(length: usize) -> KlHistory {
        KlHistory {
            length,
            prev_positions: Vec::new(),
            prev: None,
            recent: HashMap::new(),
        }
    }

    /// Adds this call's KL divergence `sum p (ln(p + 1e-12) - ln(p_prev + 1e-12))` (float64)
    /// for every position of `view`, which must hold every masked position.
    pub fn update(&mut self, view: &mut StepView) -> Result<(), ProbeError> {
        let positions = view.positions().to_vec();
        let p = view.softmax64()?.shallow_clone();
        let mut log_p = p.f_add_scalar(1e-12)?;
        let _ = log_p.f_log_()?;
        // ln(p_prev + 1e-12) of these positions, in a buffer of their own that becomes the
        // difference. Before the first call `p_prev` is zero: ln(1e-12) everywhere.
        let mut diff = match &self.prev {
            None => log_p.f_full_like(1e-12f64.ln())?,
            Some(prev) => {
                let rows: Vec<i64> = positions
                    .iter()
                    .map(|q| {
                        self.prev_positions
                            .binary_search(q)
                            .map(|i| i as i64)
                            .map_err(|_| {
                                ProbeError::Input(format!(
                                    "KL history: position {q} was not masked at the previous call"
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                let rows = Tensor::f_from_slice(&rows)?.f_to_device(prev.device())?;
                prev.f_index_select(0, &rows)?
            }
        };
        // p * (ln(p + 1e-12) - ln(p_prev + 1e-12)), summed over the vocabulary.
        let _ = diff.f_neg_()?.f_add_(&log_p)?.f_mul_(&p)?;
        let kl = diff.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)?;
        let kl = Vec::<f64>::try_from(&kl.f_to_device(tch::Device::Cpu)?)?;
        for (&q, &d) in positions.iter().zip(&kl) {
            let h = self
                .recent
                .entry(q)
                .or_insert_with(|| vec![0.0; self.length]);
            h.remove(0);
            h.push(d);
        }
        self.prev_positions = positions;
        self.prev = Some(log_p);
        Ok(())
    }

    /// Whether every KL divergence in `position`'s history is below `threshold`. Upstream
    /// checks it only from call `length - 1` of a block on.
    pub fn stable(&self, position: usize, threshold: f64, step_in_block: usize) -> bool {
        step_in_block + 1 >= self.length
            && self
                .recent
                .get(&position)
                .is_some_and(|h| h.iter().all(|&d| d < threshold))
    }

    /// The largest KL divergence in `position`'s history.
    pub fn max_recent(&self, position: usize) -> f64 {
        self.recent
            .get(&position)
            .map(|h| h.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .unwrap_or(f64::INFINITY)
    }
}
