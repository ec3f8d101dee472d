//! The usage journal: every record on local disk from the moment it is
//! handed over until the database has committed it.
//!
//! A journal is a directory of segment files, `usage-<id>.jsonl`, one JSON
//! line per [`UsageRecord`]. Handlers append to the open segment, a
//! [`SegmentWriter`], without `fsync`: the page cache belongs to the
//! kernel, so a line in it survives the process being killed, panicking or
//! OOM-killed; only a power or kernel failure can lose the last few
//! seconds (see `docs/architecture.md`). On ext4 and tmpfs the segment's
//! tail is mapped into memory and a record is a copy into the mapping (a
//! `write` call per record cost more than the copy, bench/README.md);
//! elsewhere each record is one `write`. The usage actor seals the open
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
use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, compiler_fence};

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
    /// Open segments are mapped ([`SegmentWriter`]): the directory is on a
    /// filesystem where that is safe.
    map_segments: bool,
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
        let map_segments = maps_safely(&dir);
        Ok(Self { dir, map_segments })
    }

    /// Whether open segments are mapped into memory (see [`SegmentWriter`]).
    pub fn maps_segments(&self) -> bool {
        self.map_segments
    }

    /// The same journal with open segments mapped or written (tests of
    /// both ways; a mapping is only safe where [`Journal::open`] chose it).
    #[cfg(test)]
    fn with_mapped_segments(mut self, mapped: bool) -> Self {
        self.map_segments = mapped;
        self
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
    pub fn create(&self, id: SegmentId) -> std::io::Result<SegmentWriter> {
        let mut options = OpenOptions::new();
        if self.map_segments {
            // A shared writable mapping needs the file open for reading too.
            options.read(true).write(true);
        } else {
            options.append(true);
        }
        options.create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(self.path(id))?;
        let tail = if self.map_segments {
            let len = file.metadata()?.len();
            Some(MappedTail {
                len,
                filled: len,
                window: None,
            })
        } else {
            None
        };
        Ok(SegmentWriter { file, tail })
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

    /// Bytes the journal holds on disk (an open mapped segment's zeros
    /// past its last line included: at most [`WINDOW`] each).
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

/// Whether `dir` is on a filesystem where a page of a file, once written,
/// takes no new space when it is written again through a mapping: ext4
/// (and ext2/3, which share its magic number) and tmpfs. A store into a
/// mapped page that needs space the disk no longer has is SIGBUS, not an
/// error: copy-on-write filesystems (btrfs, ZFS), overlayfs and the rest
/// keep a `write` per record, whose failure the queue handles.
#[cfg(target_os = "linux")]
fn maps_safely(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and outlives the call; `statfs`
    // fills `stat` when it returns 0, and only then is `stat` read.
    let stat = unsafe {
        if libc::statfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return false;
        }
        stat.assume_init()
    };
    // libc types each constant as its target's `f_type`.
    stat.f_type == libc::EXT4_SUPER_MAGIC || stat.f_type == libc::TMPFS_MAGIC
}

#[cfg(not(target_os = "linux"))]
fn maps_safely(_dir: &Path) -> bool {
    false
}

/// How much of an open segment is mapped at a time, and how far past its
/// last line the file is filled with zeros before that part is mapped.
/// Each window costs a `write` of zeros, an `mmap` and an `munmap`, and a
/// page fault per page; 256 KiB (about 400 records) measured cheapest
/// (bench/README.md). Resident while mapped: at most one window per shard.
const WINDOW: u64 = 256 * 1024;

/// The zeros a window is filled with.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// An open segment, appended to by one shard of the usage queue at a time.
///
/// Where the journal maps segments ([`Journal::maps_segments`]), the file
/// is filled with zeros a window ahead of its last line, that window is
/// mapped shared, and a line is copied into it, its newline last: a crash
/// mid-copy leaves a line without its newline, which reads as a torn end
/// like a `write` cut short (the zeros after it read as nothing). The
/// kernel owns the mapped pages, so a copied line survives the process
/// like a written one. Space is taken by the `write` of zeros, so a full
/// disk is an error there, as it is for a `write` per record. Dropping the
/// writer (the segment sealed) cuts the file to its lines.
#[derive(Debug)]
pub struct SegmentWriter {
    file: File,
    /// `None`: a `write` per line.
    tail: Option<MappedTail>,
}

#[derive(Debug)]
struct MappedTail {
    /// Where the next line starts.
    len: u64,
    /// The file's length: zeros from `len` on.
    filled: u64,
    /// The window mapped now, and where in the file it starts.
    window: Option<(u64, MmapMut)>,
}

impl SegmentWriter {
    /// Appends one line (ending in its newline).
    pub fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        match &mut self.tail {
            Some(tail) => tail.append(&self.file, line),
            None => self.file.write_all(line),
        }
    }
}

