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
    /// The previous call's positions whose KL was not due then (the next block's), with that
    /// call's float32 logits `[n, V]` and the row of each position in them: their
    /// `ln(p + 1e-12)` is computed only if a later call needs it as `p_prev`, which happens once
    /// per block, at its first call. The logits are the call's own tensor, kept, not copied.
    pending: Option<Pending>,
    /// The last `length` KL divergences of each position, oldest first (zeros at the start).
    recent: HashMap<usize, Vec<f64>>,
}

struct Pending {
    positions: Vec<usize>,
    logits: Tensor,
    rows: Vec<i64>,
}

impl KlHistory {
    pub fn new(length: usize) -> KlHistory {
        KlHistory {
            length,
            prev_positions: Vec::new(),
            prev: None,
            pending: None,
            recent: HashMap::new(),
        }
    }

    /// Adds this call's KL divergence `sum p (ln(p + 1e-12) - ln(p_prev + 1e-12))` (float64)
    /// for the slots `due` of `view` (ascending) whose positions were also in the previous
    /// call's view (all of them at the first call, where `p_prev` is zero), and keeps this
    /// call's distributions of every slot.
    ///
    /// A position missing from the previous view gets no entry this call: the caller leaves
    /// out positions whose history is read only after calls that will hold them (KLASS reads
    /// a position's history only from call `length - 1` of its own block, whose entries were
    /// all made in that block; the view of every call holds the next block too, so that its
    /// first entries have their `p_prev`). For the same reason the next block's slots need no
    /// KL before their block starts: they are left out of `due`, and their distribution is
    /// computed from the kept logits only at the first call that reads it.
    pub fn update(&mut self, view: &mut StepView, due: &[usize]) -> Result<(), ProbeError> {
        let positions: Vec<usize> = due.iter().map(|&s| view.positions()[s]).collect();
        let later: Vec<usize> = (0..view.positions().len())
            .filter(|s| due.binary_search(s).is_err())
            .collect();
        let p = view.softmax64_of(due)?.shallow_clone();
        let mut log_p = p.f_add_scalar(1e-12)?;
        let _ = log_p.f_log_()?;
        let (with_prev, kl) = match &self.prev {
            None if self.pending.is_none() => {
                // ln(0 + 1e-12) everywhere: sum p * ln(1e-12) = ln(1e-12), as sum p = 1 to
                // within float64 rounding; computed as upstream does, row by row.
                let log_prev = log_p.f_full_like(1e-12f64.ln())?;
                let kl = Tensor::f_linalg_vecdot(&p, &log_p, -1)?
                    .f_sub(&Tensor::f_linalg_vecdot(&p, &log_prev, -1)?)?;
                ((0..positions.len()).collect::<Vec<_>>(), kl)
            }
            _ => {
                let (cur, log_prev) = self.previous_rows(&positions)?;
                let device = log_p.device();
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
        self.pending = match later.is_empty() {
            true => None,
            false => Some(Pending {
                positions: later.iter().map(|&s| view.positions()[s]).collect(),
                logits: view.logits().shallow_clone(),
                rows: later.iter().map(|&s| s as i64).collect(),
            }),
        };
        self.prev_positions = positions;
        self.prev = Some(log_p);
        Ok(())
    }

    /// Of `positions`, the indices of those the previous call held, and their
    /// `ln(p_prev + 1e-12)` rows `[n, V]` in that order: from `prev`, or computed now from the
    /// kept logits of the positions that were not due then.
    fn previous_rows(&self, positions: &[usize]) -> Result<(Vec<usize>, Tensor), ProbeError> {
        let prev_len = self.prev_positions.len() as i64;
        let (mut cur, mut source) = (Vec::new(), Vec::new());
        let mut from_pending = Vec::new();
        for (i, q) in positions.iter().enumerate() {
            if let Ok(j) = self.prev_positions.binary_search(q) {
                cur.push(i);
                source.push(j as i64);
            } else if let Some(pending) = &self.pending {
                if let Ok(k) = pending.positions.binary_search(q) {
                    cur.push(i);
                    source.push(prev_len + from_pending.len() as i64);
                    from_pending.push(pending.rows[k]);
                }
            }
        }
        let mut parts = Vec::new();
        if let Some(prev) = &self.prev {
            parts.push(prev.shallow_clone());
        }
        if let (false, Some(pending)) = (from_pending.is_empty(), &self.pending) {
            let logits = &pending.logits;
            let rows = Tensor::f_from_slice(&from_pending)?.f_to_device(logits.device())?;
            let mut log = logits
                .f_index_select(0, &rows)?
                .f_softmax(-1, tch::Kind::Double)?
                .f_add_scalar(1e-12)?;
            let _ = log.f_log_()?;
            parts.push(log);
        }
        let all = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => Tensor::f_cat(&parts, 0)?,
        };
        if cur.is_empty() {
            return Ok((cur, all.f_narrow(0, 0, 0)?));
        }
        let at = Tensor::f_from_slice(&source)?.f_to_device(all.device())?;
        Ok((cur, all.f_index_select(0, &at)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic logits `[positions.len(), 50]` that differ by call and position.
    fn view(call: usize, positions: &[usize]) -> StepView {
        let v = 50;
        let data: Vec<f32> = positions
            .iter()
            .flat_map(|&q| {
                (0..v).map(move |j| ((call * 7919 + q * 104_729 + j * 31) % 997) as f32 / 97.0)
            })
            .collect();
        let logits = Tensor::from_slice(&data).view([positions.len() as i64, v as i64]);
        StepView::new(positions.to_vec(), logits)
    }

    #[test]
    fn deferring_the_next_blocks_rows_gives_the_same_history_where_it_is_read() {
        // Block A is positions 0..4, block B 4..8. Each call of A also sees B's masks.
        let calls: [(&[usize], usize); 4] = [
            (&[0, 1, 2, 3, 4, 5, 6, 7], 4),
            (&[1, 2, 3, 4, 5, 6, 7], 3),
            // B starts: its first KL needs the previous call's distributions of B.
            (&[4, 5, 6, 7], 0),
            (&[5, 6, 7], 0),
        ];
        let (mut full, mut deferred) = (KlHistory::new(2), KlHistory::new(2));
        for (call, &(positions, in_a)) in calls.iter().enumerate() {
            let all: Vec<usize> = (0..positions.len()).collect();
            full.update(&mut view(call, positions), &all).unwrap();
            let due: Vec<usize> = match in_a {
                0 => all.clone(),
                n => (0..n).collect(),
            };
            deferred.update(&mut view(call, positions), &due).unwrap();
            // What KLASS reads: the current block's histories.
            let current: &[usize] = if in_a > 0 {
                &positions[..in_a]
            } else {
                positions
            };
            for q in current {
                let (f, d) = (&full.recent[q], &deferred.recent[q]);
                match call {
                    // B's first call: only this call's entry is read later.
                    2 => assert_eq!(f.last(), d.last(), "position {q}"),
                    _ => assert_eq!(f, d, "position {q} at call {call}"),
                }
                assert!(d.iter().all(|x| x.is_finite()));
            }
            // Before B starts, no KL was computed for its positions.
            if call < 2 {
                assert!(!deferred.recent.contains_key(&7) && full.recent.contains_key(&7));
            }
        }
    }
}
