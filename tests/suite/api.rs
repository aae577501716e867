//! DESIGN.md "Profile-query API" and issue 4: a real HTTP client against a real server on
//! 127.0.0.1 (port 0). Values equal the tables, and as of `event_time - 1 ms` the training
//! rows' features; auth, limits and bad input answer JSON errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use labeljoin::api::{ServeConfig, Server, Shared, Tokens};
use labeljoin::config::Pipeline;
use labeljoin::sinks::numbers::write_num;
use labeljoin::tables::TableReader;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A finished reference run with a state directory.
struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    pipeline: Pipeline,
    rows: std::collections::BTreeMap<String, common::Row>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(Path::new("pipelines/ad_clicks.toml")).unwrap();
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let rows = common::run_with_state(pipeline.clone(), &out, &state, 2).rows();
    Fixture {
        _dir: dir,
        state,
        pipeline,
        rows,
    }
}

/// A standalone server on the fixture's state.
fn serve(state: &Path, tokens: Vec<String>) -> (Server, String) {
    let shared = Arc::new(Shared::standalone(state).unwrap());
    let config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), Tokens::new(tokens));
    let server = Server::start(shared, config).unwrap();
    let base = format!("http://{}", server.addr());
    (server, base)
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    answer(r).await
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// Status and JSON body; every answer of the API is JSON (metrics aside).
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/json"), "{status}: {ctype}");
    let body: Value = r.json().await.unwrap();
    if status >= 400 {
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    (status, body)
}

fn text(v: &Value) -> String {
    let mut s = String::new();
    if let Some(n) = v.as_f64() {
        write_num(n, &mut s);
    }
    s
}

fn impressions() -> std::collections::HashMap<String, Value> {
    std::fs::read_to_string("fixtures/ad_clicks/impressions.jsonl")
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v.get("id")?.as_str()?.to_string(), v)))
        .collect()
}

#[tokio::test]
async fn tables_lists_every_table_and_its_columns() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let (status, body) = get(&format!("{base}/v1/tables")).await;
    assert_eq!(status, 200);
    let mut expected: Vec<Value> = f
        .pipeline
        .tables
        .iter()
        .map(|t| {
            let cols: Vec<&str> = t.features.iter().map(|c| c.name.as_str()).collect();
            json!({ "name": t.name, "columns": cols })
        })
        .collect();
    expected.sort_by_key(|t| t["name"].as_str().unwrap().to_string());
    assert_eq!(body["tables"], Value::Array(expected));
    server.stop().unwrap();
}

