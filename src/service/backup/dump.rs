//! Copying a database out and back in, per backend: SQLite with `VACUUM INTO` (one read
//! transaction: a consistent snapshot while the gateway writes), PostgreSQL with `pg_dump` /
//! `psql` and MySQL/MariaDB with `mysqldump --single-transaction` / `mysql` (consistent
//! snapshots of a live database too), found on `PATH`.
//!
//! Passwords never reach a command line (where `ps` would show them): they travel in
//! `PGPASSWORD` / `MYSQL_PWD`, and every message is redacted.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::process::Command;

use super::BackupError;

/// The SQLite file a `sqlite:` URL names.
pub fn sqlite_path(url: &str) -> Result<PathBuf, BackupError> {
    let opts = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| BackupError::Io(format!("database_url: {e}")))?;
    Ok(opts.get_filename().to_path_buf())
}

/// `VACUUM INTO` a new file: a compact, consistent copy taken in one read transaction.
pub async fn sqlite_copy(db: &DatabaseConnection, to: &Path) -> Result<(), BackupError> {
    let target = to.to_string_lossy().replace('\'', "''");
    db.execute_unprepared(&format!("VACUUM INTO '{target}'"))
        .await
        .map_err(|e| BackupError::Dump(format!("VACUUM INTO {}: {e}", to.display())))?;
    Ok(())
}

/// The first of `names` found as an executable on `PATH`.
pub fn find_tool(names: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if std::fs::metadata(&p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Some(p);
            }
        }
    }
    None
}