impl MappedTail {
    fn append(&mut self, file: &File, line: &[u8]) -> std::io::Result<()> {
        let Some((last, body)) = line.split_last() else {
            return Ok(());
        };
        let end = self.len.saturating_add(line.len() as u64);
        let fits = |(start, map): &(u64, MmapMut)| end <= start.saturating_add(map.len() as u64);
        if !self.window.as_ref().is_some_and(fits) {
            self.map_window(file, end)?;
        }
        let out_of_window = || std::io::Error::other("journal line outside its mapped window");
        let (start, map) = self.window.as_mut().ok_or_else(out_of_window)?;
        let at = usize::try_from(self.len - *start).map_err(|_| out_of_window())?;
        let (last_out, body_out) = map
            .get_mut(at..at + line.len())
            .and_then(<[u8]>::split_last_mut)
            .ok_or_else(out_of_window)?;
        body_out.copy_from_slice(body);
        // The newline only after the rest: never a whole-looking line that
        // is not whole.
        compiler_fence(Ordering::Release);
        *last_out = *last;
        self.len = end;
        Ok(())
    }

    /// Maps the window from the next line on, at least to `end`, after
    /// filling the file with zeros that far.
    fn map_window(&mut self, file: &File, end: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Unmapped first: at most one window of a segment is resident.
        self.window = None;
        let stop = end.max(self.len.saturating_add(WINDOW));
        while self.filled < stop {
            let room = usize::try_from(stop - self.filled).unwrap_or(usize::MAX);
            let zeros = ZEROS.get(..room.min(ZEROS.len())).unwrap_or_default();
            file.write_all_at(zeros, self.filled)?;
            self.filled += zeros.len() as u64;
        }
        let len = usize::try_from(stop - self.len).map_err(std::io::Error::other)?;
        // SAFETY: the mapping is of this process's own segment (its
        // directory is held with `Journal::lock`), within the file's length
        // (filled above), and only this writer touches the file while it is
        // mapped: the file is cut (`Drop`) only after the window is gone,
        // and segments are read or removed only once sealed.
        let map = unsafe { MmapOptions::new().offset(self.len).len(len).map_mut(file)? };
        self.window = Some((self.len, map));
        Ok(())
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if let Some(tail) = &mut self.tail {
            tail.window = None;
            // Sealed: the zeros past the last line go. Should this fail,
            // readers stop at them all the same.
            let _ = self.file.set_len(tail.len);
        }
    }
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
        for mapped in [false, true] {
            let dir = tempfile::tempdir()?;
            let journal = Journal::open(dir.path().join("j"))?.with_mapped_segments(mapped);
            torn_last_line(&journal)?;
        }
        Ok(())
    }

    fn torn_last_line(journal: &Journal) -> std::io::Result<()> {
        let mut segment = journal.create(3)?;
        for id in ["a", "b", "c"] {
            segment.append(&line(&record(id)))?;
        }
        // A crash mid-append leaves half a line.
        let torn = line(&record("d"));
        segment.append(torn.get(..torn.len() / 2).unwrap_or_default())?;
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

        drop(segment);
        journal.remove(3)?;
        journal.remove(3)?;
        assert_eq!(journal.segments()?, vec![1]);
        assert!(journal.read(3, 0, 10)?.at_end);
        Ok(())
    }

    /// Records of ~600 bytes: 1,000 of them cross several mapped windows.
    fn many_records(count: usize) -> Vec<UsageRecord> {
        (0..count)
            .map(|n| UsageRecord {
                error_class: Some("x".repeat(400)),
                ..record(&format!("rec_{n:06}"))
            })
            .collect()
    }

    fn ids(records: &[UsageRecord]) -> Vec<&str> {
        records.iter().map(|r| r.record_id.as_str()).collect()
    }

    #[test]
    fn mapped_and_written_segments_hold_the_same_lines() -> std::io::Result<()> {
        let records = many_records(1000);
        let lines: Vec<u8> = records.iter().flat_map(line).collect();
        assert!(
            lines.len() as u64 > 2 * WINDOW,
            "the records must cross windows"
        );
        for mapped in [false, true] {
            let dir = tempfile::tempdir()?;
            let journal = Journal::open(dir.path().join("j"))?.with_mapped_segments(mapped);
            let mut segment = journal.create(1)?;
            for record in &records {
                segment.append(&line(record))?;
            }
            // Read while still open (the zeros past a mapped segment's last
            // line are not a line), then sealed: the file is its lines.
            let open = journal.read(1, 0, 2000)?;
            assert!(open.at_end, "mapped: {mapped}");
            assert_eq!(open.unreadable, 0, "mapped: {mapped}");
            assert_eq!(ids(&open.records), ids(&records), "mapped: {mapped}");
            drop(segment);
            assert_eq!(std::fs::read(journal.path(1))?, lines, "mapped: {mapped}");
        }
        Ok(())
    }

    #[test]
    fn a_mapped_segment_left_open_by_a_crash_reads_to_its_last_line() -> std::io::Result<()> {
        let records = many_records(700);
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(dir.path().join("j"))?.with_mapped_segments(true);
        let mut segment = journal.create(4)?;
        for record in &records {
            segment.append(&line(record))?;
        }
        // As a killed process leaves it: never sealed, zeros after the
        // last line up to the end of its window.
        std::mem::forget(segment);
        let lines: u64 = records.iter().map(|r| line(r).len() as u64).sum();
        assert!(std::fs::metadata(journal.path(4))?.len() > lines);
        let first = journal.read(4, 0, 500)?;
        assert!(!first.at_end);
        let rest = journal.read(4, first.next_offset, 500)?;
        assert!(rest.at_end);
        assert_eq!(rest.next_offset, lines);
        assert_eq!(first.unreadable + rest.unreadable, 0);
        let read: Vec<&str> = ids(&first.records)
            .into_iter()
            .chain(ids(&rest.records))
            .collect();
        assert_eq!(read, ids(&records));
        // A restart appends to a new segment; this one is replayed whole.
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

    /// A full disk must be an error the queue can handle (the record kept
    /// in memory, `usage.journal_failed`), never SIGBUS at a store into a
    /// mapped page: a mapped segment takes its space by writing zeros.
    /// `/dev/full` stands in for the full disk.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error_whichever_way_lines_are_appended() -> std::io::Result<()> {
        for mapped in [false, true] {
            let dir = tempfile::tempdir()?;
            let journal = Journal::open(dir.path().join("j"))?.with_mapped_segments(mapped);
            std::os::unix::fs::symlink("/dev/full", journal.path(1))?;
            let mut segment = journal.create(1)?;
            let error = segment.append(&line(&record("a"))).err();
            assert_eq!(
                error.and_then(|error| error.raw_os_error()),
                Some(libc::ENOSPC),
                "mapped: {mapped}"
            );
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn segments_on_tmpfs_are_mapped() -> std::io::Result<()> {
        let (_disk, memory) = dirs_on_two_filesystems()?;
        let journal = Journal::open(memory.path().join("j"))?;
        assert!(journal.maps_segments());
        let mut segment = journal.create(1)?;
        segment.append(&line(&record("a")))?;
        drop(segment);
        assert_eq!(std::fs::read(journal.path(1))?, line(&record("a")));
        Ok(())
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
