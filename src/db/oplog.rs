//! The operation log: who changed what through the admin API, and when, with
//! masked before/after views (see `crate::admin::oplog`).

use super::schema::operation_logs;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// One admin change.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = operation_logs)]
pub struct OperationLog {
    pub id: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `master-key`, or the fingerprint of the session's admin key.
    pub actor: String,
    /// The session the change was made in (none for the master key).
    pub session_id: Option<i64>,
    /// What was done, `resource.verb` (`token.create`, `admin_key.disable`).
    pub action: String,
    /// What it was done to (`token:7`, `provider_key:openai/k1`).
    pub target: String,
    /// JSON of the masked view before the change (none for a creation).
    pub before_json: Option<String>,
    /// JSON of the masked view after the change (none for a deletion).
    pub after_json: Option<String>,
    /// The `x-request-id` of the admin request.
    pub request_id: Option<String>,
}

/// An entry to append.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = operation_logs)]
pub struct NewOperationLog {
    pub actor: String,
    pub session_id: Option<i64>,
    pub action: String,
    pub target: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub request_id: Option<String>,
}

/// Filters of [`Db::list_operation_logs`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct OperationLogFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
}

impl Db {
    /// Appends an entry, stamped now.
    pub async fn insert_operation_log(
        &self,
        entry: &NewOperationLog,
    ) -> Result<OperationLog, DbError> {
        let entry = entry.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::insert_into(operation_logs::table)
                .values((entry, operation_logs::created_at.eq(now)))
                .returning(OperationLog::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// Entries matching `filter`, newest first, with the total that match.
    pub async fn list_operation_logs(
        &self,
        filter: &OperationLogFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<OperationLog>, i64), DbError> {
        let filter = filter.clone();
        run_snapshot!(self, |conn| {
            use operation_logs::dsl as o;
            let mut rows = o::operation_logs.into_boxed();
            let mut total = o::operation_logs.into_boxed();
            if let Some(actor) = &filter.actor {
                rows = rows.filter(o::actor.eq(actor.clone()));
                total = total.filter(o::actor.eq(actor.clone()));
            }
            if let Some(action) = &filter.action {
                rows = rows.filter(o::action.eq(action.clone()));
                total = total.filter(o::action.eq(action.clone()));
            }
            let total: i64 = total.count().get_result(conn).await?;
            let rows = rows
                .order(o::id.desc())
                .limit(limit)
                .offset(offset)
                .select(OperationLog::as_select())
                .load(conn)
                .await?;
            Ok((rows, total))
        })
    }
}
