//! One usage record per client request, guaranteed.
//!
//! A [`Meter`] is created when a request arrives and filled in as it
//! progresses. `finish` sends the record to the usage actor; if the meter is
//! dropped unfinished (the client disconnected and actix dropped the
//! handler), `Drop` sends it with status 499 so the row still exists.

use crate::enforce::{Admission, Enforcer, scale};
use crate::error::ApiError;
use crate::gateway::AppState;
use crate::http::context::RequestCtx;
use crate::metering::PriceTable;
use crate::providers::openai::Usage;
use crate::tokens::TokenInfo;
use actix_web::ResponseError;
use std::sync::Arc;
use std::time::Instant;
use switchyard_actors::{AttemptNote, UsageFlags, UsageQueue, UsageRecord};

/// nginx's "client closed request", for rows of requests the client abandoned.
pub const CLIENT_CLOSED: u16 = 499;

pub struct Meter {
    record: UsageRecord,
    started: Instant,
    sink: UsageQueue,
    prices: PriceTable,
    sent: bool,
    /// The request body, measured (`crate::providers::estimate`) only when needed: for
    /// a limited token's estimate, or when the upstream reports no usage.
    /// Parsing every body a second time just in case cost ~5% of the
    /// gateway's CPU (issue 11 profile).
    prompt_body: Option<actix_web::web::Bytes>,
    prompt_chars: Option<usize>,
    /// Text characters of the answer so far: a stream's events as they are
    /// relayed (counted only if no usage comes); a whole answer measured
    /// only when it carries no usage.
    completion_text: crate::providers::estimate::DeferredTextCount,
    /// What the request holds against its token's limits, settled with it.
    admission: Option<Admission>,
    enforcer: Arc<Enforcer>,
    /// The request body's length: prompt tokens beyond it plus the
    /// allowance are not believed.
    prompt_bytes: usize,
    /// The request's own `max_tokens`, when it set one.
    max_completion: Option<i64>,
    /// `usage.max_completion_tokens` and `usage.prompt_token_allowance`.
    completion_cap: i64,
    prompt_allowance: i64,
    /// The most media units the request can be billed
    /// ([`Self::bound_media`]); `None`: not bounded here (the proxy).
    media_bounds: Option<Usage>,
    /// When the current upstream attempt began (for the attempt log).
    attempt_started: Option<Instant>,
    /// The request's span (tracing on): attempts are its children.
    pub(crate) trace: Option<crate::telemetry::Trace>,
}

impl Meter {
    pub fn start(state: &AppState, ctx: &RequestCtx, endpoint: &str) -> Self {
        Self {
            record: UsageRecord {
                created_at_ms: state.clock.now_ms(),
                request_id: ctx.id.clone(),
                token_id: None,
                user_id: None,
                endpoint: endpoint.to_owned(),
                provider: None,
                key_id: None,
                requested_model: None,
                upstream_model: None,
                status: 0,
                error_class: None,
                latency_ms: 0,
                ttft_ms: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                cost_nanos: 0,
                priced: false,
                tokens_estimated: false,
                stream: false,
                attempts: 0,
                base_cost_nanos: 0,
                multiplier_ppm: crate::tokens::PPM,
                reservation_id: None,
                record_id: ctx.record_id.clone(),
                flags: UsageFlags::default(),
                attempt_log: Vec::new(),
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                images: 0,
                characters: 0,
                audio_ms: 0,
                search_units: 0,
                // Set by the usage queue.
                queue_order: 0,
            },
            started: ctx.started,
            sink: state.usage.clone(),
            prices: state.prices.clone(),
            sent: false,
            prompt_body: None,
            prompt_chars: None,
            completion_text: crate::providers::estimate::DeferredTextCount::default(),
            admission: None,
            enforcer: state.enforcer.clone(),
            prompt_bytes: 0,
            max_completion: None,
            completion_cap: state.settings.usage.max_completion_tokens,
            prompt_allowance: state.settings.usage.prompt_token_allowance,
            media_bounds: None,
            attempt_started: None,
            trace: ctx.trace.clone(),
        }
    }

    pub fn token(&mut self, token: &TokenInfo) {
        self.record.token_id = Some(token.id);
        self.record.user_id = token.user_id;
        self.record.multiplier_ppm = token.price_multiplier_ppm;
    }

    /// Checks the token's limits for this request and holds its estimate
    /// until the request is settled (by `succeed`, `fail`, ... or `Drop`).
    pub async fn admit(
        &mut self,
        token: &TokenInfo,
        model: &str,
        max_tokens: Option<i64>,
    ) -> Result<(), ApiError> {
        self.admit_media(token, model, max_tokens, Usage::default())
            .await
    }

