//! Binary word files of an index: 8 bytes of magic, a little-endian `u64` element count,
//! then the elements as little-endian `u32` or `u64`. Files are memory-mapped on
//! little-endian machines and decoded into memory elsewhere.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{AnalysisError, Result};

pub(crate) const HEADER_BYTES: usize = 16;
pub(crate) const TOKENS_MAGIC: &[u8; 8] = b"CPIXTOK1";
pub(crate) const SUFFIX_MAGIC: &[u8; 8] = b"CPIXSUF1";
pub(crate) const UNIGRAM_MAGIC: &[u8; 8] = b"CPIXUNI1";

/// A fixed-width little-endian integer stored in a word file.
pub(crate) trait Word: Copy + Default + Send + Sync + 'static {
    const BYTES: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn put_le(self, out: &mut Vec<u8>);
}

impl Word for u32 {
    const BYTES: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        u32::from_le_bytes(b.try_into().expect("4 bytes"))
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Word for u64 {
    const BYTES: usize = 8;
    fn from_le(b: &[u8]) -> Self {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The elements of a word file, mapped or owned.
pub(crate) enum Words<T: Word> {
    Mapped { map: Mmap, len: usize },
    Owned(Vec<T>),
}

impl<T: Word> Words<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Words::Mapped { map, len } => {
                let bytes = &map[HEADER_BYTES..HEADER_BYTES + len * T::BYTES];
                // SAFETY: `T` is u32 or u64 (no invalid bit patterns); the map is page-aligned and
                // the 16-byte header keeps the payload aligned, which `align_to` checks anyway; the
                // file is little-endian and this variant is only built on little-endian targets.
                let (head, words, _) = unsafe { bytes.align_to::<T>() };
                assert!(head.is_empty(), "word file payload is misaligned");
                &words[..*len]
            }
            Words::Owned(v) => v,
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }
}

/// Opens a word file, checking its magic and that its size matches its element count.
pub(crate) fn read_words<T: Word>(path: &Path, magic: &[u8; 8]) -> Result<Words<T>> {
    let file = File::open(path).map_err(|e| AnalysisError::io(path, e))?;
    let size = file
        .metadata()
        .map_err(|e| AnalysisError::io(path, e))?
        .len();
    if size < HEADER_BYTES as u64 {
        return Err(AnalysisError::corrupt(
            path,
            format!("{size} bytes is shorter than the 16-byte header"),
        ));
    }
    // SAFETY: the index files are written once and never modified in place (they are replaced
    // by rename), so the mapping cannot change under us while the index is open.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| AnalysisError::io(path, e))?;
    if &map[..8] != magic {
        return Err(AnalysisError::corrupt(
            path,
            format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(&map[..8]),
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    let len = u64::from_le_bytes(map[8..16].try_into().expect("8 bytes"));
    let expected = (HEADER_BYTES as u64).checked_add(len.saturating_mul(T::BYTES as u64));
    if expected != Some(size) {
        return Err(AnalysisError::corrupt(
            path,
            format!("header promises {len} elements ({} bytes) but the file has {size} bytes (truncated?)", expected.unwrap_or(u64::MAX)),
        ));
    }
    let len = len as usize;
    if cfg!(target_endian = "little") {
        Ok(Words::Mapped { map, len })
    } else {
        let payload = &map[HEADER_BYTES..];
        Ok(Words::Owned(
            payload.chunks_exact(T::BYTES).map(T::from_le).collect(),
        ))
    }
}

/// Writes a word file (not atomically: callers write into a staging folder).
pub(crate) fn write_words<T: Word>(path: &Path, magic: &[u8; 8], words: &[T]) -> Result<u64> {
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(path).map_err(|e| AnalysisError::io(path, e))?,
    );
    let mut buf = Vec::with_capacity(HEADER_BYTES);
    buf.extend_from_slice(magic);
    buf.extend_from_slice(&(words.len() as u64).to_le_bytes());
    file.write_all(&buf)
        .map_err(|e| AnalysisError::io(path, e))?;
    for chunk in words.chunks(1 << 16) {
        buf.clear();
        chunk.iter().for_each(|w| w.put_le(&mut buf));
        file.write_all(&buf)
            .map_err(|e| AnalysisError::io(path, e))?;
    }
    file.flush().map_err(|e| AnalysisError::io(path, e))?;
    Ok((HEADER_BYTES + words.len() * T::BYTES) as u64)
}
