//! Parquet / JSON Lines tables, JSON files, atomic writes and staged output folders.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::metrics::{CurvePoint, PromptMetric};
use crate::schema::{
    CorruptRecord, CorruptText, Generation, ProbeRecord, StepDistribution, StepRecord,
};

/// On-disk format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// Apache Parquet (zstd), list columns for top-k.
    #[default]
    Parquet,
    /// One JSON object per line, keys equal to the Parquet column names.
    Jsonl,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// A row type that has a columnar (Parquet) form as well as a serde (JSON Lines) form.
pub trait Table: Sized + Serialize + DeserializeOwned {
    /// Builds a data frame whose columns are the fields of `Self`.
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame>;
    /// Reads rows back; `path` only names the file in errors.
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error>;
}

/// Writes `rows` to `dir/stem.{parquet,jsonl}` atomically and returns the path.
pub fn write_table<T: Table>(
    dir: &Path,
    stem: &str,
    rows: &[T],
    format: Format,
) -> Result<PathBuf, Error> {
    let path = dir.join(format!("{stem}.{}", format.extension()));
    match format {
        Format::Parquet => {
            let mut df = T::to_frame(rows).map_err(|source| Error::Parquet {
                path: path.clone(),
                source,
            })?;
            atomic_write(&path, |w| {
                ParquetWriter::new(w)
                    .with_compression(ParquetCompression::Zstd(None))
                    .finish(&mut df)
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            })?;
        }
        Format::Jsonl => {
            atomic_write(&path, |w| {
                for row in rows {
                    serde_json::to_writer(&mut *w, row)?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            })?;
        }
    }
    Ok(path)
}

/// Reads a table from a `.parquet` or `.jsonl` file, or from a folder holding `stem.parquet`/`stem.jsonl`
/// when `path` is a folder and `stem` is given.
pub fn read_table<T: Table>(path: &Path) -> Result<Vec<T>, Error> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let df = ParquetReader::new(file)
                .finish()
                .map_err(|source| Error::Parquet {
                    path: path.to_owned(),
                    source,
                })?;
            T::from_frame(&df, path)
        }
        Some("jsonl") | Some("json") => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut rows = Vec::new();
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let row = serde_json::from_str(&line).map_err(|source| Error::Json {
                    path: path.to_owned(),
                    line: Some(i + 1),
                    source,
                })?;
                rows.push(row);
            }
            Ok(rows)
        }
        _ => Err(Error::Invalid {
            path: path.to_owned(),
            message: "expected a .parquet or .jsonl table".into(),
        }),
    }
}

impl Format {
    /// Finds `dir/stem.parquet` or `dir/stem.jsonl`, whichever exists.
    pub fn find(dir: &Path, stem: &str) -> Result<PathBuf, Error> {
        for f in [Format::Parquet, Format::Jsonl] {
            let p = dir.join(format!("{stem}.{}", f.extension()));
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(Error::Invalid {
            path: dir.to_owned(),
            message: format!("no {stem}.parquet or {stem}.jsonl in this folder"),
        })
    }
}

/// Reads and parses a JSON file, naming the file (and line) on error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        line: Some(source.line()),
        path: path.to_owned(),
        source,
    })
}

/// Writes pretty JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    atomic_write(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Writes a file through a temporary file in the same folder and renames it into place,
/// so readers never see a half-written file.
pub fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".cp-").suffix(".tmp");
    // A temporary file is private (0600); the output it becomes is not, so it gets the mode a
    // plain create would give it (0666 through the umask).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The folder that holds `target` (created) and `target`'s own name: where the hidden folders
/// that belong to an output folder (its staging folder, its kept batches) go.
pub(crate) fn parent_and_name(target: &Path) -> Result<(PathBuf, String), Error> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    Ok((parent, name))
}

