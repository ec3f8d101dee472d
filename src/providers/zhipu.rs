//! Zhipu GLM (`open.bigmodel.cn`), its v4 chat API: OpenAI-shaped requests
//! and answers at `https://open.bigmodel.cn/api/paas/v4`, the API key as a
//! bearer token. It has embeddings but no legacy text completions.

use super::{Adapter, Wire, bearer};
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
}
