//! The commit form: `gen_ids`, `commit_step` and `steps` as given, checked against each other.

use serde_json::{Map, Value};

use super::fields::{check_vocab, ids, list, remask_error, uint};
use super::{field_err, Commit, LineError, TrajectorySettings};

pub(super) type Parsed = (Vec<u32>, Vec<i32>, u32, Option<Vec<u32>>, Vec<Commit>);

pub(super) fn commits_form(
    object: &Map<String, Value>,
    mask_id: Option<u32>,
    settings: &TrajectorySettings,
) -> Result<Parsed, LineError> {
    let gen_ids = ids(object, "gen_ids")?;
    check_vocab(&gen_ids, "gen_ids", settings, mask_id, &|i| {
        format!("element {i}")
    })?;
    let steps = uint(object, "steps")?
        .ok_or_else(|| field_err("steps", "missing: the commit form needs `steps`"))?;
    let steps = u32::try_from(steps)
        .ok()
        .filter(|&s| s >= 1)
        .ok_or_else(|| field_err("steps", format!("{steps} is not a step count (1 or more)")))?;
    let raw = list(object, "commit_step")?;
    if raw.len() != gen_ids.len() {
        return Err(field_err(
            "commit_step",
            format!(
                "has {} entries but `gen_ids` has {}",
                raw.len(),
                gen_ids.len()
            ),
        ));
    }
    let mut commit_step = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let s = v
            .as_i64()
            .filter(|&s| s >= -1 && s < i64::from(steps))
            .ok_or_else(|| {
                field_err(
                    "commit_step",
                    format!("element {i}: {v} is not a step in [-1, {steps}) (`steps` is {steps})"),
                )
            })?;
        if let Some(mask) = mask_id {
            if (s < 0) != (gen_ids[i] == mask) {
                return Err(field_err(
                    "commit_step",
                    match s < 0 {
                        true => format!("element {i}: -1 (never committed) but `gen_ids` holds {} there, not the mask id {mask}", gen_ids[i]),
                        false => format!("element {i}: committed at step {s} but `gen_ids` holds the mask id there"),
                    },
                ));
            }
        }
        commit_step.push(s as i32);
    }
    let remask_count = match object.get("remask_count") {
        None => None,
        Some(_) => {
            let counts = list(object, "remask_count")?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or_else(|| {
                            field_err("remask_count", format!("element {i}: {v} is not a count"))
                        })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            if counts.len() != gen_ids.len() {
                return Err(field_err(
                    "remask_count",
                    format!(
                        "has {} entries but `gen_ids` has {}",
                        counts.len(),
                        gen_ids.len()
                    ),
                ));
            }
            if let Some(i) = counts.iter().position(|&c| c > 0) {
                if !settings.allow_remasking {
                    return Err(remask_error("remask_count", &format!("element {i}")));
                }
            }
            Some(counts)
        }
    };
    let masked_after = |step: u32| {
        commit_step
            .iter()
            .filter(|&&c| c < 0 || c as u32 > step)
            .count() as u32
    };
    let mut commits: Vec<Commit> = commit_step
        .iter()
        .enumerate()
        .filter(|(_, &c)| c >= 0)
        .map(|(i, &c)| Commit {
            step: c as u32,
            gen_index: i as u32,
            token_id: gen_ids[i],
            masked_after: masked_after(c as u32),
        })
        .collect();
    commits.sort_by_key(|c| (c.step, c.gen_index));
    Ok((gen_ids, commit_step, steps, remask_count, commits))
}
