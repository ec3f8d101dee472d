//! The usage actor: writes [`UsageRecord`]s to the database in batches, and
//! makes sure that none is lost on the way.
//!
//! Handlers push one record per request into the shared [`UsageQueue`] and
//! never wait on the database. A push makes the record storable
//! ([`UsageRecord::make_storable`]), appends it to the open segment of the
//! [`Journal`] with one plain `write` (so it survives the process being
//! killed) and keeps it in memory. Each pushing thread has a shard of the
//! queue with an open segment of its own, so no worker waits for another's
//! `write`; no message, no cross-thread wake-up
//! (a `do_send` per record cost ~24 us of CPU on a 2-core machine, see
//! bench/README.md). The push that fills a batch nudges the actor.
//!
//! The actor drains the queue on its timer (`flush_interval`, `0`: at once),
//! sealing the open segments each time, and writes batches of at most
//! `max(flush_max_records, 1000)` records (at most `max_buffered_records`). A segment is deleted only after
//! every record in it is committed, so a crash at any point loses nothing:
//! at the next start every segment left is replayed, and the database keys
//! rows by `record_id`, so a record written twice is stored once.
//!
//! Memory is bounded by `max_buffered_records`: past it, records stay on
//! disk only (the queue stops keeping copies; the actor drops the copies of
//! its newest segments) and are read back in batches when the database
//! takes them again. A write that fails because the database is unreachable
//! is retried with exponential backoff capped at `max_retry_delay`, so the
//! backlog starts draining within that delay of the database's return. A
//! record the database refuses is the sink's business: it splits the batch,
//! stores the rest and sets the record aside ([`RecordOutcome`]).
//!
//! A panic inside the actor is contained: the actor stops itself, its
//! `Supervisor` restarts it, and it rebuilds its state from the journal
//! (records that are only in memory, because the journal refused them, are
//! carried over). [`FlushAll`] (shutdown, tests) resolves once everything
//! received is stored, or at its deadline, leaving the rest in the journal.

use crate::LogHook;
use crate::journal::{self, Journal, SegmentId, SegmentWriter};
use crate::usage_record::{UsageFlags, UsageRecord};
use actix::prelude::*;
use futures_util::future::BoxFuture;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// What became of one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    /// Its `record_id` was stored before (a replay after a crash).
    Duplicate,
    /// The database refused it; it was set aside (dead-lettered).
    DeadLettered,
}

/// What became of each record of a batch, in batch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub outcomes: Vec<RecordOutcome>,
}

impl WriteReport {
    /// Every one of `n` records stored.
    pub fn stored(n: usize) -> Self {
        Self {
            outcomes: vec![RecordOutcome::Stored; n],
        }
    }

    pub fn count(&self, outcome: RecordOutcome) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }
}

/// Where usage goes. Implemented by the server over its database.
pub trait UsageSink: Send + Sync + 'static {
    /// Stores a batch. `Ok` says what became of each record; `Err` means the
    /// database could not be reached and the whole batch is tried again
    /// later (records it did store are then reported as duplicates). The
    /// returned future must be safe to drop mid-way (the write itself must
    /// not be cancelled by that).
    fn write(
        &self,
        batch: Arc<Vec<UsageRecord>>,
    ) -> BoxFuture<'static, Result<WriteReport, String>>;
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub flush_interval: Duration,
    pub flush_max_records: usize,
    /// Records held in memory (queue and actor) at most; the rest wait in
    /// the journal.
    pub max_buffered_records: usize,
    /// Longest pause between two tries while the database is unreachable.
    pub max_retry_delay: Duration,
}

impl UsageConfig {
    /// Records per database transaction: large enough to amortise the
    /// transaction, never more than memory may hold.
    fn batch_cap(&self) -> usize {
        self.flush_max_records
            .max(1000)
            .min(self.max_buffered_records.max(1))
    }
}

/// Counters for `/metrics`, shared by the queue, the actor and the server.
#[derive(Debug, Default)]
pub struct UsageStats {
    /// Records stored by this process.
    pub written: AtomicU64,
    /// Records found already stored (journal replays).
    pub duplicates: AtomicU64,
    /// Records the database refused, set aside.
    pub dead_letters: AtomicU64,
    /// Records the journal could not take (kept in memory only).
    pub journal_errors: AtomicU64,
    /// Records flagged, by flag (in [`UsageFlags::ALL`] order).
    pub flagged: [AtomicU64; UsageFlags::ALL.len()],
    /// Records in the actor's memory (buffer and the batch in flight).
    actor_records: AtomicUsize,
    /// Records in the queue's memory.
    queued_records: AtomicUsize,
}

impl UsageStats {
    /// Records held in memory, waiting to be written.
    pub fn buffered(&self) -> usize {
        self.actor_records.load(Ordering::Relaxed) + self.queued_records.load(Ordering::Relaxed)
    }

