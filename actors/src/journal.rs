//! The usage journal: every record on local disk from the moment it is
//! handed over until the database has committed it.
//!
//! A journal is a directory of segment files, `usage-<id>.jsonl`, one JSON
//! line per [`UsageRecord`]. Handlers append to the open segment with one
//! plain `write` per record (no `fsync`: the page cache belongs to the
//! kernel, so a written line survives the process being killed, panicking
//! or OOM-killed; only a power or kernel failure can lose the last few
//! seconds, see `docs/architecture.md`). The usage actor seals the open
//! segment each time it drains the queue, and deletes a sealed segment only
//! after every record in it is committed. At start every segment found is
//! replayed; rows are keyed by `record_id`, so a record written twice (a
//! crash between the commit and the delete, a replay cut short) is stored
//! once.
//!
//! Files and the directory are created owner-only (0600/0700): records name
//! tokens, users and models.
//!
//! One running gateway owns a journal directory ([`Journal::lock`]). Two
//! processes sharing one would lose records: each replays and deletes the
//! segments it finds, including the one the other is still appending to.

use crate::usage_record::UsageRecord;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment's number; segments are replayed in this order.
pub type SegmentId = u64;

const PREFIX: &str = "usage-";
const SUFFIX: &str = ".jsonl";
/// The file whose `flock` says which process owns the directory.
const LOCK_FILE: &str = "lock";

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// This process's claim on a journal directory ([`Journal::lock`]); released
/// when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Records read from a segment, and where the next read starts.
#[derive(Debug, Default)]
pub struct SegmentChunk {
    pub records: Vec<UsageRecord>,
    pub next_offset: u64,
    /// Nothing more to read (a torn last line, from a crash mid-append, is
    /// the end: its request never completed).
    pub at_end: bool,
    /// Lines that were not records (corrupted), skipped.
    pub unreadable: usize,
}

impl Journal {
    /// Opens (creating) the journal directory.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Claims the directory for this process until the returned lock is
    /// dropped, or fails at once if another process holds it.
    ///
    /// An advisory `flock` on `<dir>/lock` (std's `File::try_lock`): the
    /// kernel releases it when the process exits however it exits, so a
    /// `kill -9` or a crash never leaves a stale claim behind, which a
    /// PID file would. The holder's PID is written into the file for the
    /// error message of the process that finds it taken.
    pub fn lock(&self) -> std::io::Result<DirLock> {
        let path = self.dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
                Ok(DirLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                };
                Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "the usage journal {} is in use by another running gateway{holder}; \
                         instances on one machine need a usage.journal_dir each",
                        self.dir.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }

