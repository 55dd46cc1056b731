//! What every step of a batch shares: the model call and the selection of logit rows.

use super::*;

/// The fixed context of a batch's steps.
pub(super) struct Ctx<'a> {
    pub(super) model: &'a dyn MaskedDenoiser,
    pub(super) b: i64,
    pub(super) p: i64,
    pub(super) g: i64,
    pub(super) v: i64,
    pub(super) dev: Device,
    pub(super) mask_id: i64,
    pub(super) prompt_block: &'a Tensor,
    pub(super) valid: Option<&'a Tensor>,
    pub(super) forbidden: Option<Tensor>,
    pub(super) forbidden_host: Vec<i64>,
    /// Whether the step must return the distributions of every still-masked position.
    pub(super) save_distributions: bool,
    /// Per row of the model's output, the top-k selection's floor hint from the last step
    /// (`sparse::top_k_support`).
    pub(super) floor_hints: RefCell<Vec<f32>>,
}

/// Flat indices `b * g + j` of generated positions, in row-major order (upstream's
/// `x[mask_index]` order), on the host and on the device.
pub(super) struct Rows {
    pub(super) host: Vec<i64>,
    pub(super) dev: Tensor,
}

/// Which positions a step works on: `pick` (those whose token is chosen) and `rows` (those
/// whose logits are computed: `pick`, plus every masked position when distributions are
/// saved). `pick` is a subset of `rows`; `pick_in_rows` locates it there when they differ.
pub(super) struct Work {
    pub(super) rows: Rows,
    pub(super) pick: Rows,
    pub(super) pick_in_rows: Option<Tensor>,
}

impl Work {
    /// The rows of `x` (`[rows, ...]`) that belong to `pick`.
    pub(super) fn picked(&self, x: &Tensor) -> Result<Tensor, ProbeError> {
        Ok(match &self.pick_in_rows {
            Some(at) => x.f_index_select(0, at)?,
            None => x.shallow_clone(),
        })
    }
}

impl Ctx<'_> {
    pub(super) fn rows(&self, host: Vec<i64>) -> Result<Rows, ProbeError> {
        let dev = Tensor::f_from_slice(&host)?.f_to_device(self.dev)?;
        Ok(Rows { host, dev })
    }

    /// Flat indices of the positions of `gen_host` (`[B * G]`) that satisfy `keep(flat index)`.
    pub(super) fn masked_where(&self, gen_host: &[i64], keep: impl Fn(usize) -> bool) -> Vec<i64> {
        (0..gen_host.len())
            .filter(|&i| gen_host[i] == self.mask_id && keep(i))
            .map(|i| i as i64)
            .collect()
    }

    /// `pick` plus, when distributions are saved, every masked position of `gen_host`.
    pub(super) fn work(&self, gen_host: &[i64], pick: Vec<i64>) -> Result<Work, ProbeError> {
        if !self.save_distributions {
            let pick = self.rows(pick)?;
            let rows = Rows {
                host: pick.host.clone(),
                dev: pick.dev.shallow_clone(),
            };
            return Ok(Work {
                rows,
                pick,
                pick_in_rows: None,
            });
        }
        let rows = self.masked_where(gen_host, |_| true);
        let pick_in_rows = if pick == rows {
            None
        } else {
            let at: Vec<i64> = pick
                .iter()
                .map(|i| rows.binary_search(i).expect("picked positions are masked") as i64)
                .collect();
            Some(Tensor::f_from_slice(&at)?.f_to_device(self.dev)?)
        };
        Ok(Work {
            rows: self.rows(rows)?,
            pick: self.rows(pick)?,
            pick_in_rows,
        })
    }

    /// A `[B, G]` bool tensor from host flags.
    pub(super) fn grid(&self, flags: &[bool]) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_from_slice(flags)?
            .f_view([self.b, self.g])?
            .f_to_device(self.dev)?)
    }

    /// A `[B, G]` tensor holding `values` (one per row of `at`) at `at`, `fill` elsewhere.
    pub(super) fn spread(
        &self,
        at: &Rows,
        values: &Tensor,
        fill: f64,
    ) -> Result<Tensor, ProbeError> {
        let full = Tensor::f_full([self.b * self.g], fill, (values.kind(), self.dev))?;
        Ok(full
            .f_index_copy(0, &at.dev, values)?
            .f_view([self.b, self.g])?)
    }

    /// Logits `[n, V]` of the generated positions `rows` (flat indices), with forbidden ids at -inf.
    /// Everything after the model call works on these rows only: positions that are already
    /// committed, or not eligible this step, cost nothing.
    pub(super) fn logits(&self, gen: &Tensor, rows: &Rows) -> Result<Tensor, ProbeError> {
        let flat = self.forward(gen)?;
        self.select_logits(&flat, rows)
    }

    /// The model call on the batch with generated ids `gen`: logits `[B * G, V]` of the
    /// generated positions, row-major.
    pub(super) fn forward(&self, gen: &Tensor) -> Result<Tensor, ProbeError> {
        let x = Tensor::f_cat(&[self.prompt_block, gen], 1)?;
        let out = self.model.logits(&x, self.valid, self.p)?;
        let expected = [self.b, self.g, self.v];
        if out.size() != expected {
            return Err(ProbeError::Input(format!(
                "model returned logits of shape {:?}, expected {expected:?}",
                out.size()
            )));
        }
        Ok(out.f_reshape([self.b * self.g, self.v])?)
    }

    /// [`Ctx::logits`] on the model's output `flat` (from [`Ctx::forward`]).
    pub(super) fn select_logits(&self, flat: &Tensor, rows: &Rows) -> Result<Tensor, ProbeError> {
        let mut logits = flat.f_index_select(0, &rows.dev)?;
        if let Some(ids) = &self.forbidden {
            let _ = logits.f_index_fill_(1, ids, f64::NEG_INFINITY)?;
        }
        Ok(logits)
    }
}