/// An output folder that is written in a hidden staging folder beside it and moved into place
/// by [`OutputDir::commit`]. Dropping it uncommitted removes the staging folder, so an error
/// leaves no partial output.
#[derive(Debug)]
pub struct OutputDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl OutputDir {
    /// Starts staging output for `target`. Fails if `target` exists and is not a folder.
    pub fn create(target: &Path) -> Result<Self, Error> {
        if target.exists() && !target.is_dir() {
            return Err(Error::Invalid {
                path: target.to_owned(),
                message: "output path exists and is not a folder".into(),
            });
        }
        let (parent, name) = parent_and_name(target)?;
        remove_dead_staging(&parent, &name)?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        Ok(OutputDir {
            target: target.to_owned(),
            staging,
            committed: false,
        })
    }

    /// The staging folder to write into.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The final folder.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the staged output into place. When the target folder exists, each staged entry
    /// replaces its namesake there; other files in it are left alone.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        // Another process (a shard of the same run building the same index) may create the
        // target between the check and the rename: then its entries are replaced one by one.
        let moved_whole = !self.target.exists() && fs::rename(&self.staging, &self.target).is_ok();
        if !moved_whole && !self.target.is_dir() {
            fs::rename(&self.staging, &self.target).map_err(|e| Error::io(&self.target, e))?;
        } else if !moved_whole {
            let entries = fs::read_dir(&self.staging).map_err(|e| Error::io(&self.staging, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&self.staging, e))?;
                let dest = self.target.join(entry.file_name());
                if dest.is_dir() {
                    fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
                }
                fs::rename(entry.path(), &dest).map_err(|e| Error::io(&dest, e))?;
            }
            fs::remove_dir_all(&self.staging).map_err(|e| Error::io(&self.staging, e))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Whether the process `pid` runs (where `/proc` tells; elsewhere every process counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes `.{name}.partial-PID` staging folders (`OutputDir`) of processes that are no longer
/// running, which a killed run leaves behind. Only where `/proc` tells whether a process lives.
fn remove_dead_staging(parent: &Path, name: &str) -> Result<(), Error> {
    if !Path::new("/proc/self").exists() {
        return Ok(());
    }
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| pid == std::process::id() || alive(pid));
        if !alive {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Columnar conversion. One small builder and one small reader serve every table.

struct Frame {
    cols: Vec<Column>,
}

impl Frame {
    fn new() -> Self {
        Frame { cols: Vec::new() }
    }
    fn col<T>(mut self, name: &str, values: Vec<T>) -> Self
    where
        Series: NamedFrom<Vec<T>, [T]>,
    {
        self.cols.push(Series::new(name.into(), values).into());
        self
    }
    fn list_u32<'a>(
        mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = &'a [u32]>,
    ) -> Self {
        let mut b = ListPrimitiveChunkedBuilder::<UInt32Type>::new(
            name.into(),
            values.len(),
            values.len() * 4,
            DataType::UInt32,
        );
        values.for_each(|v| b.append_slice(v));
        self.cols.push(b.finish().into_series().into());
        self
    }
    /// A list column that is written only when some row has a value (rows without one are null).
    fn opt_list_u32<'a>(
        mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = Option<&'a [u32]>> + Clone,
    ) -> Self {
        if values.clone().all(|v| v.is_none()) {
            return self;
        }
        let mut b = ListPrimitiveChunkedBuilder::<UInt32Type>::new(
            name.into(),
            values.len(),
            values.len() * 4,
            DataType::UInt32,
        );
        values.for_each(|v| match v {
            Some(v) => b.append_slice(v),
            None => b.append_null(),
        });
        self.cols.push(b.finish().into_series().into());
        self
    }
    fn list_i32<'a>(
        mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = &'a [i32]>,
    ) -> Self {
        let mut b = ListPrimitiveChunkedBuilder::<Int32Type>::new(
            name.into(),
            values.len(),
            values.len() * 4,
            DataType::Int32,
        );
        values.for_each(|v| b.append_slice(v));
        self.cols.push(b.finish().into_series().into());
        self
    }
    fn list_f32<'a>(
        mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = &'a [f32]>,
    ) -> Self {
        let mut b = ListPrimitiveChunkedBuilder::<Float32Type>::new(
            name.into(),
            values.len(),
            values.len() * 4,
            DataType::Float32,
        );
        values.for_each(|v| b.append_slice(v));
        self.cols.push(b.finish().into_series().into());
        self
    }
    fn list_str<'a>(
        mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = &'a [String]>,
    ) -> Self {
        let mut b = ListStringChunkedBuilder::new(name.into(), values.len(), values.len() * 4);
        values.for_each(|v| b.append_values_iter(v.iter().map(String::as_str)));
        self.cols.push(b.finish().into_series().into());
        self
    }
    fn finish(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(self.cols)
    }
}

