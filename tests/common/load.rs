//! A bounded load of chat requests (streamed and not) that remembers the
//! `x-request-id` of every request whose answer arrived whole: what a
//! client can hold the gateway's accounting to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Load {
    answered: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Requests that got no whole answer (the gateway was killed, ...),
    /// counted by why: what a failing test needs to say.
    failed: Arc<Mutex<HashMap<String, usize>>>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

/// Sends one request; the id when its answer arrived whole, else why not.
async fn one(client: &awc::Client, url: &str, token: &str, stream: bool) -> Result<String, String> {
    let body = serde_json::json!({
        "model": "mock-gpt",
        "messages": [{ "role": "user", "content": "hi" }],
        "max_tokens": 5,
        "stream": stream,
    });
    let mut response = client
        .post(format!("{url}/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(&body)
        .await
        .map_err(|error| format!("send: {error}"))?;
    let status = response.status();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .body()
        .limit(1 << 20)
        .await
        .map_err(|error| format!("{status}, body: {error}"))?;
    if status != 200 {
        // The error's first bytes: its type and message, not a request id.
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]).into_owned();
        return Err(format!("{status}: {start}"));
    }
    let whole = if stream {
        bytes.ends_with(b"data: [DONE]\n\n")
    } else {
        serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
    };
    match id {
        Some(id) if whole => Ok(id),
        Some(_) => Err(format!("{status}, cut short (stream: {stream})")),
        None => Err(format!("{status} without x-request-id")),
    }
}

impl Load {
    /// `clients` concurrent clients against `url`, until stopped.
    pub fn start(url: &str, token: &str, clients: usize) -> Load {
        let answered = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(Mutex::new(HashMap::new()));
        let tasks = (0..clients)
            .map(|client_index| {
                let (answered, stop, failed) = (answered.clone(), stop.clone(), failed.clone());
                let (url, token) = (url.to_owned(), token.to_owned());
                actix_rt::spawn(async move {
                    let client = awc::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .finish();
                    let mut sent = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let stream = (client_index + sent).is_multiple_of(3);
                        sent += 1;
                        match one(&client, &url, &token, stream).await {
                            Ok(id) => {
                                if let Ok(mut answered) = answered.lock() {
                                    answered.push(id);
                                }
                            }
                            Err(reason) => {
                                if let Ok(mut failed) = failed.lock() {
                                    *failed.entry(reason).or_default() += 1;
                                }
                                // The gateway is gone: do not spin.
                                actix_rt::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            answered,
            stop,
            failed,
            tasks,
        }
    }

    pub fn answered_count(&self) -> usize {
        self.answered.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// The failures so far, most frequent reason first (at most 5).
    fn failures(&self) -> String {
        let Ok(failed) = self.failed.lock() else {
            return "failures unknown".to_owned();
        };
        let mut reasons: Vec<(&String, &usize)> = failed.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let total: usize = failed.values().sum();
        let top: Vec<String> = reasons
            .iter()
            .take(5)
            .map(|(reason, count)| format!("{count} x {reason}"))
            .collect();
        format!("{total} failed: {}", top.join("; "))
    }

    /// Waits until `n` requests in all were answered.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while self.answered_count() < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {n} requests answered within {limit:?} ({})",
                self.answered_count(),
                self.failures()
            );
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Stops every client (each finishes or fails its request in flight);
    /// returns the ids answered whole.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.answered.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// `(missing, duplicated)`: answered ids without a row, and ids with more
/// than one row.
pub fn compare(answered: &[String], row_ids: &[String]) -> (Vec<String>, Vec<String>) {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for id in row_ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let missing = answered
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .cloned()
        .collect();
    let duplicated = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(id, _)| (*id).to_owned())
        .collect();
    (missing, duplicated)
}
