//! Reading and writing safetensors checkpoints, one tensor at a time.
//!
//! A checkpoint is read without ever holding a second copy of the weights: the
//! header of every file is parsed here, and each tensor's bytes are read with
//! `pread` straight into the memory of an empty libtorch tensor of the stored
//! dtype, which is then converted and moved to the target device on its own.
//! The only transient extra memory is the one tensor being converted.
//!
//! The architectures ask for their weights through [`WeightSource`], so the
//! same model code runs on a checkpoint ([`SafetensorsSource`]) and on freshly
//! initialised parameters (a trainer's own source).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::error::ProbeError;

// safetensors stores little-endian data and we copy it into tensors byte for byte.
#[cfg(target_endian = "big")]
compile_error!("reading safetensors in place assumes a little-endian machine");

/// Where an architecture gets its parameters from.
///
/// `load_model` uses a [`SafetensorsSource`]; a trainer implements this trait to hand out
/// freshly initialised tensors (with `requires_grad`) and remember them by name, so that
/// the trained model is saved under the very names a checkpoint uses.
pub trait WeightSource {
    /// The tensor called `name` (the checkpoint's name, e.g. `model.transformer.wte.weight`),
    /// with exactly `shape`, in the dtype and on the device the model runs with.
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError>;
}

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone)]
struct Entry {
    /// Index into [`SafetensorsSource::files`].
    file: usize,
    kind: Kind,
    shape: Vec<i64>,
    /// Absolute byte offset of the data in its file.
    offset: u64,
    len: u64,
}

/// The weights of a Hugging Face checkpoint folder: `model.safetensors`, or the shards
/// listed by `model.safetensors.index.json`.
///
/// Only the headers are read when it is opened; [`WeightSource::tensor`] reads one tensor,
/// converts it to the target dtype and moves it to the target device.
#[derive(Debug)]
pub struct SafetensorsSource {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
    /// The file named in "missing tensor" errors: the index, or the single weights file.
    origin: PathBuf,
    weights_sha256: String,
    kind: Kind,
    device: Device,
}

/// The safetensors file name of a single-file checkpoint.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
/// The index file name of a sharded checkpoint.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