struct Cols<'a> {
    df: &'a DataFrame,
    path: &'a Path,
}

impl<'a> Cols<'a> {
    fn err(&self, column: &str, message: impl std::fmt::Display) -> Error {
        Error::Column {
            path: self.path.to_owned(),
            column: column.to_owned(),
            message: message.to_string(),
        }
    }
    fn get(&self, name: &str) -> Result<&'a Column, Error> {
        self.df.column(name).map_err(|_| self.err(name, "missing"))
    }
    fn cast(&self, name: &str, dtype: &DataType) -> Result<Series, Error> {
        let c = self.get(name)?;
        c.as_materialized_series()
            .strict_cast(dtype)
            .map_err(|_| self.err(name, format!("expected {dtype}, found {}", c.dtype())))
    }
    fn no_nulls<T>(
        &self,
        name: &str,
        it: impl Iterator<Item = Option<T>>,
    ) -> Result<Vec<T>, Error> {
        it.map(|v| v.ok_or_else(|| self.err(name, "unexpected null")))
            .collect()
    }
    fn u32(&self, name: &str) -> Result<Vec<u32>, Error> {
        let s = self.cast(name, &DataType::UInt32)?;
        self.no_nulls(name, s.u32().expect("cast").iter())
    }
    fn u64(&self, name: &str) -> Result<Vec<u64>, Error> {
        let s = self.cast(name, &DataType::UInt64)?;
        self.no_nulls(name, s.u64().expect("cast").iter())
    }
    fn f32(&self, name: &str) -> Result<Vec<f32>, Error> {
        let s = self.cast(name, &DataType::Float32)?;
        self.no_nulls(name, s.f32().expect("cast").iter())
    }
    fn f64(&self, name: &str) -> Result<Vec<f64>, Error> {
        let s = self.cast(name, &DataType::Float64)?;
        self.no_nulls(name, s.f64().expect("cast").iter())
    }
    fn opt_f32(&self, name: &str) -> Result<Vec<Option<f32>>, Error> {
        if self.df.column(name).is_err() {
            return Ok(vec![None; self.df.height()]);
        }
        let s = self.cast(name, &DataType::Float32)?;
        Ok(s.f32().expect("cast").iter().collect())
    }
    fn str(&self, name: &str) -> Result<Vec<String>, Error> {
        let s = self.cast(name, &DataType::String)?;
        self.no_nulls(
            name,
            s.str().expect("cast").iter().map(|v| v.map(str::to_owned)),
        )
    }
    fn list<T>(
        &self,
        name: &str,
        inner: DataType,
        conv: impl Fn(&Series) -> Vec<T>,
    ) -> Result<Vec<Vec<T>>, Error> {
        let s = self.cast(name, &DataType::List(Box::new(inner)))?;
        let list = s.list().expect("cast");
        list.series_iter()
            .map(|v| {
                v.map(|s| conv(&s))
                    .ok_or_else(|| self.err(name, "unexpected null"))
            })
            .collect()
    }
    fn list_u32(&self, name: &str) -> Result<Vec<Vec<u32>>, Error> {
        self.list(name, DataType::UInt32, |s| {
            s.u32().expect("cast").no_null_iter().collect()
        })
    }
    fn list_i32(&self, name: &str) -> Result<Vec<Vec<i32>>, Error> {
        self.list(name, DataType::Int32, |s| {
            s.i32().expect("cast").no_null_iter().collect()
        })
    }
    /// An optional list column: absent, or null in a row, gives `None`.
    fn opt_list_u32(&self, name: &str) -> Result<Vec<Option<Vec<u32>>>, Error> {
        if self.df.column(name).is_err() {
            return Ok(vec![None; self.df.height()]);
        }
        let s = self.cast(name, &DataType::List(Box::new(DataType::UInt32)))?;
        Ok(s.list()
            .expect("cast")
            .series_iter()
            .map(|v| v.map(|s| s.u32().expect("cast").no_null_iter().collect()))
            .collect())
    }
    fn list_f32(&self, name: &str) -> Result<Vec<Vec<f32>>, Error> {
        self.list(name, DataType::Float32, |s| {
            s.f32().expect("cast").no_null_iter().collect()
        })
    }
    fn list_str(&self, name: &str) -> Result<Vec<Vec<String>>, Error> {
        self.list(name, DataType::String, |s| {
            s.str()
                .expect("cast")
                .no_null_iter()
                .map(str::to_owned)
                .collect()
        })
    }
}

