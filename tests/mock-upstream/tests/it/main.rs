//! Integration tests of the mock provider over real sockets.

mod anthropic;
mod client;
mod failures;
mod gemini;
mod nousage;
mod openai;
mod passthrough;
mod runtime;
mod state;
