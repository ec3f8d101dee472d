//! Model prices, per million input and output tokens (and, when set,
//! prompt-cache reads and writes and reasoning tokens at their own rates),
//! per media unit (image, million characters of speech, second of audio,
//! rerank search unit: on top of the tokens), plus a fixed price per
//! successful call (the proxy's endpoints without token usage).

use super::schema::model_prices;
use super::{Db, DbError};
use crate::metering::Price;
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
    /// Micro-USD per successful call, on top of the token prices.
    pub per_call_micros: i64,
    /// Prompt-cache reads; `None`: the input rate.
    pub cache_read_per_mtok_micros: Option<i64>,
    /// Prompt-cache writes; `None`: the input rate.
    pub cache_write_per_mtok_micros: Option<i64>,
    /// Reasoning tokens; `None`: the output rate.
    pub reasoning_per_mtok_micros: Option<i64>,
    /// Micro-USD per image generated or edited (0: not charged).
    pub per_image_micros: i64,
    /// Micro-USD per million characters of speech input.
    pub per_mchar_micros: i64,
    /// Micro-USD per second of audio transcribed or translated.
    pub per_audio_second_micros: i64,
    /// Micro-USD per rerank search unit.
    pub per_search_micros: i64,
}

impl ModelPrice {
    /// The rates the meter charges.
    pub fn price(&self) -> Price {
        Price {
            input_per_mtok_micros: self.input_per_mtok_micros,
            output_per_mtok_micros: self.output_per_mtok_micros,
            per_call_micros: self.per_call_micros,
            cache_read_per_mtok_micros: self.cache_read_per_mtok_micros,
            cache_write_per_mtok_micros: self.cache_write_per_mtok_micros,
            reasoning_per_mtok_micros: self.reasoning_per_mtok_micros,
            per_image_micros: self.per_image_micros,
            per_mchar_micros: self.per_mchar_micros,
            per_audio_second_micros: self.per_audio_second_micros,
            per_search_micros: self.per_search_micros,
        }
    }
}

impl Db {
    /// Sets the plain token prices of `model` (no separate cache or
    /// reasoning rate, no media unit rate), keeping its per-call price.
    pub async fn upsert_price(
        &self,
        model: &str,
        input_per_mtok_micros: i64,
        output_per_mtok_micros: i64,
    ) -> Result<ModelPrice, DbError> {
        let price = Price {
            input_per_mtok_micros,
            output_per_mtok_micros,
            ..Price::default()
        };
        self.upsert_token_prices(model, &price).await
    }

