//! Running the API: bind, serve on a tokio runtime of its own thread, stop on a signal.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{router, Shared, Tokens};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 = any free port; see [`Server::addr`]).
    pub addr: SocketAddr,
    /// Accepted bearer tokens; without any, only a loopback address may be bound.
    pub tokens: Tokens,
    /// Standalone on a state a job may be writing: read the writer's changes this often.
    pub refresh: Option<Duration>,
    /// Stop on Ctrl-C / SIGTERM (the CLI); tests and benchmarks stop with [`Server::stop`].
    pub signals: bool,
    /// Runtime worker threads.
    pub threads: usize,
}

impl ServeConfig {
    /// Serves on `addr` with `tokens`, two threads, no refresh, no signal handling.
    pub fn new(addr: SocketAddr, tokens: Tokens) -> ServeConfig {
        ServeConfig {
            addr,
            tokens,
            refresh: None,
            signals: false,
            threads: 2,
        }
    }
}

/// A running API server.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Binds `config.addr` (failing here on a taken port or a refused address) and serves
    /// `shared` from a new thread.
    pub fn start(shared: Arc<Shared>, config: ServeConfig) -> anyhow::Result<Server> {
        config.tokens.check_bind(config.addr)?;
        let listener = std::net::TcpListener::bind(config.addr)
            .map_err(|e| anyhow::anyhow!("--serve {}: cannot listen: {e}", config.addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("labeljoin-api")
            .enable_all()
            .build()?;
        let auth = config.tokens_enabled_text();
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("labeljoin-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // No Nagle delay: a response written in two segments would otherwise
                    // wait for the client's delayed ACK (tens of ms at the tail).
                    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    if let Some(every) = config.refresh {
                        tokio::spawn(refresh(shared.clone(), every));
                    }
                    let app = router(shared.clone(), config.tokens);
                    let signals = config.signals;
                    let shutdown = async move {
                        tokio::select! {
                            _ = stopped.wait_for(|s| *s) => {}
                            _ = signal(), if signals => on_signal(&shared),
                        }
                    };
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await?;
                    Ok(())
                })
            })?;
        tracing::info!(%addr, auth, "profile-query API listening");
        eprintln!("labeljoin api: listening on http://{addr}");
        Ok(Server { addr, stop, thread })
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving (open connections finish their request) and waits for the thread.
    pub fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.wait()
    }

    /// Waits until the server stops (after Ctrl-C / SIGTERM when `signals` is set).
    pub fn wait(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the API server thread failed"))?
    }
}

impl ServeConfig {
    fn tokens_enabled_text(&self) -> &'static str {
        if self.tokens.enabled() {
            "bearer tokens"
        } else {
            "none (loopback only)"
        }
    }
}

/// A signal stops the server; during a run it also stops the job, as Ctrl-C did before
/// the server took the signal over.
fn on_signal(shared: &Shared) {
    if !shared.finished() {
        eprintln!("labeljoin: interrupted before the run finished");
        std::process::exit(130);
    }
    tracing::info!("stopping the profile-query API");
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Keeps a secondary instance up to date with the job writing the state directory.
async fn refresh(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = shared.reader.store().catch_up() {
            tracing::warn!("cannot catch up with the writer of the state directory: {e}");
        }
    }
}