    fn count_flags(&self, flags: UsageFlags) {
        if flags.is_empty() {
            return;
        }
        for ((flag, _), counter) in UsageFlags::ALL.iter().zip(&self.flagged) {
            if flags.contains(*flag) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The handoff between handlers and the usage actor.
///
/// Cloning shares the queue. Records pushed are owned by the queue (and the
/// journal) until the actor drains them, so none is lost if the actor is
/// busy or restarting; [`FlushAll`] drains it before shutdown.
#[derive(Clone)]
pub struct UsageQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    /// One shard per pushing thread (up to [`SHARDS`]), each with its own
    /// open segment: a push locks only its thread's shard, so the workers
    /// never wait for each other's journal `write` (with one lock held
    /// across the `write`, the workers' wait on it and the futex wake-ups
    /// cost ~2% of their CPU, bench/README.md).
    shards: [Mutex<Shard>; SHARDS],
    /// The id of the next segment opened, by any shard.
    next_segment: AtomicU64,
    /// The next record's [`UsageRecord::queue_order`].
    next_order: AtomicU64,
    /// `next_order` when the queue was last drained: the pushes since are
    /// the difference.
    drained_at: AtomicU64,
    /// Pushes after which the actor is nudged (`1`: every push, tests).
    nudge_at: usize,
    memory_cap: usize,
    actor: OnceLock<Recipient<Nudge>>,
    journal: Option<Journal>,
    stats: Arc<UsageStats>,
    log: OnceLock<LogHook>,
}

/// Shards a queue has: the first threads to push each get one of their own
/// (the gateway's workers, one per core, push almost every record).
const SHARDS: usize = 8;

/// This thread's shard: threads are numbered in the order they first push,
/// the same number for every queue.
fn shard_of_this_thread() -> usize {
    static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    }
    THREAD.with(|thread| *thread % SHARDS)
}

/// The records one shard holds, and its open segment.
#[derive(Default)]
struct Shard {
    /// Records in memory that are in the open segment too.
    journaled: Vec<UsageRecord>,
    /// Records the journal could not take: in memory only.
    unjournaled: Vec<UsageRecord>,
    /// The open segment; dropped (sealed) when the actor drains the shard.
    open: Option<(SegmentId, SegmentWriter)>,
    /// Some records of the open segment are on disk only (memory was full).
    overflowed: bool,
}

impl Shard {
    fn held(&self) -> usize {
        self.journaled.len() + self.unjournaled.len()
    }

    fn append(
        &mut self,
        journal: &Journal,
        next_segment: &AtomicU64,
        line: &[u8],
    ) -> std::io::Result<()> {
        if self.open.is_none() {
            // Taken under this shard's lock, which `segment_ids` takes too:
            // no id is ever below its answer's `next` and yet not open.
            let id = next_segment.fetch_add(1, Ordering::Relaxed);
            self.open = Some((id, journal.create(id)?));
        }
        let result = match &mut self.open {
            Some((_, segment)) => segment.append(line),
            None => Ok(()),
        };
        if result.is_err() {
            // A failed write may leave half a line: the next record goes to
            // a new segment, so that half line is a torn end, not a prefix
            // glued to a good line.
            self.open = None;
        }
        result
    }

    /// Seals the open segment and takes what memory holds of it.
    fn drain(&mut self) -> Option<Drained> {
        if self.held() == 0 && !self.overflowed && self.open.is_none() {
            return None;
        }
        let segment = self.open.take().map(|(id, _)| id);
        let read_segment = std::mem::take(&mut self.overflowed);
        let mut records = std::mem::take(&mut self.unjournaled);
        let all_journaled = records.is_empty();
        let journaled = std::mem::take(&mut self.journaled);
        if !read_segment {
            records.extend(journaled);
        }
        // (When the segment is read back from disk, the in-memory copies of
        // its records are dropped here: reading it gives them all.)
        Some(Drained {
            segment,
            records,
            read_segment,
            all_journaled,
        })
    }
}

/// What the actor takes from the queue.
struct Drained {
    segment: Option<SegmentId>,
    records: Vec<UsageRecord>,
    /// The segment holds records that are not in `records`.
    read_segment: bool,
    /// Every record in `records` is in the segment too.
    all_journaled: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl UsageQueue {
    /// A queue that keeps records in memory only (tests of other parts).
    pub fn new(config: &UsageConfig) -> Self {
        Self::build(config, None, 0)
    }

    /// A queue that journals every record in `journal` before keeping it.
    /// Segments already there (from an earlier run) are left for the actor
    /// to replay.
    pub fn journaled(config: &UsageConfig, journal: Journal) -> std::io::Result<Self> {
        let next = journal.segments()?.last().map_or(1, |last| last + 1);
        Ok(Self::build(config, Some(journal), next))
    }

    fn build(config: &UsageConfig, journal: Option<Journal>, next_segment: SegmentId) -> Self {
        let nudge_at = if config.flush_interval.is_zero() {
            1
        } else {
            config.flush_max_records.max(1)
        };
        Self {
            inner: Arc::new(QueueInner {
                shards: std::array::from_fn(|_| Mutex::default()),
                next_segment: AtomicU64::new(next_segment),
                // From 1: records read back from the journal (0) are older.
                next_order: AtomicU64::new(1),
                drained_at: AtomicU64::new(1),
                nudge_at,
                memory_cap: config.max_buffered_records.max(1),
                actor: OnceLock::new(),
                journal,
                stats: Arc::new(UsageStats::default()),
                log: OnceLock::new(),
            }),
        }
    }

    fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.inner.shards.iter().map(lock)
    }

