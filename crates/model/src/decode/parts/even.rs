//! LLaDA's `get_num_transfer_tokens`: `n` tokens over `steps` steps.

/// `n / steps` tokens per step, plus one for each of the first `n % steps` steps, so the
/// counts sum to `n` and the early steps carry the remainder (as every LLaDA-derived
/// sampler splits a block's masks).
pub fn even_schedule(n: usize, steps: usize) -> Vec<usize> {
    if steps == 0 {
        return Vec::new();
    }
    let (base, rest) = (n / steps, n % steps);
    (0..steps).map(|i| base + usize::from(i < rest)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainder_goes_to_the_first_steps() {
        assert_eq!(even_schedule(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(even_schedule(3, 5), vec![1, 1, 1, 0, 0]);
        assert_eq!(even_schedule(8, 8), vec![1; 8]);
        assert!(even_schedule(5, 0).is_empty());
    }
}