impl SafetensorsSource {
    /// Opens the weights in `dir`, preferring `model.safetensors.index.json` when present.
    /// Tensors are handed out as float32 on the CPU until [`SafetensorsSource::set_target`].
    pub fn open(dir: &Path) -> Result<Self, ProbeError> {
        let index = dir.join(INDEX_FILE);
        let single = dir.join(SINGLE_FILE);
        if index.is_file() {
            Self::open_index(dir, &index)
        } else if single.is_file() {
            let mut source = Self::empty(single.clone());
            let header = source.add_file(&single, None)?;
            source.weights_sha256 = sha256_hex(&header);
            Ok(source)
        } else {
            Err(ProbeError::Io {
                path: single,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no weights: neither {SINGLE_FILE} nor {INDEX_FILE} exists"),
                ),
            })
        }
    }

    fn empty(origin: PathBuf) -> Self {
        SafetensorsSource {
            files: Vec::new(),
            entries: HashMap::new(),
            origin,
            weights_sha256: String::new(),
            kind: Kind::Float,
            device: Device::Cpu,
        }
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self, ProbeError> {
        let bytes = std::fs::read(index).map_err(|source| ProbeError::Io {
            path: index.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ProbeError::Safetensors {
            path: index.to_path_buf(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                bad("missing key `weight_map` (an object of tensor name to file)".into())
            })?;
        // Every shard is opened once; the index says which shard must hold each name.
        let mut shard_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("`weight_map.{name}` is not a file name")))?;
            shard_of.entry(file).or_default().push(name.as_str());
        }
        let mut shards: Vec<&str> = shard_of.keys().copied().collect();
        shards.sort_unstable();
        let mut source = Self::empty(index.to_path_buf());
        for shard in shards {
            if shard.contains('/') || shard.contains("..") {
                return Err(bad(format!("shard `{shard}` is not a plain file name")));
            }
            source.add_file(&dir.join(shard), Some(&shard_of[shard]))?;
        }
        source.weights_sha256 = sha256_hex(&bytes);
        Ok(source)
    }

    /// Parses one file's header and records its tensors; returns the raw header bytes
    /// (length prefix included). With `only`, keeps just those names, as the index assigns
    /// tensors to shards.
    fn add_file(&mut self, path: &Path, only: Option<&[&str]>) -> Result<Vec<u8>, ProbeError> {
        let io = |source| ProbeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |message: String| ProbeError::Safetensors {
            path: path.to_path_buf(),
            message,
        };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(|e| bad(format!("cannot read the 8-byte header length: {e}")))?;
        let header_len = u64::from_le_bytes(len_bytes);
        // The reference implementation refuses headers above 100 MB; so do we, before allocating.
        if header_len > 100_000_000 || 8 + header_len > file_len {
            return Err(bad(format!(
                "header length {header_len} does not fit a file of {file_len} bytes"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("invalid JSON header: {e}")))?;
        let index = self.files.len();
        for (name, info) in &json {
            if name == "__metadata__" {
                continue;
            }
            if let Some(only) = only {
                if !only.contains(&name.as_str()) {
                    continue;
                }
            }
            let entry = parse_entry(name, info, index, data_start, data_len).map_err(bad)?;
            if self.entries.insert(name.clone(), entry).is_some() {
                return Err(bad(format!(
                    "tensor `{name}` appears in more than one file"
                )));
            }
        }
        if let Some(only) = only {
            if let Some(name) = only.iter().find(|n| !json.contains_key(**n)) {
                return Err(ProbeError::MissingTensor {
                    file: path.to_path_buf(),
                    name: (*name).to_string(),
                });
            }
        }
        self.files.push((path.to_path_buf(), file));
        let mut raw = len_bytes.to_vec();
        raw.extend_from_slice(&header);
        Ok(raw)
    }

    /// Hands out later tensors as `kind` on `device`.
    pub fn set_target(&mut self, kind: Kind, device: Device) {
        self.kind = kind;
        self.device = device;
    }

    /// The floating-point dtype holding most of the checkpoint's bytes (`None` if it has no
    /// floating-point tensors).
    pub fn stored_kind(&self) -> Option<Kind> {
        let mut bytes: Vec<(Kind, u64)> = Vec::new();
        for e in self.entries.values().filter(|e| is_float(e.kind)) {
            match bytes.iter_mut().find(|(k, _)| *k == e.kind) {
                Some((_, n)) => *n += e.len,
                None => bytes.push((e.kind, e.len)),
            }
        }
        bytes.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k)
    }

    /// Bytes the weights take once loaded as `kind` (floating tensors converted, others as
    /// stored): what [`crate::memory`] checks against the memory available.
    pub fn bytes_at(&self, kind: Kind) -> u64 {
        self.entries
            .values()
            .map(|e| {
                if is_float(e.kind) {
                    e.len / crate::memory::element_size(e.kind) * crate::memory::element_size(kind)
                } else {
                    e.len
                }
            })
            .sum()
    }

    /// SHA-256 of `model.safetensors.index.json`, or of the single file's header
    /// (length prefix and JSON): it identifies the tensor layout without hashing gigabytes.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// Names of all tensors in the checkpoint, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Whether the checkpoint holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Reads one tensor in its stored dtype on the CPU.
    fn read(&self, name: &str, entry: &Entry) -> Result<Tensor, ProbeError> {
        let (path, file) = &self.files[entry.file];
        let tensor = Tensor::f_empty(entry.shape.as_slice(), (entry.kind, Device::Cpu))?;
        if entry.len > 0 {
            // SAFETY: `tensor` was just allocated, contiguous, with exactly `numel * elt_size`
            // bytes (checked against `entry.len` in `parse_entry`), and nothing else refers to it.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, entry.len as usize)
            };
            file.read_exact_at(buf, entry.offset)
                .map_err(|e| ProbeError::Safetensors {
                    path: path.clone(),
                    message: format!("reading tensor `{name}`: {e}"),
                })?;
        }
        Ok(tensor)
    }
}

