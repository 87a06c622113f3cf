//! The state file as the node's driver reaches it: opened at start, and written as the
//! document core asks ([`Persist`]). What to write, when to rewrite the file whole, and how a
//! change that did not land is undone are the core's (`weeble_core::document`); this module is
//! the I/O, through [`disk::Disk`] — a real file, or an in-memory twin.
//!
//! Opening loads the file whole, dropping a torn last frame (a crash or a full disk during an
//! append that was never acknowledged), and rewrites it as one full save (to a temporary file,
//! fsynced, then renamed over the old one). If that rewrite fails (a full disk), the node
//! starts anyway on what it could read, reporting that it cannot persist; a file that is
//! missing or from before frames must be written, and the start fails.

pub mod disk;

use disk::Disk;
use std::path::PathBuf;
use tracing::{info, warn};
use weeble_core::document::{self, Persist, PersistFailure, Stored, journal};
use weeble_crdt::{ActorId, StateError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("writing the state file {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state file {path} ends with a torn frame that cannot be cut off ({source}); \
         free space or fix the file's permissions and start again"
    )]
    Torn {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens (or creates) the state file on `disk`: the document it holds, under a random actor id.
pub fn open(disk: &mut dyn Disk) -> Result<Stored, StoreError> {
    let path = disk.path().to_path_buf();
    let failed = |source| StoreError::Disk {
        path: path.clone(),
        source,
    };
    let bytes = disk.read().map_err(failed)?;
    let loaded = document::load(bytes.as_deref(), ActorId::random())?;
    let mut state = loaded.state;
    if loaded.torn > 0 {
        warn!(file = %path.display(), offset = loaded.good_len, bytes = loaded.torn,
            "the state file ends with a torn frame (a crash or a full disk during a write that was never acknowledged): dropping it");
    }
    let compacted = journal::file(&state.save());
    let (len, failing) = match disk.replace(&compacted) {
        Ok(()) => (compacted.len() as u64, None),
        Err(e) => {
            // Carry on with the file as it is, its torn tail (if any) cut off; a file from
            // before frames existed cannot take framed appends.
            let Some(good_len) = loaded.good_len else {
                return Err(failed(e));
            };
            disk.cut(good_len as u64)
                .map_err(|source| StoreError::Torn {
                    path: path.clone(),
                    source,
                })?;
            warn!(file = %path.display(), error = %e, "cannot rewrite the state file: this node cannot persist changes and takes no pods until it can");
            (good_len as u64, Some(failed(e).to_string()))
        }
    };
    let snapshot = state.snapshot();
    info!(objects = snapshot.deployments.len() + snapshot.services.len(), file = %path.display(), "desired state loaded");
    Ok(Stored {
        state,
        len,
        failing,
    })
}

/// Carries out one of the document core's persists: an append that, if it fails, is cut off
/// the file again (`torn` if that fails too), or a replacement of the whole file.
pub fn persist(disk: &mut dyn Disk, persist: &Persist) -> Result<(), PersistFailure> {
    let failure = |disk: &dyn Disk, e: std::io::Error, torn| PersistFailure {
        why: StoreError::Disk {
            path: disk.path().to_path_buf(),
            source: e,
        }
        .to_string(),
        torn,
    };
    match persist {
        Persist::Append { frame, whole } => disk.append(frame).map_err(|e| {
            // Cut the file back to its last whole frame, so that the next append follows it.
            let torn = disk.cut(*whole).is_err();
            failure(disk, e, torn)
        }),
        Persist::Replace(bytes) => disk.replace(bytes).map_err(|e| failure(disk, e, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::disk::{FileDisk, MemoryDisk};
    use super::*;
    use std::fs;
    use weeble_crdt::DesiredState;

    /// A state file holding deployments `names`, one frame each after the first full save.
    fn file(names: &[&str]) -> Vec<u8> {
        let mut state = DesiredState::new(ActorId::random());
        let mut bytes = journal::file(&state.save());
        for name in names {
            let text = format!(
                "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  template:\n    \
                 metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
                 containers: [{{name: c, image: img}}]\n"
            );
            let parsed = weeble_crdt::parse_manifests(&text).expect("valid");
            state.apply(&parsed.objects[0]).unwrap();
            bytes.extend(journal::frame(&state.save_incremental()));
        }
        bytes
    }

    /// The deployments the file on `disk` holds, checking that it ends with no torn frame.
    fn names(disk: &mut dyn Disk) -> Vec<String> {
        let bytes = disk.read().unwrap().expect("a file");
        let loaded = document::load(Some(&bytes), ActorId::random()).unwrap();
        assert_eq!(loaded.torn, 0, "no torn frame");
        names_in(loaded.state)
    }

    fn names_in(mut state: DesiredState) -> Vec<String> {
        let snapshot = state.snapshot();
        snapshot
            .deployments
            .keys()
            .map(|k| k.name.clone())
            .collect()
    }

    /// A file whose last frame lost 7 bytes opens without it and is rewritten whole.
    fn a_torn_last_frame_is_dropped(disk: &mut dyn Disk) {
        let bytes = file(&["kept", "torn"]);
        disk.replace(&bytes[..bytes.len() - 7]).unwrap();
        let stored = open(disk).expect("a torn tail does not stop the node");
        assert_eq!(stored.failing, None);
        assert_eq!(names_in(stored.state), ["kept"]);
        assert_eq!(names(disk), ["kept"], "rewritten whole at start");
        let len = disk.read().unwrap().unwrap().len() as u64;
        assert_eq!(stored.len, len);
    }

    #[test]
    fn a_torn_last_frame_is_dropped_at_start_and_the_rest_loads() {
        a_torn_last_frame_is_dropped(&mut MemoryDisk::default());
        let dir = temp_dir("torn");
        a_torn_last_frame_is_dropped(&mut FileDisk::new(dir.join("state.automerge")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_rewritten_at_start_loads_and_reports_it() {
        let disk = MemoryDisk::default();
        let bytes = file(&["kept", "torn"]);
        disk.clone().replace(&bytes[..bytes.len() - 7]).unwrap();
        disk.set_capacity(0);
        let stored = open(&mut disk.clone()).expect("starts on what it read");
        let why = stored.failing.expect("reported");
        assert!(why.contains("No space left"), "{why}");
        assert_eq!(names_in(stored.state), ["kept"]);
        assert_eq!(
            names(&mut disk.clone()),
            ["kept"],
            "the torn tail is cut off"
        );
    }

    #[test]
    fn a_failed_append_is_cut_off_and_one_that_cannot_be_is_reported_torn() {
        let disk = MemoryDisk::default();
        let bytes = file(&["kept"]);
        disk.clone().replace(&bytes).unwrap();
        disk.set_capacity(bytes.len() + 4);
        let frame = journal::frame(b"a change that does not fit");
        let append = Persist::Append {
            frame,
            whole: bytes.len() as u64,
        };
        let failed = persist(&mut disk.clone(), &append).expect_err("full");
        assert!(
            !failed.torn && failed.why.contains("No space left"),
            "{failed:?}"
        );
        assert_eq!(
            disk.bytes(),
            Some(bytes),
            "cut back to its last whole frame"
        );

        // /dev/full takes no append, and cannot be cut back.
        let failed = persist(&mut FileDisk::new("/dev/full".into()), &append).expect_err("full");
        assert!(failed.torn, "{failed:?}");
        assert!(failed.why.contains("/dev/full"), "{failed:?}");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weeble-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
