//! Reading a trajectories file into numbered JSON objects: JSON Lines as written, Parquet rows
//! converted, so that one set of checks serves both.

use std::io::BufRead;
use std::path::Path;

use polars::prelude::*;
use polars_io::prelude::*;
use serde_json::{Map, Value};

use crate::error::Error;

/// An input object with its 1-based line (JSON Lines) or row (Parquet) number.
pub(super) type Numbered = (usize, Map<String, Value>);

/// The non-blank lines of a JSON Lines file as objects, with their 1-based line numbers.
pub(super) fn jsonl_objects(path: &Path) -> Result<Vec<Numbered>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    let mut lines = std::io::BufReader::new(file).lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let last = lines.peek().is_none();
        let at = |message: String| Error::Trajectory {
            path: path.to_owned(),
            at: format!("line {}", i + 1),
            field: None,
            message,
        };
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(map)) => out.push((i + 1, map)),
            Ok(other) => {
                return Err(at(format!(
                    "expected a JSON object, found {}",
                    json_kind(&other)
                )))
            }
            Err(e) if e.is_eof() && last => {
                return Err(at(format!(
                    "the last line ends before its JSON does (a truncated file?): {e}"
                )))
            }
            Err(e) => return Err(at(format!("not valid JSON: {e}"))),
        }
    }
    Ok(out)
}

/// The rows of a Parquet file as JSON objects (null cells left out), with 1-based row numbers.
pub(super) fn parquet_objects(path: &Path) -> Result<Vec<Numbered>, Error> {
    let parquet = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().map_err(parquet)?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut map = Map::new();
        for column in df.columns() {
            let value = column.get(i).map_err(parquet)?;
            let json = any_to_json(&value).map_err(|message| Error::Column {
                path: path.to_owned(),
                column: column.name().to_string(),
                message,
            })?;
            if !json.is_null() {
                map.insert(column.name().to_string(), json);
            }
        }
        out.push((i + 1, map));
    }
    Ok(out)
}

pub(super) fn any_to_json(value: &AnyValue) -> Result<Value, String> {
    Ok(match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String((*s).to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::UInt8(v) => (*v).into(),
        AnyValue::UInt16(v) => (*v).into(),
        AnyValue::UInt32(v) => (*v).into(),
        AnyValue::UInt64(v) => (*v).into(),
        AnyValue::Int8(v) => (*v).into(),
        AnyValue::Int16(v) => (*v).into(),
        AnyValue::Int32(v) => (*v).into(),
        AnyValue::Int64(v) => (*v).into(),
        AnyValue::Float32(v) => (*v as f64).into(),
        AnyValue::Float64(v) => (*v).into(),
        AnyValue::List(s) => Value::Array(
            s.iter()
                .map(|v| any_to_json(&v))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("unsupported type {}", other.dtype())),
    })
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
