//! S3 locations and object operations: listing, streamed reads, (multipart) uploads.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::sdk_error as sdk;
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use super::block_on;
use super::retry::{retry, Backoff};

/// An `s3://bucket/prefix` location. The prefix has no leading `/`; it is empty or ends in `/`
/// once [`S3Url::dir`] is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix (may be empty).
    pub key: String,
}

impl S3Url {
    /// Parses `s3://bucket[/key]`; `None` if `text` does not start with `s3://`.
    /// A malformed URL is an error that says what a good one looks like.
    pub fn parse(text: &str) -> Option<anyhow::Result<S3Url>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid {
            return Some(Err(anyhow::anyhow!(
                "bad S3 URL {text:?}: the bucket name must be 3-63 lowercase letters, digits, \
                 '-' or '.', as in s3://my-bucket/some/prefix"
            )));
        }
        Some(Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.trim_start_matches('/').to_string(),
        }))
    }

    /// The same location as a directory: the key ends in `/` unless it is empty.
    pub fn dir(&self) -> S3Url {
        let mut key = self.key.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        S3Url {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// A key under this directory.
    pub fn join(&self, rel: &str) -> S3Url {
        let d = self.dir();
        S3Url {
            bucket: d.bucket,
            key: format!("{}{}", d.key, rel.trim_start_matches('/')),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Upload tuning: objects above `multipart_threshold` bytes go up in `part_size` parts.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    /// Size from which an upload is multipart.
    pub multipart_threshold: u64,
    /// Size of each part but the last (S3: at least 5 MiB).
    pub part_size: u64,
    /// Whole-upload retries.
    pub backoff: Backoff,
}

impl Default for UploadOptions {
    /// 16 MiB threshold and parts, or `LABELJOIN_S3_PART_SIZE` bytes (both) when set.
    fn default() -> Self {
        let size = std::env::var("LABELJOIN_S3_PART_SIZE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(16 << 20)
            .max(5 << 20);
        UploadOptions {
            multipart_threshold: size,
            part_size: size,
            backoff: Backoff::default(),
        }
    }
}

/// Fails with a clear message when the bucket does not exist or cannot be reached.
pub fn check_bucket(client: &Client, url: &S3Url) -> anyhow::Result<()> {
    let r = block_on(retry("head bucket", Backoff::default(), || async {
        match client.head_bucket().bucket(&url.bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }))
    .with_context(|| format!("cannot reach bucket of {url}"))?;
    if !r {
        anyhow::bail!(
            "bucket {:?} of {url} does not exist; create it first (aws s3 mb s3://{})",
            url.bucket,
            url.bucket
        );
    }
    Ok(())
}

/// Keys under a prefix with their sizes, in key order (every page of `ListObjectsV2`).
pub fn list(client: &Client, url: &S3Url) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = block_on(retry(&format!("list {url}"), Backoff::default(), || {
            let req = client
                .list_objects_v2()
                .bucket(&url.bucket)
                .prefix(&url.key)
                .set_continuation_token(token.clone());
            async move { req.send().await.map_err(sdk) }
        }))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes one object (missing is fine).
pub fn delete(client: &Client, url: &S3Url) -> anyhow::Result<()> {
    block_on(retry(
        &format!("delete {url}"),
        Backoff::default(),
        || async {
            client
                .delete_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .send()
                .await
                .map_err(sdk)
        },
    ))?;
    Ok(())
}

/// Writes `bytes` to one object (replacing it).
pub fn put_bytes(client: &Client, url: &S3Url, bytes: Vec<u8>) -> anyhow::Result<()> {
    block_on(retry(&format!("put {url}"), Backoff::default(), || async {
        client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await
            .map_err(sdk)
    }))?;
    Ok(())
}

/// Uploads a local file to one object; multipart above the threshold. A failed multipart
/// upload is aborted and retried whole, so the object is either the whole file or absent.
pub fn put_file(
    client: &Client,
    file: &Path,
    url: &S3Url,
    opts: UploadOptions,
) -> anyhow::Result<()> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if len <= opts.multipart_threshold {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        return put_bytes(client, url, bytes);
    }
    block_on(retry(
        &format!("multipart upload {url}"),
        opts.backoff,
        || multipart(client, file, url, opts.part_size),
    ))
}

async fn multipart(
    client: &Client,
    file: &Path,
    url: &S3Url,
    part_size: u64,
) -> anyhow::Result<()> {
    let created = client
        .create_multipart_upload()
        .bucket(&url.bucket)
        .key(&url.key)
        .send()
        .await
        .map_err(sdk)?;
    let id = created
        .upload_id()
        .context("S3 returned no upload id")?
        .to_string();
    let result = async {
        let mut f = std::fs::File::open(file)?;
        let mut parts = Vec::new();
        for number in 1.. {
            let mut buf = Vec::with_capacity(part_size as usize);
            (&mut f).take(part_size).read_to_end(&mut buf)?;
            if buf.is_empty() {
                break;
            }
            let up = client
                .upload_part()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(sdk)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(up.e_tag().map(str::to_string))
                    .build(),
            );
        }
        let completed = client
            .complete_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => {}
            // Some emulators answer 200 with a body the SDK cannot parse (moto names the
            // root element differently): trust the status only if the object is there.
            Err(e) if e.raw_response().is_some_and(|r| r.status().is_success()) => {
                let head = client
                    .head_object()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .send()
                    .await;
                let len = std::fs::metadata(file)?.len() as i64;
                if head.ok().and_then(|h| h.content_length()) != Some(len) {
                    return Err(sdk(e));
                }
            }
            Err(e) => return Err(sdk(e)),
        }
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = client
            .abort_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .upload_id(&id)
            .send()
            .await;
    }
    result
}

/// A synchronous, streaming reader of one object. A connection lost mid-body resumes with
/// a ranged GET from the last byte read (with back-off), so an outage costs no data.
pub struct ObjectReader {
    client: Client,
    url: S3Url,
    body: Option<ByteStream>,
    chunk: bytes::Bytes,
    offset: u64,
}

impl ObjectReader {
    /// Opens an object (the first GET is made here, so a missing key fails now).
    pub fn open(client: &Client, url: &S3Url) -> anyhow::Result<ObjectReader> {
        let mut r = ObjectReader {
            client: client.clone(),
            url: url.clone(),
            body: None,
            chunk: bytes::Bytes::new(),
            offset: 0,
        };
        r.body = Some(r.get()?);
        Ok(r)
    }

    fn get(&self) -> anyhow::Result<ByteStream> {
        let range = (self.offset > 0).then(|| format!("bytes={}-", self.offset));
        let out = block_on(retry(
            &format!("get {}", self.url),
            Backoff::default(),
            || {
                let req = self
                    .client
                    .get_object()
                    .bucket(&self.url.bucket)
                    .key(&self.url.key)
                    .set_range(range.clone());
                async move { req.send().await.map_err(sdk) }
            },
        ))?;
        Ok(out.body)
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut failures = 0u32;
        while self.chunk.is_empty() {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            match block_on(body.try_next()) {
                Ok(Some(c)) => self.chunk = c,
                Ok(None) => {
                    self.body = None;
                    return Ok(0);
                }
                Err(e) => {
                    failures += 1;
                    let backoff = Backoff::default();
                    if failures >= backoff.attempts {
                        return Err(std::io::Error::other(format!("reading {}: {e}", self.url)));
                    }
                    tracing::warn!(url = %self.url, offset = self.offset, "read failed: {e}; resuming");
                    std::thread::sleep(backoff.pause(failures - 1));
                    self.body = Some(self.get().map_err(std::io::Error::other)?);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        self.offset += n as u64;
        Ok(n)
    }
}

/// Downloads one object to a file (through a temporary name, renamed when complete).
pub fn get_to_file(client: &Client, url: &S3Url, file: &Path) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("part.tmp");
    let mut out = std::fs::File::create(&tmp)?;
    std::io::copy(&mut ObjectReader::open(client, url)?, &mut out)
        .with_context(|| format!("downloading {url}"))?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}
