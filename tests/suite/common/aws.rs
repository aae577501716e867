//! AWS test helpers: the emulator's endpoint (from infra/test.sh), unique names, S3 and
//! an outage switch (a loopback TCP proxy in front of the emulator).
//!
//! Tests that need AWS read `AWS_ENDPOINT_URL`, which `infra/test.sh` sets after starting
//! `moto_server`. Without it they fail and say so: they are never skipped silently.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use labeljoin::aws::s3::{list, S3Url};
use labeljoin::aws::{block_on, s3_client};

/// The emulator endpoint; panics with the fix when the test was not run by infra/test.sh.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: this test needs the local AWS emulator. \
             Run it through infra/test.sh (it starts moto_server), e.g. \
             `infra/test.sh aws_s3::`"
        )
    })
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(base: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{base}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh bucket and returns its name.
pub fn bucket(base: &str) -> String {
    endpoint();
    let name = unique(base);
    block_on(s3_client().create_bucket().bucket(&name).send()).expect("create bucket");
    name
}

/// Parses an `s3://` URL.
pub fn url(text: &str) -> S3Url {
    S3Url::parse(text).unwrap().unwrap()
}

/// Uploads a local file to a URL.
pub fn put(file: &Path, to: &str) {
    labeljoin::aws::s3::put_file(&s3_client(), file, &url(to), Default::default()).unwrap();
}

/// Downloads every object under `prefix` into `dir` (relative keys), returns the keys.
pub fn download(prefix: &str, dir: &Path) -> Vec<String> {
    let base = url(prefix).dir();
    let client = s3_client();
    let mut keys = Vec::new();
    for (key, _) in list(&client, &base).unwrap() {
        let rel = key[base.key.len()..].to_string();
        let to = dir.join(&rel);
        let obj = S3Url {
            bucket: base.bucket.clone(),
            key: key.clone(),
        };
        labeljoin::aws::s3::get_to_file(&client, &obj, &to).unwrap();
        keys.push(rel);
    }
    keys
}

/// Relative paths of all files under a directory, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The training-set files (channels and their markers) of an output directory with their
/// bytes: what must be equal between a local and an S3 output.
pub fn channel_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|f| {
            ["full/", "train/", "validation/"]
                .iter()
                .any(|c| f.starts_with(c))
        })
        .map(|f| {
            let bytes = fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// A loopback TCP proxy to the emulator that can be taken down (every connection cut,
/// new ones refused by closing them at once) and brought back: an outage that keeps the
/// emulator's in-memory state, which restarting moto_server would lose.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut c = c.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy {
            endpoint,
            down,
            conns,
        }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::up`].
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Takes the proxy down after `after` for `outage`, in the background.
    pub fn outage(
        self: &Arc<Self>,
        after: std::time::Duration,
        outage: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let p = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            eprintln!("proxy: outage starts");
            p.down();
            std::thread::sleep(outage);
            p.up();
            eprintln!("proxy: outage ends");
        })
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A scratch path that lives as long as the returned guard.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}
