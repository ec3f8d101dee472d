//! `[proxy]`: what `/proxy/{provider}/{path...}` forwards of the client's
//! request besides its method, path, query, body and ordinary headers.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Forward the client's `X-Forwarded-For`, `Forwarded` and `X-Real-IP`
    /// (off: the upstream never learns a client's claimed address).
    pub forward_client_address: bool,
    /// Forward the client's `OpenAI-Organization` and `OpenAI-Project`
    /// (off: calls are billed to the pool key's own organization).
    pub forward_openai_organization: bool,
}
