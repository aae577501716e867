//! Kinesis source: shard discovery, a paced GetRecords loop per shard, resharding (parents
//! read to their end before their children), throttling back-off, expired-iterator recovery.
//!
//! A source reads a stream when its `path` is `kinesis://STREAM`, with optional query
//! settings: `start=trim_horizon` (default) | `latest` | `at_timestamp:<epoch ms>`, and
//! `stop_after_idle=N`: a shard ends after N consecutive empty polls (about N x 200 ms),
//! which lets a run over a finite (test) stream finish; without it the source runs until
//! every shard is closed and read. Each record's data is one or more JSON lines (or CSV rows
//! with a header record first, not recommended). Fetching runs on the AWS runtime; the
//! timely operator ([`crate::dataflow::kinesis_op`]) drains it without blocking.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{DisplayErrorContext, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;

use crate::aws::retry::Backoff;
use crate::aws::sdk_error as sdk;
use crate::config::Pipeline;
use crate::time::Time;

/// Minimum pause between two GetRecords calls on one shard (Kinesis: 5 calls/s/shard).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Least time between two checks whether a caught-up shard was closed (ListShards allows
/// 1,000 calls/s per stream; every idle shard checking on every poll would crowd it).
const CLOSED_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Where a shard with no checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// The oldest record kept.
    TrimHorizon,
    /// Only records put after the source starts.
    Latest,
    /// The first record at or after this time (epoch ms, arrival time).
    AtTimestamp(Time),
}

/// A Kinesis source setting: `kinesis://STREAM?start=...&stop_after_idle=N`.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisSpec {
    /// Stream name.
    pub stream: String,
    /// Start position of shards without parents.
    pub start: Start,
    /// End a shard after this many consecutive empty polls (tests, finite backfills).
    pub stop_after_idle: Option<u32>,
}

impl KinesisSpec {
    /// Parses a `kinesis://` path; `None` for other paths, an error naming the fix if bad.
    pub fn parse(text: &str) -> Option<anyhow::Result<KinesisSpec>> {
        let rest = text.strip_prefix("kinesis://")?;
        Some(Self::parse_rest(rest).map_err(|e| {
            anyhow::anyhow!(
                "bad Kinesis path {text:?}: {e}; write kinesis://STREAM or \
                 kinesis://STREAM?start=trim_horizon|latest|at_timestamp:<epoch ms>&stop_after_idle=N"
            )
        }))
    }

    fn parse_rest(rest: &str) -> Result<KinesisSpec, String> {
        let (stream, query) = rest.split_once('?').unwrap_or((rest, ""));
        let ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if stream.is_empty() || stream.len() > 128 || !stream.chars().all(ok) {
            return Err("the stream name must be 1-128 letters, digits, '_', '.' or '-'".into());
        }
        let mut spec = KinesisSpec {
            stream: stream.to_string(),
            start: Start::TrimHorizon,
            stop_after_idle: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("start", "trim_horizon")) => spec.start = Start::TrimHorizon,
                Some(("start", "latest")) => spec.start = Start::Latest,
                Some(("start", v)) if v.starts_with("at_timestamp:") => {
                    let ms = v["at_timestamp:".len()..]
                        .parse()
                        .map_err(|_| format!("bad timestamp in {v:?}"))?;
                    spec.start = Start::AtTimestamp(ms);
                }
                Some(("stop_after_idle", n)) => {
                    spec.stop_after_idle =
                        Some(n.parse().map_err(|_| format!("bad count in {pair:?}"))?)
                }
                _ => return Err(format!("unknown setting {pair:?}")),
            }
        }
        Ok(spec)
    }
}

/// What the fetcher hands to the operator of a worker.
#[derive(Debug)]
pub enum Fetched {
    /// A shard started; it holds the watermark until it delivers or goes idle.
    Started {
        /// Shard id.
        shard: String,
    },
    /// Records of one shard in sequence order: (sequence number, data).
    Records {
        /// Shard id.
        shard: String,
        /// Sequence numbers and payloads.
        records: Vec<(String, bytes::Bytes)>,
    },
    /// A shard was read to its end (closed) or stopped after `stop_after_idle`.
    Done {
        /// Shard id.
        shard: String,
        /// Last sequence number delivered (the checkpoint), if any.
        last: Option<String>,
    },
    /// The fetcher gave up (after retries): the run fails with this message.
    Failed(String),
}

