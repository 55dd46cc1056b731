//! The history form: commit steps, remask counts and every commit derived from the sequence
//! after each step.

use serde_json::{Map, Value};

use super::commits::Parsed;
use super::fields::{check_vocab, id, list, remask_error, uint};
use super::input::json_kind;
use super::{field_err, Commit, LineError, TrajectorySettings};

pub(super) fn history_form(
    object: &Map<String, Value>,
    prompt_ids: &[u32],
    mask: u32,
    settings: &TrajectorySettings,
) -> Result<Parsed, LineError> {
    let rows_raw = list(object, "history")?;
    if rows_raw.is_empty() {
        return Err(field_err("history", "is empty: it needs one row per step"));
    }
    let mut rows: Vec<Vec<u32>> = Vec::with_capacity(rows_raw.len());
    for (k, row) in rows_raw.iter().enumerate() {
        let Value::Array(values) = row else {
            return Err(field_err(
                "history",
                format!("step {k}: expected a list of ids, found {}", json_kind(row)),
            ));
        };
        let row: Vec<u32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| id(v, "history", &|| format!("step {k}, position {i}")))
            .collect::<Result<_, _>>()?;
        let width = rows.first().map_or(row.len(), Vec::len);
        if row.len() != width {
            return Err(field_err(
                "history",
                format!(
                    "step {k} has {} ids but step 0 has {width}; every row is the whole sequence",
                    row.len()
                ),
            ));
        }
        if row.len() <= prompt_ids.len() {
            return Err(field_err(
                "history",
                format!(
                    "step {k} has {} ids, no more than the {} of `prompt_ids`: a row is the prompt followed by the generated part",
                    row.len(),
                    prompt_ids.len()
                ),
            ));
        }
        if let Some(p) = (0..prompt_ids.len()).find(|&p| row[p] != prompt_ids[p]) {
            return Err(field_err(
                "history",
                format!(
                    "step {k} holds {} at prompt position {p}, where `prompt_ids` has {}: a step may not change (or mask) a prompt token",
                    row[p], prompt_ids[p]
                ),
            ));
        }
        check_vocab(&row, "history", settings, Some(mask), &|i| {
            format!("step {k}, position {i}")
        })?;
        rows.push(row);
    }
    let steps = rows.len() as u32;
    if let Some(declared) = uint(object, "steps")? {
        if declared != u64::from(steps) {
            return Err(field_err(
                "steps",
                format!("{declared}, but `history` has {steps} rows (one per step)"),
            ));
        }
    }
    if object.contains_key("remask_count") {
        return Err(field_err(
            "remask_count",
            "not allowed with `history`, which implies it",
        ));
    }
    let start = prompt_ids.len();
    let width = rows[0].len() - start;
    let last = &rows[rows.len() - 1][start..];
    let gen_ids = last.to_vec();
    let mut commit_step = vec![-1i32; width];
    let mut remask_count = vec![0u32; width];
    let mut commits = Vec::new();
    for (k, row) in rows.iter().enumerate() {
        let masked_after = row[start..].iter().filter(|&&t| t == mask).count() as u32;
        for j in 0..width {
            let (t, before) = (row[start + j], (k > 0).then(|| rows[k - 1][start + j]));
            let before = before.unwrap_or(mask);
            if before != mask && t != before {
                if !settings.allow_remasking {
                    return Err(remask_error(
                        "history",
                        &format!(
                            "step {k}, position {}: {before} became {}",
                            start + j,
                            if t == mask {
                                "the mask again".to_string()
                            } else {
                                t.to_string()
                            }
                        ),
                    ));
                }
                remask_count[j] += 1;
            }
            if t != mask && t != before {
                commits.push(Commit {
                    step: k as u32,
                    gen_index: j as u32,
                    token_id: t,
                    masked_after,
                });
            }
        }
    }
    // A position's commit step: the first step from which it holds its final token for good.
    for (j, step) in commit_step.iter_mut().enumerate() {
        if gen_ids[j] == mask {
            continue;
        }
        let mut k = rows.len() - 1;
        while k > 0 && rows[k - 1][start + j] == gen_ids[j] {
            k -= 1;
        }
        *step = k as i32;
    }
    // Counts are recorded for samplers declared to remask; for the others they are all zero
    // (a remask is an error), and leaving them out keeps the folder identical to a decoded one.
    let remask_count = settings.allow_remasking.then_some(remask_count);
    Ok((gen_ids, commit_step, steps, remask_count, commits))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn derive(rows: serde_json::Value, allow: bool) -> Result<Parsed, String> {
        let line = json!({ "prompt_ids": [1], "history": rows });
        let settings = TrajectorySettings {
            allow_remasking: allow,
            ..Default::default()
        };
        history_form(line.as_object().unwrap(), &[1], 0, &settings).map_err(|e| e.message)
    }

    #[test]
    fn a_token_replaced_and_restored_commits_at_its_last_change() {
        // Position 1: 5, then 6, then 5 again; position 2: 7 from the start.
        let (gen_ids, commit_step, steps, remask, commits) =
            derive(json!([[1, 5, 7], [1, 6, 7], [1, 5, 7]]), true).unwrap();
        assert_eq!(gen_ids, [5, 7]);
        assert_eq!(commit_step, [2, 0]);
        assert_eq!(steps, 3);
        assert_eq!(remask, Some(vec![2, 0]));
        let at: Vec<(u32, u32, u32, u32)> = commits
            .iter()
            .map(|c| (c.step, c.gen_index, c.token_id, c.masked_after))
            .collect();
        assert_eq!(at, [(0, 0, 5, 0), (0, 1, 7, 0), (1, 0, 6, 0), (2, 0, 5, 0)]);
    }

    #[test]
    fn a_position_remasked_at_the_end_is_uncommitted_and_counted() {
        let (gen_ids, commit_step, _, remask, _) =
            derive(json!([[1, 5, 0], [1, 5, 7], [1, 0, 7]]), true).unwrap();
        assert_eq!(gen_ids, [0, 7]);
        assert_eq!(commit_step, [-1, 1]);
        assert_eq!(remask, Some(vec![1, 0]));
        // Without remasking allowed, nothing remasks and no counts are recorded.
        let (_, _, _, remask, _) = derive(json!([[1, 5, 0], [1, 5, 7]]), false).unwrap();
        assert_eq!(remask, None);
        let err = derive(json!([[1, 5, 0], [1, 0, 7]]), false).unwrap_err();
        assert!(
            err.contains("step 1, position 1: 5 became the mask again"),
            "{err}"
        );
    }
}