    /// [`Self::admit`], also holding the most media units the call can be
    /// billed (`Enforcer::admit_with_media`).
    pub async fn admit_media(
        &mut self,
        token: &TokenInfo,
        model: &str,
        max_tokens: Option<i64>,
        media: Usage,
    ) -> Result<(), ApiError> {
        let prompt_chars = if token.has_local_limits() || token.needs_reservation() {
            self.prompt_chars()
        } else {
            0
        };
        let admission = self
            .enforcer
            .admit_with_media(token, model, prompt_chars, max_tokens, &media)
            .await?;
        self.record.reservation_id = admission.reservation_id;
        self.admission = Some(admission);
        self.max_completion = max_tokens.filter(|max| *max > 0);
        Ok(())
    }

    /// The most media units the request can be billed (images asked for,
    /// characters sent, audio an upload can hold, documents reranked):
    /// an upstream's figure above one is clamped and the row flagged
    /// `usage_clamped`, like tokens beyond what the request could produce.
    pub fn bound_media(&mut self, bounds: Usage) {
        self.media_bounds = Some(bounds);
    }

    /// Rate limits, parallelism and request quotas only, for calls that
    /// carry no tokens (the proxy).
    pub async fn admit_call(&mut self, token: &TokenInfo) -> Result<(), ApiError> {
        self.admission = Some(self.enforcer.admit_call(token).await?);
        Ok(())
    }

    pub fn request(&mut self, model: &str, stream: bool) {
        self.record.requested_model = Some(model.to_owned());
        self.record.stream = stream;
    }

    /// Called at each upstream attempt: the row names the last one.
    pub fn attempt(&mut self, provider: &str, key_id: &str, upstream_model: &str) {
        self.attempt_started = Some(Instant::now());
        self.record.attempts += 1;
        self.record.provider = Some(provider.to_owned());
        self.record.key_id = Some(key_id.to_owned());
        self.record.upstream_model = Some(upstream_model.to_owned());
    }

    /// The key of the current (or last) upstream attempt.
    pub fn key_id(&self) -> Option<&str> {
        self.record.key_id.as_deref()
    }

    pub fn attempts(&self) -> i32 {
        self.record.attempts
    }

    /// The current attempt failed with `outcome` and the request goes on
    /// (or ends): it joins the row's attempt log.
    pub fn attempt_failed(&mut self, outcome: &str) {
        let note = self.attempt_note(outcome);
        self.record.attempt_log.push(note);
    }

    fn attempt_note(&self, outcome: &str) -> AttemptNote {
        let now = Instant::now();
        let started = self.attempt_started.unwrap_or(now);
        let millis = |duration: std::time::Duration| duration.as_millis() as i64;
        AttemptNote {
            provider: self.record.provider.clone().unwrap_or_default(),
            key_id: self.record.key_id.clone().unwrap_or_default(),
            upstream_model: self.record.upstream_model.clone().unwrap_or_default(),
            outcome: outcome.to_owned(),
            started_ms: millis(started.saturating_duration_since(self.started)),
            duration_ms: millis(now.saturating_duration_since(started)),
        }
    }

    /// Measures the request's text (kept only in case usage is missing).
    pub fn estimate_prompt(&mut self, request_body: &actix_web::web::Bytes) {
        self.prompt_bytes = request_body.len();
        self.prompt_body = Some(request_body.clone());
        self.prompt_chars = None;
    }

    /// The request's text characters, measured on first use.
    fn prompt_chars(&mut self) -> usize {
        if let Some(chars) = self.prompt_chars {
            return chars;
        }
        let chars = self
            .prompt_body
            .as_deref()
            .map_or(0, crate::providers::estimate::text_chars);
        self.prompt_chars = Some(chars);
        chars
    }

    /// Measures a whole answer's text, if its usage is missing (the only
    /// case the measure is used in).
    pub fn estimate_completion(&mut self, answer_body: &[u8], usage: Option<&Usage>) {
        if usage.is_none() {
            self.completion_text = crate::providers::estimate::DeferredTextCount::default();
            self.completion_text
                .add_chars(crate::providers::estimate::text_chars(answer_body));
        }
    }

    /// Adds one stream event's text characters, counted already.
    pub fn add_completion_chars(&mut self, chars: usize) {
        self.completion_text.add_chars(chars);
    }

    /// Adds one stream event's data, to be counted if its text is needed.
    pub fn add_completion_event(&mut self, data: &[u8]) {
        self.completion_text.add_document(data);
    }

    pub fn first_byte(&mut self) {
        if self.record.ttft_ms.is_none() {
            self.record.ttft_ms = Some(self.started.elapsed().as_millis() as i64);
        }
    }

    /// Ends a request that produced an answer.
    pub fn succeed(mut self, status: u16, usage: Option<Usage>) {
        self.settle(status, None, usage);
    }