/// The channel of records for `worker` of source `source_ix`. The first worker to ask
/// starts the fetcher for all `peers` workers of this run (keyed by the pipeline's address,
/// which every worker of a run shares); root shards are spread over workers by index in
/// shard-id order, and a shard's children go to the worker that read its parent.
pub fn receiver(
    pipeline: &Arc<Pipeline>,
    source_ix: usize,
    spec: &KinesisSpec,
    worker: usize,
    peers: usize,
) -> mpsc::Receiver<Fetched> {
    type Waiting = HashMap<(usize, usize), Vec<Option<mpsc::Receiver<Fetched>>>>;
    static WAITING: OnceLock<Mutex<Waiting>> = OnceLock::new();
    let key = (Arc::as_ptr(pipeline) as usize, source_ix);
    let mut waiting = WAITING.get_or_init(Default::default).lock().unwrap();
    let slots = waiting.entry(key).or_insert_with(|| {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..peers).map(|_| mpsc::channel(64)).unzip();
        crate::aws::runtime().spawn(fetch_stream(spec.clone(), txs));
        rxs.into_iter().map(Some).collect()
    });
    let rx = slots[worker].take().expect("one receiver per worker");
    if slots.iter().all(Option::is_none) {
        waiting.remove(&key);
    }
    rx
}

/// Shard ids this run has started and finished (children wait for all their parents).
#[derive(Default)]
struct Lineage {
    started: HashSet<String>,
    finished: HashSet<String>,
}

struct Ctx {
    client: Client,
    spec: KinesisSpec,
    lineage: Mutex<Lineage>,
}

async fn fetch_stream(spec: KinesisSpec, txs: Vec<mpsc::Sender<Fetched>>) {
    let ctx = Arc::new(Ctx {
        client: crate::aws::kinesis_client(),
        spec,
        lineage: Mutex::default(),
    });
    let shards = match list_shards(&ctx.client, &ctx.spec.stream).await {
        Ok(s) => s,
        Err(e) => {
            for tx in &txs {
                let _ = tx.send(Fetched::Failed(format!("{e:#}"))).await;
            }
            return;
        }
    };
    // Roots: shards none of whose parents is still listed (older ones aged out).
    let roots: Vec<&ShardInfo> = shards
        .values()
        .filter(|s| s.parents.iter().all(|p| !shards.contains_key(p)))
        .collect();
    for (i, root) in roots.iter().enumerate() {
        ctx.lineage.lock().unwrap().started.insert(root.id.clone());
        let tx = txs[i % txs.len()].clone();
        tokio::spawn(read_shard(ctx.clone(), root.id.clone(), true, tx));
    }
    // The senders held here drop now: a worker's channel closes once its shards all end.
}

/// A listed shard: its parents and whether it is closed.
#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
    closed: bool,
}

/// Every shard of a stream (all `ListShards` pages), by id.
async fn list_shards(client: &Client, stream: &str) -> anyhow::Result<BTreeMap<String, ShardInfo>> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        // With a NextToken the stream name must not be given again.
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let what = format!("list shards of Kinesis stream {stream:?}");
        let page = crate::aws::retry::retry(&what, Backoff::default(), || {
            let req = req.clone();
            async move { req.send().await.map_err(sdk) }
        })
        .await?;
        for s in page.shards() {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            let closed = s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            out.insert(
                s.shard_id().to_string(),
                ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                    closed,
                },
            );
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn iterator(
    ctx: &Ctx,
    shard: &str,
    root: bool,
    after: Option<&str>,
) -> anyhow::Result<String> {
    let what = format!("get shard iterator of {shard}");
    let out = crate::aws::retry::retry(&what, Backoff::default(), || {
        let mut req = ctx
            .client
            .get_shard_iterator()
            .stream_name(&ctx.spec.stream)
            .shard_id(shard);
        req = match (after, root, ctx.spec.start) {
            (Some(seq), _, _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            // Children hold only records after their parents: read them from the start.
            (None, false, _) | (None, true, Start::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, true, Start::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, true, Start::AtTimestamp(ms)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(ms as i64)),
        };
        async move { req.send().await.map_err(sdk) }
    })
    .await?;
    out.shard_iterator()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{what}: no iterator returned"))
}

/// Reads one shard to its end (or idle stop), then starts the children whose parents are
/// all finished. Boxed: it spawns itself for the children.
fn read_shard(
    ctx: Arc<Ctx>,
    shard: String,
    root: bool,
    tx: mpsc::Sender<Fetched>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let _ = tx
            .send(Fetched::Started {
                shard: shard.clone(),
            })
            .await;
        match poll_shard(&ctx, &shard, root, &tx).await {
            Ok(last) => {
                tracing::info!(%shard, ?last, "Kinesis shard done");
                let _ = tx
                    .send(Fetched::Done {
                        shard: shard.clone(),
                        last,
                    })
                    .await;
            }
            Err(e) => {
                let _ = tx
                    .send(Fetched::Failed(format!("Kinesis shard {shard}: {e:#}")))
                    .await;
                return;
            }
        }
        ctx.lineage.lock().unwrap().finished.insert(shard.clone());
        let shards = match list_shards(&ctx.client, &ctx.spec.stream).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Fetched::Failed(format!("{e:#}"))).await;
                return;
            }
        };
        for child in shards.values().filter(|s| s.parents.contains(&shard)) {
            let ready = {
                let mut l = ctx.lineage.lock().unwrap();
                let ready = child
                    .parents
                    .iter()
                    .all(|p| l.finished.contains(p) || !shards.contains_key(p))
                    && !l.started.contains(&child.id);
                if ready {
                    l.started.insert(child.id.clone());
                }
                ready
            };
            if ready {
                tokio::spawn(read_shard(ctx.clone(), child.id.clone(), false, tx.clone()));
            }
        }
    })
}

