//! Plain-text output of the admin CLI: aligned tables and `key: value`
//! details, built from the API's JSON answers.

use serde_json::Value;

/// Prints `rows` under `headers`, each column as wide as its widest cell.
/// Columns whose header starts with a space are right-aligned (numbers).
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render(headers, rows));
}

fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.trim().chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for ((cell, width), header) in cells.iter().zip(&widths).zip(headers) {
            let padded = if header.starts_with(' ') {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            };
            out.push_str(&padded);
            out.push_str("  ");
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.trim()).collect());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints `label: value` lines, labels aligned.
pub fn details(pairs: &[(&str, String)]) {
    let width = pairs
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    for (label, value) in pairs {
        println!(
            "{:<width$}  {value}",
            format!("{label}:"),
            width = width + 1
        );
    }
}

/// A JSON field as text: strings bare, `null` as `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A USD amount with six decimals (`-` for null).
pub fn usd(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_owned(), |usd| format!("{usd:.6}"))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (`-` for null).
pub fn time(value: &Value) -> String {
    let Some(seconds) = value.as_i64() else {
        return "-".to_owned();
    };
    let day = crate::db::usage::utc_day(seconds.saturating_mul(1000));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{day} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let out = render(
            &["ID", "NAME", " SPENT"],
            &[
                vec!["1".into(), "a-long-name".into(), "0.5".into()],
                vec!["10".into(), "b".into(), "12.25".into()],
            ],
        );
        assert_eq!(
            out,
            "ID  NAME         SPENT\n1   a-long-name    0.5\n10  b            12.25\n"
        );
    }

    #[test]
    fn values_read_well() {
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!("x")), "x");
        assert_eq!(text(&json!(5)), "5");
        assert_eq!(usd(&json!(1.5)), "1.500000");
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(&json!(1_795_395_661)), "2026-11-23 01:01:01 UTC");
        assert_eq!(time(&json!(null)), "-");
    }
}