    /// The counters shared with the actor, for `/metrics`.
    pub fn stats(&self) -> Arc<UsageStats> {
        self.inner.stats.clone()
    }

    /// The journal, when records are journaled.
    pub fn journal(&self) -> Option<&Journal> {
        self.inner.journal.as_ref()
    }

    /// Hands one record over. Never blocks on the database; one line into
    /// the journal's page cache (a copy into a mapped segment, or a `write`).
    pub fn push(&self, mut record: UsageRecord) {
        let order = self.inner.next_order.fetch_add(1, Ordering::Relaxed);
        record.queue_order = order;
        record.make_storable();
        let stats = &self.inner.stats;
        stats.count_flags(record.flags);
        let line = self.inner.journal.as_ref().map(|_| journal::line(&record));
        let failure = {
            let mut shard = lock(&self.inner.shards[shard_of_this_thread()]);
            let journaled = match (&self.inner.journal, &line) {
                (Some(journal), Some(line)) => {
                    shard.append(journal, &self.inner.next_segment, line)
                }
                _ => Ok(()),
            };
            let failure = journaled.as_ref().err().map(ToString::to_string);
            let on_disk = self.inner.journal.is_some() && failure.is_none();
            if !on_disk {
                shard.unjournaled.push(record);
                stats.queued_records.fetch_add(1, Ordering::Relaxed);
            } else if stats.buffered() >= self.inner.memory_cap {
                // Memory is full: this record waits in the journal only.
                // (Read without the other shards' locks: pushes at the same
                // instant may each keep one record past the cap.)
                shard.overflowed = true;
            } else {
                shard.journaled.push(record);
                stats.queued_records.fetch_add(1, Ordering::Relaxed);
            }
            failure
        };
        // Read after the record is in its shard: a drain since this push
        // took its order may have missed the record, so it nudges too.
        let drained_at = self.inner.drained_at.load(Ordering::Relaxed);
        let nudge = self.inner.nudge_at == 1
            || drained_at > order
            || order + 1 - drained_at == self.inner.nudge_at as u64;
        if let Some(error) = failure {
            let errors = stats.journal_errors.fetch_add(1, Ordering::Relaxed) + 1;
            // The first failure and then every 1,000th: a full disk must
            // not turn into a flood of log lines.
            if (errors == 1 || errors.is_multiple_of(1000))
                && let Some(log) = self.inner.log.get()
            {
                log(&format!(
                    "usage.journal_failed: {errors} records kept in memory only: {error}"
                ));
            }
        }
        if nudge && let Some(actor) = self.inner.actor.get() {
            actor.do_send(Nudge);
        }
    }

    /// Seals every shard's open segment and takes what memory holds of
    /// them, a [`Drained`] per segment.
    fn drain(&self) -> Vec<Drained> {
        let order = self.inner.next_order.load(Ordering::Relaxed);
        self.inner.drained_at.store(order, Ordering::Relaxed);
        let mut drained = Vec::new();
        for mut shard in self.shards() {
            let held = shard.held();
            if let Some(taken) = shard.drain() {
                drained.push(taken);
                self.inner
                    .stats
                    .queued_records
                    .fetch_sub(held, Ordering::Relaxed);
            }
        }
        drained
    }

    /// The open segments and the next segment's id: segments below the
    /// latter, other than the former, are sealed. Every shard is locked at
    /// once, so no segment is being opened meanwhile.
    fn segment_ids(&self) -> (Vec<SegmentId>, SegmentId) {
        let shards: Vec<MutexGuard<'_, Shard>> = self.shards().collect();
        let open = shards
            .iter()
            .filter_map(|shard| shard.open.as_ref().map(|(id, _)| *id))
            .collect();
        (open, self.inner.next_segment.load(Ordering::Relaxed))
    }

    /// Records pushed and not yet taken by the actor (in memory).
    pub fn pending(&self) -> usize {
        self.shards().map(|shard| shard.held()).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards()
            .all(|shard| shard.held() == 0 && !shard.overflowed)
    }

    /// Records the journal could not take, still in the queue.
    fn unjournaled(&self) -> usize {
        self.shards().map(|shard| shard.unjournaled.len()).sum()
    }
}

/// "The queue has a batch": sent by the push that fills it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Nudge;

/// Where the rest of a segment is read from.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    offset: u64,
    at_end: bool,
}

impl Cursor {
    const START: Cursor = Cursor {
        offset: 0,
        at_end: false,
    };
}

/// A segment on its way to the database.
struct Pending {
    segment: Option<SegmentId>,
    /// Records in memory, not yet written.
    memory: VecDeque<UsageRecord>,
    /// Records still to read from the segment (`None`: all are in memory).
    disk: Option<Cursor>,
    /// `memory` is all in the segment too, so it may be dropped and read
    /// back later (to bound memory).
    evictable: bool,
    /// Records of this segment in the batch being written.
    in_flight: usize,
}

impl Pending {
    fn has_unread(&self) -> bool {
        self.disk.is_some_and(|cursor| !cursor.at_end)
    }

    fn has_work(&self) -> bool {
        !self.memory.is_empty() || self.has_unread()
    }

    fn is_done(&self) -> bool {
        !self.has_work() && self.in_flight == 0
    }
}

