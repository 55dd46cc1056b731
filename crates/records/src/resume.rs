//! The completed batches of a stage, kept beside its output folder so that the same command,
//! started again after the process was killed, continues from its last completed batch.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// `.{name}.resume/` beside the output folder `name`: a `command.json` that says which command
/// the batches belong to, and one `batch-NNNNNN/` folder per completed batch, each moved into
/// place only once it is complete (a kill leaves at most a `.tmp` folder, which is redone).
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

const COMMAND: &str = "command.json";

impl Checkpoint {
    /// Opens the checkpoint of the output folder `target` for the command described by
    /// `command` (its inputs and settings, nothing that changes between runs of the same
    /// command). Batches kept by an earlier run of the same command are reused; with `restart`
    /// they are thrown away first. Batches of another command are an error naming the setting
    /// that differs. Staging folders left by dead runs beside `target` are removed.
    pub fn open(
        target: &Path,
        command: &serde_json::Value,
        restart: bool,
    ) -> Result<Checkpoint, Error> {
        let (parent, name) = crate::io::parent_and_name(target)?;
        remove_dead_staging(&parent, &name)?;
        let dir = parent.join(format!(".{name}.resume"));
        if restart && dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let recorded = dir.join(COMMAND);
        if recorded.is_file() {
            let kept: serde_json::Value = crate::read_json(&recorded)?;
            if &kept != command {
                let key = differing_key(&kept, command);
                return Err(Error::Invalid {
                    path: dir,
                    message: format!(
                        "holds the completed batches of another command (`{key}` differs); \
                         give --restart to throw them away, or another --out"
                    ),
                });
            }
        } else {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            crate::write_json(&recorded, command)?;
        }
        Ok(Checkpoint { dir })
    }

    /// Whether batch `batch` was completed by this or an earlier run.
    pub fn has(&self, batch: usize) -> bool {
        self.batch_dir(batch).is_dir()
    }

    /// The folder of a completed batch.
    pub fn batch_dir(&self, batch: usize) -> PathBuf {
        self.dir.join(format!("batch-{batch:06}"))
    }

    /// Writes batch `batch` with `write` into a temporary folder and moves it into place.
    pub fn write_batch(
        &self,
        batch: usize,
        write: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let tmp = self.dir.join(format!(".batch-{batch:06}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        write(&tmp)?;
        let done = self.batch_dir(batch);
        fs::rename(&tmp, &done).map_err(|e| Error::io(&done, e))
    }

    /// Removes the checkpoint once the output folder is in place.
    pub fn finish(self) -> Result<(), Error> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }
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
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// The first top-level key in which two JSON objects differ (`command` when they are not both
/// objects).
fn differing_key(a: &serde_json::Value, b: &serde_json::Value) -> String {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .keys()
            .chain(b.keys())
            .find(|k| a.get(*k) != b.get(*k))
            .cloned()
            .unwrap_or_else(|| "command".into()),
        _ => "command".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_a_reopen_and_another_command_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let command = serde_json::json!({"seed": 1, "schedule": "llada"});
        let c = Checkpoint::open(&out, &command, false).unwrap();
        c.write_batch(3, |dir| {
            fs::write(dir.join("x"), b"done").map_err(|e| Error::io(dir, e))
        })
        .unwrap();
        // A batch killed while being written leaves only its temporary folder.
        fs::create_dir(tmp.path().join(".out.resume/.batch-000004.tmp")).unwrap();
        let c = Checkpoint::open(&out, &command, false).unwrap();
        assert!(c.has(3) && !c.has(4));
        assert_eq!(fs::read(c.batch_dir(3).join("x")).unwrap(), b"done");
        let other = serde_json::json!({"seed": 2, "schedule": "llada"});
        let e = Checkpoint::open(&out, &other, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`seed` differs") && e.contains("--restart"),
            "{e}"
        );
        let c = Checkpoint::open(&out, &other, true).unwrap();
        assert!(!c.has(3));
        c.finish().unwrap();
        assert!(!tmp.path().join(".out.resume").exists());
    }

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
        Checkpoint::open(&tmp.path().join("out"), &serde_json::json!({}), false).unwrap();
        assert!(!dead.exists() && ours.exists() && other.exists());
    }
}
