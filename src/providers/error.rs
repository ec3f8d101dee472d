//! Why the provider layer refuses a client's request or cannot build the
//! upstream one.
//!
//! Plain data with a status class, no HTTP types: `crate::error` turns it
//! into the client's answer (`impl From<RequestError> for ApiError`), so the
//! dependency points from the error module to the providers, never back.

use super::translate::TranslateError;

/// A request the provider layer could not accept or encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field the gateway reads or rewrites is missing, of the wrong type
    /// or out of range (400); `param` names it when one field is at fault.
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
    /// The request could not be translated to the provider's format (400).
    #[error(transparent)]
    Translate(#[from] TranslateError),
    /// A body the gateway built could not be encoded as JSON (500). Not
    /// expected to happen: a JSON object keyed by strings always encodes.
    #[error("the request body could not be encoded")]
    Encode,
}

impl RequestError {
    /// A malformed request, not tied to one field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            param: None,
            message: message.into(),
        }
    }

    /// A malformed field.
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            param: Some(param),
            message: message.into(),
        }
    }

    /// The HTTP status class of the answer: 400 for the client's input,
    /// 502 for an upstream's output, 500 for the gateway's own failure.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Translate(error) => error.status_code(),
            Self::Encode => 500,
        }
    }
}