impl WeightSource for SafetensorsSource {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ProbeError::MissingTensor {
                file: self.origin.clone(),
                name: name.to_string(),
            })?;
        if entry.shape != shape {
            return Err(ProbeError::TensorShape {
                file: self.files[entry.file].0.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        if !is_float(entry.kind) {
            // An integer weight would panic inside the first matmul; name it here instead.
            return Err(ProbeError::TensorDtype {
                file: self.files[entry.file].0.clone(),
                name: name.to_string(),
                dtype: dtype_of(entry.kind).unwrap_or("non-float"),
            });
        }
        let stored = self.read(name, entry)?;
        // Moving first and converting on the device keeps host-to-device copies at the stored
        // (usually smaller) width; on the CPU `to_device` is a no-op.
        let moved = stored.f_to_device(self.device)?;
        let converted = if moved.kind() != self.kind {
            moved.f_to_kind(self.kind)?
        } else {
            moved
        };
        Ok(converted)
    }
}

fn parse_entry(
    name: &str,
    info: &serde_json::Value,
    file: usize,
    data_start: u64,
    data_len: u64,
) -> Result<Entry, String> {
    let dtype = info
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| format!("tensor `{name}`: missing `dtype`"))?;
    let kind =
        kind_of(dtype).ok_or_else(|| format!("tensor `{name}`: unsupported dtype `{dtype}`"))?;
    let shape = info
        .get("shape")
        .and_then(|s| s.as_array())
        .and_then(|s| {
            s.iter()
                .map(|d| d.as_i64().filter(|d| *d >= 0))
                .collect::<Option<Vec<i64>>>()
        })
        .ok_or_else(|| format!("tensor `{name}`: `shape` is not a list of sizes"))?;
    let offsets = info
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .and_then(|s| s.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
        .filter(|o| o.len() == 2 && o[0] <= o[1])
        .ok_or_else(|| format!("tensor `{name}`: `data_offsets` is not [begin, end]"))?;
    let numel = shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d as u64));
    let expected = numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes() as u64));
    let len = offsets[1] - offsets[0];
    if expected != Some(len) {
        return Err(format!(
            "tensor `{name}`: {len} bytes of data for shape {shape:?} of {dtype}"
        ));
    }
    if offsets[1] > data_len {
        return Err(format!(
            "tensor `{name}`: data ends at byte {} past the end of the data ({data_len} bytes)",
            offsets[1]
        ));
    }
    Ok(Entry {
        file,
        kind,
        shape,
        offset: data_start + offsets[0],
        len,
    })
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Double | Kind::Float | Kind::Half | Kind::BFloat16
    )
}

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F64" => Kind::Double,
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Double => "F64",
        Kind::Float => "F32",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Writes `tensors` to a safetensors file under their given names, in their own dtypes,
