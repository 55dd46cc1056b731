//! KLASS's state across steps: each masked position's recent KL divergences between the
//! distributions of consecutive calls.

use std::collections::{HashMap, VecDeque};

use tch::{Kind, Tensor};

use super::view::StepView;
use crate::error::ProbeError;

/// Carried across every step and block of one sequence, never reset.
///
/// Upstream keeps `p_prev` and `kl_hist` for every position and computes every position's KL at
/// every call. Only masked positions are ever read, and only some of their entries: KLASS reads a
/// position's history from call `length - 1` of its own block on, and only for positions whose
/// confidence passes its threshold. So this history records *which* calls give a position an
/// entry (every call of its block; upstream's `kl_hist` is a FIFO of `length` values, zeros
/// before the first), keeps the last `length + 1` calls' logits, and computes an entry's KL
/// `sum p (ln(p + 1e-12) - ln(p_prev + 1e-12))` (float64) the first time it is read. The values
/// are upstream's; the float64 softmax of a call's due rows is the one the step's confidence
/// score also reads.
pub struct KlHistory {
    length: usize,
    /// The calls so far.
    calls: usize,
    /// The last `length + 1` calls, oldest first.
    kept: VecDeque<CallRows>,
    /// Per position, the calls that gave it an entry, oldest first (the last `length`).
    entries: HashMap<usize, VecDeque<usize>>,
    /// The KL of `(position, call)` entries already computed.
    values: HashMap<(usize, usize), f64>,
}

/// One call's rows: every position of its view, the call's float32 logits of them (kept, not
/// copied), and the float64 softmax of the due ones.
struct CallRows {
    call: usize,
    positions: Vec<usize>,
    logits: Tensor,
    due_slots: Vec<usize>,
    softmax: Tensor,
}