macro_rules! pluck {
    ($rows:expr, $field:ident) => {
        $rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
    };
}

impl Table for ProbeRecord {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("prompt_index", pluck!(rows, prompt_index))
            .col("prompt_id", pluck!(rows, prompt_id))
            .col("prompt_len", pluck!(rows, prompt_len))
            .col("position", pluck!(rows, position))
            .col("distance", pluck!(rows, distance))
            .list_u32("top_ids", rows.iter().map(|r| r.top_ids.as_slice()))
            .list_str("top_tokens", rows.iter().map(|r| r.top_tokens.as_slice()))
            .list_f32("top_probs", rows.iter().map(|r| r.top_probs.as_slice()))
            .col("entropy", pluck!(rows, entropy))
            .col("max_prob", pluck!(rows, max_prob))
            .col("margin", pluck!(rows, margin))
            .col("eot_mass", pluck!(rows, eot_mass))
            .col("kl_unigram", pluck!(rows, kl_unigram))
            .col("xent_unigram", pluck!(rows, xent_unigram))
            .col("js_prev", pluck!(rows, js_prev))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (pi, pid, pl, pos, dist) = (
            c.u32("prompt_index")?,
            c.str("prompt_id")?,
            c.u32("prompt_len")?,
            c.u32("position")?,
            c.u32("distance")?,
        );
        let (ids, toks, probs) = (
            c.list_u32("top_ids")?,
            c.list_str("top_tokens")?,
            c.list_f32("top_probs")?,
        );
        let (ent, maxp, margin, eot) = (
            c.f32("entropy")?,
            c.f32("max_prob")?,
            c.f32("margin")?,
            c.f32("eot_mass")?,
        );
        let (kl, xent, js) = (
            c.opt_f32("kl_unigram")?,
            c.opt_f32("xent_unigram")?,
            c.opt_f32("js_prev")?,
        );
        let mut ids = ids.into_iter();
        let mut toks = toks.into_iter();
        let mut probs = probs.into_iter();
        let mut pid = pid.into_iter();
        Ok((0..df.height())
            .map(|i| ProbeRecord {
                prompt_index: pi[i],
                prompt_id: pid.next().unwrap_or_default(),
                prompt_len: pl[i],
                position: pos[i],
                distance: dist[i],
                top_ids: ids.next().unwrap_or_default(),
                top_tokens: toks.next().unwrap_or_default(),
                top_probs: probs.next().unwrap_or_default(),
                entropy: ent[i],
                max_prob: maxp[i],
                margin: margin[i],
                eot_mass: eot[i],
                kl_unigram: kl[i],
                xent_unigram: xent[i],
                js_prev: js[i],
            })
            .collect())
    }
}