/// The batch being written.
struct InFlight {
    records: Arc<Vec<UsageRecord>>,
    /// (index into `pending`, records taken from it), in batch order.
    origins: Vec<(usize, usize)>,
}

pub struct UsageActor {
    queue: UsageQueue,
    sink: Arc<dyn UsageSink>,
    config: UsageConfig,
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    consecutive_failures: u32,
    retry_scheduled: bool,
    waiters: Vec<oneshot::Sender<()>>,
    log: LogHook,
    stats: Arc<UsageStats>,
    /// "Records wait in the journal" was logged (once per backlog).
    backlog_logged: bool,
}

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

impl UsageActor {
    pub fn new(
        queue: UsageQueue,
        sink: Arc<dyn UsageSink>,
        config: UsageConfig,
        log: LogHook,
    ) -> Self {
        let _ = queue.inner.log.set(log.clone());
        Self {
            stats: queue.stats(),
            queue,
            sink,
            config,
            pending: VecDeque::new(),
            in_flight: None,
            consecutive_failures: 0,
            retry_scheduled: false,
            waiters: Vec::new(),
            log,
            backlog_logged: false,
        }
    }

    /// Starts the actor under a supervisor on `arbiter`, so that a panic
    /// restarts it instead of ending usage accounting.
    pub fn start_supervised(self, arbiter: &ArbiterHandle) -> Addr<Self> {
        Supervisor::start_in_arbiter(arbiter, move |_| self)
    }

    /// Runs `work`; a panic in it stops the actor, which its supervisor
    /// then restarts (DESIGN.md section 8: a panic alone kills an actor for
    /// good).
    fn contained(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl FnOnce(&mut Self, &mut Context<Self>),
    ) {
        if catch_unwind(AssertUnwindSafe(|| work(self, ctx))).is_err() {
            (self.log)("usage.actor_panicked: restarting; records are read back from the journal");
            ctx.stop();
        }
    }

    fn journal(&self) -> Option<&Journal> {
        self.queue.journal()
    }

    /// Rebuilds the actor's state from the journal: every sealed segment on
    /// disk, plus the records only memory holds. Runs at every (re)start.
    fn recover(&mut self) {
        let mut memory_only: Vec<UsageRecord> = Vec::new();
        let in_flight = self.in_flight.take();
        let mut in_flight_records = in_flight
            .as_ref()
            .map(|batch| batch.records.iter().cloned().collect::<VecDeque<_>>())
            .unwrap_or_default();
        for (index, pending) in self.pending.iter_mut().enumerate() {
            let taken = in_flight.as_ref().map_or(0, |batch| {
                batch
                    .origins
                    .iter()
                    .filter(|(at, _)| *at == index)
                    .map(|(_, count)| *count)
                    .sum()
            });
            let from_batch: Vec<UsageRecord> = in_flight_records
                .drain(..taken.min(in_flight_records.len()))
                .collect();
            if !pending.evictable || pending.segment.is_none() {
                memory_only.extend(from_batch);
                memory_only.extend(pending.memory.drain(..));
            }
        }
        self.pending.clear();
        self.retry_scheduled = false;
        if !memory_only.is_empty() {
            self.pending.push_back(Pending {
                segment: None,
                memory: memory_only.into(),
                disk: None,
                evictable: false,
                in_flight: 0,
            });
        }
        let (open, next) = self.queue.segment_ids();
        let segments = match self.journal().map(Journal::segments) {
            Some(Ok(segments)) => segments,
            Some(Err(error)) => {
                (self.log)(&format!("usage.journal_unreadable: {error}"));
                Vec::new()
            }
            None => Vec::new(),
        };
        let sealed: Vec<SegmentId> = segments
            .into_iter()
            .filter(|id| *id < next && !open.contains(id))
            .collect();
        if !sealed.is_empty() {
            (self.log)(&format!(
                "usage.replay: {} journal segments queued for writing",
                sealed.len()
            ));
        }
        for segment in sealed {
            self.pending.push_back(Pending {
                segment: Some(segment),
                memory: VecDeque::new(),
                disk: Some(Cursor::START),
                evictable: true,
                in_flight: 0,
            });
        }
        self.update_stats();
    }

    fn update_stats(&self) {
        let held: usize = self.pending.iter().map(|p| p.memory.len()).sum::<usize>()
            + self
                .in_flight
                .as_ref()
                .map_or(0, |batch| batch.records.len());
        self.stats.actor_records.store(held, Ordering::Relaxed);
    }

    fn take_from_queue(&mut self) {
        for drained in self.queue.drain() {
            if drained.segment.is_none() && drained.records.is_empty() {
                continue;
            }
            self.pending.push_back(Pending {
                segment: drained.segment,
                evictable: drained.all_journaled && drained.segment.is_some(),
                memory: drained.records.into(),
                disk: drained.read_segment.then_some(Cursor::START),
                in_flight: 0,
            });
        }
    }

