//! DESIGN.md "Scale-out" and clause 7: the same job on 2 processes x 2 workers (timely
//! cluster mode over loopback TCP) gives exactly the rows of 1 worker.

use crate::common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn two_processes_of_two_workers_give_the_rows_of_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let single = common::run_file("pipelines/ad_clicks.toml", &dir.path().join("single"), 1);

    let ports = free_ports(2);
    let hostfile = dir.path().join("hosts");
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::write(&hostfile, hosts.join("\n")).unwrap();
    let out = dir.path().join("cluster");
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_labeljoin"))
                .args([
                    "run",
                    "pipelines/ad_clicks.toml",
                    "--quiet",
                    "--workers",
                    "2",
                    "--processes",
                    "2",
                ])
                .args(["--process", &i.to_string(), "--hostfile"])
                .arg(&hostfile)
                .arg("--output")
                .arg(&out)
                .arg("--state")
                .arg(dir.path().join("state"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a process failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                children.iter_mut().for_each(|c| drop(c.kill()));
                panic!("the cluster run did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let cluster = common::Outcome {
        summary: single.summary.clone(),
        out,
    };
    let rows = cluster.rows();
    assert_eq!(rows.len() as u64, single.summary.rows);
    assert_eq!(
        rows,
        single.rows(),
        "rows differ between 1 worker and 2 processes x 2 workers"
    );
    for part in common::files_under(&cluster.out.join("train"), "csv") {
        assert!(
            part.parent().unwrap().join("_SUCCESS").exists(),
            "{} not committed",
            part.display()
        );
    }
    for p in 0..2 {
        assert!(cluster
            .out
            .join(format!("summary.process-{p}.json"))
            .exists());
    }
    // Each process keeps the versions of its own workers' keys in its own directory.
    let keys_of = |p: usize| -> std::collections::BTreeSet<Vec<u8>> {
        let store = labeljoin::tables::TableStore::open_read_only(
            &dir.path().join(format!("state/process-{p}")),
        )
        .unwrap();
        let mut it = store.db().raw_iterator_cf_opt(
            store.db().cf_handle("user").unwrap(),
            labeljoin::tables::store::all_keys(),
        );
        it.seek_to_first();
        let mut keys = std::collections::BTreeSet::new();
        while let Some(k) = it.key() {
            keys.insert(labeljoin::tables::keys::decode(k).unwrap().0.to_vec());
            it.next();
        }
        keys
    };
    let (k0, k1) = (keys_of(0), keys_of(1));
    assert!(
        !k0.is_empty() && !k1.is_empty(),
        "both processes own user keys"
    );
    assert!(
        k0.is_disjoint(&k1),
        "a user key has versions in both processes"
    );
}
