//! `/admin/*`: management routes, all behind [`super::auth::AdminAuth`]
//! (registered from the route table, `super::routes`).

pub mod admin_keys;
pub mod billing;
pub mod fields;
pub mod logs;
pub mod metrics;
pub mod models;
pub mod oplog;
pub mod prices;
pub mod provider_edit;
pub mod providers;
pub mod range;
pub mod sessions;
pub mod tokens;
pub mod users;

/// Admin bodies are small; this bounds them independently of the client API.
pub const ADMIN_BODY_LIMIT: usize = 1024 * 1024;
