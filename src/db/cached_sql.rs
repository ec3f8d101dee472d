//! SQL written by hand that diesel still prepares once per connection.
//!
//! diesel prepares `sql_query` text, every `UPDATE` and every
//! `ON CONFLICT ... DO UPDATE` again at each execution: their `walk_ast`
//! marks them unsafe to cache. The usage writer's hourly and daily rollup
//! upserts (~100 columns each) were parsed and planned again for every
//! batch (bench/README.md). A [`CachedSql`] binds every value, so its text
//! is the same from batch to batch, and never marks itself unsafe: diesel
//! keys its prepared statement by that text (it has no static query id) and
//! finds it in the connection's cache the next time.
//!
//! Only for statements whose text takes a few shapes, run on a connection
//! that does not take every query: each distinct text stays prepared on
//! every connection that ran it (a rollup upsert ~70 KB), which is why the
//! usage writer has a connection of its own (`Db::write_usage_batch`).

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};

/// `rows` cut into chunks whose lengths are all in `sizes` (largest first,
/// ending with 1): as many of the largest size as fit, then the next size,
/// and so on. A multi-row statement's text grows with its row count; cut
/// this way, it takes only `sizes.len()` shapes, each prepared once.
pub fn fixed_size_chunks<'a, T>(
    rows: &'a [T],
    sizes: &'static [usize],
) -> impl Iterator<Item = &'a [T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = sizes.iter().copied().find(|size| *size <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// One piece of a [`CachedSql`]: text, or a value bound in its place.
#[derive(Debug)]
enum Part {
    Sql(String),
    Int(i64),
    Text(String),
}

/// A statement built piece by piece: text and bound values in order, the
/// placeholders written by the backend (`?` on SQLite, `$n` on PostgreSQL).
#[derive(Debug, Default)]
pub struct CachedSql {
    parts: Vec<Part>,
}

impl CachedSql {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends text. Values go through [`Self::int`] and [`Self::text`]
    /// instead, so the text stays the same whatever they are.
    pub fn sql(&mut self, sql: &str) -> &mut Self {
        match self.parts.last_mut() {
            Some(Part::Sql(text)) => text.push_str(sql),
            _ => self.parts.push(Part::Sql(sql.to_owned())),
        }
        self
    }

    /// Appends a placeholder bound to an integer (`BIGINT`).
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.parts.push(Part::Int(value));
        self
    }

    /// Appends a placeholder bound to a string (`TEXT`).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.parts.push(Part::Text(value.to_owned()));
        self
    }
}

/// Run with diesel's sync `execute` (SQLite, on its blocking thread);
/// diesel-async's covers every query type already.
impl<Conn> diesel::RunQueryDsl<Conn> for CachedSql {}

impl QueryId for CachedSql {
    type QueryId = ();
    /// The text varies: diesel keys the statement cache by it.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for CachedSql
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    String: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for part in &self.parts {
            match part {
                Part::Sql(text) => out.push_sql(text),
                Part::Int(value) => out.push_bind_param::<BigInt, i64>(value)?,
                Part::Text(value) => out.push_bind_param::<Text, String>(value)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the statements diesel put into its cache.
    struct CountCached(Arc<AtomicUsize>);

    impl Instrumentation for CountCached {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            if matches!(event, InstrumentationEvent::CacheQuery { .. }) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        k: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn upsert(key: &str, n: i64) -> CachedSql {
        let mut upsert = CachedSql::new();
        upsert
            .sql("INSERT INTO t (k, n) VALUES (")
            .text(key)
            .sql(", ")
            .int(n)
            .sql(") ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n");
        upsert
    }

    #[test]
    fn a_statement_is_prepared_once_whatever_its_values() -> anyhow::Result<()> {
        let mut conn = SqliteConnection::establish(":memory:")?;
        conn.batch_execute("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")?;
        let cached = Arc::new(AtomicUsize::new(0));
        conn.set_instrumentation(CountCached(cached.clone()));
        for (key, n) in [("a", 1), ("it's; DROP TABLE t", 2), ("a", 3), ("b", 4)] {
            assert_eq!(upsert(key, n).execute(&mut conn)?, 1);
        }
        assert_eq!(cached.load(Ordering::Relaxed), 1, "prepared more than once");
        let rows: Vec<Row> = diesel::sql_query("SELECT k, n FROM t ORDER BY k").load(&mut conn)?;
        let expected = [("a", 4), ("b", 4), ("it's; DROP TABLE t", 2)]
            .map(|(k, n)| Row { k: k.to_owned(), n });
        assert_eq!(rows, expected);
        Ok(())
    }

    #[test]
    fn chunks_take_only_the_given_sizes() {
        let sizes: Vec<usize> = fixed_size_chunks(&[0u8; 19], &[8, 1])
            .map(<[u8]>::len)
            .collect();
        assert_eq!(sizes, [8, 8, 1, 1, 1]);
    }
}
