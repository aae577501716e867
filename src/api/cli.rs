//! `labeljoin serve`: the API standalone, read-only, on a state or snapshot directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ServeConfig, Server, Shared, Tokens};

/// Arguments of `labeljoin serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// State or snapshot directory (a running job may be writing it).
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Address to listen on; without tokens only loopback addresses are allowed.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Pipeline file whose `[api] tokens` are accepted (also `LABELJOIN_API_TOKENS`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How often to read what a running job wrote since (e.g. 200ms).
    #[arg(long, default_value = "200ms")]
    pub refresh: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Serves until Ctrl-C / SIGTERM.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let configured = match &args.config {
        Some(file) => tokens_of_pipeline_file(file)?,
        None => Vec::new(),
    };
    let refresh = crate::time::parse_duration(&args.refresh)
        .map_err(|e| anyhow::anyhow!("--refresh: {e}"))?;
    let shared = Arc::new(Shared::standalone(&args.state)?);
    let mut config = ServeConfig::new(args.addr, Tokens::from_config_and_env(&configured));
    config.refresh = Some(std::time::Duration::from_millis(refresh.max(1)));
    config.signals = true;
    config.threads = args.threads;
    Server::start(shared, config)?.wait()
}

/// The `[api] tokens` of a pipeline file (validated like `run` does).
pub fn tokens_of_pipeline_file(file: &Path) -> anyhow::Result<Vec<String>> {
    Ok(crate::config::Pipeline::load(file)?.api_tokens)
}
