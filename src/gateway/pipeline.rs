//! The metered call that every model front door shares: accept, parse,
//! admit, route and attempt, then relay and settle (the stages of
//! [`crate::gateway`]). A door says only what differs, through
//! [`FrontDoor`]: how its body becomes an upstream request, how a stream
//! reaches its client, and what its errors look like.

use crate::error::ApiError;
use crate::gateway::auth::GatewayAuth;
use crate::gateway::failover::{Answer, Served, StreamStart, UpstreamRequest, call_with_failover};
use crate::gateway::meter::Meter;
use crate::gateway::relay::{ChatStreamRelay, RelayLimits, StreamMode};
use crate::gateway::slots::ConcurrencySlot;
use crate::gateway::{AppState, accept, require_model};
use crate::http::context::RequestCtx;
use crate::providers::openai::{ChatStreamState, Usage};
use crate::tokens::TokenInfo;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::{Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

/// How many upstream attempts a served answer took.
pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
/// Which provider served the answer.
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";

/// What a metered client call is extracted from; one argument, so that a
/// front door's handler is a single line.
pub type ClientCall = (
    RequestCtx,
    Data<AppState>,
    Data<awc::Client>,
    Result<GatewayAuth, ApiError>,
    HttpRequest,
    Payload,
);

/// A front door's part of the call: its request, parsed and validated,
/// which then goes upstream as an [`UpstreamRequest`].
pub trait FrontDoor: UpstreamRequest + Sized {
    /// Which of the door's routes the call came in by (a door may serve
    /// several formats or endpoints).
    type Route: Copy;

    /// The route's path, as recorded on the usage row.
    fn endpoint(route: Self::Route) -> &'static str;

    /// The body, validated (400s in the route's error shape).
    fn parse(
        route: Self::Route,
        raw: &Bytes,
        request: &HttpRequest,
        state: &AppState,
    ) -> Result<Self, ApiError>;

    fn model(&self) -> &str;

    /// The most tokens the answer may carry, held against budgets before
    /// the call (`None`: not stated, the limits' default applies).
    fn max_tokens(&self) -> Option<i64>;

    /// The most media units (images, characters, search units) the answer
    /// may be billed, held against money budgets before the call like
    /// [`Self::max_tokens`] (none but for the media doors).
    fn max_media_units(&self) -> Usage {
        Usage::default()
    }

    /// The most media units the answer may be billed, whatever the
    /// upstream reports (more is clamped and the row flagged): by default
    /// what [`Self::max_media_units`] holds; a door whose hold is smaller
    /// than its bound (rerank, transcripts) says so.
    fn media_bounds(&self) -> Usage {
        self.max_media_units()
    }

    /// How a streamed answer from `start`'s provider reaches the client.
    fn stream_mode(&self, route: Self::Route, start: &StreamStart) -> StreamMode;

    /// The media type of a whole (not streamed) answer: JSON but for the
    /// media doors (speech audio, transcripts as text, SRT or WebVTT).
    fn answer_content_type(&self) -> &'static str {
        "application/json"
    }

    /// A failed call's answer, in the route's error shape.
    fn error_response(_route: Self::Route, error: &ApiError) -> HttpResponse {
        error.error_response()
    }

    /// What the door must look up before routing (the Responses door: the
    /// provider holding a `previous_response_id`), once the token is known
    /// and the call admitted.
    fn prepare(
        &mut self,
        _state: &AppState,
        _token: &TokenInfo,
    ) -> impl Future<Output = Result<(), ApiError>> {
        std::future::ready(Ok(()))
    }

    /// The model name the router resolves: the requested one, unless
    /// [`Self::prepare`] pinned a provider (`provider/model`).
    fn route_model(&self) -> String {
        self.model().to_owned()
    }

    /// The call was answered by `served` through the key `key_id`: what
    /// the door remembers of it before the client sees the answer (the
    /// Responses door: who made a stored id, so the client's next call
    /// finds it on any instance).
    fn served(
        &self,
        _state: &AppState,
        _token: &TokenInfo,
        _served: &Served,
        _key_id: &str,
    ) -> impl Future<Output = ()> {
        std::future::ready(())
    }
}

