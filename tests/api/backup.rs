//! `epusdt backup` / `epusdt restore` through the real binary: a backup taken while the gateway
//! serves, restored into a fresh data dir and a fresh database, brings the orders and the
//! merchant's secret back (check-status finds the orders, the secret signs a new order); a
//! tampered backup, a backup without the key and a non-empty target are refused (exit 2).
use crate::common;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use common::Backend;
use serde_json::{Value, json};

const SECRET: &str = "backup-merchant-secret-7d3a91c0";
const PID: &str = "3001";

/// A data directory (`<root>/data`, the default) with its database URL (`None` = the default
/// SQLite file); `None` when the backend's server is skipped.
struct Site {
    root: tempfile::TempDir,
    url: Option<String>,
}

impl Site {
    async fn new(backend: Backend) -> Option<Self> {
        let root = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => None,
            _ => Some(common::fresh_database(backend, root.path()).await?),
        };
        Some(Self { root, url })
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn cmd(&self) -> Command {
        let mut c = common::epusdt(self.root.path());
        c.env("EPUSDT_LOG_LEVEL", "warn");
        if let Some(u) = &self.url {
            c.env("EPUSDT_DATABASE_URL", u);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs the command and expects exit 0; returns stdout + stderr.
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{args:?}: {o}\n{e}");
        (o, e)
    }

    /// `epusdt serve` on a free port; stopped with SIGTERM by [`Server::stop`].
    async fn serve(&self) -> Server {
        let port = common::free_port();
        let child = self
            .cmd()
            .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("EPUSDT_USDT_RATES", "USD:1")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(port).await;
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// A GMPay order signed with the merchant's secret; the reply.
    async fn create(&self, order_id: &str) -> Value {
        create_at(&self.base, order_id).await
    }

    async fn status(&self, trade_id: &str) -> Value {
        reqwest::get(format!("{}/pay/check-status/{trade_id}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap();
    }
}

/// A GMPay order at the gateway `base`, signed with the merchant's secret; the reply.
async fn create_at(base: &str, order_id: &str) -> Value {
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", PID.into());
    p.insert("order_id", order_id.into());
    p.insert("currency", "USD".into());
    p.insert("amount", "5".into());
    p.insert("notify_url", "https://shop.example.com/n".into());
    p.insert("token", "USDT".into());
    p.insert("network", "tron".into());
    let sig = common::gmpay_sign(&p, SECRET);
    let body = json!({"pid": 3001, "order_id": order_id, "currency": "USD", "amount": 5,
            "notify_url": "https://shop.example.com/n", "token": "USDT", "network": "tron",
            "signature": sig});
    common::post_json(
        &reqwest::Client::new(),
        &format!("{base}/payments/gmpay/v1/order/create-transaction"),
        &body,
    )
    .await
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn trade_id(reply: &Value) -> String {
    assert_eq!(reply["status_code"], 200, "{reply}");
    reply["data"]["trade_id"].as_str().unwrap().to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn backup_while_serving_then_restore(backend: Backend) {
    epusdt::net::install_crypto_provider();
    let Some(src) = Site::new(backend).await else {
        return;
    };
    src.ok(&[
        "merchant", "add", "--name", "shop", "--pid", PID, "--secret", SECRET,
    ]);
    src.ok(&[
        "wallet",
        "add",
        "--network",
        "tron",
        "--address",
        common::TRON_WALLET,
    ]);
    let server = src.serve().await;
    let before = trade_id(&server.create("B1").await);

    // Both backups are taken while the gateway serves; the first one while orders are being
    // created.
    let with_key = src.root.path().join("bk-key");
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let creator = tokio::spawn({
        let (base, stop, made) = (server.base.clone(), stop.clone(), made.clone());
        async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) && ids.len() < 40 {
                let reply = create_at(&base, &format!("C{}", ids.len())).await;
                ids.push(trade_id(&reply));
                made.store(ids.len(), Ordering::SeqCst);
            }
            ids
        }
    });
    common::eventually(30, "orders being created", || async {
        (made.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    let mut cmd = src.cmd();
    cmd.args(["backup", "--to", path(&with_key), "--include-key"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let during = creator.await.unwrap();
    let (out, err) = text(&out);
    assert!(out.contains("backup written"), "{out}\n{err}");
    assert!(
        err.contains("WARNING") && err.contains("MASTER KEY"),
        "--include-key warns on stderr: {err}"
    );
    let without_key = src.root.path().join("bk");
    let (out, err) = src.ok(&["backup", "--to", path(&without_key)]);
    assert!(!err.contains("WARNING"), "{err}");
    assert!(out.contains("NOT in this backup"), "{out}");
    assert!(!without_key.join("master.key").exists());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(with_key.join("manifest.json")).unwrap()).unwrap();
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mysql => "mysql",
    };
    assert_eq!(manifest["backend"], expected, "{manifest}");
    assert_eq!(manifest["key_included"], true);
    assert!(
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().starts_with("audit/")),
        "audit files are copied: {manifest}"
    );
    // A second backup into the same directory is refused; a failed one leaves nothing behind.
    let again = src.run(&["backup", "--to", path(&without_key)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).1.contains("not empty"), "{:?}", text(&again));
    if backend != Backend::Sqlite {
        let no_tools = tempfile::tempdir().unwrap();
        let failed = src.root.path().join("bk-failed");
        let out = src
            .cmd()
            .env("PATH", no_tools.path())
            .args(["backup", "--to", path(&failed)])
            .output()
            .unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("is not on PATH; install it"), "{err}");
        assert!(!failed.exists(), "no half-written backup");
    }
    // An order made after the backup is not in it.
    let after = trade_id(&server.create("B2").await);
    server.stop();

    // Into a fresh data dir and database, with the key from the backup.
    let Some(dst) = Site::new(backend).await else {
        return;
    };
    let (out, _) = dst.ok(&["restore", "--from", path(&with_key)]);
    let restored: usize = out
        .split(" order(s)")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("order count in {out}"));
    let key_mode = std::fs::metadata(dst.data().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let server = dst.serve().await;
    let found = server.status(&before).await;
    assert_eq!(found["data"]["status"], 1, "the order is back: {found}");
    // A snapshot: the orders created during the backup are each whole or absent, and the
    // database holds exactly the orders found (B1 and a prefix of them).
    let mut present = Vec::new();
    for id in &during {
        let r = server.status(id).await;
        present.push(r["status_code"] == 200);
        if r["status_code"] == 200 {
            assert_eq!(r["data"]["status"], 1, "{r}");
        }
    }
    assert!(
        present.windows(2).all(|w| w[0] || !w[1]),
        "orders created one after another appear as a prefix: {present:?}"
    );
    eprintln!(
        "{backend:?}: {} order(s) created around the backup, {} in it",
        during.len(),
        restored - 1
    );
    assert_eq!(
        restored,
        1 + present.iter().filter(|p| **p).count(),
        "{present:?}"
    );
    let missing = server.status(&after).await;
    assert_ne!(missing["status_code"], 200, "{missing}");
    // The merchant's secret still signs: the same order again is the same order, a new one works.
    assert_eq!(trade_id(&server.create("B1").await), before);
    let fresh = trade_id(&server.create("B3").await);
    assert_eq!(server.status(&fresh).await["data"]["status"], 1);
    // A restore over a data dir / database in use is refused.
    let again = dst.run(&["restore", "--from", path(&with_key)]);
    let (_, err) = text(&again);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty"), "{err}");
    server.stop();

    // Without the key in the backup: refused with how to supply it, then restored once supplied.
    let Some(bare) = Site::new(backend).await else {
        return;
    };
    let refused = bare.run(&["restore", "--from", path(&without_key)]);
    let (_, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--include-key") && err.contains("master.key") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!bare.data().exists(), "nothing was written");
    std::fs::create_dir(bare.data()).unwrap();
    std::fs::copy(
        src.data().join("master.key"),
        bare.data().join("master.key"),
    )
    .unwrap();
    let (out, _) = bare.ok(&["restore", "--from", path(&without_key)]);
    assert!(
        out.contains(&format!(" {} order(s)", 1 + during.len())),
        "the second backup, after the creates, holds them all: {out}"
    );
    let server = bare.serve().await;
    assert_eq!(server.status(&before).await["data"]["status"], 1);
    trade_id(&server.create("B4").await);
    server.stop();
}

on_all_backends!(backup_while_serving_then_restore);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_backup_is_refused_before_anything_is_written() {
    let src = Site::new(Backend::Sqlite).await.unwrap();
    src.ok(&[
        "merchant", "add", "--name", "shop", "--pid", PID, "--secret", SECRET,
    ]);
    let bk = src.root.path().join("bk");
    src.ok(&["backup", "--to", path(&bk), "--include-key"]);

    let restore_into_fresh = |from: &Path| {
        let dst = tempfile::tempdir().unwrap();
        let out = common::epusdt(dst.path())
            .args(["restore", "--from", path(from)])
            .output()
            .unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            !dst.path().join("data").exists(),
            "nothing written for a refused backup"
        );
        err
    };

    // One flipped byte in the database copy.
    let bad = src.root.path().join("bad-db");
    copy_dir(&bk, &bad);
    let db = bad.join("database.sqlite");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&db, bytes).unwrap();
    let err = restore_into_fresh(&bad);
    assert!(
        err.contains("checksum mismatch for database.sqlite"),
        "{err}"
    );

    // A file slipped in beside the listed ones.
    let extra = src.root.path().join("bad-extra");
    copy_dir(&bk, &extra);
    std::fs::write(extra.join("audit").join("audit-2000-01-01.jsonl"), "{}\n").unwrap();
    let err = restore_into_fresh(&extra);
    assert!(err.contains("not listed in the manifest"), "{err}");

    // A manifest pointing outside the backup.
    let escape = src.root.path().join("bad-path");
    copy_dir(&bk, &escape);
    let m = escape.join("manifest.json");
    let edited = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"database.sqlite\"", "\"../database.sqlite\"");
    std::fs::write(&m, edited).unwrap();
    let err = restore_into_fresh(&escape);
    assert!(err.contains("never writes"), "{err}");

    // Without the key in the backup: a database change with the manifest's checksum rewritten
    // to match is caught by the manifest's tag (restore has the key to check it).
    let bare = src.root.path().join("bk-nokey");
    src.ok(&["backup", "--to", path(&bare)]);
    let forged = src.root.path().join("bad-forged");
    copy_dir(&bare, &forged);
    let db = forged.join("database.sqlite");
    let mut bytes = std::fs::read(&db).unwrap();
    let old_sum = sha256_hex(&bytes);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    let m = forged.join("manifest.json");
    let edited = std::fs::read_to_string(&m)
        .unwrap()
        .replace(&old_sum, &sha256_hex(&bytes));
    std::fs::write(&m, edited).unwrap();
    let dst = tempfile::tempdir().unwrap();
    std::fs::create_dir(dst.path().join("data")).unwrap();
    std::fs::copy(
        src.data().join("master.key"),
        dst.path().join("data").join("master.key"),
    )
    .unwrap();
    let out = common::epusdt(dst.path())
        .args(["restore", "--from", path(&forged)])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("authentication tag does not match"), "{err}");
    assert!(!dst.path().join("data").join("epusdt.db").exists());

    // The untouched backup restores.
    let ok = tempfile::tempdir().unwrap();
    let out = common::epusdt(ok.path())
        .args(["restore", "--from", path(&bk)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
