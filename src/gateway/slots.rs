//! The global concurrency limit for client API requests
//! (`server.max_concurrent_requests`).
//!
//! An atomic counter shared by every worker and an RAII [`ConcurrencySlot`]:
//! a request takes a slot when it starts being served and gives it back when
//! the slot is dropped (the JSON answer is built, the stream ends, or the
//! client goes away and actix drops the handler or the stream). Refusal is
//! immediate: a gateway at its limit should shed load, not queue it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` requests at once; 0 means no limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    max: usize,
    in_flight: Arc<AtomicUsize>,
}

impl ConcurrencyLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` when `max` requests are already being served.
    pub fn try_acquire(&self) -> Option<ConcurrencySlot> {
        if self.max == 0 {
            return Some(ConcurrencySlot { counter: None });
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current < self.max).then_some(current + 1)
            })
            .ok()?;
        Some(ConcurrencySlot {
            counter: Some(self.in_flight.clone()),
        })
    }

    /// Requests holding a slot now (always 0 without a limit).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// One request's place under the limit; dropping it frees the place.
#[derive(Debug)]
pub struct ConcurrencySlot {
    counter: Option<Arc<AtomicUsize>>,
}

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        if let Some(counter) = self.counter.take() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back_on_drop() {
        let limit = ConcurrencyLimit::new(2);
        let first = limit.try_acquire();
        let second = limit.try_acquire();
        assert!(first.is_some() && second.is_some());
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_flight(), 2);
        drop(first);
        assert_eq!(limit.in_flight(), 1);
        let third = limit.try_acquire();
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(limit.in_flight(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = ConcurrencyLimit::new(0);
        let slots: Vec<_> = (0..1000).filter_map(|_| limit.try_acquire()).collect();
        assert_eq!(slots.len(), 1000);
        assert_eq!(limit.in_flight(), 0);
    }
}
