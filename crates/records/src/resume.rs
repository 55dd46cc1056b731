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
/// A checkpoint folder is `.{name}` plus this.
const SUFFIX: &str = ".resume";
/// The process writing the output, by PID: a second process on the same output is refused.
const LOCK: &str = "lock";

impl Checkpoint {
    /// Opens the checkpoint of the output folder `target` for the command described by
    /// `command` (its inputs and settings, nothing that changes between runs of the same
    /// command). Batches kept by an earlier run of the same command are reused; with `restart`
    /// they are thrown away first. Batches of another command are an error naming the setting
    /// that differs.
    pub fn open(
        target: &Path,
        command: &serde_json::Value,
        restart: bool,
    ) -> Result<Checkpoint, Error> {
        let (parent, name) = crate::io::parent_and_name(target)?;
        let dir = parent.join(format!(".{name}{SUFFIX}"));
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // Locked first, so that --restart never throws away the batches of a live run.
        take_lock(&dir.join(LOCK), target)?;
        let checkpoint = Checkpoint { dir };
        if restart {
            let entries =
                fs::read_dir(&checkpoint.dir).map_err(|e| Error::io(&checkpoint.dir, e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_name() == LOCK {
                    continue;
                }
                let removed = match path.is_dir() {
                    true => fs::remove_dir_all(&path),
                    false => fs::remove_file(&path),
                };
                removed.map_err(|e| Error::io(&path, e))?;
            }
        }
        let recorded = checkpoint.dir.join(COMMAND);
        if recorded.is_file() {
            let kept: serde_json::Value = crate::read_json(&recorded)?;
            if &kept != command {
                let key = differing_key(&kept, command);
                return Err(Error::Invalid {
                    path: checkpoint.dir.clone(),
                    message: format!(
                        "holds the completed batches of another command (`{key}` differs); \
                         give --restart to throw them away, or another --out"
                    ),
                });
            }
        } else {
            crate::write_json(&recorded, command)?;
        }
        Ok(checkpoint)
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

    /// Removes everything under `dir` except checkpoint folders, whose batches a run started
    /// again reuses (`run` clears an interrupted run's stage folders this way).
    pub fn keep_only_checkpoints(dir: &Path) -> Result<(), Error> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if is_checkpoint(&path) {
                continue;
            }
            if path.is_dir() {
                Checkpoint::keep_only_checkpoints(&path)?;
                let empty = fs::read_dir(&path)
                    .map_err(|e| Error::io(&path, e))?
                    .next()
                    .is_none();
                if empty {
                    fs::remove_dir(&path).map_err(|e| Error::io(&path, e))?;
                }
            } else {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Removes every checkpoint folder under `dir` (`run`, once the whole run is done).
    pub fn remove_all_under(dir: &Path) -> Result<(), Error> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if is_checkpoint(&path) {
                fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            } else if path.is_dir() {
                Checkpoint::remove_all_under(&path)?;
            }
        }
        Ok(())
    }

    /// Removes the checkpoint once the output folder is in place.
    pub fn finish(self) -> Result<(), Error> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }
}

impl Drop for Checkpoint {
    /// Releases the lock (the kept batches stay for the next run).
    fn drop(&mut self) {
        let lock = self.dir.join(LOCK);
        if fs::read_to_string(&lock).is_ok_and(|pid| pid.trim() == std::process::id().to_string()) {
            let _ = fs::remove_file(lock);
        }
    }
}

/// Whether `path` is a checkpoint folder (`.{name}.resume`).
fn is_checkpoint(path: &Path) -> bool {
    path.is_dir()
        && path
            .file_name()
            .map(|n| n.to_string_lossy())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(SUFFIX))
}

/// Takes the lock file `lock` for this process: created exclusively, or taken over from a
/// process that no longer runs. Another live process holding it is an error naming `target`.
fn take_lock(lock: &Path, target: &Path) -> Result<(), Error> {
    let ours = std::process::id();
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
        {
            Ok(mut file) => {
                use std::io::Write;
                return write!(file, "{ours}").map_err(|e| Error::io(lock, e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(lock)
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok());
                match holder {
                    Some(pid) if pid != ours && crate::io::alive(pid) => {
                        return Err(Error::Invalid {
                            path: target.to_owned(),
                            message: format!(
                                "another process (PID {pid}) is writing this output; wait for it \
                                 to finish, or give another --out"
                            ),
                        })
                    }
                    // A dead process's (or our own) lock: taken over.
                    _ => fs::remove_file(lock).map_err(|e| Error::io(lock, e))?,
                }
            }
            Err(e) => return Err(Error::io(lock, e)),
        }
    }
    Err(Error::Invalid {
        path: target.to_owned(),
        message: "could not take the output's lock: another process keeps taking it".into(),
    })
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
    fn run_folders_keep_or_lose_their_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = tmp.path().join("decode");
        let kept = stage.join(".a.resume/batch-000000");
        for d in [&kept, &stage.join("a"), &stage.join("b/c")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(stage.join("a/steps.parquet"), b"x").unwrap();
        Checkpoint::keep_only_checkpoints(&stage).unwrap();
        assert!(kept.is_dir() && !stage.join("a").exists() && !stage.join("b").exists());
        Checkpoint::remove_all_under(tmp.path()).unwrap();
        assert!(!stage.join(".a.resume").exists() && stage.is_dir());
    }

    #[test]
    fn a_live_process_holding_the_lock_is_refused_a_dead_one_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let command = serde_json::json!({});
        fs::create_dir_all(tmp.path().join(".out.resume")).unwrap();
        let lock = tmp.path().join(".out.resume/lock");
        // PID 1 always runs.
        fs::write(&lock, "1").unwrap();
        let e = Checkpoint::open(&out, &command, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another process (PID 1)") && e.contains("out"),
            "{e}"
        );
        fs::write(&lock, "999999999").unwrap();
        let c = Checkpoint::open(&out, &command, false).unwrap();
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            std::process::id().to_string()
        );
        drop(c);
        assert!(!lock.exists(), "the lock outlived its checkpoint");
    }
}
