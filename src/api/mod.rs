//! The profile-query HTTP API: read-only JSON access to the lookup tables, live inside a
//! job (`run --serve`) or standalone on a state or snapshot directory (`serve`).
//! Contract: `docs/API.md` and `docs/openapi.json`.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::metrics::Metrics;
use crate::tables::{TableReader, TableStore};
use crate::time::{now_ms, Time};

pub use auth::Tokens;
pub use server::{ServeConfig, Server};

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most keys in one batch lookup (400 above).
pub const MAX_KEYS: usize = 1_000;
/// Most versions one history answer returns (the newest are kept).
pub const MAX_HISTORY: usize = 10_000;
/// Latest time a read may ask for (larger `as_of` values are read as this).
pub use crate::tables::LATEST as MAX_TIME;

/// What every request reads: the tables and, inside a job, its counters and progress.
pub struct Shared {
    /// The tables.
    pub reader: TableReader,
    /// The job's counters (`None` when serving standalone).
    pub job: Option<Arc<Metrics>>,
    /// Inside a job: the run has finished (a finite replay reached its end).
    finished: AtomicBool,
    /// Inside a job: ready once the watermark is at most this far behind the clock (ms).
    ready_lag: Time,
    /// Scratch directory of a secondary RocksDB instance, removed on drop.
    _scratch: Option<Scratch>,
}

impl Shared {
    /// Serves the live store of a running job.
    pub fn live(
        store: Arc<TableStore>,
        state_dir: &Path,
        job: Arc<Metrics>,
        ready_lag: Time,
    ) -> anyhow::Result<Shared> {
        Ok(Shared {
            reader: TableReader::with_store(store, state_dir)?,
            job: Some(job),
            finished: AtomicBool::new(false),
            ready_lag,
            _scratch: None,
        })
    }

    /// Opens a state or snapshot directory for standalone reads. A job may be writing it:
    /// the store is a RocksDB secondary instance, brought up to date by
    /// [`TableStore::catch_up`] (see [`ServeConfig::refresh`]).
    pub fn standalone(dir: &Path) -> anyhow::Result<Shared> {
        let scratch = Scratch::new()?;
        let store = TableStore::open_secondary(dir, &scratch.0)?;
        Ok(Shared {
            reader: TableReader::with_store(Arc::new(store), dir)?,
            job: None,
            finished: AtomicBool::new(true),
            ready_lag: 0,
            _scratch: Some(scratch),
        })
    }

    /// Marks the job's run as finished: the tables are final, `/readyz` answers 200.
    pub fn mark_finished(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// Whether the job's run has finished (always true standalone).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// `/readyz`: whether reads answer current data, and why. Standalone: once the state
    /// is open. In a job: once the run finished, or the tables are written through the
    /// end of the inputs, or their watermark (`written_through`) is within `ready_lag`
    /// of the wall clock (a live job has caught up).
    pub fn readiness(&self) -> (bool, String) {
        if self.job.is_none() {
            return (true, "state directory open".into());
        }
        if self.finished() {
            return (true, "the run finished; tables are final".into());
        }
        let w = self.reader.store().written_through();
        if w == Time::MAX {
            return (
                true,
                "every source reached its end and every version is written".into(),
            );
        }
        let lag = now_ms().saturating_sub(w);
        if w > 0 && lag <= self.ready_lag {
            return (
                true,
                format!("tables lag the clock by {lag} ms <= {} ms", self.ready_lag),
            );
        }
        (
            false,
            format!(
                "catching up: tables are written through {}, {lag} ms behind the clock (ready at <= {} ms)",
                crate::time::display(w),
                self.ready_lag
            ),
        )
    }

    /// The time "current" reads use: in a running job, just below the store's
    /// `written_through` watermark (every version before it is written, so such reads
    /// are final); `None` = each key's newest version, read at its own time (standalone,
    /// or a finished run).
    pub fn current(&self) -> Option<Time> {
        if self.job.is_none() || self.finished() {
            return None;
        }
        let w = self.reader.store().written_through();
        (w > 0 && w < Time::MAX).then(|| w - 1)
    }
}

/// Every (method, path) [`router`] serves; `tests/suite/api.rs` checks `docs/openapi.json`
/// describes exactly these and that each answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/tables"),
    ("get", "/v1/tables/{table}/{key}"),
    ("post", "/v1/tables/{table}/lookup"),
    ("get", "/v1/tables/{table}/lookup"),
    ("get", "/v1/tables/{table}/{key}/history"),
];

/// State of every handler.
#[derive(Clone)]
pub struct ApiState {
    /// Tables and job.
    pub shared: Arc<Shared>,
    /// Latency histograms and the registry.
    pub metrics: Arc<metrics::ApiMetrics>,
}

/// Every route of the API. `/healthz` and `/readyz` are open; the rest need a bearer
/// token when tokens are configured.
pub fn router(shared: Arc<Shared>, tokens: Tokens) -> Router {
    let state = ApiState {
        metrics: Arc::new(metrics::ApiMetrics::new(shared.clone())),
        shared,
    };
    let protected = Router::new()
        .route("/v1/tables", get(handlers::tables))
        .route("/v1/tables/{table}/{key}", get(handlers::profile))
        .route(
            "/v1/tables/{table}/lookup",
            post(handlers::lookup).get(handlers::profile_of_lookup),
        )
        .route("/v1/tables/{table}/{key}/history", get(handlers::history))
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .merge(protected)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

/// A private temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "labeljoin-secondary-{}-{}-{n}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Inside a job, ready once the watermark is at most this far behind the clock.
pub const READY_LAG_MS: Time = 60_000;

/// The API of a running job (`run --serve`).
pub struct JobServer {
    shared: Arc<Shared>,
    server: Server,
}

impl JobServer {
    /// Starts serving a job's live store and counters on `addr`, tokens from the
    /// pipeline's `[api]` section and the environment.
    pub fn start(
        addr: SocketAddr,
        store: Option<&Arc<TableStore>>,
        state_dir: Option<&Path>,
        job: Arc<Metrics>,
        configured_tokens: &[String],
    ) -> anyhow::Result<JobServer> {
        let (Some(store), Some(dir)) = (store, state_dir) else {
            anyhow::bail!(
                "--serve {addr} reads the tables of the state directory: drop --no-state"
            );
        };
        let shared = Arc::new(Shared::live(store.clone(), dir, job, READY_LAG_MS)?);
        let mut config = ServeConfig::new(addr, Tokens::from_config_and_env(configured_tokens));
        config.signals = true;
        let server = Server::start(shared.clone(), config)?;
        Ok(JobServer { shared, server })
    }

    /// The run finished: mark ready, keep serving until Ctrl-C / SIGTERM.
    pub fn finish_and_wait(self) -> anyhow::Result<()> {
        self.shared.mark_finished();
        eprintln!(
            "labeljoin: run finished; serving the tables on http://{} until Ctrl-C",
            self.server.addr()
        );
        self.server.wait()
    }
}