fn tool(names: &[&'static str], package: &'static str) -> Result<PathBuf, BackupError> {
    find_tool(names).ok_or(BackupError::ToolMissing {
        tool: names[0],
        package,
    })
}

/// A PostgreSQL URL for libpq (password removed, only the query parameters libpq knows) and
/// the password.
fn libpq_url(url: &str) -> Result<(String, Option<String>), BackupError> {
    let mut u = url::Url::parse(url).map_err(|e| BackupError::Io(format!("database_url: {e}")))?;
    let password = u.password().map(percent_decode);
    let _ = u.set_password(None);
    let keep: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| {
            matches!(
                k.as_ref(),
                "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "application_name" | "options"
            )
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if !keep.is_empty() {
        u.query_pairs_mut().extend_pairs(keep);
    }
    Ok((u.to_string(), password))
}

/// Decodes `%XX` escapes of a URL component (user, password, database name).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connection arguments for the MySQL client tools and the password.
struct MysqlTarget {
    args: Vec<String>,
    database: String,
    password: Option<String>,
}

fn mysql_target(url: &str) -> Result<MysqlTarget, BackupError> {
    let u = url::Url::parse(url).map_err(|e| BackupError::Io(format!("database_url: {e}")))?;
    let database = u.path().trim_start_matches('/').to_string();
    if database.is_empty() {
        return Err(BackupError::Io("database_url names no database".into()));
    }
    let mut args = vec![
        "--protocol=TCP".to_string(),
        format!("--host={}", u.host_str().unwrap_or("127.0.0.1")),
        format!("--port={}", u.port().unwrap_or(3306)),
        "--default-character-set=utf8mb4".to_string(),
    ];
    if !u.username().is_empty() {
        args.push(format!("--user={}", percent_decode(u.username())));
    }
    Ok(MysqlTarget {
        args,
        database: percent_decode(&database),
        password: u.password().map(percent_decode),
    })
}

/// Runs a client tool; a failure carries its (redacted) stderr.
async fn run(mut cmd: Command, what: &str) -> Result<String, BackupError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| BackupError::Dump(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(BackupError::Dump(crate::redact::secrets(&format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `pg_dump` of the whole database (every schema: ours and apalis') as plain SQL, without
/// owners or grants so it restores as any role. Returns the tool's version line.
pub async fn pg_dump(url: &str, to: &Path) -> Result<String, BackupError> {
    let bin = tool(&["pg_dump"], "postgresql-client")?;
    let (url, password) = libpq_url(url)?;
    let version = run(
        {
            let mut c = Command::new(&bin);
            c.arg("--version");
            c
        },
        "pg_dump --version",
    )
    .await?;
    let mut c = Command::new(&bin);
    c.args(["--format=plain", "--no-owner", "--no-privileges", "--file"])
        .arg(to)
        .arg(format!("--dbname={url}"));
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    run(c, "pg_dump").await?;
    Ok(version)
}

/// Loads a `pg_dump` file with `psql` in one transaction, stopping at the first error.
pub async fn pg_load(url: &str, file: &Path) -> Result<(), BackupError> {
    let bin = tool(&["psql"], "postgresql-client")?;
    let (url, password) = libpq_url(url)?;
    let mut c = Command::new(bin);
    c.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-o",
        "/dev/null",
        "-f",
    ])
    .arg(file)
    .arg(format!("--dbname={url}"));
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    run(c, "psql").await.map(|_| ())
}

/// `mysqldump --single-transaction` (a consistent InnoDB snapshot without locking writers).
/// Returns the tool's version line.
pub async fn mysql_dump(url: &str, to: &Path) -> Result<String, BackupError> {
    let bin = tool(&["mysqldump", "mariadb-dump"], "mariadb-client")?;
    let t = mysql_target(url)?;
    let version = run(
        {
            let mut c = Command::new(&bin);
            c.arg("--version");
            c
        },
        "mysqldump --version",
    )
    .await?;
    let mut c = Command::new(&bin);
    c.args(&t.args)
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--no-tablespaces",
            "--hex-blob",
        ])
        .arg(format!("--result-file={}", to.display()))
        .arg(&t.database);
    if let Some(p) = t.password {
        c.env("MYSQL_PWD", p);
    }
    run(c, "mysqldump").await?;
    Ok(version)
}

/// Loads a `mysqldump` file with the `mysql` client.
pub async fn mysql_load(url: &str, file: &Path) -> Result<(), BackupError> {
    let bin = tool(&["mysql", "mariadb"], "mariadb-client")?;
    let t = mysql_target(url)?;
    let input = std::fs::File::open(file)
        .map_err(|e| BackupError::Io(format!("{}: {e}", file.display())))?;
    let mut c = Command::new(bin);
    c.args(&t.args).arg("--batch").arg(&t.database);
    if let Some(p) = t.password {
        c.env("MYSQL_PWD", p);
    }
    c.stdin(Stdio::from(input));
    let out = c
        .output()
        .await
        .map_err(|e| BackupError::Dump(format!("mysql: {e}")))?;
    if !out.status.success() {
        return Err(BackupError::Dump(crate::redact::secrets(&format!(
            "mysql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    Ok(())
}

/// Tables in the database (every non-system schema on PostgreSQL).
pub async fn table_count(db: &DatabaseConnection) -> Result<i64, BackupError> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        DbBackend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        }
        _ => "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| BackupError::Io("no answer to a table count".into()))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The newest migration applied to this database (`seaql_migrations`), if any.
pub async fn schema_version(db: &DatabaseConnection) -> Result<Option<String>, BackupError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version DESC LIMIT 1",
        ))
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get_by_index::<String>(0)?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_url_moves_the_password_out_and_keeps_libpq_parameters() {
        let (url, pw) = libpq_url(
            "postgres://app:p%40s&s+@db:5432/shop?sslmode=require&statement-cache-capacity=0",
        )
        .unwrap();
        assert_eq!(url, "postgres://app@db:5432/shop?sslmode=require");
        assert_eq!(pw.as_deref(), Some("p@s&s+"));
    }

    #[test]
    fn mysql_target_splits_the_url() {
        let t = mysql_target("mysql://root:se%2Fcret@10.0.0.5:3307/shop").unwrap();
        assert_eq!(t.database, "shop");
        assert_eq!(t.password.as_deref(), Some("se/cret"));
        assert!(t.args.contains(&"--host=10.0.0.5".to_string()));
        assert!(t.args.contains(&"--port=3307".to_string()));
        assert!(t.args.contains(&"--user=root".to_string()));
        assert!(!t.args.iter().any(|a| a.contains("se/cret")));
    }
}
