//! What the mixture-of-experts architectures (LLaDA-MoE, LLaDA2.0) compute alike: the weighted
//! sum over the experts a router chose, each expert a [`SwiGlu`].
//!
//! Routers differ (softmax with a bias added to the weights in LLaDA-MoE; sigmoid, group-limited
//! selection and a bias used for selection only in LLaDA2.0), so each lives in its model's file.

use tch::{Kind, Tensor};

use super::SwiGlu;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// The routed experts of one MoE layer, `{prefix}.{e}`.
#[derive(Debug)]
pub(crate) struct Experts {
    experts: Vec<SwiGlu>,
}

impl Experts {
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        prefix: &str,
        count: i64,
        d: i64,
        width: i64,
    ) -> Result<Self, ProbeError> {
        let experts = (0..count)
            .map(|e| SwiGlu::load(src, &format!("{prefix}.{e}"), d, width))
            .collect::<Result<_, _>>()?;
        Ok(Experts { experts })
    }

    /// `Σ_j weights[t, j] · expert_{chosen[t, j]}(y_t)` for every token `t`: `y` `[N, d]`,
    /// `chosen` int64 `[N, k]`, `weights` `[N, k]` (any float kind; cast to `y`'s). Experts
    /// are visited in order and each adds its tokens' outputs with `index_add`, as the
    /// reference loops do, and only the tokens routed to an expert go through it.
    pub(crate) fn forward(&self, y: &Tensor, chosen: &Tensor, weights: &Tensor) -> Tensor {
        let n = y.size()[0];
        let k = chosen.size()[1];
        let flat_expert = chosen.reshape([-1]);
        let flat_token = Tensor::arange(n, (Kind::Int64, y.device()))
            .unsqueeze(1)
            .expand([n, k], false)
            .reshape([-1]);
        let flat_weight = weights.reshape([-1]).to_kind(y.kind());
        // One host round trip for the whole layer: which experts have tokens at all.
        let order = flat_expert.argsort_stable(true, 0, false);
        let sorted = flat_expert.index_select(0, &order);
        let counts = sorted.bincount(None::<Tensor>, self.experts.len() as i64);
        let counts: Vec<i64> = Vec::try_from(&counts).expect("int64 counts");
        let mut out = y.zeros_like();
        let mut start = 0;
        for (e, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let slots = order.narrow(0, start, count);
            start += count;
            let tokens = flat_token.index_select(0, &slots);
            let w = flat_weight.index_select(0, &slots).unsqueeze(1);
            let h = self.experts[e].forward(&y.index_select(0, &tokens)) * w;
            out = out.index_add(0, &tokens, &h);
        }
        out
    }
}

/// How a MoE layer picks experts: for tokens `y` `[N, d]`, the chosen experts (int64 `[N, k]`)
/// and their weights (`[N, k]`).
pub(crate) trait Router {
    fn route(&self, y: &Tensor) -> (Tensor, Tensor);
}

/// One MoE feed-forward: its router, the routed experts, and a shared expert that every token
/// goes through with weight 1.
#[derive(Debug)]
pub(crate) struct MoeLayer<R> {
    pub(crate) router: R,
    pub(crate) experts: Experts,
    pub(crate) shared: Option<SwiGlu>,
}

impl<R: Router> MoeLayer<R> {
    pub(crate) fn forward(&self, y: &Tensor) -> Tensor {
        let shape = y.size();
        let flat = y.reshape([-1, shape[2]]);
        let (chosen, weights) = self.router.route(&flat);
        let mut out = self.experts.forward(&flat, &chosen, &weights);
        if let Some(shared) = &self.shared {
            out += shared.forward(&flat);
        }
        out.view(shape.as_slice())
    }
}

/// The feed-forward of one layer: a dense SwiGLU or a mixture of experts.
#[derive(Debug)]
pub(crate) enum FeedForward<R> {
    Dense(SwiGlu),
    Moe(MoeLayer<R>),
}

impl<R: Router> FeedForward<R> {
    pub(crate) fn forward(&self, y: &Tensor) -> Tensor {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(y),
            FeedForward::Moe(moe) => moe.forward(y),
        }
    }
}
