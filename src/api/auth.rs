//! Bearer-token authentication, and the rule that an API without tokens binds loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Environment variable with comma-separated bearer tokens.
pub const TOKENS_ENV: &str = "LABELJOIN_API_TOKENS";

/// The accepted bearer tokens; empty = no authentication (loopback only).
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<Vec<String>>);

impl Tokens {
    /// Tokens from a pipeline's `[api] tokens` plus `LABELJOIN_API_TOKENS`.
    pub fn from_config_and_env(configured: &[String]) -> Tokens {
        let env = std::env::var(TOKENS_ENV).unwrap_or_default();
        Self::new(
            configured
                .iter()
                .map(String::as_str)
                .chain(env.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    /// These tokens.
    pub fn new(tokens: Vec<String>) -> Tokens {
        Tokens(Arc::new(tokens))
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is one of the tokens (compared in constant time per token).
    pub fn accepts(&self, presented: &str) -> bool {
        self.0
            .iter()
            .fold(false, |ok, t| ok | constant_time_eq(t, presented))
    }

    /// Refuses to serve a non-loopback address without tokens.
    pub fn check_bind(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if !self.enabled() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve the API on {addr} without authentication: set bearer tokens in \
                 {TOKENS_ENV} (comma-separated) or in the pipeline's [api] tokens, or bind 127.0.0.1"
            );
        }
        Ok(())
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Middleware: with tokens configured, requires `Authorization: Bearer <token>`.
pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    if !tokens.enabled() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if tokens.accepts(t.trim()) => next.run(req).await,
        Some(_) => unauthorized("the bearer token is not accepted"),
        None => unauthorized("send `Authorization: Bearer <token>` (a token of LABELJOIN_API_TOKENS or [api] tokens)"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
    r
}
