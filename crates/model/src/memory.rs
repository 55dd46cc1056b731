//! Whether a model fits in memory, decided from the safetensors headers before any weight is
//! read: a load that cannot fit fails with the numbers and the flag to use, instead of being
//! killed by the kernel half-way through.

use std::path::Path;

use tch::Kind;

/// What libtorch itself, the tokenizer and the forward pass's activations take on top of the
/// weights (a probe of an 8B-shaped bf16 checkpoint peaked at 1.03× its weight bytes).
pub const OVERHEAD_BYTES: u64 = 512 << 20;

/// Environment variable that sets the memory a load may use, in bytes, instead of what the
/// system reports (for shared machines and for tests).
pub const AVAILABLE_MEMORY_ENV: &str = "COLLAPSE_PROBE_AVAILABLE_MEMORY";

/// Memory a load may use and where that number came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
    pub source: String,
}

impl MemoryBudget {
    /// The budget from [`AVAILABLE_MEMORY_ENV`], else the smaller of `MemAvailable` in
    /// `/proc/meminfo` and the cgroup's limit less its usage; `None` where neither is known.
    pub fn detect() -> Option<MemoryBudget> {
        if let Some(v) = std::env::var_os(AVAILABLE_MEMORY_ENV) {
            if let Some(bytes) = v.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
                return Some(MemoryBudget {
                    bytes,
                    source: AVAILABLE_MEMORY_ENV.into(),
                });
            }
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
        let available = meminfo.as_deref().and_then(mem_available);
        let cgroup = cgroup_room(Path::new("/sys/fs/cgroup"));
        match (available, cgroup) {
            (Some(a), Some(c)) if c < a => Some(MemoryBudget {
                bytes: c,
                source: "the cgroup's memory.max less memory.current".into(),
            }),
            (Some(a), _) => Some(MemoryBudget {
                bytes: a,
                source: "MemAvailable in /proc/meminfo".into(),
            }),
            (None, Some(c)) => Some(MemoryBudget {
                bytes: c,
                source: "the cgroup's memory.max less memory.current".into(),
            }),
            (None, None) => None,
        }
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Room left under a cgroup v2 memory limit (`None` without a limit).
fn cgroup_room(root: &Path) -> Option<u64> {
    let max = std::fs::read_to_string(root.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" means no limit
    let current: u64 = std::fs::read_to_string(root.join("memory.current"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(max.saturating_sub(current))
}

/// Bytes per element of a floating dtype (8 for anything wider than f32).
pub fn element_size(kind: Kind) -> u64 {
    match kind {
        Kind::Half | Kind::BFloat16 => 2,
        Kind::Float => 4,
        _ => 8,
    }
}

/// `bytes` for messages: GiB or MiB with one decimal, else KiB.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_kib() {
        let text = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(mem_available(text), Some(2048 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn cgroup_room_is_the_limit_less_usage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.max"), "1000\n").unwrap();
        std::fs::write(dir.path().join("memory.current"), "300\n").unwrap();
        assert_eq!(cgroup_room(dir.path()), Some(700));
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_room(dir.path()), None);
    }

    #[test]
    fn sizes_and_messages() {
        assert_eq!(element_size(Kind::BFloat16), 2);
        assert_eq!(element_size(Kind::Float), 4);
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(600 << 20), "600.0 MiB");
        assert_eq!(size(1500), "2 KiB");
    }
}