    /// Drops the in-memory copies of the newest journaled segments while
    /// memory holds more than `max_buffered_records`.
    fn bound_memory(&mut self) {
        let cap = self.config.max_buffered_records;
        let mut held = self.stats.buffered();
        let mut evicted = false;
        for pending in self.pending.iter_mut().rev() {
            if held <= cap {
                break;
            }
            if pending.evictable && pending.in_flight == 0 && !pending.memory.is_empty() {
                held = held.saturating_sub(pending.memory.len());
                pending.memory.clear();
                pending.disk = Some(Cursor::START);
                evicted = true;
            }
        }
        if evicted && !self.backlog_logged {
            self.backlog_logged = true;
            (self.log)(
                "usage.backlog_on_disk: more records than usage.max_buffered_records are waiting; the rest wait in the journal",
            );
        }
        self.update_stats();
    }

    /// Up to a batch of records from the oldest segments, reading from disk
    /// what memory does not hold.
    fn next_batch(&mut self) -> Result<InFlight, String> {
        let cap = self.config.batch_cap();
        let journal = self.queue.journal().cloned();
        let mut records = Vec::new();
        let mut origins = Vec::new();
        for (index, pending) in self.pending.iter_mut().enumerate() {
            if records.len() >= cap {
                break;
            }
            if pending.memory.is_empty()
                && let (Some(segment), Some(cursor), Some(journal)) =
                    (pending.segment, pending.disk.as_mut(), journal.as_ref())
                && !cursor.at_end
            {
                let chunk = journal
                    .read(segment, cursor.offset, cap - records.len())
                    .map_err(|error| format!("reading journal segment {segment}: {error}"))?;
                if chunk.unreadable > 0 {
                    (self.log)(&format!(
                        "usage.journal_lines_unreadable: {} lines of segment {segment} skipped",
                        chunk.unreadable
                    ));
                }
                cursor.offset = chunk.next_offset;
                cursor.at_end = chunk.at_end;
                pending.memory.extend(chunk.records);
            }
            let take = pending.memory.len().min(cap - records.len());
            records.extend(pending.memory.drain(..take));
            pending.in_flight += take;
            origins.push((index, take));
            if pending.has_work() {
                // Keep the order: the rest of this segment goes first next time.
                break;
            }
        }
        Ok(InFlight {
            records: Arc::new(records),
            origins,
        })
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.take_from_queue();
        self.bound_memory();
        if self.in_flight.is_some() || self.retry_scheduled {
            return;
        }
        let batch = match self.next_batch() {
            Ok(batch) => batch,
            Err(error) => {
                (self.log)(&format!("usage.journal_read_failed: {error}"));
                self.schedule_retry(ctx);
                return;
            }
        };
        if batch.records.is_empty() {
            self.release_origins(&batch.origins);
            self.drop_done();
            self.notify_if_idle();
            return;
        }
        let records = batch.records.clone();
        self.in_flight = Some(batch);
        self.update_stats();
        let write = self.sink.write(records);
        ctx.spawn(write.into_actor(self).map(|result, actor, ctx| {
            actor.contained(ctx, |actor, ctx| actor.written(result, ctx));
        }));
    }

    fn release_origins(&mut self, origins: &[(usize, usize)]) {
        for (index, count) in origins {
            if let Some(pending) = self.pending.get_mut(*index) {
                pending.in_flight = pending.in_flight.saturating_sub(*count);
            }
        }
    }

    /// A batch's write ended.
    fn written(&mut self, result: Result<WriteReport, String>, ctx: &mut Context<Self>) {
        let Some(batch) = self.in_flight.take() else {
            return;
        };
        match result {
            Ok(report) => {
                self.consecutive_failures = 0;
                self.backlog_logged = false;
                let count = |outcome| report.count(outcome) as u64;
                self.stats
                    .written
                    .fetch_add(count(RecordOutcome::Stored), Ordering::Relaxed);
                self.stats
                    .duplicates
                    .fetch_add(count(RecordOutcome::Duplicate), Ordering::Relaxed);
                self.stats
                    .dead_letters
                    .fetch_add(count(RecordOutcome::DeadLettered), Ordering::Relaxed);
                self.release_origins(&batch.origins);
                self.drop_done();
                self.update_stats();
            }
            Err(error) => {
                self.consecutive_failures += 1;
                (self.log)(&format!(
                    "usage.write_failed: {} records kept for retry (attempt {}): {error}",
                    batch.records.len(),
                    self.consecutive_failures
                ));
                // Back where they came from, in their order.
                let mut records = Arc::try_unwrap(batch.records)
                    .unwrap_or_else(|shared| (*shared).clone())
                    .into_iter();
                for (index, count) in &batch.origins {
                    let back: Vec<UsageRecord> = records.by_ref().take(*count).collect();
                    if let Some(pending) = self.pending.get_mut(*index) {
                        pending.in_flight = pending.in_flight.saturating_sub(*count);
                        for record in back.into_iter().rev() {
                            pending.memory.push_front(record);
                        }
                    }
                }
                self.bound_memory();
                self.schedule_retry(ctx);
                return;
            }
        }
        if self.should_flush_now() {
            self.flush(ctx);
        } else {
            self.notify_if_idle();
        }
    }

    /// Deletes the segments at the front whose records are all committed.
    fn drop_done(&mut self) {
        while self.pending.front().is_some_and(Pending::is_done) {
            let Some(done) = self.pending.pop_front() else {
                break;
            };
            if let (Some(segment), Some(journal)) = (done.segment, self.queue.journal())
                && let Err(error) = journal.remove(segment)
            {
                // Harmless: replayed at the next start, stored once.
                (self.log)(&format!(
                    "usage.journal_remove_failed: segment {segment}: {error}"
                ));
            }
        }
    }