    /// Sets every token and media unit rate of `model` from `price` (its
    /// `per_call_micros` is ignored: a new model gets 0, an existing one
    /// keeps its own). What `[[prices]]` in the settings declare.
    pub async fn upsert_token_prices(
        &self,
        model: &str,
        price: &Price,
    ) -> Result<ModelPrice, DbError> {
        let model_name = model.to_owned();
        let price = *price;
        let now = self.now_ms();
        run_query!(self, |conn| {
            use model_prices::dsl as p;
            diesel::insert_into(p::model_prices)
                .values((
                    p::model.eq(model_name),
                    p::input_per_mtok_micros.eq(price.input_per_mtok_micros),
                    p::output_per_mtok_micros.eq(price.output_per_mtok_micros),
                    p::cache_read_per_mtok_micros.eq(price.cache_read_per_mtok_micros),
                    p::cache_write_per_mtok_micros.eq(price.cache_write_per_mtok_micros),
                    p::reasoning_per_mtok_micros.eq(price.reasoning_per_mtok_micros),
                    p::per_image_micros.eq(price.per_image_micros),
                    p::per_mchar_micros.eq(price.per_mchar_micros),
                    p::per_audio_second_micros.eq(price.per_audio_second_micros),
                    p::per_search_micros.eq(price.per_search_micros),
                    p::created_at.eq(now),
                    p::updated_at.eq(now),
                ))
                .on_conflict(p::model)
                .do_update()
                .set((
                    p::input_per_mtok_micros.eq(excluded(p::input_per_mtok_micros)),
                    p::output_per_mtok_micros.eq(excluded(p::output_per_mtok_micros)),
                    p::cache_read_per_mtok_micros.eq(excluded(p::cache_read_per_mtok_micros)),
                    p::cache_write_per_mtok_micros.eq(excluded(p::cache_write_per_mtok_micros)),
                    p::reasoning_per_mtok_micros.eq(excluded(p::reasoning_per_mtok_micros)),
                    p::per_image_micros.eq(excluded(p::per_image_micros)),
                    p::per_mchar_micros.eq(excluded(p::per_mchar_micros)),
                    p::per_audio_second_micros.eq(excluded(p::per_audio_second_micros)),
                    p::per_search_micros.eq(excluded(p::per_search_micros)),
                    p::updated_at.eq(now),
                ))
                .returning(ModelPrice::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// Sets every price of `model`: per million tokens of each kind and
    /// per call.
    pub async fn upsert_price_with_call(
        &self,
        model: &str,
        price: &Price,
    ) -> Result<ModelPrice, DbError> {
        let model_name = model.to_owned();
        let price = *price;
        let now = self.now_ms();
        run_query!(self, |conn| {
            use model_prices::dsl as p;
            diesel::insert_into(p::model_prices)
                .values((
                    p::model.eq(model_name),
                    p::input_per_mtok_micros.eq(price.input_per_mtok_micros),
                    p::output_per_mtok_micros.eq(price.output_per_mtok_micros),
                    p::per_call_micros.eq(price.per_call_micros),
                    p::cache_read_per_mtok_micros.eq(price.cache_read_per_mtok_micros),
                    p::cache_write_per_mtok_micros.eq(price.cache_write_per_mtok_micros),
                    p::reasoning_per_mtok_micros.eq(price.reasoning_per_mtok_micros),
                    p::per_image_micros.eq(price.per_image_micros),
                    p::per_mchar_micros.eq(price.per_mchar_micros),
                    p::per_audio_second_micros.eq(price.per_audio_second_micros),
                    p::per_search_micros.eq(price.per_search_micros),
                    p::created_at.eq(now),
                    p::updated_at.eq(now),
                ))
                .on_conflict(p::model)
                .do_update()
                .set((
                    p::input_per_mtok_micros.eq(excluded(p::input_per_mtok_micros)),
                    p::output_per_mtok_micros.eq(excluded(p::output_per_mtok_micros)),
                    p::per_call_micros.eq(excluded(p::per_call_micros)),
                    p::cache_read_per_mtok_micros.eq(excluded(p::cache_read_per_mtok_micros)),
                    p::cache_write_per_mtok_micros.eq(excluded(p::cache_write_per_mtok_micros)),
                    p::reasoning_per_mtok_micros.eq(excluded(p::reasoning_per_mtok_micros)),
                    p::per_image_micros.eq(excluded(p::per_image_micros)),
                    p::per_mchar_micros.eq(excluded(p::per_mchar_micros)),
                    p::per_audio_second_micros.eq(excluded(p::per_audio_second_micros)),
                    p::per_search_micros.eq(excluded(p::per_search_micros)),
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

/// A model that requests were served for without a price.
#[derive(QueryableByName, Debug, Clone, Serialize)]
pub struct UnpricedModel {
    /// The upstream model name (else the requested one): what the meter
    /// looks a price up by first.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub model: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub requests: i64,
    /// Unix milliseconds of the latest such request.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_seen_at: i64,
}

/// The most models [`Db::unpriced_models`] returns.
const UNPRICED_MAX_ROWS: i64 = 1000;

impl Db {
    /// Stores each `(model, rates)` price whose model has no price
    /// yet; never changes an existing one. Returns the models added.
    pub async fn insert_prices_if_absent(
        &self,
        prices: &[(String, Price)],
    ) -> Result<Vec<String>, DbError> {
        let prices = prices.to_vec();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use model_prices::dsl as p;
            let mut added = Vec::new();
            for (model, price) in prices {
                let inserted = diesel::insert_into(p::model_prices)
                    .values((
                        p::model.eq(&model),
                        p::input_per_mtok_micros.eq(price.input_per_mtok_micros),
                        p::output_per_mtok_micros.eq(price.output_per_mtok_micros),
                        p::cache_read_per_mtok_micros.eq(price.cache_read_per_mtok_micros),
                        p::cache_write_per_mtok_micros.eq(price.cache_write_per_mtok_micros),
                        p::reasoning_per_mtok_micros.eq(price.reasoning_per_mtok_micros),
                        p::per_image_micros.eq(price.per_image_micros),
                        p::per_mchar_micros.eq(price.per_mchar_micros),
                        p::per_audio_second_micros.eq(price.per_audio_second_micros),
                        p::per_search_micros.eq(price.per_search_micros),
                        p::created_at.eq(now),
                        p::updated_at.eq(now),
                    ))
                    .on_conflict(p::model)
                    .do_nothing()
                    .execute(conn)
                    .await?;
                if inserted > 0 {
                    added.push(model);
                }
            }
            Ok(added)
        })
    }

    /// Models of requests that reached an upstream since `since_ms` and were
    /// logged unpriced, most recently seen first (at most 1,000).
    pub async fn unpriced_models(&self, since_ms: i64) -> Result<Vec<UnpricedModel>, DbError> {
        // Raw SQL: diesel's DSL cannot group by an expression. COALESCE,
        // COUNT and MAX are the same on both backends; the casts make SQLite's
        // INTEGER and PostgreSQL's BIGINT one type. Only the placeholders differ.
        let (since, limit) = match self.backend() {
            crate::config::Backend::Sqlite => ("?", "?"),
            crate::config::Backend::Postgres => ("$1", "$2"),
        };
        let query = format!(
            "SELECT COALESCE(upstream_model, requested_model) AS model, \
             CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(MAX(created_at) AS BIGINT) AS last_seen_at \
             FROM request_logs \
             WHERE priced = FALSE AND attempts > 0 AND created_at >= {since} \
             AND COALESCE(upstream_model, requested_model) IS NOT NULL \
             GROUP BY COALESCE(upstream_model, requested_model) \
             ORDER BY last_seen_at DESC, model \
             LIMIT {limit}"
        );
        run_query!(self, |conn| {
            diesel::sql_query(query)
                .bind::<diesel::sql_types::BigInt, _>(since_ms)
                .bind::<diesel::sql_types::BigInt, _>(UNPRICED_MAX_ROWS)
                .load::<UnpricedModel>(conn)
                .await
        })
    }
}