    /// Ends a request that failed with `error`.
    pub fn fail(mut self, error: &ApiError) {
        self.settle(error.status_code().as_u16(), Some(error.code()), None);
    }

    /// Ends a stream that broke after content went out.
    pub fn interrupted(mut self, error_class: &str, usage: Option<Usage>) {
        self.settle(200, Some(error_class), usage);
    }

    fn settle(&mut self, status: u16, error_class: Option<&str>, usage: Option<Usage>) {
        if self.sent {
            return;
        }
        self.sent = true;
        // An answer (or part of one) came back without a usage report:
        // estimate rather than record a free request, and say so.
        let estimated = usage.is_none()
            && self.record.attempts > 0
            && (status == 200 || self.completion_text.total() > 0);
        let prompt_chars = if estimated { self.prompt_chars() } else { 0 };
        // After a failover the log holds the failed attempts; the last one,
        // which answered or ended the request, joins them.
        if !self.record.attempt_log.is_empty()
            && self.record.attempt_log.len() < self.record.attempts as usize
        {
            let note = self.attempt_note(error_class.unwrap_or("ok"));
            self.record.attempt_log.push(note);
        }
        let record = &mut self.record;
        record.status = status;
        record.error_class = error_class.map(str::to_owned);
        record.latency_ms = self.started.elapsed().as_millis() as i64;
        match usage {
            Some(usage) => {
                let bounds = UsageBounds {
                    prompt: i64::try_from(self.prompt_bytes)
                        .unwrap_or(i64::MAX)
                        .saturating_add(self.prompt_allowance),
                    completion: self.max_completion.unwrap_or(self.completion_cap),
                    media: self.media_bounds,
                };
                let (usage, flags) = bounds.apply(usage);
                record.prompt_tokens = usage.prompt_tokens;
                record.completion_tokens = usage.completion_tokens;
                record.cache_read_tokens = usage.cache_read_tokens;
                record.cache_write_tokens = usage.cache_write_tokens;
                record.reasoning_tokens = usage.reasoning_tokens;
                record.images = usage.images;
                record.characters = usage.characters;
                record.audio_ms = usage.audio_ms;
                record.search_units = usage.search_units;
                record.flags.insert(flags);
            }
            None if estimated => {
                record.prompt_tokens = crate::providers::estimate::tokens_for_chars(prompt_chars);
                record.completion_tokens =
                    crate::providers::estimate::tokens_for_chars(self.completion_text.total());
                record.tokens_estimated = true;
            }
            None => {}
        }
        let models: Vec<&str> = [
            record.upstream_model.as_deref(),
            record.requested_model.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        match self.prices.lookup(&models) {
            Some(price) => {
                record.priced = true;
                // A per-call price is owed only for a call that was served.
                let served = (200..300).contains(&status) && error_class.is_none();
                let usage = Usage {
                    prompt_tokens: record.prompt_tokens,
                    completion_tokens: record.completion_tokens,
                    cache_read_tokens: record.cache_read_tokens,
                    cache_write_tokens: record.cache_write_tokens,
                    reasoning_tokens: record.reasoning_tokens,
                    images: record.images,
                    characters: record.characters,
                    audio_ms: record.audio_ms,
                    search_units: record.search_units,
                };
                record.base_cost_nanos = price.usage_cost_nanos(&usage).saturating_add(if served {
                    price.per_call_nanos()
                } else {
                    0
                });
                record.cost_nanos = scale(record.base_cost_nanos, record.multiplier_ppm);
                if record.base_cost_nanos == i64::MAX || record.cost_nanos == i64::MAX {
                    record.flags.insert(UsageFlags::COST_CLAMPED);
                }
            }
            None => {
                record.priced = false;
                record.base_cost_nanos = 0;
                record.cost_nanos = 0;
            }
        }
        if let Some(mut admission) = self.admission.take() {
            if record.attempts == 0 {
                // Never reached an upstream: nothing was spent.
                self.enforcer.release(admission);
            } else {
                self.enforcer.settle(
                    &mut admission,
                    record
                        .prompt_tokens
                        .saturating_add(record.completion_tokens),
                    record.cost_nanos,
                );
            }
        }
        // The queue owns the record from here; the usage actor drains it.
        self.sink.push(std::mem::take(record));
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.sent {
            self.settle(CLIENT_CLOSED, Some("client_disconnected"), None);
        }
    }
}

/// What a request could have produced: an upstream's usage beyond it is
/// not believed (issue: upstream usage is data, not truth).
#[derive(Debug, Clone, Copy)]
struct UsageBounds {
    /// The request's bytes plus `usage.prompt_token_allowance`: a token
    /// covers at least one byte of text, and the allowance covers what
    /// bytes do not show (images by URL, provider templates).
    prompt: i64,
    /// The request's `max_tokens`, else `usage.max_completion_tokens`.
    completion: i64,
    /// Media units, as the door bounds them (`Meter::bound_media`).
    media: Option<Usage>,
}

impl UsageBounds {
    /// The usage, negative figures made 0 and excess clamped (the parts
    /// priced apart to their totals), with the flags saying which happened.
    fn apply(self, usage: Usage) -> (Usage, UsageFlags) {
        let mut flags = UsageFlags::default();
        let mut bound = |value: i64, max: i64| {
            if value < 0 {
                flags.insert(UsageFlags::USAGE_NEGATIVE);
                0
            } else if value > max {
                flags.insert(UsageFlags::USAGE_CLAMPED);
                max
            } else {
                value
            }
        };
        let prompt = bound(usage.prompt_tokens, self.prompt);
        let completion = bound(usage.completion_tokens, self.completion);
        let cache_read = bound(usage.cache_read_tokens, prompt);
        let cache_write = bound(usage.cache_write_tokens, prompt - cache_read);
        let reasoning = bound(usage.reasoning_tokens, completion);
        let media = self.media.unwrap_or(Usage {
            images: i64::MAX,
            characters: i64::MAX,
            audio_ms: i64::MAX,
            search_units: i64::MAX,
            ..Usage::default()
        });
        let bounded = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
            images: bound(usage.images, media.images),
            characters: bound(usage.characters, media.characters),
            audio_ms: bound(usage.audio_ms, media.audio_ms),
            search_units: bound(usage.search_units, media.search_units),
        };
        (bounded, flags)
    }
}

