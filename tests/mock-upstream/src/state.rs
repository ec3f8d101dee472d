//! Shared counters and the bounded request log.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::RECORDED_REQUESTS_LIMIT;

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Header names lowercased, values as sent (lossy UTF-8), in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header (the name is matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub(crate) struct State {
    record: bool,
    total: AtomicU64,
    calls: Mutex<HashMap<String, u64>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
}

/// A poisoned lock only means a test thread panicked while holding it; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(record: bool) -> State {
        State {
            record,
            total: AtomicU64::new(0),
            calls: Mutex::new(HashMap::new()),
            requests: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether full requests are kept (the caller then builds a [`RecordedRequest`]).
    pub(crate) fn records(&self) -> bool {
        self.record
    }

    /// Counts a request; `key` is empty when the request carried none.
    pub(crate) fn count(&self, key: &str) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let mut calls = lock(&self.calls);
        match calls.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                calls.insert(key.to_owned(), 1);
            }
        }
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        let mut requests = lock(&self.requests);
        while requests.len() >= RECORDED_REQUESTS_LIMIT {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    pub(crate) fn calls(&self, key: &str) -> u64 {
        lock(&self.calls).get(key).copied().unwrap_or(0)
    }

    pub(crate) fn total_calls(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.requests).back().cloned()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).iter().cloned().collect()
    }

    pub(crate) fn reset(&self) {
        let mut calls = lock(&self.calls);
        let mut requests = lock(&self.requests);
        calls.clear();
        requests.clear();
        self.total.store(0, Ordering::SeqCst);
    }
}
