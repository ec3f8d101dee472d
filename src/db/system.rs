//! Deployment-wide values that every instance sharing the database agrees on
//! (`server_id`, the wrapped `data_key`). Each is written once by whichever
//! instance gets there first; later writes are compare-and-swap.

use super::schema::system_values;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl Db {
    /// The value stored under `name`, if any.
    pub async fn get_system_value(&self, name: &str) -> Result<Option<String>, DbError> {
        let name = name.to_owned();
        run_query!(self, |conn| {
            system_values::table
                .find(name)
                .select(system_values::value)
                .first::<String>(conn)
                .await
                .optional()
        })
    }

    /// Stores `value` under `name` unless a value is there already; returns
    /// whether this call stored it. Racing instances: exactly one wins.
    pub async fn insert_system_value(&self, name: &str, value: &str) -> Result<bool, DbError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        let now = self.now_ms();
        run_query!(self, |conn| {
            use system_values::dsl as v;
            diesel::insert_into(v::system_values)
                .values((
                    v::name.eq(name),
                    v::value.eq(value),
                    v::created_at.eq(now),
                    v::updated_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await
                .map(|n| n == 1)
        })
    }

    /// Replaces the value under `name` if it is still `expected`; returns
    /// whether it did (false: absent, or changed by someone else meanwhile).
    pub async fn replace_system_value(
        &self,
        name: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, DbError> {
        let (name, expected, value) = (name.to_owned(), expected.to_owned(), value.to_owned());
        let now = self.now_ms();
        run_query!(self, |conn| {
            use system_values::dsl as v;
            diesel::update(
                v::system_values
                    .filter(v::name.eq(name))
                    .filter(v::value.eq(expected)),
            )
            .set((v::value.eq(value), v::updated_at.eq(now)))
            .execute(conn)
            .await
            .map(|n| n == 1)
        })
    }
}