    fn should_flush_now(&self) -> bool {
        if self.pending.iter().any(Pending::has_work) {
            return true;
        }
        let queued = self.queue.pending();
        !self.queue.is_empty()
            && (self.config.flush_interval.is_zero()
                || queued >= self.config.flush_max_records
                || !self.waiters.is_empty())
    }

    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        let exponent = self.consecutive_failures.saturating_sub(1).min(10);
        let delay = FIRST_RETRY_DELAY
            .saturating_mul(1 << exponent)
            .min(self.config.max_retry_delay);
        self.retry_scheduled = true;
        ctx.run_later(delay, |actor, ctx| {
            actor.contained(ctx, |actor, ctx| {
                actor.retry_scheduled = false;
                actor.flush(ctx);
            });
        });
    }

    fn notify_if_idle(&mut self) {
        if self.pending.is_empty() && self.in_flight.is_none() && self.queue.is_empty() {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Records that only memory holds: lost if the process ended now.
    fn unjournaled(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| !p.evictable)
            .map(|p| p.memory.len() + p.in_flight)
            .sum::<usize>()
            + self.queue.unjournaled()
    }
}

impl Actor for UsageActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = self.queue.inner.actor.set(ctx.address().recipient());
        self.contained(ctx, |actor, ctx| {
            actor.recover();
            actor.flush(ctx);
        });
        if !self.config.flush_interval.is_zero() {
            ctx.run_interval(self.config.flush_interval, |actor, ctx| {
                actor.contained(ctx, |actor, ctx| actor.flush(ctx));
            });
        }
    }
}

/// After a panic: `started` runs again and rebuilds from the journal.
impl Supervised for UsageActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        (self.log)("usage.actor_restarted");
    }
}

impl Handler<UsageRecord> for UsageActor {
    type Result = ();

    fn handle(&mut self, record: UsageRecord, ctx: &mut Context<Self>) {
        self.queue.push(record);
        if self.config.flush_interval.is_zero()
            || self.queue.pending() >= self.config.flush_max_records
        {
            self.contained(ctx, |actor, ctx| actor.flush(ctx));
        }
    }
}

impl Message for UsageRecord {
    type Result = ();
}

impl Handler<Nudge> for UsageActor {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Context<Self>) {
        self.contained(ctx, |actor, ctx| actor.flush(ctx));
    }
}

/// Makes the actor panic inside a handler (supervision tests).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectUsagePanic;

#[cfg(feature = "fault-injection")]
impl Handler<InjectUsagePanic> for UsageActor {
    type Result = ();

    fn handle(&mut self, _: InjectUsagePanic, ctx: &mut Context<Self>) {
        self.contained(ctx, |_, _| panic!("injected usage actor panic"));
    }
}

/// Resolves when every record received so far is stored; at `deadline`,
/// whatever is left stays in the journal for the next start.
#[derive(Message)]
#[rtype(result = "FlushReport")]
pub struct FlushAll {
    pub deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Records written to the database since the actor started.
    pub written: u64,
    /// Records that only memory holds (the journal refused them): lost if
    /// the process ends now. Zero normally.
    pub unwritten: usize,
    /// Whether records wait in the journal for the next start.
    pub journal_backlog: bool,
}

impl Handler<FlushAll> for UsageActor {
    type Result = ResponseActFuture<Self, FlushReport>;