/// the way `save_pretrained` lays a checkpoint out (a `__metadata__` of `{"format": "pt"}`).
///
/// Each tensor is copied to the CPU (when it is elsewhere) and written on its own, so saving
/// never holds a second copy of the whole model. The file is written beside `path` and
/// renamed into place.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), ProbeError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0u64;
    for (name, tensor) in tensors {
        let dtype = dtype_of(tensor.kind()).ok_or_else(|| {
            ProbeError::Input(format!(
                "tensor `{name}`: dtype {:?} cannot be saved",
                tensor.kind()
            ))
        })?;
        let len = (tensor.numel() * tensor.kind().elt_size_in_bytes()) as u64;
        let entry = serde_json::json!({
            "dtype": dtype,
            "shape": tensor.size(),
            "data_offsets": [offset, offset + len],
        });
        if header.insert(name.clone(), entry).is_some() {
            return Err(ProbeError::Input(format!("tensor `{name}` is given twice")));
        }
        offset += len;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header))
        .expect("a JSON map of strings and numbers serialises");
    // Readers that map the file expect the data to start 8-byte aligned; pad with spaces.
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }

    let tmp = path.with_extension("safetensors.tmp");
    let io = |source| ProbeError::Io {
        path: tmp.clone(),
        source,
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for (_, tensor) in tensors {
        let cpu = tensor.detach().f_to_device(Device::Cpu)?.f_contiguous()?;
        let len = cpu.numel() * cpu.kind().elt_size_in_bytes();
        if len > 0 {
            // SAFETY: `cpu` is a contiguous CPU tensor of exactly `len` bytes and outlives `bytes`.
            let bytes = unsafe { std::slice::from_raw_parts(cpu.data_ptr() as *const u8, len) };
            out.write_all(bytes).map_err(io)?;
        }
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|source| ProbeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A [`SafetensorsSource`] that records which tensors an architecture asked for. A tensor the
/// checkpoint lacks is noted and answered with a zero-stride placeholder of its shape (no
/// memory), so the build goes on and every missing name is found; [`KeySetCheck::finish`]
/// then also lists the checkpoint's tensors nobody asked for. A released checkpoint that names
/// things otherwise thus fails with both lists, never with a forward pass that silently
/// skips a tensor.
pub(crate) struct KeySetCheck<'a> {
    inner: &'a mut SafetensorsSource,
    requested: std::collections::HashSet<String>,
    missing: Vec<String>,
}

/// How many names of each list an error shows.
const SHOWN_NAMES: usize = 12;

impl<'a> KeySetCheck<'a> {
    pub(crate) fn new(inner: &'a mut SafetensorsSource) -> Self {
        KeySetCheck {
            inner,
            requested: Default::default(),
            missing: Vec::new(),
        }
    }

    /// `built` unless names were missing or unexpected (`ignored` may be present unread).
    pub(crate) fn finish<M>(
        self,
        built: Result<M, ProbeError>,
        ignored: &[&str],
    ) -> Result<M, ProbeError> {
        let unexpected: Vec<String> = self
            .inner
            .names()
            .into_iter()
            .filter(|n| !self.requested.contains(n) && !ignored.contains(&n.as_str()))
            .collect();
        if self.missing.is_empty() && unexpected.is_empty() {
            return built;
        }
        let list = |names: &[String]| {
            let mut shown: Vec<String> = names
                .iter()
                .take(SHOWN_NAMES)
                .map(|n| format!("`{n}`"))
                .collect();
            if names.len() > SHOWN_NAMES {
                shown.push(format!("and {} more", names.len() - SHOWN_NAMES));
            }
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(", ")
            }
        };
        Err(ProbeError::TensorSet {
            file: self.inner.origin.clone(),
            message: format!(
                "the tensor names differ from the layout this architecture reads (a checkpoint \
                 that names its tensors otherwise is refused rather than run wrongly): \
                 {} missing: {}; {} unexpected: {}",
                self.missing.len(),
                list(&self.missing),
                unexpected.len(),
                list(&unexpected)
            ),
        })
    }
}

impl WeightSource for KeySetCheck<'_> {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        if self.inner.contains(name) {
            self.requested.insert(name.to_string());
            return self.inner.tensor(name, shape);
        }
        self.missing.push(name.to_string());
        Ok(Tensor::zeros([1], (self.inner.kind, self.inner.device)).expand(shape, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_names_dtypes_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SINGLE_FILE);
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let b = Tensor::from_slice(&[1.5f32, -2.0]).to_kind(Kind::BFloat16);
        let c = Tensor::from_slice(&[7i64, 8, 9]);
        save_safetensors(
            &path,
            &[
                ("a.weight".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
                ("c".into(), c.shallow_clone()),
            ],
        )
        .unwrap();

        let mut source = SafetensorsSource::open(dir.path()).unwrap();
        assert_eq!(source.names(), ["a.weight", "b", "c"]);
        assert_eq!(source.stored_kind(), Some(Kind::Float));
        let a2 = source.tensor("a.weight", &[2, 3]).unwrap();
        assert_eq!(a2.kind(), Kind::Float);
        assert!(a2.equal(&a));
        // bf16 is widened to the target dtype; 1.5 and -2.0 are exact in bf16.
        let b2 = source.tensor("b", &[2]).unwrap();
        assert_eq!(b2.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(&b2).unwrap(), [1.5, -2.0]);
        // Integer tensors are no weights: the error names the tensor and its dtype.
        let err = source.tensor("c", &[3]).unwrap_err().to_string();
        assert!(
            err.ends_with("tensor `c` has dtype I64; model weights must be F32, BF16, F16 or F64"),
            "{err}"
        );
    }

    #[test]
    fn header_is_padded_to_eight_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        save_safetensors(&path, &[("odd_name".into(), Tensor::from_slice(&[1f32]))]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
        assert_eq!(bytes.len() as u64, 8 + n + 4);
    }

    #[test]
    fn truncated_file_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SINGLE_FILE);
        save_safetensors(
            &path,
            &[(
                "w".into(),
                Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)),
            )],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = SafetensorsSource::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("`w`"),
            "{err}"
        );
    }
}
