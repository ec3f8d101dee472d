//! The management side of limits and billing, end to end on both backends:
//! tokens created and changed with every limit (and the change seen by the
//! very next request), rotation with a grace period on a manual clock,
//! users with balances and top-ups, the billing ledger, model prices that
//! cost the next request, unpriced models, and the seeded list prices.
//!
//! One test binary (each binary links the whole gateway), one module per
//! concern; the admin API is reached through `common::admin::AdminClient`.

#[path = "../common/mod.rs"]
pub mod common;

mod access;
mod prices;
mod tokens;
mod users;

use common::{Reply, TestGateway, chat_body};

/// 2026-11-22T00:00:00Z.
const NOV_22: i64 = 1_795_305_600_000;

async fn chat(gw: &TestGateway, token: &str) -> anyhow::Result<Reply> {
    gw.chat(token, chat_body("mock-gpt", "hello")).await
}

fn status_and_code(reply: &Reply) -> (u16, Option<String>) {
    (reply.status.as_u16(), reply.error_code())
}