    fn path(&self, id: SegmentId) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id:020}{SUFFIX}"))
    }

    /// Every segment on disk, oldest first.
    pub fn segments(&self) -> std::io::Result<Vec<SegmentId>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_suffix(SUFFIX))
                .and_then(|id| id.parse::<SegmentId>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Creates segment `id` for appending (owner-only).
    pub fn create(&self, id: SegmentId) -> std::io::Result<File> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(self.path(id))
    }

    /// Up to `max` records of segment `id` from byte `offset` on. A segment
    /// that is gone reads as empty.
    pub fn read(&self, id: SegmentId, offset: u64, max: usize) -> std::io::Result<SegmentChunk> {
        let mut file = match File::open(self.path(id)) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SegmentChunk {
                    next_offset: offset,
                    at_end: true,
                    ..SegmentChunk::default()
                });
            }
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(file);
        let mut chunk = SegmentChunk {
            next_offset: offset,
            ..SegmentChunk::default()
        };
        let mut line = Vec::new();
        while chunk.records.len() < max {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 || line.last() != Some(&b'\n') {
                // End of file, or a torn last line.
                chunk.at_end = true;
                return Ok(chunk);
            }
            let at = chunk.next_offset;
            chunk.next_offset += read as u64;
            match serde_json::from_slice::<UsageRecord>(&line) {
                Ok(mut record) => {
                    if record.record_id.is_empty() {
                        // A line from an older spill file: a stable id, so
                        // replaying it again still stores it once.
                        record.record_id = format!("journal-{id}-{at}");
                    }
                    chunk.records.push(record);
                }
                Err(_) => chunk.unreadable += 1,
            }
        }
        // Full: at the end only if nothing follows.
        chunk.at_end = reader.fill_buf()?.is_empty();
        Ok(chunk)
    }

    /// Deletes a segment whose records are all committed.
    pub fn remove(&self, id: SegmentId) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Bytes the journal holds on disk.
    pub fn bytes(&self) -> u64 {
        self.segments()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| std::fs::metadata(self.path(id)).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Moves a spill file written by an earlier version (the same JSON
    /// lines) into the journal as segment `id`, so it is replayed like one.
    ///
    /// The journal may sit on another filesystem than the spill file (a
    /// tmpfs, a volume of its own), where no rename reaches: then the file
    /// is copied in and removed.
    pub fn adopt(&self, file: &Path, id: SegmentId) -> std::io::Result<bool> {
        let segment = self.path(id);
        match std::fs::rename(file, &segment) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            // Linux refuses a rename across filesystems before it looks for
            // the file, so whether there is one is asked on its own.
            Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {
                match std::fs::symlink_metadata(file) {
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(error) => Err(error),
                    Ok(_) => {
                        self.copy_in(file, &segment)?;
                        Ok(true)
                    }
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Copies `file` to `segment` (owner-only, synced), then removes it.
    /// The copy is made under a name that is not a segment's and renamed
    /// when whole, so a crash midway leaves no half segment to replay; a
    /// crash between the rename and the removal leaves the file to be
    /// adopted again at the next start: its lines with a `record_id` are
    /// still stored once, older lines without one twice (the window is one
    /// `unlink` of a one-time migration).
    fn copy_in(&self, file: &Path, segment: &Path) -> std::io::Result<()> {
        let partial = segment.with_extension("adopting");
        std::fs::copy(file, &partial)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        }
        File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, segment)?;
        std::fs::remove_file(file)
    }
}

/// One record as a journal line.
pub fn line(record: &UsageRecord) -> Vec<u8> {
    // A typical line is 500-700 bytes: sized once instead of grown from
    // serde_json's default through three reallocations.
    let mut line = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut line, record).is_err() {
        line.clear();
    }
    line.push(b'\n');
    line
}

/// Appends one line with one `write` call where the kernel allows it.
pub fn append(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    file.write_all(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.to_owned(),
            record_id: id.to_owned(),
            ..UsageRecord::default()
        }
    }

    #[test]
    fn segments_read_in_chunks_and_survive_a_torn_last_line() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(dir.path().join("j"))?;
        let mut file = journal.create(3)?;
        for id in ["a", "b", "c"] {
            append(&mut file, &line(&record(id)))?;
        }
        // A crash mid-append leaves half a line.
        let torn = line(&record("d"));
        append(&mut file, torn.get(..torn.len() / 2).unwrap_or_default())?;
        journal.create(1)?;
        assert_eq!(journal.segments()?, vec![1, 3]);

        let first = journal.read(3, 0, 2)?;
        let ids: Vec<_> = first.records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(!first.at_end);
        let rest = journal.read(3, first.next_offset, 10)?;
        let ids: Vec<_> = rest.records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, ["c"]);
        assert!(rest.at_end);

        journal.remove(3)?;
        journal.remove(3)?;
        assert_eq!(journal.segments()?, vec![1]);
        assert!(journal.read(3, 0, 10)?.at_end);
        Ok(())
    }

    #[test]
    fn records_without_an_id_get_a_stable_one() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let spill = dir.path().join("old-spill.jsonl");
        std::fs::write(&spill, b"{\"created_at_ms\":1,\"request_id\":\"r\",\"token_id\":null,\"user_id\":null,\"endpoint\":\"/v1/x\",\"provider\":null,\"key_id\":null,\"requested_model\":null,\"upstream_model\":null,\"status\":200,\"error_class\":null,\"latency_ms\":1,\"ttft_ms\":null,\"prompt_tokens\":1,\"completion_tokens\":1,\"cost_nanos\":0,\"priced\":false,\"tokens_estimated\":false,\"stream\":false,\"attempts\":1}\nnot json\n")?;
        let journal = Journal::open(dir.path().join("j"))?;
        assert!(journal.adopt(&spill, 7)?);
        assert!(!journal.adopt(&spill, 8)?);
        let chunk = journal.read(7, 0, 10)?;
        assert_eq!(chunk.unreadable, 1);
        let again = journal.read(7, 0, 10)?;
        assert_eq!(chunk.records.len(), 1);
        assert_eq!(
            chunk.records.first().map(|r| r.record_id.clone()),
            Some("journal-7-0".to_owned())
        );
        assert_eq!(chunk.records, again.records);
        Ok(())
    }

    #[test]
    fn one_owner_at_a_time_and_the_claim_ends_with_its_holder() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(dir.path().join("j"))?;
        let held = journal.lock()?;
        // A second open file description conflicts like a second process.
        let refused = Journal::open(dir.path().join("j"))?.lock();
        let error = refused
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("in use by another running gateway")
                && error.contains(&format!("(process {})", std::process::id())),
            "{error}"
        );
        // The lock file is not a segment.
        assert_eq!(journal.segments()?, Vec::<SegmentId>::new());
        drop(held);
        journal.lock()?;
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(dir.path().join("j"))?;
        journal.create(1)?;
        let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(journal.dir())?, 0o700);
        assert_eq!(mode(&journal.path(1))?, 0o600);
        Ok(())
    }

    /// Two temporary directories on different filesystems (a journal on
    /// tmpfs beside a data directory on disk, as in a container with a
    /// volume of its own): `/dev/shm` and the system's temporary directory.
    #[cfg(unix)]
    fn dirs_on_two_filesystems() -> std::io::Result<(tempfile::TempDir, tempfile::TempDir)> {
        use std::os::unix::fs::MetadataExt;
        let disk = tempfile::tempdir()?;
        let memory = tempfile::tempdir_in("/dev/shm")?;
        let device = |path: &Path| std::fs::metadata(path).map(|meta| meta.dev());
        assert_ne!(
            device(disk.path())?,
            device(memory.path())?,
            "this test needs /dev/shm on a filesystem other than {}",
            disk.path().display()
        );
        Ok((disk, memory))
    }

    #[cfg(unix)]
    #[test]
    fn no_spill_file_on_another_filesystem_is_nothing_to_adopt() -> std::io::Result<()> {
        let (disk, memory) = dirs_on_two_filesystems()?;
        let journal = Journal::open(memory.path().join("j"))?;
        // Linux refuses a rename across filesystems before it looks for the
        // file: the answer must still be "nothing there", not an error that
        // stops the gateway from starting.
        assert!(!journal.adopt(&disk.path().join("usage-spill.jsonl"), 1)?);
        assert_eq!(journal.segments()?, Vec::<SegmentId>::new());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_spill_file_on_another_filesystem_is_copied_in() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let (disk, memory) = dirs_on_two_filesystems()?;
        let spill = disk.path().join("usage-spill.jsonl");
        let lines = b"{\"request_id\":\"r1\"}\n{\"request_id\":\"r2\"}\n";
        std::fs::write(&spill, lines)?;
        std::fs::set_permissions(&spill, std::fs::Permissions::from_mode(0o644))?;
        let journal = Journal::open(memory.path().join("j"))?;
        assert!(journal.adopt(&spill, 7)?);
        assert_eq!(journal.segments()?, vec![7]);
        assert_eq!(std::fs::read(journal.path(7))?, lines);
        let mode = std::fs::metadata(journal.path(7))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!spill.exists(), "the spill file is moved, not copied");
        assert!(!journal.adopt(&spill, 8)?);
        Ok(())
    }
}
