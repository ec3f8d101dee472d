//! Model redirects: a requested model name served as another.

use super::schema::model_redirects;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// Requests for `from_model` are sent upstream as `to_model`.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = model_redirects)]
pub struct ModelRedirect {
    pub id: i64,
    pub from_model: String,
    pub to_model: String,
    pub created_at: i64,
}

impl Db {
    /// Redirects `from` to `to`, replacing any redirect of `from`.
    pub async fn upsert_redirect(&self, from: &str, to: &str) -> Result<ModelRedirect, DbError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        let now = self.now_ms();
        run_query!(self, |conn| {
            use model_redirects::dsl as r;
            diesel::insert_into(r::model_redirects)
                .values((
                    r::from_model.eq(from),
                    r::to_model.eq(to),
                    r::created_at.eq(now),
                ))
                .on_conflict(r::from_model)
                .do_update()
                .set(r::to_model.eq(excluded(r::to_model)))
                .returning(ModelRedirect::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// All redirects, by source model.
    pub async fn list_redirects(&self) -> Result<Vec<ModelRedirect>, DbError> {
        run_query!(self, |conn| {
            model_redirects::table
                .order(model_redirects::from_model)
                .select(ModelRedirect::as_select())
                .load(conn)
                .await
        })
    }

    /// Deletes the redirect of `from`; returns whether it existed.
    pub async fn delete_redirect(&self, from: &str) -> Result<bool, DbError> {
        let from = from.to_owned();
        run_query!(self, |conn| {
            diesel::delete(model_redirects::table.filter(model_redirects::from_model.eq(from)))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }
}
