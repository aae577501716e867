//! AWS access: one shared tokio runtime, SDK config from the standard environment, S3 URLs.
//!
//! Endpoints, region and credentials come from the usual AWS variables and files
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_KINESIS`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, profiles, ...), so one binary talks to AWS or to a local emulator.
//! S3 path-style addressing (needed by emulators) is on when `AWS_S3_FORCE_PATH_STYLE` is
//! `true`, and by default whenever an endpoint override is set.

pub mod kinesis_put;
pub mod retry;
pub mod s3;
pub mod snapshot;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The runtime every AWS call runs on; synchronous code enters it with [`block_on`].
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aws-io")
            .enable_all()
            .build()
            .expect("cannot start the AWS I/O runtime")
    })
}

/// An SDK error with its whole chain of causes (the SDK's own `Display` says only
/// "service error").
pub fn sdk_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
}

/// Runs a future to completion from synchronous code (timely workers, the CLI).
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// The SDK configuration, loaded once: standard retries (exponential back-off with jitter,
/// up to 6 attempts per request) on top of the environment's endpoint, region and keys.
pub fn sdk_config() -> &'static SdkConfig {
    static SDK: OnceLock<SdkConfig> = OnceLock::new();
    SDK.get_or_init(|| {
        block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(6)
                        .with_initial_backoff(Duration::from_millis(100))
                        .with_max_backoff(Duration::from_secs(4)),
                )
                .load(),
        )
    })
}

/// Fails with a message naming the fix when no region or no credentials are configured.
pub fn check_setup(what: &str) -> anyhow::Result<()> {
    let sdk = sdk_config();
    if sdk.region().is_none() {
        anyhow::bail!(
            "{what}: no AWS region; set AWS_REGION (e.g. us-east-1) or a profile's region"
        );
    }
    let Some(provider) = sdk.credentials_provider() else {
        anyhow::bail!("{what}: no AWS credentials provider configured");
    };
    use aws_sdk_s3::config::ProvideCredentials;
    if let Err(e) = block_on(provider.provide_credentials()) {
        anyhow::bail!(
            "{what}: no AWS credentials ({e}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             or AWS_PROFILE (tests: run them through infra/test.sh, which starts the emulator)"
        );
    }
    Ok(())
}

/// Whether S3 requests use path-style addressing (`http://host/bucket/key`).
pub fn force_path_style() -> bool {
    match std::env::var("AWS_S3_FORCE_PATH_STYLE") {
        Ok(v) => matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
        Err(_) => {
            std::env::var_os("AWS_ENDPOINT_URL").is_some()
                || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        }
    }
}

/// An S3 client from [`sdk_config`], path-style per [`force_path_style`] (built once).
pub fn s3_client() -> aws_sdk_s3::Client {
    static CLIENT: OnceLock<aws_sdk_s3::Client> = OnceLock::new();
    CLIENT.get_or_init(build_s3_client).clone()
}

fn build_s3_client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk_config())
        .force_path_style(force_path_style())
        // Checksums only where S3 requires them: emulators differ in the optional ones.
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A Kinesis client from [`sdk_config`].
pub fn kinesis_client() -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(sdk_config())
}
