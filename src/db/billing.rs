//! The billing ledger: one `request` record per metered request with a token
//! (written with the usage batch, see [`crate::db::usage`]) and one `topup`
//! record per credit to a user's balance. Amounts are positive nano-USD; the
//! kind says which way they moved the balance.

use super::schema::billing_records;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// `kind` of a charge for a request.
pub const KIND_REQUEST: &str = "request";
/// `kind` of a credit to a user's balance.
pub const KIND_TOPUP: &str = "topup";

/// One billing record.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = billing_records)]
pub struct BillingRecord {
    pub id: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// [`KIND_REQUEST`] or [`KIND_TOPUP`].
    pub kind: String,
    pub request_id: Option<String>,
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The cost at list price, before multipliers.
    pub base_cost_nanos: i64,
    pub multiplier_ppm: i64,
    /// What the balance moved by.
    pub amount_nanos: i64,
    pub priced: bool,
    pub note: Option<String>,
    /// Media units the request was charged for, on top of its tokens (0
    /// for a top-up): images, characters of speech, milliseconds of audio,
    /// rerank search units.
    pub images: i64,
    pub characters: i64,
    pub audio_ms: i64,
    pub search_units: i64,
}

/// Which records to list; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct BillingFilter {
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub kind: Option<String>,
}

/// Applies a [`BillingFilter`] to a boxed query (a macro: the query's
/// backend is only known inside each arm of `run_query!`).
macro_rules! filtered {
    ($filter:expr) => {{
        let filter: &BillingFilter = $filter;
        let mut query = billing_records::table.into_boxed();
        if let Some(user_id) = filter.user_id {
            query = query.filter(billing_records::user_id.eq(user_id));
        }
        if let Some(token_id) = filter.token_id {
            query = query.filter(billing_records::token_id.eq(token_id));
        }
        if let Some(kind) = filter.kind.clone() {
            query = query.filter(billing_records::kind.eq(kind));
        }
        query
    }};
}

impl Db {
    /// A page of billing records matching `filter`, newest first, and how
    /// many match in all.
    pub async fn list_billing(
        &self,
        filter: &BillingFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<BillingRecord>, i64), DbError> {
        let filter = filter.clone();
        run_snapshot!(self, |conn| {
            let rows = filtered!(&filter)
                .order((
                    billing_records::created_at.desc(),
                    billing_records::id.desc(),
                ))
                .limit(limit)
                .offset(offset)
                .select(BillingRecord::as_select())
                .load(conn)
                .await?;
            let total: i64 = filtered!(&filter).count().get_result(conn).await?;
            Ok((rows, total))
        })
    }
}