impl Table for CorruptRecord {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("text_index", pluck!(rows, text_index))
            .col("ratio", pluck!(rows, ratio))
            .col("sample", pluck!(rows, sample))
            .col("position", pluck!(rows, position))
            .col("token_id", pluck!(rows, token_id))
            .col("freq_rank", pluck!(rows, freq_rank))
            .col("nll", pluck!(rows, nll))
            .col("true_rank", pluck!(rows, true_rank))
            .col("entropy", pluck!(rows, entropy))
            .list_u32("top_ids", rows.iter().map(|r| r.top_ids.as_slice()))
            .list_f32("top_probs", rows.iter().map(|r| r.top_probs.as_slice()))
            .col("context_distance", pluck!(rows, context_distance))
            .col("context_gain", pluck!(rows, context_gain))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (ti, ratio, sample, pos, tid, rank) = (
            c.u32("text_index")?,
            c.f32("ratio")?,
            c.u32("sample")?,
            c.u32("position")?,
            c.u32("token_id")?,
            c.u32("freq_rank")?,
        );
        let (nll, true_rank, entropy, dist, gain) = (
            c.f32("nll")?,
            c.u32("true_rank")?,
            c.f32("entropy")?,
            c.u32("context_distance")?,
            c.f32("context_gain")?,
        );
        let mut ids = c.list_u32("top_ids")?.into_iter();
        let mut probs = c.list_f32("top_probs")?.into_iter();
        Ok((0..df.height())
            .map(|i| CorruptRecord {
                text_index: ti[i],
                ratio: ratio[i],
                sample: sample[i],
                position: pos[i],
                token_id: tid[i],
                freq_rank: rank[i],
                nll: nll[i],
                true_rank: true_rank[i],
                entropy: entropy[i],
                top_ids: ids.next().unwrap_or_default(),
                top_probs: probs.next().unwrap_or_default(),
                context_distance: dist[i],
                context_gain: gain[i],
            })
            .collect())
    }
}

impl Table for CorruptText {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("text_index", pluck!(rows, text_index))
            .col("text_id", pluck!(rows, text_id))
            .list_u32("ids", rows.iter().map(|r| r.ids.as_slice()))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let ti = c.u32("text_index")?;
        let mut text_id = c.str("text_id")?.into_iter();
        let mut ids = c.list_u32("ids")?.into_iter();
        Ok((0..df.height())
            .map(|i| CorruptText {
                text_index: ti[i],
                text_id: text_id.next().unwrap_or_default(),
                ids: ids.next().unwrap_or_default(),
            })
            .collect())
    }
}

impl Table for StepRecord {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("prompt_index", pluck!(rows, prompt_index))
            .col("step", pluck!(rows, step))
            .col("position", pluck!(rows, position))
            .col("distance", pluck!(rows, distance))
            .col("token_id", pluck!(rows, token_id))
            .col("token", pluck!(rows, token))
            .col("prob", pluck!(rows, prob))
            .col("confidence", pluck!(rows, confidence))
            .col("masked_after", pluck!(rows, masked_after))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (pi, step, pos, dist, tid) = (
            c.u32("prompt_index")?,
            c.u32("step")?,
            c.u32("position")?,
            c.u32("distance")?,
            c.u32("token_id")?,
        );
        let (tok, prob, conf, masked) = (
            c.str("token")?,
            c.opt_f32("prob")?,
            c.opt_f32("confidence")?,
            c.u32("masked_after")?,
        );
        Ok(tok
            .into_iter()
            .enumerate()
            .map(|(i, token)| StepRecord {
                prompt_index: pi[i],
                step: step[i],
                position: pos[i],
                distance: dist[i],
                token_id: tid[i],
                token,
                prob: prob[i],
                confidence: conf[i],
                masked_after: masked[i],
            })
            .collect())
    }
}

