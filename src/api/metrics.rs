//! `/metrics`: Prometheus text with request latency histograms per route and the job's
//! counters, watermark, lag and table sizes, read at each scrape.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{ApiState, Shared};
use crate::time::Time;

type RouteLabel = [(&'static str, String); 1];

/// The API's own metrics and the registry that encodes them with the job's.
pub struct ApiMetrics {
    registry: Registry,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    // 25 us .. ~0.8 s, doubling.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

impl ApiMetrics {
    /// Registers the latency histograms and a collector reading `shared` at each scrape.
    pub fn new(shared: Arc<Shared>) -> ApiMetrics {
        let mut registry = Registry::default();
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "labeljoin_api_request_duration_seconds",
            "Time to answer a request, by route (from routing to the response head)",
            latency.clone(),
        );
        registry.register_collector(Box::new(PipelineCollector(shared)));
        ApiMetrics { registry, latency }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware: observes each routed request's latency under its route template.
pub async fn observe(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .latency
        .get_or_create(&[("route", route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[derive(Debug)]
struct PipelineCollector(Arc<Shared>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Collector for PipelineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let shared = &self.0;
        gauge(
            &mut e,
            "labeljoin_api_ready",
            "1 when /readyz answers 200",
            f64::from(u8::from(shared.readiness().0)),
        )?;
        let written = shared.reader.store().written_through();
        if let Some(m) = &shared.job {
            let s = m.snapshot();
            let counters = [
                (
                    "labeljoin_records_read",
                    "Records read from sources",
                    s.records_read,
                ),
                (
                    "labeljoin_events",
                    "Valid events accepted (events in)",
                    s.events,
                ),
                ("labeljoin_rows", "Training rows emitted (rows out)", s.rows),
                (
                    "labeljoin_positive_rows",
                    "Rows with a positive label",
                    s.positive_rows,
                ),
                (
                    "labeljoin_late_events",
                    "Events below their partition's watermark",
                    s.late,
                ),
                (
                    "labeljoin_orphans",
                    "Outcomes whose example never arrived",
                    s.orphans,
                ),
                (
                    "labeljoin_outside_window",
                    "Outcomes after their example's window",
                    s.outside_window,
                ),
                (
                    "labeljoin_duplicates",
                    "Events dropped as duplicates",
                    s.duplicates,
                ),
                (
                    "labeljoin_malformed",
                    "Records sent to the dead-letter sink",
                    s.malformed,
                ),
                (
                    "labeljoin_partitions_committed",
                    "Output partitions committed",
                    s.partitions_committed,
                ),
            ];
            for (name, help, v) in counters {
                counter(&mut e, name, help, v)?;
            }
            gauge(
                &mut e,
                "labeljoin_pending_examples",
                "Examples waiting for their label",
                s.pending as f64,
            )?;
            let done = s.watermark == Time::MAX;
            gauge(
                &mut e,
                "labeljoin_inputs_done",
                "1 once every source reached its end",
                f64::from(u8::from(done)),
            )?;
            if !done {
                gauge(
                    &mut e,
                    "labeljoin_watermark_ms",
                    "Pipeline watermark, event time in epoch ms",
                    s.watermark as f64,
                )?;
            }
            let lag = if done {
                0
            } else {
                crate::time::now_ms().saturating_sub(s.watermark)
            };
            gauge(
                &mut e,
                "labeljoin_watermark_lag_seconds",
                "Processing time now minus the watermark (0 once inputs are done)",
                lag as f64 / 1000.0,
            )?;
            if written > 0 && written < Time::MAX {
                gauge(
                    &mut e,
                    "labeljoin_tables_written_through_ms",
                    "Every table version before this event time is written",
                    written as f64,
                )?;
            }
        }
        let mut family = e.encode_descriptor(
            "labeljoin_table_versions",
            "Versions stored per table (RocksDB rocksdb.estimate-num-keys)",
            None,
            MetricType::Gauge,
        )?;
        let db = shared.reader.store().db();
        for table in shared.reader.schema().keys() {
            let Some(cf) = db.cf_handle(table) else {
                continue;
            };
            let n = db
                .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                .ok()
                .flatten()
                .unwrap_or(0);
            let labels = [("table", table.as_str())];
            ConstGauge::new(n as f64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
