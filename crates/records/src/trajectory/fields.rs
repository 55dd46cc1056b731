//! One line's fields, checked one by one so that every error names its field.

use serde_json::{Map, Value};

use super::commits::commits_form;
use super::history::history_form;
use super::input::json_kind;
use super::{
    field_err, LineError, Trajectory, TrajectoryForm, TrajectorySettings, FIELDS,
    TRAJECTORY_VERSION,
};
use crate::schema::Generation;

pub(super) fn line_form(object: &Map<String, Value>) -> Result<TrajectoryForm, LineError> {
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(field_err(
            unknown,
            format!("unknown field; a line holds {}", FIELDS.join(", ")),
        ));
    }
    let has = |k: &str| object.contains_key(k);
    match (has("history"), has("gen_ids") || has("commit_step")) {
        (true, true) => Err(field_err(
            "history",
            "a line holds either `history` or `gen_ids` + `commit_step`, not both",
        )),
        (true, false) => Ok(TrajectoryForm::History),
        (false, true) => Ok(TrajectoryForm::Commits),
        (false, false) => Err(field_err(
            "gen_ids",
            "missing: a line holds `gen_ids` + `commit_step` + `steps`, or `history`",
        )),
    }
}

pub(super) fn uint(object: &Map<String, Value>, field: &str) -> Result<Option<u64>, LineError> {
    match object.get(field) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| field_err(field, format!("expected a non-negative integer, found {v}"))),
    }
}

pub(super) fn id(v: &Value, field: &str, at: &dyn Fn() -> String) -> Result<u32, LineError> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| field_err(field, format!("{}: {v} is not a token id", at())))
}

pub(super) fn list<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a [Value], LineError> {
    match object.get(field) {
        None => Err(field_err(field, "missing")),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(field_err(
            field,
            format!("expected a list, found {}", json_kind(v)),
        )),
    }
}

pub(super) fn ids(object: &Map<String, Value>, field: &str) -> Result<Vec<u32>, LineError> {
    list(object, field)?
        .iter()
        .enumerate()
        .map(|(i, v)| id(v, field, &|| format!("element {i}")))
        .collect()
}

/// Ids must be in the vocabulary; the mask id always is.
pub(super) fn check_vocab(
    values: &[u32],
    field: &str,
    settings: &TrajectorySettings,
    mask_id: Option<u32>,
    at: &dyn Fn(usize) -> String,
) -> Result<(), LineError> {
    let Some(vocab) = settings.vocab_size else {
        return Ok(());
    };
    match values
        .iter()
        .position(|&t| t >= vocab && Some(t) != mask_id)
    {
        Some(i) => Err(field_err(
            field,
            format!(
                "{}: id {} is outside the vocabulary (ids 0..{vocab})",
                at(i),
                values[i]
            ),
        )),
        None => Ok(()),
    }
}

pub(super) fn parse_line(
    object: &Map<String, Value>,
    form: TrajectoryForm,
    ordinal: usize,
    mask_id: &mut Option<u32>,
    settings: &TrajectorySettings,
) -> Result<Trajectory, LineError> {
    if let Some(v) = uint(object, "version")? {
        if v != TRAJECTORY_VERSION {
            return Err(field_err(
                "version",
                format!(
                    "version {v} is not supported; this build reads version {TRAJECTORY_VERSION}"
                ),
            ));
        }
    }
    let prompt_index = match uint(object, "prompt_index")? {
        Some(v) => u32::try_from(v).map_err(|_| field_err("prompt_index", "too large"))?,
        None => ordinal as u32,
    };
    let prompt_id = match object.get("prompt_id") {
        None => prompt_index.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => {
            return Err(field_err(
                "prompt_id",
                format!("expected a string, found {}", json_kind(v)),
            ))
        }
    };
    let text = match object.get("text") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(field_err(
                "text",
                format!("expected a string, found {}", json_kind(v)),
            ))
        }
    };
    if let Some(line_mask) = uint(object, "mask_id")? {
        let line_mask =
            u32::try_from(line_mask).map_err(|_| field_err("mask_id", "not a token id"))?;
        match *mask_id {
            Some(m) if m != line_mask => {
                return Err(field_err(
                    "mask_id",
                    format!("{line_mask} differs from the mask id {m} given or found before"),
                ))
            }
            _ => *mask_id = Some(line_mask),
        }
    }
    let prompt_ids = ids(object, "prompt_ids")?;
    check_vocab(&prompt_ids, "prompt_ids", settings, None, &|i| {
        format!("element {i}")
    })?;
    let (gen_ids, commit_step, steps, remask_count, commits) = match form {
        TrajectoryForm::Commits => commits_form(object, *mask_id, settings)?,
        TrajectoryForm::History => {
            let Some(mask) = *mask_id else {
                return Err(field_err(
                    "mask_id",
                    "missing: a history needs the mask id (`mask_id` in the line, or --mask-id)",
                ));
            };
            history_form(object, &prompt_ids, mask, settings)?
        }
    };
    Ok(Trajectory {
        generation: Generation {
            prompt_index,
            prompt_id,
            prompt_ids,
            gen_ids,
            commit_step,
            text: text.clone().unwrap_or_default(),
            steps,
            remask_count,
        },
        text_given: text.is_some(),
        commits,
    })
}

pub(super) fn remask_error(field: &str, what: &str) -> LineError {
    field_err(
        field,
        format!(
            "{what}: a committed token is masked again or replaced; if the sampler remasks \
             (ReMDM-style), import with --allow-remasking (`allow_remasking = true` in a spec), \
             else the recording is wrong (a row recorded before its commit, or x0 recorded instead of x)"
        ),
    )
}
