//! `[models.NAME]`: how one model is spread over the providers serving it,
//! and where it goes when they all fail.

use serde::Deserialize;
use switchyard_actors::{KeyStrategy, ModelRoute};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Order of the providers listing this model: `first-available`
    /// (declaration order, the default), `round-robin`, `random`, `weighted`
    /// (by the providers' `weight`), `least-in-flight`, `latency`.
    #[serde(default = "first_available")]
    pub strategy: KeyStrategy,
    /// `provider/model` pairs tried, in order, after the model's own providers.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

fn first_available() -> KeyStrategy {
    KeyStrategy::FirstAvailable
}

impl ModelSettings {
    pub fn route(&self) -> ModelRoute {
        ModelRoute {
            strategy: self.strategy,
            fallbacks: self.fallbacks.clone(),
        }
    }
}