impl Table for Generation {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("prompt_index", pluck!(rows, prompt_index))
            .col("prompt_id", pluck!(rows, prompt_id))
            .list_u32("prompt_ids", rows.iter().map(|r| r.prompt_ids.as_slice()))
            .list_u32("gen_ids", rows.iter().map(|r| r.gen_ids.as_slice()))
            .list_i32("commit_step", rows.iter().map(|r| r.commit_step.as_slice()))
            .col("text", pluck!(rows, text))
            .col("steps", pluck!(rows, steps))
            .opt_list_u32(
                "remask_count",
                rows.iter().map(|r| r.remask_count.as_deref()),
            )
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (pi, pid, pids, gids, cs, text, steps) = (
            c.u32("prompt_index")?,
            c.str("prompt_id")?,
            c.list_u32("prompt_ids")?,
            c.list_u32("gen_ids")?,
            c.list_i32("commit_step")?,
            c.str("text")?,
            c.u32("steps")?,
        );
        let mut remask = c.opt_list_u32("remask_count")?.into_iter();
        Ok(pid
            .into_iter()
            .zip(pids)
            .zip(gids)
            .zip(cs)
            .zip(text)
            .enumerate()
            .map(
                |(i, ((((prompt_id, prompt_ids), gen_ids), commit_step), text))| Generation {
                    prompt_index: pi[i],
                    prompt_id,
                    prompt_ids,
                    gen_ids,
                    commit_step,
                    text,
                    steps: steps[i],
                    remask_count: remask.next().flatten(),
                },
            )
            .collect())
    }
}

impl Table for StepDistribution {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("prompt_index", pluck!(rows, prompt_index))
            .col("step", pluck!(rows, step))
            .col("position", pluck!(rows, position))
            .list_u32("top_ids", rows.iter().map(|r| r.top_ids.as_slice()))
            .list_f32("top_probs", rows.iter().map(|r| r.top_probs.as_slice()))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (pi, step, pos, ids, probs) = (
            c.u32("prompt_index")?,
            c.u32("step")?,
            c.u32("position")?,
            c.list_u32("top_ids")?,
            c.list_f32("top_probs")?,
        );
        Ok(ids
            .into_iter()
            .zip(probs)
            .enumerate()
            .map(|(i, (top_ids, top_probs))| StepDistribution {
                prompt_index: pi[i],
                step: step[i],
                position: pos[i],
                top_ids,
                top_probs,
            })
            .collect())
    }
}

impl Table for CurvePoint {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("curve", pluck!(rows, curve))
            .col("series", pluck!(rows, series))
            .col("x", pluck!(rows, x))
            .col("mean", pluck!(rows, mean))
            .col("median", pluck!(rows, median))
            .col("q25", pluck!(rows, q25))
            .col("q75", pluck!(rows, q75))
            .col("n", pluck!(rows, n))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (curve, series, x, mean, median, q25, q75, n) = (
            c.str("curve")?,
            c.str("series")?,
            c.f64("x")?,
            c.f64("mean")?,
            c.f64("median")?,
            c.f64("q25")?,
            c.f64("q75")?,
            c.u64("n")?,
        );
        Ok(curve
            .into_iter()
            .zip(series)
            .enumerate()
            .map(|(i, (curve, series))| CurvePoint {
                curve,
                series,
                x: x[i],
                mean: mean[i],
                median: median[i],
                q25: q25[i],
                q75: q75[i],
                n: n[i],
            })
            .collect())
    }
}