    fn handle(&mut self, msg: FlushAll, ctx: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.waiters.push(sender);
        self.contained(ctx, |actor, ctx| {
            actor.flush(ctx);
            actor.notify_if_idle();
        });
        let deadline = tokio::time::sleep(msg.deadline);
        Box::pin(
            async move {
                tokio::select! {
                    _ = receiver => true,
                    () = deadline => false,
                }
            }
            .into_actor(self)
            .map(|all_written, actor, _| FlushReport {
                written: actor.stats.written.load(Ordering::Relaxed),
                unwritten: if all_written { 0 } else { actor.unjournaled() },
                journal_backlog: !all_written,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    /// Stores records by `record_id` like the database does (a second write
    /// of the same id is a duplicate); can be made to fail or to hold every
    /// write until released.
    #[derive(Default)]
    struct FakeSink {
        stored: Mutex<Vec<UsageRecord>>,
        ids: Mutex<HashSet<String>>,
        fail: AtomicBool,
        fail_next: AtomicUsize,
        hold_first: Mutex<Option<oneshot::Receiver<()>>>,
        writes: AtomicUsize,
    }

    impl UsageSink for FakeSink {
        fn write(
            &self,
            batch: Arc<Vec<UsageRecord>>,
        ) -> BoxFuture<'static, Result<WriteReport, String>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail.load(Ordering::SeqCst)
                || self
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            let hold = lock(&self.hold_first).take();
            let report = if fail {
                None
            } else {
                let mut ids = lock(&self.ids);
                let mut stored = lock(&self.stored);
                Some(WriteReport {
                    outcomes: batch
                        .iter()
                        .map(|record| {
                            if ids.insert(record.record_id.clone()) {
                                stored.push(record.clone());
                                RecordOutcome::Stored
                            } else {
                                RecordOutcome::Duplicate
                            }
                        })
                        .collect(),
                })
            };
            Box::pin(async move {
                if let Some(hold) = hold {
                    let _ = hold.await;
                }
                report.ok_or_else(|| "database down".to_owned())
            })
        }
    }

    impl FakeSink {
        fn stored_ids(&self) -> Vec<String> {
            lock(&self.stored)
                .iter()
                .map(|r| r.request_id.clone())
                .collect()
        }
        fn sorted_ids(&self) -> Vec<String> {
            let mut ids = self.stored_ids();
            ids.sort();
            ids
        }
    }

    fn record(id: usize) -> UsageRecord {
        UsageRecord {
            request_id: format!("r{id:03}"),
            record_id: format!("rec{id:03}"),
            token_id: Some(1),
            endpoint: "/v1/chat/completions".to_owned(),
            requested_model: Some("m".to_owned()),
            status: 200,
            latency_ms: 1,
            prompt_tokens: 1,
            completion_tokens: 1,
            attempts: 1,
            ..UsageRecord::default()
        }
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|id| format!("r{id:03}")).collect()
    }

    fn config(interval_ms: u64, max: usize, bound: usize) -> UsageConfig {
        UsageConfig {
            flush_interval: Duration::from_millis(interval_ms),
            flush_max_records: max,
            max_buffered_records: bound,
            max_retry_delay: Duration::from_millis(200),
        }
    }

    fn quiet() -> LogHook {
        Arc::new(|_| {})
    }

    fn journaled(config: &UsageConfig, dir: &std::path::Path) -> std::io::Result<UsageQueue> {
        UsageQueue::journaled(config, Journal::open(dir)?)
    }

    async fn flush_all(actor: &Addr<UsageActor>, secs: u64) -> Result<FlushReport, MailboxError> {
        actor
            .send(FlushAll {
                deadline: Duration::from_secs(secs),
            })
            .await
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[actix_rt::test]
    async fn queued_records_are_written_by_size_and_by_flush_all() -> TestResult {
        let sink = Arc::new(FakeSink::default());
        let config = config(60_000, 10, 1000);
        let queue = UsageQueue::new(&config);
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet()).start();
        // Let the actor start and register for nudges.
        flush_all(&actor, 1).await?;
        for id in 0..10 {
            queue.push(record(id));
        }
        // The tenth push nudged the actor: a batch is written without
        // waiting for the (one-minute) interval.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.writes.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(sink.stored_ids(), ids(0..10));
        for id in 10..13 {
            queue.push(record(id));
        }
        let report = flush_all(&actor, 5).await?;
        assert_eq!(report.written, 13);
        assert_eq!(report.unwritten, 0);
        assert!(!report.journal_backlog);
        assert_eq!(queue.pending(), 0);
        assert_eq!(sink.stored_ids(), ids(0..13));
        Ok(())
    }

    #[actix_rt::test]
    async fn failed_writes_are_retried_in_order() -> TestResult {
        let sink = Arc::new(FakeSink::default());
        sink.fail_next.store(2, Ordering::SeqCst);
        let config = config(0, 10, 1000);
        let actor =
            UsageActor::new(UsageQueue::new(&config), sink.clone(), config, quiet()).start();
        for id in 0..5 {
            actor.do_send(record(id));
        }
        let report = flush_all(&actor, 10).await?;
        assert_eq!(report.unwritten, 0);
        assert_eq!(sink.stored_ids(), ids(0..5));
        Ok(())
    }

    /// Records pushed but never written (the process died) are in the
    /// journal: the next actor writes them, and a segment read twice (a
    /// crash before its delete) stores each record once.
    #[actix_rt::test]
    async fn journaled_records_survive_a_crash_and_are_stored_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let config = config(60_000, 1000, 1000);
        let queue = journaled(&config, dir.path())?;
        for id in 0..20 {
            queue.push(record(id));
        }
        // No actor ever ran: as if the process was killed here.
        drop(queue);
        let journal = Journal::open(dir.path())?;
        assert_eq!(journal.segments()?.len(), 1);

        let sink = Arc::new(FakeSink::default());
        // The first crash left 5 of them stored already (a commit whose
        // segment delete never happened).
        for id in 0..5 {
            lock(&sink.ids).insert(format!("rec{id:03}"));
        }
        let queue = journaled(&config, dir.path())?;
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet()).start();
        queue.push(record(20));
        let report = flush_all(&actor, 5).await?;
        assert_eq!(report.unwritten, 0);
        assert_eq!(sink.sorted_ids(), ids(5..21));
        assert_eq!(sink.stats_duplicates(&queue), 5);
        // Committed segments are deleted.
        assert_eq!(journal.segments()?, Vec::<SegmentId>::new());
        Ok(())
    }

