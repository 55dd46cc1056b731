//! KLASS's state across steps: each masked position's distribution at the previous call
//! and its recent KL divergences.

use std::collections::HashMap;

use tch::Tensor;

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
    /// for the positions of `view` that were also in the previous call's view (all of them at
    /// the first call, where `p_prev` is zero), and keeps this call's distributions.
    ///
    /// A position missing from the previous view gets no entry this call: the caller leaves
    /// out positions whose history is read only after calls that will hold them (KLASS reads
    /// a position's history only from call `length - 1` of its own block, whose entries were
    /// all made in that block; the view of every call holds the next block too, so that its
    /// first entries have their `p_prev`).
    pub fn update(&mut self, view: &mut StepView) -> Result<(), ProbeError> {
        let positions = view.positions().to_vec();
        let p = view.softmax64()?.shallow_clone();
        let mut log_p = p.f_add_scalar(1e-12)?;
        let _ = log_p.f_log_()?;
        // Which rows have a previous distribution, and where it is.
        let (with_prev, kl) = match &self.prev {
            None => {
                // ln(0 + 1e-12) everywhere: sum p * ln(1e-12) = ln(1e-12), as sum p = 1 to
                // within float64 rounding; computed as upstream does, row by row.
                let log_prev = log_p.f_full_like(1e-12f64.ln())?;
                let kl = Tensor::f_linalg_vecdot(&p, &log_p, -1)?
                    .f_sub(&Tensor::f_linalg_vecdot(&p, &log_prev, -1)?)?;
                ((0..positions.len()).collect::<Vec<_>>(), kl)
            }
            Some(prev) => {
                let (mut cur, mut old) = (Vec::new(), Vec::new());
                for (i, q) in positions.iter().enumerate() {
                    if let Ok(j) = self.prev_positions.binary_search(q) {
                        cur.push(i);
                        old.push(j as i64);
                    }
                }
                let device = prev.device();
                let old_rows = Tensor::f_from_slice(&old)?.f_to_device(device)?;
                let log_prev = prev.f_index_select(0, &old_rows)?;
                let (p_sel, log_p_sel) = if cur.len() == positions.len() {
                    (p.shallow_clone(), log_p.shallow_clone())
                } else {
                    let rows: Vec<i64> = cur.iter().map(|&i| i as i64).collect();
                    let rows = Tensor::f_from_slice(&rows)?.f_to_device(device)?;
                    (p.f_index_select(0, &rows)?, log_p.f_index_select(0, &rows)?)
                };
                // The difference of two dot products: two reads of each row instead of three
                // passes that write; in float64 the two orders differ by about 1e-15, far
                // below any threshold's margin.
                let kl = Tensor::f_linalg_vecdot(&p_sel, &log_p_sel, -1)?
                    .f_sub(&Tensor::f_linalg_vecdot(&p_sel, &log_prev, -1)?)?;
                (cur, kl)
            }
        };
        let kl = Vec::<f64>::try_from(&kl.f_to_device(tch::Device::Cpu)?)?;
        for (&i, &d) in with_prev.iter().zip(&kl) {
            let h = self
                .recent
                .entry(positions[i])
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