impl Table for PromptMetric {
    fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        Frame::new()
            .col("source", pluck!(rows, source))
            .col("prompt_index", pluck!(rows, prompt_index))
            .col("metric", pluck!(rows, metric))
            .col("value", pluck!(rows, value))
            .col("n", pluck!(rows, n))
            .finish()
    }
    fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<Self>, Error> {
        let c = Cols { df, path };
        let (source, prompt_index, metric, value, n) = (
            c.str("source")?,
            c.u32("prompt_index")?,
            c.str("metric")?,
            c.f64("value")?,
            c.u64("n")?,
        );
        Ok(source
            .into_iter()
            .zip(metric)
            .enumerate()
            .map(|(i, (source, metric))| PromptMetric {
                source,
                prompt_index: prompt_index[i],
                metric,
                value: value[i],
                n: n[i],
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_folders_of_dead_runs_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // PIDs above the kernel's limit (4194304) are never alive.
        let dead = tmp.path().join(".out.partial-999999999");
        let ours = tmp
            .path()
            .join(format!(".out.partial-{}", std::process::id()));
        let other = tmp.path().join(".other.partial-999999999");
        for d in [&dead, &ours, &other] {
            fs::create_dir(d).unwrap();
        }
        // Ours is the staging folder the new output takes; another output's is left alone.
        let staged = OutputDir::create(&tmp.path().join("out")).unwrap();
        assert_eq!(staged.path(), ours);
        assert!(!dead.exists() && other.exists());
    }

    fn probe_row(i: u32) -> ProbeRecord {
        ProbeRecord {
            prompt_index: i,
            prompt_id: format!("p{i}"),
            prompt_len: 5,
            position: 5 + i,
            distance: 1 + i,
            top_ids: vec![i, 7, 9],
            top_tokens: vec!["a".into(), " the".into(), ",".into()],
            top_probs: vec![0.5, 0.25, 0.125],
            entropy: 1.5,
            max_prob: 0.5,
            margin: 0.25,
            eot_mass: 0.01,
            kl_unigram: if i.is_multiple_of(2) { Some(0.3) } else { None },
            xent_unigram: None,
            js_prev: Some(0.1),
        }
    }

    fn roundtrip<T: Table + PartialEq + std::fmt::Debug>(rows: Vec<T>) {
        let dir = tempfile::tempdir().unwrap();
        for format in [Format::Parquet, Format::Jsonl] {
            let path = write_table(dir.path(), "t", &rows, format).unwrap();
            let back: Vec<T> = read_table(&path).unwrap();
            assert_eq!(back, rows, "{format:?}");
        }
    }

    #[test]
    fn tables_roundtrip_through_parquet_and_jsonl() {
        roundtrip((0..5).map(probe_row).collect());
        roundtrip(vec![StepRecord {
            prompt_index: 1,
            step: 2,
            position: 9,
            distance: 3,
            token_id: 4,
            token: "x".into(),
            prob: Some(0.5),
            confidence: None,
            masked_after: 7,
        }]);
        let generation = Generation {
            prompt_index: 0,
            prompt_id: "a".into(),
            prompt_ids: vec![1, 2],
            gen_ids: vec![3, 4, 5],
            commit_step: vec![0, -1, 1],
            text: "hi".into(),
            steps: 2,
            remask_count: None,
        };
        roundtrip(vec![generation.clone()]);
        // Remask counts: a column only when some row has them, null where a row has none.
        roundtrip(vec![
            Generation {
                remask_count: Some(vec![0, 0, 2]),
                ..generation.clone()
            },
            Generation {
                prompt_index: 1,
                ..generation
            },
        ]);
        roundtrip(vec![StepDistribution {
            prompt_index: 0,
            step: 1,
            position: 2,
            top_ids: vec![3],
            top_probs: vec![0.9],
        }]);
        roundtrip(vec![PromptMetric {
            source: "probe".into(),
            prompt_index: 3,
            metric: "collapse.entropy.far".into(),
            value: 2.5,
            n: 32,
        }]);
        roundtrip(vec![CurvePoint {
            curve: "entropy".into(),
            series: "all".into(),
            x: 1.0,
            mean: 2.0,
            median: 2.0,
            q25: 1.0,
            q75: 3.0,
            n: 4,
        }]);
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![StepDistribution {
            prompt_index: 0,
            step: 1,
            position: 2,
            top_ids: vec![3],
            top_probs: vec![0.9],
        }];
        let path = write_table(dir.path(), "t", &rows, Format::Parquet).unwrap();
        let err = read_table::<StepRecord>(&path).unwrap_err().to_string();
        assert!(
            err.contains("`distance`") || err.contains("`token_id`") || err.contains("`token`"),
            "{err}"
        );
        assert!(err.contains("t.parquet"), "{err}");
    }

    #[test]
    fn bad_jsonl_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"prompt_index\":0,\"step\":0,\"position\":0,\"top_ids\":[],\"top_probs\":[]}\nnot json\n").unwrap();
        let err = read_table::<StepDistribution>(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.jsonl:2"), "{err}");
    }

    #[test]
    fn uncommitted_output_dir_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        {
            let out = OutputDir::create(&target).unwrap();
            std::fs::write(out.path().join("a"), "x").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let out = OutputDir::create(&target).unwrap();
        std::fs::write(out.path().join("a"), "x").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "x");
    }
}