/// Serves one call through `D`: exactly one usage row whatever happens.
pub async fn serve<D: FrontDoor>(route: D::Route, call: ClientCall) -> HttpResponse {
    let (ctx, state, client, auth, request, payload) = call;
    let mut meter = Meter::start(&state, &ctx, D::endpoint(route));
    match attempt::<D>(route, &state, &client, &mut meter, auth, &request, payload).await {
        Ok((served, reply, slot)) => respond(&state, served, meter, reply, slot),
        Err(error) => {
            slog::debug!(ctx.log, "call.failed"; "code" => error.code(), "error" => %error);
            meter.fail(&error);
            D::error_response(route, &error)
        }
    }
}

async fn attempt<D: FrontDoor>(
    route: D::Route,
    state: &AppState,
    client: &awc::Client,
    meter: &mut Meter,
    auth: Result<GatewayAuth, ApiError>,
    request: &HttpRequest,
    payload: Payload,
) -> Result<(Served, Reply, ConcurrencySlot), ApiError> {
    let (token, slot, raw) = accept(state, meter, auth, request, payload).await?;
    let mut door = D::parse(route, &raw, request, state)?;
    meter.request(door.model(), door.stream());
    meter.estimate_prompt(&raw);
    require_model(&token, door.model())?;
    meter
        .admit_media(
            &token,
            door.model(),
            door.max_tokens(),
            door.max_media_units(),
        )
        .await?;
    meter.bound_media(door.media_bounds());
    door.prepare(state, &token).await?;
    let model = door.route_model();
    let served = call_with_failover(state, client, meter, &model, &mut door).await?;
    door.served(state, &token, &served, meter.key_id().unwrap_or_default())
        .await;
    let reply = match &served.answer {
        Answer::Stream(start) => Reply::Stream(door.stream_mode(route, start)),
        Answer::Json { .. } => Reply::Whole(door.answer_content_type()),
    };
    Ok((served, reply, slot))
}

/// How the served answer goes to the client: whole, as this media type, or
/// as a stream relayed in this mode.
enum Reply {
    Whole(&'static str),
    Stream(StreamMode),
}

/// Sends a served answer: a whole body at once (its text measured for a
/// token estimate), or a stream through the relay in the reply's mode.
fn respond(
    state: &AppState,
    served: Served,
    mut meter: Meter,
    reply: Reply,
    slot: ConcurrencySlot,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((ATTEMPTS_HEADER, served.attempts.to_string()))
        .insert_header((PROVIDER_HEADER, served.provider));
    match served.answer {
        Answer::Json { body, usage } => {
            meter.estimate_completion(&body, usage.as_ref());
            meter.succeed(200, usage);
            drop(slot);
            let content_type = match reply {
                Reply::Whole(content_type) => content_type,
                Reply::Stream(_) => "application/json",
            };
            response
                .insert_header((CONTENT_TYPE, content_type))
                .body(body)
        }
        Answer::Stream(start) => {
            let mode = match reply {
                Reply::Stream(mode) => mode,
                Reply::Whole(_) => StreamMode::Native(ChatStreamState::new(false)),
            };
            let relay = ChatStreamRelay::new(start, meter, mode, RelayLimits::of(state), slot);
            response
                .insert_header((CONTENT_TYPE, "text/event-stream"))
                .insert_header((CACHE_CONTROL, "no-cache"))
                // Ask reverse proxies (nginx) not to buffer the stream.
                .insert_header(("x-accel-buffering", "no"))
                .streaming(relay)
        }
    }
}

/// The answer of a metered token count (`count_tokens`, `:countTokens`): the
/// counted JSON body, using no tokens, or the refusal in the door's error
/// shape; either way the call is settled on `meter`.
pub fn counted_answer(
    meter: Meter,
    counted: Result<Bytes, ApiError>,
    error_response: fn(&ApiError) -> HttpResponse,
) -> HttpResponse {
    match counted {
        Ok(body) => {
            meter.succeed(200, Some(crate::providers::openai::Usage::default()));
            HttpResponse::Ok()
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Err(error) => {
            meter.fail(&error);
            error_response(&error)
        }
    }
}