/// Partial usage carried by a stream that is cut: keep what we learned.
pub fn drop_with_usage(mut meter: Meter, usage: Option<Usage>) {
    meter.settle(CLIENT_CLOSED, Some("client_disconnected"), usage);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: i64, completion: i64) -> Usage {
        Usage::tokens(prompt, completion)
    }

    #[test]
    fn usage_beyond_what_the_request_could_produce_is_clamped_and_flagged() {
        let bounds = UsageBounds {
            prompt: 100,
            completion: 5,
            media: None,
        };
        assert_eq!(
            bounds.apply(usage(7, 5)),
            (usage(7, 5), UsageFlags::default())
        );
        let (bounded, flags) = bounds.apply(usage(-3, 9_200_000_000_000_000_000));
        assert_eq!(bounded, usage(0, 5));
        assert!(flags.contains(UsageFlags::USAGE_NEGATIVE));
        assert!(flags.contains(UsageFlags::USAGE_CLAMPED));
    }

    #[test]
    fn cached_and_reasoning_parts_are_bounded_by_their_totals() {
        let bounds = UsageBounds {
            prompt: 100,
            completion: 50,
            media: None,
        };
        let within = Usage {
            cache_read_tokens: 30,
            cache_write_tokens: 10,
            reasoning_tokens: 8,
            ..usage(40, 20)
        };
        assert_eq!(bounds.apply(within), (within, UsageFlags::default()));
        let (bounded, flags) = bounds.apply(Usage {
            cache_read_tokens: 30,
            cache_write_tokens: 30,
            reasoning_tokens: 99,
            ..usage(40, 20)
        });
        assert_eq!(
            (
                bounded.cache_read_tokens,
                bounded.cache_write_tokens,
                bounded.reasoning_tokens
            ),
            (30, 10, 20)
        );
        assert!(flags.contains(UsageFlags::USAGE_CLAMPED));
    }

    #[test]
    fn media_units_beyond_the_doors_bounds_are_clamped_and_flagged() {
        let bounds = UsageBounds {
            prompt: 100,
            completion: 50,
            media: Some(Usage {
                images: 2,
                characters: 11,
                audio_ms: 2_000,
                search_units: 3,
                ..Usage::default()
            }),
        };
        let within = Usage {
            images: 2,
            characters: 11,
            audio_ms: 1_500,
            search_units: 1,
            ..usage(9, 0)
        };
        assert_eq!(bounds.apply(within), (within, UsageFlags::default()));
        let (bounded, flags) = bounds.apply(Usage {
            images: 5,
            audio_ms: 1_000_000_000_000_000,
            search_units: i64::MAX,
            ..usage(9, 0)
        });
        assert_eq!(
            (bounded.images, bounded.audio_ms, bounded.search_units),
            (2, 2_000, 3)
        );
        assert!(flags.contains(UsageFlags::USAGE_CLAMPED));
        // Without bounds (the proxy) media units are only made non-negative.
        let unbounded = UsageBounds {
            media: None,
            ..bounds
        };
        let (kept, flags) = unbounded.apply(Usage {
            images: 5,
            ..Usage::default()
        });
        assert_eq!((kept.images, flags), (5, UsageFlags::default()));
    }
}