#[tokio::test]
async fn profiles_as_of_one_ms_before_a_row_equal_its_features_and_the_tables() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let reader = TableReader::open(&f.state).unwrap();
    let events = impressions();
    let mut checked = 0;
    for (id, row) in f.rows.iter().step_by(10) {
        let as_of = row["event_time"].parse::<u64>().unwrap() - 1;
        for t in &f.pipeline.tables {
            let key: Vec<&str> = t
                .key_names
                .iter()
                .map(|k| events[id][k.as_str()].as_str().unwrap())
                .collect();
            let key = key.join("|");
            let url = format!("{base}/v1/tables/{}/{}?as_of={as_of}", t.name, key);
            let (status, body) = get(&url).await;
            let Some((version, values)) = reader.get(&t.name, &key, as_of).unwrap() else {
                assert_eq!(status, 404, "{url}: {body}");
                continue;
            };
            assert_eq!(status, 200, "{url}: {body}");
            assert_eq!(body["as_of"], as_of);
            assert_eq!(body["version_time"], version);
            for (name, value) in values.iter() {
                assert_eq!(body["features"][name].as_f64(), value, "{url} {name}");
                assert_eq!(
                    text(&body["features"][name]),
                    row[name],
                    "{id} {name}: {url}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 2_000, "{checked} values");
    // Features come in column order (serde_json::Value sorts them, so look at the text).
    let raw = reqwest::get(format!("{base}/v1/tables/user/u83"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at: Vec<usize> = f
        .pipeline
        .tables
        .iter()
        .find(|t| t.name == "user")
        .unwrap()
        .features
        .iter()
        .map(|c| raw.find(&format!("\"{}\":", c.name)).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{raw}");
    server.stop().unwrap();
}

#[tokio::test]
async fn profile_without_as_of_is_the_newest_version_and_lookup_keeps_key_order() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let reader = TableReader::open(&f.state).unwrap();
    let (status, body) = get(&format!("{base}/v1/tables/user/u83")).await;
    assert_eq!(status, 200);
    let (t, values) = reader.latest("user", "u83").unwrap().unwrap();
    assert_eq!(body["version_time"], t);
    assert_eq!(
        body["features"]["user_impressions"].as_f64(),
        values.values()[0]
    );

    let keys = ["u7", "nobody", "u83", "", "u7"];
    let as_of = 1_700_003_600_000u64;
    let (status, body) = post(
        &format!("{base}/v1/tables/user/lookup"),
        &json!({ "keys": keys, "as_of": "2023-11-14T23:13:20Z" }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), keys.len());
    for (key, r) in keys.iter().zip(results) {
        assert_eq!(r["key"], *key);
        match reader.get("user", key, as_of).unwrap() {
            Some((v, values)) => {
                assert_eq!(r["found"], true);
                assert_eq!(r["as_of"], as_of);
                assert_eq!(r["version_time"], v);
                for (name, value) in values.iter() {
                    assert_eq!(r["features"][name].as_f64(), value);
                }
            }
            None => assert_eq!(r["found"], false, "{r}"),
        }
    }
    server.stop().unwrap();
}

#[tokio::test]
async fn history_lists_the_versions_in_range_oldest_first() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let reader = TableReader::open(&f.state).unwrap();
    let (from, to) = (1_700_000_000_000u64, 1_700_020_000_000u64);
    let url = format!("{base}/v1/tables/user/u83/history?from={from}&to={to}");
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    let expected = reader
        .history("user", "u83", (from, to), usize::MAX)
        .unwrap();
    let versions = body["versions"].as_array().unwrap();
    assert!(versions.len() > 2);
    assert_eq!(versions.len(), expected.len());
    for (v, (t, values)) in versions.iter().zip(&expected) {
        assert_eq!(v["version_time"], *t);
        for (name, value) in values.iter() {
            assert_eq!(v["features"][name].as_f64(), value);
        }
    }
    let (_, limited) = get(&format!("{url}&limit=2")).await;
    assert_eq!(limited["truncated"], true);
    assert_eq!(
        limited["versions"][1]["version_time"],
        expected.last().unwrap().0
    );
    server.stop().unwrap();
}

#[tokio::test]
async fn without_a_valid_token_every_route_but_health_answers_401() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![TOKEN.into()]);
    let client = reqwest::Client::new();
    for path in ["/v1/tables", "/v1/tables/user/u83", "/metrics"] {
        let none = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        let (_, body) = answer(none).await;
        assert_eq!(body["error"], "unauthorized");
        let wrong = client
            .get(format!("{base}{path}"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let right = client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path}");
    }
    let lookup = client
        .post(format!("{base}/v1/tables/user/lookup"))
        .json(&json!({ "keys": ["u83"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 401);
    for open in ["/healthz", "/readyz"] {
        assert_eq!(
            reqwest::get(format!("{base}{open}"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    server.stop().unwrap();
}

#[test]
fn without_tokens_only_loopback_addresses_are_bound() {
    let err = Tokens::default()
        .check_bind("0.0.0.0:8080".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LABELJOIN_API_TOKENS") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(Tokens::default()
        .check_bind("127.0.0.1:8080".parse().unwrap())
        .is_ok());
    assert!(Tokens::default()
        .check_bind("[::1]:8080".parse().unwrap())
        .is_ok());
    assert!(Tokens::new(vec![TOKEN.into()])
        .check_bind("0.0.0.0:8080".parse().unwrap())
        .is_ok());
}

#[tokio::test]
async fn bodies_over_64_kib_answer_413_and_batches_over_1000_keys_400() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let url = format!("{base}/v1/tables/user/lookup");
    let big: Vec<String> = (0..20_000).map(|i| format!("u{i}")).collect();
    let (status, body) = post(&url, &json!({ "keys": big }).to_string()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_large");
    let many: Vec<String> = (0..1_001).map(|i| format!("u{i}")).collect();
    let (status, body) = post(&url, &json!({ "keys": many }).to_string()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "too_many_keys");
    let thousand: Vec<String> = (0..1_000).map(|i| format!("u{i}")).collect();
    let (status, _) = post(&url, &json!({ "keys": thousand }).to_string()).await;
    assert_eq!(status, 200);
    server.stop().unwrap();
}

#[tokio::test]
async fn malformed_json_bad_parameters_and_odd_keys_answer_json_4xx_never_a_panic() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let lookup = format!("{base}/v1/tables/user/lookup");
    for (body, status) in [
        ("{\"keys\": [", 400),
        ("not json", 400),
        ("{\"keys\": \"u1\"}", 400),
        ("{\"keys\": [1, 2]}", 400),
        ("{\"keys\": [\"u1\"], \"as_of\": \"yesterday\"}", 400),
        ("{\"keys\": [\"u1\"], \"as_of\": -5}", 400),
        ("{\"keys\": [\"u1\"], \"as_of\": true}", 400),
        ("{\"keys\": [\"u1\"], \"extra\": 1}", 400),
        ("{\"keys\": [\"u1\"], \"as_of\": 1e300}", 200),
    ] {
        let (got, answer) = post(&lookup, body).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    let no_type = reqwest::Client::new()
        .post(&lookup)
        .body("{\"keys\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(no_type).await.0, 415);
    let (status, _) = post(&format!("{base}/v1/tables/nope/lookup"), "{\"keys\":[]}").await;
    assert_eq!(status, 404);

    let long = "x".repeat(10_000);
    for (path, status) in [
        ("/v1/tables/user/u83?as_of=yesterday".to_string(), 400),
        ("/v1/tables/user/u83?as_of=".to_string(), 400),
        ("/v1/tables/user/u83?as_of=-1".to_string(), 400),
        (
            "/v1/tables/user/u83?as_of=99999999999999999999999".to_string(),
            400,
        ),
        (
            "/v1/tables/user/u83?as_of=18446744073709551615".to_string(),
            200,
        ),
        ("/v1/tables/user/u83?as_of=0".to_string(), 404),
        ("/v1/tables/nope/u83".to_string(), 404),
        ("/v1/tables/user/".to_string(), 404),
        ("/v1/tables/user/nobody".to_string(), 404),
        (format!("/v1/tables/user/{long}"), 404),
        ("/v1/tables/user/%FF%FE".to_string(), 400),
        ("/v1/tables/user/a%2Fb".to_string(), 404),
        ("/v1/tables/user/a%2Fb/history".to_string(), 200),
        ("/v1/tables/user/%00%7C%F0%9F%98%80".to_string(), 404),
        ("/v1/tables/user/lookup".to_string(), 404),
        ("/v1/tables/user/u83/history?from=5&to=1".to_string(), 400),
        ("/v1/tables/user/u83/history?limit=0".to_string(), 400),
        ("/v1/tables/user/u83/history?limit=many".to_string(), 400),
        ("/nothing/here".to_string(), 404),
    ] {
        let (got, body) = get(&format!("{base}{path}")).await;
        assert_eq!(got, status, "{}: {body}", &path[..path.len().min(80)]);
    }
    let wrong = reqwest::Client::new()
        .delete(format!("{base}/v1/tables"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(wrong).await.0, 405);
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "still serving"
    );
    server.stop().unwrap();
}

#[tokio::test]
async fn openapi_describes_exactly_the_served_routes_and_the_answers_fields() {
    let f = fixture();
    let (server, base) = serve(&f.state, vec![]);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string("docs/openapi.json").unwrap()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut served: Vec<(String, String)> = labeljoin::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served, "docs/openapi.json paths vs api::ROUTES");

    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let required = |s: &Value| -> Vec<String> {
        s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let client = reqwest::Client::new();
    for (method, path) in &served {
        let url = format!(
            "{base}{}",
            path.replace("{table}", "user").replace("{key}", "u83")
        );
        let r = match method.as_str() {
            "post" => client
                .post(&url)
                .json(&json!({ "keys": ["u83", "nobody"] }))
                .send()
                .await
                .unwrap(),
            _ => client.get(&url).send().await.unwrap(),
        };
        let status = r.status().as_u16().to_string();
        let op = &doc["paths"][path][method];
        let documented = &op["responses"][&status];
        assert!(
            !documented.is_null(),
            "{method} {path} answered {status}, not documented"
        );
        if path == "/metrics" {
            let text = r.text().await.unwrap();
            assert!(text.contains("labeljoin_api_request_duration_seconds_bucket"));
            assert!(
                text.contains("labeljoin_table_versions{table=\"user\"}"),
                "{text}"
            );
            continue;
        }
        let reference = documented["$ref"]
            .as_str()
            .map(|s| s.rsplit('/').next().unwrap().to_string());
        let schema_name = match reference {
            Some(_) => "Error".to_string(),
            None => documented["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string(),
        };
        let body: Value = r.json().await.unwrap();
        for field in required(&schema(&schema_name)) {
            assert!(
                !body[&field].is_null(),
                "{method} {path}: no {field} in {body}"
            );
        }
        if schema_name == "Lookup" {
            for result in body["results"].as_array().unwrap() {
                for field in required(&schema("LookupResult")) {
                    assert!(!result[&field].is_null(), "{result}");
                }
            }
        }
    }
    server.stop().unwrap();
}

#[tokio::test]
async fn a_standalone_server_sees_what_a_running_writer_adds() {
    let f = fixture();
    let writer = labeljoin::tables::TableStore::open(&f.state, &["user"], &[]).unwrap();
    let shared = Arc::new(Shared::standalone(&f.state).unwrap());
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), Tokens::default());
    config.refresh = Some(std::time::Duration::from_millis(50));
    let server = Server::start(shared, config).unwrap();
    let url = format!("http://{}/v1/tables/user/newcomer", server.addr());
    assert_eq!(get(&url).await.0, 404);
    let (t, bytes) = writer.get("user", b"u83", u64::MAX - 2).unwrap().unwrap();
    writer
        .put_versions("user", [(&b"newcomer"[..], t + 1, bytes.as_slice())])
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let (status, body) = get(&url).await;
        if status == 200 {
            assert_eq!(body["version_time"], t + 1);
            break;
        }
        assert!(
            started.elapsed().as_secs() < 5,
            "the new version never became visible"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().unwrap();
}

#[tokio::test]
async fn run_serve_answers_after_a_finite_replay_until_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_labeljoin"))
        .args([
            "run",
            "pipelines/ad_clicks.toml",
            "--quiet",
            "--workers",
            "2",
            "--serve",
            "127.0.0.1:0",
        ])
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server's address").unwrap();
        if let Some(addr) = line.strip_prefix("labeljoin api: listening on ") {
            break addr.trim().to_string();
        }
    };
    let (finished_tx, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("run finished; serving") {
                let _ = finished_tx.send(());
            }
        }
    });
    let started = std::time::Instant::now();
    while finished.try_recv().is_err() {
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert!([200, 503].contains(&r.status().as_u16()));
        assert!(started.elapsed().as_secs() < 60, "the run never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, ready) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "{ready}");
    let reader = TableReader::open(&state).unwrap();
    let (status, body) = get(&format!("{base}/v1/tables/user/u83")).await;
    assert_eq!(status, 200);
    let (t, values) = reader.latest("user", "u83").unwrap().unwrap();
    assert_eq!(body["version_time"], t);
    for (name, value) in values.iter() {
        assert_eq!(body["features"][name].as_f64(), value);
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "labeljoin_events_total 5783",
        "labeljoin_inputs_done 1",
        "labeljoin_rows_total 4994",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still serving after the replay"
    );
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