/// The GetRecords loop of one shard; returns the last sequence number delivered.
async fn poll_shard(
    ctx: &Ctx,
    shard: &str,
    root: bool,
    tx: &mpsc::Sender<Fetched>,
) -> anyhow::Result<Option<String>> {
    let mut last: Option<String> = None;
    let mut iter = iterator(ctx, shard, root, None).await?;
    let (mut idle, mut failures) = (0u32, 0u32);
    let backoff = Backoff::default();
    let mut checked_closed: Option<Instant> = None;
    loop {
        let called = Instant::now();
        match ctx
            .client
            .get_records()
            .shard_iterator(&iter)
            .limit(10_000)
            .send()
            .await
        {
            Ok(out) => {
                failures = 0;
                let records: Vec<(String, bytes::Bytes)> = out
                    .records()
                    .iter()
                    .map(|r| {
                        let data = bytes::Bytes::copy_from_slice(r.data().as_ref());
                        (r.sequence_number().to_string(), data)
                    })
                    .collect();
                let empty = records.is_empty();
                if let Some((seq, _)) = records.last() {
                    last = Some(seq.clone());
                    idle = 0;
                    let msg = Fetched::Records {
                        shard: shard.to_string(),
                        records,
                    };
                    if tx.send(msg).await.is_err() {
                        return Ok(last); // the run stopped
                    }
                } else {
                    idle += 1;
                }
                match out.next_shard_iterator() {
                    None => return Ok(last), // closed and read to its end
                    Some(next) => iter = next.to_string(),
                }
                if empty {
                    // Emulators may keep returning iterators of a closed shard: a closed
                    // shard that returns nothing (caught up) is at its end too.
                    let due = checked_closed.is_none_or(|t| t.elapsed() >= CLOSED_CHECK_INTERVAL);
                    let closed = due
                        && list_shards(&ctx.client, &ctx.spec.stream)
                            .await?
                            .get(shard)
                            .is_some_and(|s| s.closed);
                    if due {
                        checked_closed = Some(Instant::now());
                    }
                    if closed || ctx.spec.stop_after_idle.is_some_and(|n| idle >= n) {
                        return Ok(last);
                    }
                }
            }
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_expired_iterator_exception()) {
                    tracing::info!(%shard, ?last, "shard iterator expired; resuming after the last record");
                    iter = iterator(ctx, shard, root, last.as_deref()).await?;
                    continue;
                }
                failures += 1;
                let throttled = svc.is_some_and(|s| {
                    s.is_provisioned_throughput_exceeded_exception()
                        || s.is_kms_throttling_exception()
                });
                if !throttled && failures >= backoff.attempts {
                    anyhow::bail!(
                        "GetRecords: {} (after {failures} attempts)",
                        DisplayErrorContext(&e)
                    );
                }
                let pause = backoff.pause(failures.min(10) - 1);
                tracing::warn!(%shard, ?pause, throttled, "GetRecords: {}; backing off", DisplayErrorContext(&e));
                tokio::time::sleep(pause).await;
                if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
                    continue;
                }
            }
        }
        tokio::time::sleep_until((called + POLL_INTERVAL).into()).await;
    }
}