    /// Threads push into segments of their own (no thread waits for
    /// another's journal `write`), and nothing is lost or stored twice
    /// across them: neither after a crash, nor when records were pushed
    /// into open segments before the actor started.
    #[actix_rt::test]
    async fn threads_journal_into_their_own_segments_and_lose_nothing() -> TestResult {
        const THREADS: usize = 4;
        const EACH: usize = 50;
        let dir = tempfile::tempdir()?;
        let config = config(60_000, 1000, 1000);
        let push_from_threads = |queue: &UsageQueue, first: usize| {
            let start = Arc::new(std::sync::Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (queue, start) = (queue.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        for n in 0..EACH {
                            queue.push(record(first + thread * EACH + n));
                        }
                        shard_of_this_thread()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap_or(usize::MAX))
                .collect::<HashSet<usize>>()
        };
        let queue = journaled(&config, dir.path())?;
        let shards = push_from_threads(&queue, 0);
        assert!(!shards.contains(&usize::MAX), "a pushing thread panicked");
        let journal = Journal::open(dir.path())?;
        assert_eq!(journal.segments()?.len(), shards.len());
        // No actor ever ran: as if the process was killed here.
        drop(queue);

        let queue = journaled(&config, dir.path())?;
        // Open segments when the actor starts: not taken for sealed ones.
        let shards = push_from_threads(&queue, THREADS * EACH);
        let sink = Arc::new(FakeSink::default());
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet()).start();
        let report = flush_all(&actor, 5).await?;
        assert_eq!(report.unwritten, 0);
        assert_eq!(sink.sorted_ids(), ids(0..2 * THREADS * EACH));
        assert_eq!(sink.stats_duplicates(&queue), 0);
        assert_eq!(journal.segments()?, Vec::<SegmentId>::new());
        assert!(!shards.is_empty());
        Ok(())
    }

    /// With the database down, memory holds at most the bound; the rest
    /// waits on disk and is all written, once, when the database is back.
    #[actix_rt::test]
    async fn memory_is_bounded_while_the_database_is_down() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sink = Arc::new(FakeSink::default());
        sink.fail.store(true, Ordering::SeqCst);
        let config = config(0, 10, 25);
        let queue = journaled(&config, dir.path())?;
        let stats = queue.stats();
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet()).start();
        let mut peak = 0;
        for id in 0..300 {
            queue.push(record(id));
            if id % 10 == 0 {
                // Let the actor take and fail batches meanwhile.
                tokio::task::yield_now().await;
            }
            peak = peak.max(stats.buffered());
        }
        let report = flush_all(&actor, 1).await?;
        peak = peak.max(stats.buffered());
        assert!(peak <= 25, "{peak} records held in memory");
        assert!(report.journal_backlog);
        assert_eq!(report.unwritten, 0);
        sink.fail.store(false, Ordering::SeqCst);
        let report = flush_all(&actor, 10).await?;
        assert!(!report.journal_backlog);
        assert_eq!(sink.sorted_ids(), ids(0..300));
        Ok(())
    }

    /// A panic while a batch is in flight: the supervisor restarts the
    /// actor, which reads the batch back from the journal and writes it;
    /// the first write, finishing late, does not make anything count twice.
    #[cfg(feature = "fault-injection")]
    #[actix_rt::test]
    async fn a_panic_with_a_batch_in_flight_loses_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sink = Arc::new(FakeSink::default());
        let (release, hold) = oneshot::channel();
        *lock(&sink.hold_first) = Some(hold);
        let config = config(0, 10, 1000);
        let queue = journaled(&config, dir.path())?;
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet())
            .start_supervised(&Arbiter::current());
        for id in 0..5 {
            queue.push(record(id));
        }
        actor.send(Nudge).await?;
        assert!(
            sink.writes.load(Ordering::SeqCst) >= 1,
            "no batch in flight"
        );
        actor.send(InjectUsagePanic).await?;
        // Restarted: the same address answers again.
        let report = flush_all(&actor, 5).await?;
        assert_eq!(report.unwritten, 0);
        assert!(!report.journal_backlog);
        let _ = release.send(());
        for id in 5..8 {
            queue.push(record(id));
        }
        flush_all(&actor, 5).await?;
        assert_eq!(sink.sorted_ids(), ids(0..8));
        assert_eq!(
            Journal::open(dir.path())?.segments()?,
            Vec::<SegmentId>::new()
        );
        Ok(())
    }

    #[actix_rt::test]
    async fn flags_are_counted_and_strings_made_storable() -> TestResult {
        let sink = Arc::new(FakeSink::default());
        let config = config(0, 10, 1000);
        let queue = UsageQueue::new(&config);
        let actor = UsageActor::new(queue.clone(), sink.clone(), config, quiet()).start();
        let mut bad = record(0);
        bad.requested_model = Some("a\0b".to_owned());
        bad.prompt_tokens = -3;
        queue.push(bad);
        flush_all(&actor, 5).await?;
        let stored = lock(&sink.stored).clone();
        assert_eq!(
            stored.first().and_then(|r| r.requested_model.clone()),
            Some("a\u{FFFD}b".to_owned())
        );
        let stats = queue.stats();
        assert_eq!(
            stats.flagged.first().map(|c| c.load(Ordering::SeqCst)),
            Some(1)
        );
        assert_eq!(
            stats.flagged.get(1).map(|c| c.load(Ordering::SeqCst)),
            Some(1)
        );
        Ok(())
    }

    impl FakeSink {
        fn stats_duplicates(&self, queue: &UsageQueue) -> u64 {
            queue.stats().duplicates.load(Ordering::SeqCst)
        }
    }
}
