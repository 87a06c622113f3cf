//! Where the state file lives, as the store sees it: the [`Disk`] trait, a real file
//! ([`FileDisk`]) and its in-memory twin ([`MemoryDisk`]), whose space can be made to run out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One file: read whole, replaced whole, appended to, cut back.
pub trait Disk: Send + 'static {
    /// Where it is, for messages.
    fn path(&self) -> &Path;

    /// The whole file, or `None` if there is none.
    fn read(&mut self) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the file with `bytes` so that a crash leaves either the old file or the new
    /// one; appends go on after it.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Appends `bytes`, durably (fsync).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Cuts the file to `len` bytes, durably.
    fn cut(&mut self, len: u64) -> io::Result<()>;
}

/// A file on the real disk.
pub struct FileDisk {
    path: PathBuf,
    /// Open for appending, once the file is known to exist.
    file: Option<File>,
}

impl FileDisk {
    pub fn new(path: PathBuf) -> Self {
        FileDisk { path, file: None }
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }
}

impl Disk for FileDisk {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read(&mut self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        if let Err(e) = written {
            // A full disk: leave no half-written copy behind to take the space.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &self.path)?;
        self.file = None;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file()?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        let file = self.file()?;
        file.set_len(len)?;
        file.sync_all()
    }
}

#[derive(Debug)]
struct Space {
    bytes: Option<Vec<u8>>,
    /// The most bytes the file may hold; past it, writes fail as on a full disk.
    capacity: usize,
}

/// The in-memory twin: clones share one file, so a test can fill the disk, free it, or look.
#[derive(Debug, Clone)]
pub struct MemoryDisk {
    path: PathBuf,
    space: Arc<Mutex<Space>>,
}

impl Default for MemoryDisk {
    fn default() -> Self {
        MemoryDisk {
            path: PathBuf::from("memory:state.automerge"),
            space: Arc::new(Mutex::new(Space {
                bytes: None,
                capacity: usize::MAX,
            })),
        }
    }
}

impl MemoryDisk {
    /// From now on the file may hold at most `capacity` bytes.
    pub fn set_capacity(&self, capacity: usize) {
        self.space().capacity = capacity;
    }

    /// The file's bytes, if there is a file.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.space().bytes.clone()
    }

    fn space(&self) -> std::sync::MutexGuard<'_, Space> {
        self.space.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn full() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "No space left on device (memory disk)",
    )
}

impl Disk for MemoryDisk {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.bytes())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut space = self.space();
        if bytes.len() > space.capacity {
            return Err(full());
        }
        space.bytes = Some(bytes.to_vec());
        Ok(())
    }

    /// A write that does not fit leaves what fits, as a torn append on a real disk does.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut space = self.space();
        let capacity = space.capacity;
        let file = space.bytes.get_or_insert_default();
        let room = capacity.saturating_sub(file.len());
        file.extend_from_slice(&bytes[..bytes.len().min(room)]);
        match bytes.len() > room {
            true => Err(full()),
            false => Ok(()),
        }
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        let mut space = self.space();
        let file = space.bytes.get_or_insert_default();
        file.truncate(len as usize);
        Ok(())
    }
}
