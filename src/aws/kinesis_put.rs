//! Puts JSON lines into Kinesis streams (`labeljoin gen --kinesis`): PutRecords batches,
//! the entity key as partition key, failed records re-sent.

use std::path::Path;
use std::time::Duration;

use super::sdk_error as sdk;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;

use super::block_on;
use super::retry::{retry, Backoff};

/// Records per PutRecords call (the Kinesis maximum is 500 records or 5 MiB).
const BATCH: usize = 500;

/// Creates `stream` with `shards` shards unless it exists, and waits until it is active.
pub fn ensure_stream(client: &Client, stream: &str, shards: i32) -> anyhow::Result<()> {
    block_on(async {
        let exists = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .is_ok();
        if !exists {
            client
                .create_stream()
                .stream_name(stream)
                .shard_count(shards)
                .send()
                .await
                .map_err(sdk)?;
        }
        for _ in 0..300 {
            let d = client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .map_err(sdk)?;
            if d.stream_description_summary().map(|s| s.stream_status())
                == Some(&StreamStatus::Active)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("Kinesis stream {stream:?} did not become active")
    })
}

/// The partition key of a JSON line: its `key_field` value, else its `id`, else the line.
pub fn partition_key(line: &str, key_field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    for f in [key_field, "id"] {
        match &v[f] {
            serde_json::Value::String(s) if !s.is_empty() => return s.clone(),
            serde_json::Value::Number(n) => return n.to_string(),
            _ => {}
        }
    }
    line.chars().take(256).collect()
}

/// Puts lines (one record each) in order; returns how many were put.
pub fn put_lines(
    client: &Client,
    stream: &str,
    lines: &[String],
    key_field: &str,
) -> anyhow::Result<u64> {
    let mut put = 0;
    for chunk in lines.chunks(BATCH) {
        let mut pending: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|l| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(l.as_bytes()))
                    .partition_key(partition_key(l, key_field))
                    .build()
                    .expect("data and key are set")
            })
            .collect();
        let backoff = Backoff::default();
        for attempt in 0.. {
            let out = block_on(retry(&format!("put records to {stream}"), backoff, || {
                let req = client
                    .put_records()
                    .stream_name(stream)
                    .set_records(Some(pending.clone()));
                async move { req.send().await.map_err(sdk) }
            }))?;
            // Failed entries (throttling) are sent again, in their order.
            let failed: Vec<PutRecordsRequestEntry> = out
                .records()
                .iter()
                .zip(&pending)
                .filter(|(r, _)| r.error_code().is_some())
                .map(|(_, e)| e.clone())
                .collect();
            put += (pending.len() - failed.len()) as u64;
            if failed.is_empty() {
                break;
            }
            if attempt + 1 >= backoff.attempts {
                anyhow::bail!("{} records could not be put to {stream}", failed.len());
            }
            std::thread::sleep(backoff.pause(attempt));
            pending = failed;
        }
    }
    Ok(put)
}

/// Puts every `<stream>*.jsonl` file of a generated directory into Kinesis stream
/// `<prefix>-<stream>` (created with `shards` shards if missing), files in name order.
/// Returns (stream, records) per stream.
pub fn put_generated(dir: &Path, prefix: &str, shards: i32) -> anyhow::Result<Vec<(String, u64)>> {
    super::check_setup(&format!("gen --kinesis {prefix}"))?;
    let client = super::kinesis_client();
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out: Vec<(String, u64)> = Vec::new();
    for file in files {
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let name = stem.split('-').next().unwrap_or(&stem).to_string();
        let stream = format!("{prefix}-{name}");
        ensure_stream(&client, &stream, shards)?;
        let lines: Vec<String> = std::fs::read_to_string(&file)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let n = put_lines(&client, &stream, &lines, "user_id")?;
        match out.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, c)) => *c += n,
            None => out.push((stream, n)),
        }
    }
    Ok(out)
}