impl CallRows {
    /// The float64 softmax rows `[n, V]` of `positions` (each in the call's view), in order:
    /// from the due rows, or computed from the logits for the others.
    fn softmax_rows(&self, positions: &[usize]) -> Result<Tensor, ProbeError> {
        let device = self.softmax.device();
        let (mut from_due, mut from_logits, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for &q in positions {
            let slot = self
                .positions
                .binary_search(&q)
                .expect("the position is in the call's view");
            match self.due_slots.binary_search(&slot) {
                Ok(row) => {
                    order.push(from_due.len() as i64);
                    from_due.push(row as i64);
                }
                Err(_) => {
                    order.push(-1 - from_logits.len() as i64);
                    from_logits.push(slot as i64);
                }
            }
        }
        let due = self
            .softmax
            .f_index_select(0, &Tensor::f_from_slice(&from_due)?.f_to_device(device)?)?;
        if from_logits.is_empty() {
            return Ok(due);
        }
        // `softmax(dtype=float64)` casts first, row by row.
        let others = self
            .logits
            .f_index_select(0, &Tensor::f_from_slice(&from_logits)?.f_to_device(device)?)?
            .f_softmax(-1, Kind::Double)?;
        let base = from_due.len() as i64;
        let at: Vec<i64> = order
            .iter()
            .map(|&o| if o >= 0 { o } else { base + (-1 - o) })
            .collect();
        Ok(Tensor::f_cat(&[due, others], 0)?
            .f_index_select(0, &Tensor::f_from_slice(&at)?.f_to_device(device)?)?)
    }
}

impl KlHistory {
    pub fn new(length: usize) -> KlHistory {
        KlHistory {
            length,
            calls: 0,
            kept: VecDeque::new(),
            entries: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// Records this call: the slots `due` of `view` (ascending) get an entry when their
    /// position was in the previous call's view (all of them at the first call, where `p_prev`
    /// is zero), and the call's distributions are kept.
    ///
    /// A position missing from the previous view gets no entry this call: the caller leaves
    /// out positions whose history is read only after calls that will hold them (KLASS reads
    /// a position's history only from call `length - 1` of its own block, whose entries were
    /// all made in that block; the view of every call holds the next block too, so that its
    /// first entries have their `p_prev`).
    pub fn update(&mut self, view: &mut StepView, due: &[usize]) -> Result<(), ProbeError> {
        let softmax = view.softmax64_of(due)?.shallow_clone();
        let positions = view.positions().to_vec();
        let call = self.calls;
        let previous = self.kept.back().map(|c| &c.positions);
        for &slot in due {
            let q = positions[slot];
            let has_prev = match previous {
                None => call == 0,
                Some(prev) => prev.binary_search(&q).is_ok(),
            };
            if has_prev {
                let calls = self.entries.entry(q).or_default();
                calls.push_back(call);
                if calls.len() > self.length {
                    calls.pop_front();
                }
            }
        }
        self.kept.push_back(CallRows {
            call,
            positions,
            logits: view.logits().shallow_clone(),
            due_slots: due.to_vec(),
            softmax,
        });
        if self.kept.len() > self.length + 1 {
            self.kept.pop_front();
        }
        let oldest = self.kept.front().map_or(0, |c| c.call);
        self.values.retain(|&(_, c), _| c >= oldest);
        self.calls += 1;
        Ok(())
    }

    /// Whether every KL divergence in each position's history is below `threshold` (upstream
    /// checks it only from call `length - 1` of a block on, `step_in_block`).
    pub fn stable(
        &mut self,
        positions: &[usize],
        threshold: f64,
        step_in_block: usize,
    ) -> Result<Vec<bool>, ProbeError> {
        if step_in_block + 1 < self.length {
            return Ok(vec![false; positions.len()]);
        }
        let histories = self.recent(positions)?;
        Ok(histories
            .iter()
            .map(|h| h.iter().all(|&d| d < threshold))
            .collect())
    }

    /// The largest KL divergence in each position's history (`+inf` for a position without one).
    pub fn max_recent(&mut self, positions: &[usize]) -> Result<Vec<f64>, ProbeError> {
        let known: Vec<bool> = positions
            .iter()
            .map(|q| self.entries.contains_key(q))
            .collect();
        Ok(self
            .recent(positions)?
            .iter()
            .zip(known)
            .map(|(h, k)| match k {
                true => h.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                false => f64::INFINITY,
            })
            .collect())
    }

    /// The last `length` KL divergences of each position, oldest first, zeros where it has had
    /// fewer entries (upstream's `kl_hist` starts at zero), computing those not computed yet.
    pub fn recent(&mut self, positions: &[usize]) -> Result<Vec<Vec<f64>>, ProbeError> {
        let wanted: Vec<(usize, usize)> = positions
            .iter()
            .flat_map(|&q| {
                self.entries
                    .get(&q)
                    .into_iter()
                    .flatten()
                    .map(move |&c| (q, c))
            })
            .filter(|key| !self.values.contains_key(key))
            .collect();
        self.compute(&wanted)?;
        Ok(positions
            .iter()
            .map(|q| {
                let calls = self.entries.get(q);
                let n = calls.map_or(0, VecDeque::len);
                let mut h = vec![0.0; self.length - n];
                h.extend(calls.into_iter().flatten().map(|&c| self.values[&(*q, c)]));
                h
            })
            .collect())
    }

    /// Computes the KL of the `(position, call)` entries `wanted`, one batch per call.
    fn compute(&mut self, wanted: &[(usize, usize)]) -> Result<(), ProbeError> {
        let mut by_call: Vec<(usize, Vec<usize>)> = Vec::new();
        for &(q, c) in wanted {
            match by_call.iter_mut().find(|(call, _)| *call == c) {
                Some((_, qs)) => qs.push(q),
                None => by_call.push((c, vec![q])),
            }
        }
        for (call, positions) in by_call {
            let at = |call: usize| {
                self.kept
                    .iter()
                    .find(|c| c.call == call)
                    .expect("an entry's call and the one before are kept")
            };
            let p = at(call).softmax_rows(&positions)?;
            let mut log_p = p.f_add_scalar(1e-12)?;
            let _ = log_p.f_log_()?;
            // `ln(p_prev + 1e-12)`; at the first call `p_prev` is zero, so `ln(1e-12)`
            // everywhere, computed row by row as upstream does.
            let log_prev = match call {
                0 => log_p.f_full_like(1e-12f64.ln())?,
                _ => {
                    let mut rows = at(call - 1).softmax_rows(&positions)?.f_add_scalar(1e-12)?;
                    let _ = rows.f_log_()?;
                    rows
                }
            };
            // The difference of two dot products: in float64 the two orders differ by about
            // 1e-15, far below any threshold's margin.
            let kl = Tensor::f_linalg_vecdot(&p, &log_p, -1)?
                .f_sub(&Tensor::f_linalg_vecdot(&p, &log_prev, -1)?)?;
            let kl = Vec::<f64>::try_from(&kl.f_to_device(tch::Device::Cpu)?)?;
            for (q, d) in positions.into_iter().zip(kl) {
                self.values.insert((q, call), d);
            }
        }
        Ok(())
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
                let (f, d) = (
                    full.recent(&[*q]).unwrap().remove(0),
                    deferred.recent(&[*q]).unwrap().remove(0),
                );
                match call {
                    // B's first call: only this call's entry is read later.
                    2 => assert_eq!(f.last(), d.last(), "position {q}"),
                    _ => assert_eq!(f, d, "position {q} at call {call}"),
                }
                assert!(d.iter().all(|x| x.is_finite()));
            }
            // Before B starts, no KL was computed for its positions.
            if call < 2 {
                assert!(!deferred.entries.contains_key(&7) && full.entries.contains_key(&7));
            }
        }
    }
}
