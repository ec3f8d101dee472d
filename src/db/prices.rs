//! Model prices, per million input and output tokens.

use super::schema::model_prices;
use super::{Db, DbError, now_ms};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// The price of a model in micro-USD per million tokens.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = model_prices)]
pub struct ModelPrice {
    pub id: i64,
    pub model: String,
    pub input_per_mtok_micros: i64,
    pub output_per_mtok_micros: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Db {
    /// Sets the price of `model`.
    pub async fn upsert_price(
        &self,
        model: &str,
        input_per_mtok_micros: i64,
        output_per_mtok_micros: i64,
    ) -> Result<ModelPrice, DbError> {
        let model_name = model.to_owned();
        run_query!(self, |conn| {
            use model_prices::dsl as p;
            let now = now_ms();
            diesel::insert_into(p::model_prices)
                .values((
                    p::model.eq(model_name),
                    p::input_per_mtok_micros.eq(input_per_mtok_micros),
                    p::output_per_mtok_micros.eq(output_per_mtok_micros),
                    p::created_at.eq(now),
                    p::updated_at.eq(now),
                ))
                .on_conflict(p::model)
                .do_update()
                .set((
                    p::input_per_mtok_micros.eq(excluded(p::input_per_mtok_micros)),
                    p::output_per_mtok_micros.eq(excluded(p::output_per_mtok_micros)),
                    p::updated_at.eq(now),
                ))
                .returning(ModelPrice::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// All prices, by model.
    pub async fn list_prices(&self) -> Result<Vec<ModelPrice>, DbError> {
        run_query!(self, |conn| {
            model_prices::table
                .order(model_prices::model)
                .select(ModelPrice::as_select())
                .load(conn)
                .await
        })
    }

    /// Deletes the price of `model`; returns whether it existed.
    pub async fn delete_price(&self, model: &str) -> Result<bool, DbError> {
        let model = model.to_owned();
        run_query!(self, |conn| {
            diesel::delete(model_prices::table.filter(model_prices::model.eq(model)))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }
}
