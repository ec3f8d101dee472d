//! Reading a request body under the configured limits.
//!
//! Memory is bounded whatever clients send (issue 10, item 6: 300 clients
//! each sending 4 MiB of a declared 20 MB body took the process to 1.37 GB):
//! - nothing is allocated from a client's `Content-Length`; a body grows only
//!   with the bytes that actually arrive;
//! - a declared length above the limit is refused (413) before reading;
//! - the whole body must arrive within `server.body_read_timeout` (408), so
//!   a client trickling a byte every few seconds cannot hold memory for ever;
//! - the bytes of all bodies being read at once past each body's first
//!   [`UNCOUNTED_BYTES`] are capped by `server.max_body_bytes_in_flight`: a
//!   body that would pass the cap is refused (503, `Retry-After: 1`) rather
//!   than buffered. What is counted is the buffer's capacity, grown by half
//!   only after the budget agreed, so the cap bounds what is
//!   allocated, not just what arrived. Small bodies are never refused by it,
//!   so ordinary clients are not starved by a flood of large ones;
//! - when a refused or abandoned body of at least [`TRIM_AFTER_BYTES`] is
//!   freed and no body is held any more, the allocator is asked to return
//!   free pages to the kernel at once (glibc kept them: RSS stayed at
//!   1.37 GB after the attack in the issue; jemalloc would keep them for its
//!   decay time).

use crate::error::ApiError;
use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut, Data, Payload};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Bytes of each body not counted against the in-flight cap: ordinary
/// requests (a chat turn is a few KB) never wait on large ones. Their total
/// is bounded by `server.max_concurrent_requests` instead.
pub const UNCOUNTED_BYTES: usize = 64 * 1024;

/// A freed body this large, leaving no body held, returns free heap to the
/// kernel (jemalloc's purge): large enough that ordinary traffic never pays.
pub const TRIM_AFTER_BYTES: usize = 1024 * 1024;

/// The server's rules for reading bodies, shared by every route of both
/// planes (registered as app data; without it a body is read with only its
/// size limit, as in unit tests).
#[derive(Debug)]
pub struct BodyIntake {
    /// `server.max_body_bytes_in_flight`.
    pub budget: BodyBudget,
    /// `server.body_read_timeout`; zero: none.
    pub timeout: Duration,
}

/// The bytes held by bodies being read, across the process.
#[derive(Debug)]
pub struct BodyBudget {
    held: AtomicUsize,
    cap: usize,
}

impl BodyBudget {
    /// A budget of `cap` bytes; 0 means no cap.
    pub fn new(cap: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            cap,
        }
    }

    /// Bytes currently held by bodies being read.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more if they fit under the cap.
    fn try_take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.checked_add(bytes)?;
                (self.cap == 0 || after <= self.cap).then_some(after)
            })
            .is_ok()
    }

    /// Returns whether nothing is held any more.
    fn give_back(&self, bytes: usize) -> bool {
        self.held.fetch_sub(bytes, Ordering::AcqRel) == bytes
    }
}

/// What one body holds of the budget; given back when the read ends,
/// however it ends (done, refused, timed out, or the client went away).
struct Holding<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Holding<'_> {
    /// Accounts for a body grown to `len` bytes.
    fn grow_to(&mut self, len: usize) -> Result<(), ApiError> {
        let wanted = len.saturating_sub(UNCOUNTED_BYTES);
        if wanted > self.bytes {
            if !self.budget.try_take(wanted - self.bytes) {
                return Err(ApiError::BodiesInFlight);
            }
            self.bytes = wanted;
        }
        Ok(())
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if self.budget.give_back(self.bytes) && self.bytes >= TRIM_AFTER_BYTES {
            return_free_memory();
        }
    }
}

/// Asks the allocator (jemalloc, `src/main.rs`) to give its free pages back
/// to the kernel now rather than after its decay time.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: "arena.<i>.purge" takes neither an old nor a new value (both
    // pointers null, length 0); 4096 is MALLCTL_ARENAS_ALL. Purging only
    // releases pages no allocation uses; it is thread-safe.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// Reads the whole body, answering 413 as soon as it is known to exceed
/// `limit` (from `Content-Length` before reading, else while reading), 408
/// when it does not arrive within `server.body_read_timeout`, and 503 when
/// holding it would pass `server.max_body_bytes_in_flight`.
pub async fn read_body(
    request: &HttpRequest,
    payload: Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let Some(intake) = request.app_data::<Data<BodyIntake>>() else {
        return collect(payload, limit, None).await;
    };
    let (budget, timeout) = (&intake.budget, intake.timeout);
    if timeout.is_zero() {
        return collect(payload, limit, Some(budget)).await;
    }
    actix_rt::time::timeout(timeout, collect(payload, limit, Some(budget)))
        .await
        .unwrap_or(Err(ApiError::RequestTimeout(timeout)))
}

async fn collect(
    mut payload: Payload,
    limit: usize,
    budget: Option<&BodyBudget>,
) -> Result<Bytes, ApiError> {
    let mut holding = budget.map(|budget| Holding { budget, bytes: 0 });
    // Grows with what arrives, never sized from the declared length. Declared
    // after `holding`, so on an early return it is freed before the budget
    // is given back (and memory trimmed).
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(format!("Could not read the request body: {error}"))
        })?;
        let len = body.len() + chunk.len();
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        if len > body.capacity() {
            // Geometric growth (amortized copies stay linear), by half rather
            // than doubling so the capacity stays within 1.5x of the body,
            // and only once the budget agreed.
            let grown = body.capacity().saturating_add(body.capacity() / 2);
            let capacity = len.max(grown).min(limit);
            if let Some(holding) = holding.as_mut() {
                holding.grow_to(capacity)?;
            }
            // Exactly `capacity`, what the budget holds: `reserve` grows a
            // buffer to at least twice its capacity, so bodies held up to a
            // third more memory than they were counted for (and later
            // chunks did not count at all until they passed it).
            let mut grown = BytesMut::with_capacity(capacity);
            grown.extend_from_slice(&body);
            body = grown;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads and deserializes a JSON body; type errors become a 400 naming the field.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
    payload: Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_body(request, payload, limit).await?;
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("Invalid JSON body: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_only_past_the_free_allowance_and_gives_back_on_drop() {
        let budget = BodyBudget::new(100);
        {
            let mut first = Holding {
                budget: &budget,
                bytes: 0,
            };
            assert!(first.grow_to(UNCOUNTED_BYTES).is_ok());
            assert_eq!(budget.held(), 0);
            assert!(first.grow_to(UNCOUNTED_BYTES + 60).is_ok());
            assert_eq!(budget.held(), 60);
            let mut second = Holding {
                budget: &budget,
                bytes: 0,
            };
            assert!(second.grow_to(UNCOUNTED_BYTES + 40).is_ok());
            assert!(matches!(
                second.grow_to(UNCOUNTED_BYTES + 41),
                Err(ApiError::BodiesInFlight)
            ));
            assert_eq!(budget.held(), 100);
        }
        assert_eq!(budget.held(), 0, "both given back");
    }
}
