//! Integration tests of the mock provider over real sockets.

mod anthropic;
mod client;
mod failures;
mod openai;
mod runtime;
mod state;
