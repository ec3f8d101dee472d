//! Azure OpenAI: OpenAI's wire format behind deployment URLs.
//!
//! The base URL is the resource root (`https://NAME.openai.azure.com`); the
//! gateway's upstream model name is the deployment name; keys go in the
//! `api-key` header and every call carries `api-version`.

use super::{Adapter, Media, Wire, path_segment};
use switchyard_actors::ProviderSpec;

/// The `api-version` used when the provider sets none (a GA version).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub struct AzureAdapter;

fn deployment_path(spec: &ProviderSpec, deployment: &str, endpoint: &str) -> String {
    let version = spec.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
    format!(
        "openai/deployments/{}/{endpoint}?api-version={}",
        path_segment(deployment),
        path_segment(version)
    )
}

impl Adapter for AzureAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn auth_headers(&self, _: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![("api-key", secret.to_owned())]
    }

    fn chat_path(&self, spec: &ProviderSpec, model: &str, _stream: bool) -> String {
        deployment_path(spec, model, "chat/completions")
    }

    fn completions_path(&self, spec: &ProviderSpec, model: &str) -> Option<String> {
        Some(deployment_path(spec, model, "completions"))
    }

    fn embeddings_path(&self, spec: &ProviderSpec, model: &str) -> Option<String> {
        Some(deployment_path(spec, model, "embeddings"))
    }

    /// Images and audio are deployments like chat; Azure OpenAI has no
    /// rerank.
    fn media_path(&self, spec: &ProviderSpec, model: &str, media: Media) -> Option<String> {
        (media != Media::Rerank).then(|| deployment_path(spec, model, media.path()))
    }

    /// Deployments are not listed by the data-plane API; the provider's
    /// `models` setting is the list.
    fn models_path(&self, _: &ProviderSpec) -> Option<String> {
        None
    }

    /// The resource's base-model list: authenticated and cheap.
    fn probe_path(&self, spec: &ProviderSpec) -> String {
        let version = spec.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        format!("openai/models?api-version={}", path_segment(version))
    }
}
