//! How much more memory this process may use: what the kernel reports available, bounded by
//! the cgroup's limit where there is one (a Slurm job, a Kubernetes pod, a container), whose
//! own accounting the machine-wide figure does not see.

use std::path::Path;

/// Bytes this process may still allocate, or `None` where that cannot be read (not Linux).
pub(crate) fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = meminfo_available(&meminfo)?;
    // Without a cgroup namespace (Slurm's cgroups) the process's own group is a folder below
    // the mount, named in /proc/self/cgroup ("0::/path" under cgroup v2).
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("0::")
                    .map(|p| p.trim_start_matches('/').to_owned())
            })
        })
        .map(|p| Path::new("/sys/fs/cgroup").join(p));
    let headroom = own
        .and_then(|dir| cgroup_headroom(&dir))
        .or_else(|| cgroup_headroom(Path::new("/sys/fs/cgroup")));
    Some(headroom.map_or(machine, |h| machine.min(h)))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cgroup's limit less its usage, for cgroup v2 (`memory.max`, `memory.current`) or v1
/// (`memory/memory.limit_in_bytes`, `memory/memory.usage_in_bytes`) mounted at `root`; `None`
/// when there is no limit.
fn cgroup_headroom(root: &Path) -> Option<u64> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(root.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let (limit, usage) = match read("memory.max") {
        Some(limit) => (limit, read("memory.current")?),
        // "max" (no limit) does not parse; nor does a missing file.
        None => (
            read("memory/memory.limit_in_bytes")?,
            read("memory/memory.usage_in_bytes")?,
        ),
    };
    // cgroup v1 writes a huge number for "no limit".
    (limit < 1 << 60).then(|| limit.saturating_sub(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_available_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_cgroup_limit_bounds_the_headroom() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(cgroup_headroom(root), None);
        // v2 without a limit, then with one.
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        std::fs::write(root.join("memory.current"), "1000\n").unwrap();
        assert_eq!(cgroup_headroom(root), None);
        std::fs::write(root.join("memory.max"), "8000\n").unwrap();
        assert_eq!(cgroup_headroom(root), Some(7000));
        // v1: no limit is a huge number.
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        std::fs::write(
            v1.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(v1.path().join("memory/memory.usage_in_bytes"), "500\n").unwrap();
        assert_eq!(cgroup_headroom(v1.path()), None);
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "2000\n").unwrap();
        assert_eq!(cgroup_headroom(v1.path()), Some(1500));
    }
}
