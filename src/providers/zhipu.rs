//! Zhipu GLM (`open.bigmodel.cn`), its v4 chat API: OpenAI-shaped requests
//! and answers at `https://open.bigmodel.cn/api/paas/v4`, the API key as a
//! bearer token. It has embeddings, image generation and rerank but no legacy
//! text completions or audio.

use super::{Adapter, Media, Wire, bearer};
use switchyard_actors::ProviderSpec;

pub struct ZhipuAdapter;

impl Adapter for ZhipuAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn auth_headers(&self, _: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)> {
        vec![bearer(secret)]
    }

    fn chat_path(&self, _: &ProviderSpec, _model: &str, _stream: bool) -> String {
        "chat/completions".to_owned()
    }

    fn embeddings_path(&self, _: &ProviderSpec, _model: &str) -> Option<String> {
        Some("embeddings".to_owned())
    }

    /// CogView image generation and the rerank endpoint, both in the
    /// shapes the media doors pass through; no image edits or audio.
    fn media_path(&self, _: &ProviderSpec, _model: &str, media: Media) -> Option<String> {
        matches!(media, Media::ImageGenerations | Media::Rerank).then(|| media.path().to_owned())
    }
}
