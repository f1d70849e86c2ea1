//! The `slawatch` command: the daemon and the tools around it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser, Subcommand};
use slawatch::config::{self, Settings};
use slawatch::engine::replay;
use slawatch::report;
use slawatch::store::{Store, Verification};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::{InquiryState, TrackerRules};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "slawatch",
    version,
    about = "Watches a support desk keep its first-response promise."
)]
struct Cli {
    /// Configuration file (TOML). Keys can be overridden as SLAWATCH__SECTION__KEY.
    #[arg(
        long,
        global = true,
        default_value = "config/slawatch.toml",
        env = "SLAWATCH_CONFIG"
    )]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run {
        /// Run even though the ledger's chain is broken (the break is recorded in the ledger).
        #[arg(long)]
        accept_broken_ledger: bool,
    },
    /// Validate the configuration and print the effective settings (secrets redacted); exit 1
    /// on a problem, including time in the next weeks that no on-call rotation covers.
    CheckConfig,
    /// List inquiries from the ledger, newest first.
    Inquiries {
        /// open, responded, excluded or all.
        #[arg(long, default_value = "open")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Record that an inquiry was answered on another channel (goes through the running daemon).
    Ack {
        id: String,
        /// Who answered.
        #[arg(long)]
        by: String,
        #[arg(long, value_parser = ["phone", "email", "other"], default_value = "other")]
        via: String,
        /// When the customer was answered (RFC 3339; default now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Compliance report for auditors, derived from the ledger (inquiries received in
    /// [from, to)).
    Report {
        /// Start of the period: a date (local midnight in --tz) or an RFC 3339 instant.
        #[arg(long, required_unless_present = "year", conflicts_with = "year")]
        from: Option<String>,
        /// End of the period (exclusive): a date or an RFC 3339 instant.
        #[arg(long, required_unless_present = "year", conflicts_with = "year")]
        to: Option<String>,
        /// A calendar year, month by month: the yearly review.
        #[arg(long)]
        year: Option<i32>,
        /// Time zone for days, months and shown times (default: the desk's).
        #[arg(long)]
        tz: Option<String>,
        #[arg(long, value_parser = ["html", "csv", "json"], default_value = "html")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mask customer addresses and numbers.
        #[arg(long)]
        mask: bool,
        /// Check the whole hash chain, every row from the first, as `audit verify` does (the
        /// report then reads the whole ledger). By default it checks the rows it reads.
        #[arg(long)]
        whole_chain: bool,
    },
    /// Send a test alert through every configured notifier; exit 1 if any fails.
    TestAlert,
    /// Who is on call (from the configuration alone; no daemon needed).
    Oncall {
        /// Also list the shifts of the next 7 days, with handoffs in the rotation's zone and UTC.
        #[arg(long)]
        week: bool,
        /// The instant to ask about (RFC 3339; default now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Print the shell completion script for SHELL (the package installs bash, zsh and fish).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (slawatch(1) and one per command) into --out-dir, or print
    /// slawatch(1).
    Man {
        /// Where to write the pages.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Ledger checks for auditors.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The store: moving a ledger between stores, maintenance of its derived data.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a whole ledger and its source cursors, row by row with the same bytes, into an empty
    /// store (e.g. sqlite:///var/lib/slawatch/slawatch.db to postgres://slawatch@db/sla), then
    /// verify the copy: it has the source's head. Stop the daemon first. Passwords are read
    /// from files, never from the command line.
    Copy {
        /// The ledger to copy (not changed).
        #[arg(long)]
        from: String,
        /// The store to copy into: created and migrated if needed, refused if it holds rows.
        #[arg(long)]
        to: String,
        /// File holding the password of --from (PostgreSQL).
        #[arg(long)]
        from_password_file: Option<PathBuf>,
        /// File holding the password of --to (PostgreSQL).
        #[arg(long)]
        to_password_file: Option<PathBuf>,
    },
    /// Rebuild the inquiry projection (one row per inquiry, what the API and reports read) from
    /// the ledger. Stop the daemon first: on SQLite this takes the ledger's writer lock and is
    /// refused while the daemon runs; on PostgreSQL it is refused while a replica holds the
    /// leader lease.
    RebuildProjection,
    /// Rebuild the inquiry projection into a scratch SQLite file (in the temporary directory,
    /// whatever the store) and compare it with the live one row by row; print the first
    /// differences and exit 1 on any. Works beside the daemon.
    CheckProjection,
}

/// A password from a file (its first line).
fn password_from(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    file.map(|f| {
        std::fs::read_to_string(f)
            .map(|text| text.lines().next().unwrap_or("").to_string())
            .with_context(|| format!("reading the password file {}", f.display()))
    })
    .transpose()
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain: print the head hash, or name the first broken link and exit 1.
    /// Reads the ledger only (works beside the running daemon); exit 2 if there is none.
    Verify {
        /// The ledger's Ed25519 public key (PEM): every checkpoint's signature is checked, and
        /// the last row must be a signed checkpoint.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A head recorded earlier (`SEQ:HASH` as logged, or `HASH`): fail if that hash is no
        /// longer in the chain (at its seq).
        #[arg(long)]
        expect: Option<slawatch::store::ExpectedHead>,
    },
    /// Write a new ledger signing key pair: DIR/ledger-signing.key (for
    /// store.signing_key_file) and DIR/ledger-signing.pub (for auditors).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

/// Exit code of a read-only command pointed at a ledger that does not exist.
const NO_LEDGER: u8 = 2;

/// Opens the ledger for a read-only command: `Ok(None)` (after saying so) if there is none.
async fn open_for_reading(settings: &Settings) -> anyhow::Result<Option<Store>> {
    let password = settings.store.password.as_ref().map(|p| p.expose());
    match Store::open_existing_with(&settings.store.url, password).await {
        Ok(store) => Ok(Some(store)),
        Err(e @ slawatch::store::StoreError::Missing { .. }) => {
            eprintln!("error: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// mimalloc rather than the C library's allocator: a backfill allocates in the source's thread
/// and frees in the engine's, where glibc spent over a quarter of the daemon's CPU; with
/// mimalloc a 1,000,000-row backfill runs about 10 % faster. An idle daemon holds ~27 MiB
/// resident instead of ~17 MB (with transparent huge pages off: `memory.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    slawatch::memory::disable_huge_pages();
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    // One TLS provider for the whole process (IMAP, HTTP clients): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
    config::load(path).map_err(anyhow::Error::new)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run {
        accept_broken_ledger: false,
    }) {
        Command::Run {
            accept_broken_ledger,
        } => {
            let mut settings = load(&cli.config)?;
            settings.store.accept_broken_ledger = accept_broken_ledger;
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                on_signal.cancel();
            });
            slawatch::daemon::run(settings, slawatch::scheduler::Clock::System, shutdown, None)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => match config::load(&cli.config) {
            Ok(settings) => {
                println!("{}", serde_json::to_string_pretty(&settings.effective())?);
                for warning in settings.warnings() {
                    eprintln!("warning: {warning}");
                }
                for note in settings.call_joins() {
                    eprintln!("note: {note}");
                }
                // 24/7 means no gaps: uncovered time is an error here (the daemon still starts,
                // sending those alerts to the escalation list or notify.smtp.to).
                let mut gaps = 0;
                if let Some(oncall) = &settings.notify.oncall {
                    for rotation in oncall.rotations.values() {
                        eprintln!(
                            "note: notify.oncall.rotations.{}: {}",
                            rotation.name,
                            oncall.chain(rotation)
                        );
                    }
                    for (rotation, found) in oncall.gaps(Utc::now()) {
                        for gap in slawatch::notify::oncall::describe_gaps(rotation, &found) {
                            eprintln!("notify.oncall.rotations.{}: {gap}", rotation.name);
                            gaps += 1;
                        }
                    }
                }
                if gaps > 0 {
                    eprintln!("configuration has on-call gaps: {}", cli.config.display());
                    return Ok(ExitCode::FAILURE);
                }
                eprintln!("configuration OK: {}", cli.config.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::TestAlert => test_alert(&load(&cli.config)?).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "slawatch",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => {
            match out_dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
                    .with_context(|| format!("writing man pages into {}", dir.display()))?,
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Oncall { week, at } => {
            let settings = load(&cli.config)?;
            print_oncall(&settings, at.unwrap_or_else(Utc::now), week)
        }
        Command::Inquiries { state, limit } => {
            let settings = load(&cli.config)?;
            let wanted = match state.as_str() {
                "all" => None,
                s => Some(InquiryState::parse(s).with_context(|| {
                    format!("--state {s}: expected open, responded, excluded or all")
                })?),
            };
            let Some(store) = open_for_reading(&settings).await? else {
                return Ok(ExitCode::from(NO_LEDGER));
            };
            // From the inquiry projection; a ledger without one (an older version wrote it,
            // and no daemon of this version has started on it yet) is replayed instead.
            let inquiries = match store.projection_missing().await {
                Ok(false) => {
                    let query = slawatch::store::ProjectionQuery {
                        state: wanted,
                        ..Default::default()
                    };
                    store.projected_page(&query, limit).await?
                }
                _ => {
                    let (tracker, _) = replay(&store, tracker_rules(&settings)).await?;
                    tracker
                        .newest_first()
                        .filter(|i| wanted.is_none_or(|w| i.state == w))
                        .take(limit)
                        .cloned()
                        .collect()
                }
            };
            let now = Utc::now();
            println!(
                "{:<17} {:<6} {:<3} {:<10} {:<9} {:<20} {:>8}  {:<30} SUBJECT",
                "ID", "CHAN", "LNG", "STATE", "SLA", "RECEIVED (UTC)", "LEFT", "CUSTOMER"
            );
            for i in &inquiries {
                let left = match (i.state, i.deadline_at) {
                    (InquiryState::Open, Some(d)) => format_left(d - now),
                    _ => "-".to_string(),
                };
                println!(
                    "{:<17} {:<6} {:<3} {:<10} {:<9} {:<20} {:>8}  {:<30} {}",
                    i.id,
                    i.channel.as_str(),
                    i.language.as_str(),
                    i.state.as_str(),
                    i.sla.as_str().to_string(),
                    i.received_at.format("%Y-%m-%d %H:%M:%S"),
                    left,
                    truncate(&i.customer, 30),
                    truncate(&i.subject, 60)
                );
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ack {
            id,
            by,
            via,
            at,
            note,
        } => {
            let settings = load(&cli.config)?;
            let url = format!(
                "http://{}/api/v1/inquiries/{}/ack",
                settings.http.bind,
                InquiryId::from_display(&id)
            );
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .connect_timeout(std::time::Duration::from_secs(3))
                .build()?;
            let mut request = client
                .post(&url)
                .json(&serde_json::json!({ "by": by, "via": via, "at": at, "note": note }));
            if let Some(token) = &settings.http.token {
                request = request.bearer_auth(token.expose());
            }
            let response = request.send().await.with_context(|| {
                format!("the daemon is not reachable at {url}; is `slawatch run` running?")
            })?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!(
                    "ack refused ({status}): {}",
                    body.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("no reason given")
                );
            }
            println!(
                "acknowledged {id}: sla {}",
                body.get("sla").and_then(|v| v.as_str()).unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            from,
            to,
            year,
            tz,
            format,
            out,
            mask,
            whole_chain,
        } => {
            let settings = load(&cli.config)?;
            let tz: chrono_tz::Tz = match tz {
                Some(name) => name
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--tz {name}: not a known time zone"))?,
                None => settings.desk.time_zone,
            };
            let (from, to, title) = match (year, from, to) {
                (Some(y), _, _) => {
                    let start = report::local_midnight(tz, y, 1, 1)
                        .with_context(|| format!("--year {y}: out of range"))?;
                    let end = report::local_midnight(tz, y + 1, 1, 1)
                        .with_context(|| format!("--year {y}: out of range"))?;
                    (
                        start.with_timezone(&Utc),
                        end.with_timezone(&Utc),
                        format!("Yearly service review {y}"),
                    )
                }
                (None, Some(f), Some(t)) => {
                    let from = report::parse_when(&f, tz)
                        .with_context(|| format!("--from {f}: expected YYYY-MM-DD or RFC 3339"))?;
                    let to = report::parse_when(&t, tz)
                        .with_context(|| format!("--to {t}: expected YYYY-MM-DD or RFC 3339"))?;
                    (from, to, format!("Service report {f} to {t}"))
                }
                _ => bail!("give --from and --to, or --year"),
            };
            let params = report::ReportParams {
                from,
                to,
                time_zone: tz,
                mask,
                title,
                chain: if whole_chain {
                    report::ChainScope::Whole
                } else {
                    report::ChainScope::Period
                },
            };
            let Some(store) = open_for_reading(&settings).await? else {
                return Ok(ExitCode::from(NO_LEDGER));
            };
            let rules = std::sync::Arc::new(TrackerRules {
                desk: settings.desk.clone(),
                policies: settings.policies.clone(),
            });
            let total = store.head().await?.map(|h| h.0).unwrap_or(0).max(0) as u64;
            let mut bar = progress::Bar::new(total);
            let data = report::build(&store, rules, &params, &mut |n| bar.set(n)).await;
            bar.finish();
            store.close().await;
            let data = data?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            match format.as_str() {
                "csv" => report::csv::render(&data, &mut sink)?,
                "json" => report::json::render(&data, &mut sink)?,
                _ => report::html::render(&data, &mut sink)?,
            }
            sink.flush()?;
            if let Some(path) = &out {
                eprintln!(
                    "report written: {} ({} inquiries, compliance {})",
                    path.display(),
                    data.totals.received,
                    report::format_ratio(data.totals.compliance)
                );
            }
            if data.ledger.intact {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("ledger verification failed: {}", data.ledger.verification);
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Store {
            command: StoreCommand::RebuildProjection,
        } => rebuild_projection(&load(&cli.config)?).await,
        Command::Store {
            command: StoreCommand::CheckProjection,
        } => check_projection(&load(&cli.config)?).await,
        Command::Audit {
            command: AuditCommand::Keygen { out },
        } => {
            let (private, public, key) = slawatch::store::signing::generate(&out)?;
            println!(
                "private key: {} (set store.signing_key_file to it; keep it on the host, readable by slawatch only)",
                private.display()
            );
            println!(
                "public key:  {} (give it to the auditors)",
                public.display()
            );
            println!("key id:      {}", key.key_id());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { public_key, expect },
        } => {
            let settings = load(&cli.config)?;
            let key = public_key
                .as_deref()
                .map(slawatch::store::PublicKey::from_file)
                .transpose()?;
            let Some(store) = open_for_reading(&settings).await? else {
                return Ok(ExitCode::from(NO_LEDGER));
            };
            let key_id = key.as_ref().map(|k| k.key_id().to_string());
            let signed_head = key.is_some();
            let (verification, seals) = store.audit(key, expect.clone(), signed_head).await?;
            match verification {
                Verification::Intact { events, head_hash } => {
                    store.close().await;
                    println!("ledger intact: {events} events");
                    println!("head hash: {head_hash}");
                    println!("head seq:  {}", seals.head_seq);
                    println!("pin:       {}:{head_hash}", seals.head_seq);
                    match (&key_id, seals.first_checkpoint) {
                        (_, None) => println!(
                            "signatures: none; rows 1..={} linked, not signed",
                            seals.head_seq
                        ),
                        (Some(id), Some(first)) => println!(
                            "signatures: {} checkpoints, every signature valid with key {id}; every row up to seq {} signed",
                            seals.checkpoints,
                            seals.last_checkpoint.unwrap_or(first)
                        ),
                        (None, Some(_)) => println!(
                            "signatures: {} checkpoints, not checked (give --public-key)",
                            seals.checkpoints
                        ),
                    }
                    if let Some(first) = seals.signed_from
                        && first > 1
                    {
                        println!(
                            "rows 1..={} linked, not signed (written before signing began)",
                            first - 1
                        );
                    }
                    if let (Some(expect), Some(at)) = (&expect, seals.expected_at) {
                        println!("expected head {} found at seq {at}", expect.hash);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Verification::Broken {
                    seq,
                    expected,
                    found,
                    problem,
                } => {
                    let label = match store.row_label(seq).await {
                        Ok(Some((kind, inquiry))) => {
                            format!("kind {kind}, inquiry {}", inquiry.as_deref().unwrap_or("-"))
                        }
                        Ok(None) => "no such row".to_string(),
                        Err(e) => format!("row unreadable: {e}"),
                    };
                    store.close().await;
                    println!("ledger BROKEN at event seq {seq} ({label}): {problem}");
                    println!("expected hash: {expected}");
                    println!("found hash:    {found}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Store {
            command:
                StoreCommand::Copy {
                    from,
                    to,
                    from_password_file,
                    to_password_file,
                },
        } => {
            let from_password = password_from(from_password_file.as_deref())?;
            let to_password = password_from(to_password_file.as_deref())?;
            let (shown_from, shown_to) = (
                slawatch::store::redact_url(&from),
                slawatch::store::redact_url(&to),
            );
            let source = Store::open_existing_with(&from, from_password.as_deref())
                .await
                .with_context(|| format!("opening the source {shown_from}"))?;
            let target = Store::open_with(&to, to_password.as_deref())
                .await
                .with_context(|| format!("opening the target {shown_to}"))?;
            let total = source.head().await?.map(|h| h.0).unwrap_or(0).max(0) as u64;
            let mut bar = progress::Bar::new(total);
            let copied = source.copy_into(&target, &mut |n| bar.set(n)).await;
            bar.finish();
            source.close().await;
            target.close().await;
            match copied {
                Ok(report) => {
                    println!(
                        "copied {} rows and {} cursors from {shown_from} to {shown_to}",
                        report.rows, report.cursors
                    );
                    match report.inquiries {
                        Some(n) => println!("inquiry projection: {n} rows copied"),
                        None => println!(
                            "inquiry projection: not built on the source; the daemon builds it at its first start (or run `slawatch store rebuild-projection`)"
                        ),
                    }
                    match report.head {
                        Some((seq, hash)) => {
                            println!("verified: both ledgers have head seq {seq} hash {hash}");
                            println!("pin:      {seq}:{hash}");
                        }
                        None => println!("verified: both ledgers are empty"),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn tracker_rules(settings: &Settings) -> std::sync::Arc<TrackerRules> {
    std::sync::Arc::new(TrackerRules {
        desk: settings.desk.clone(),
        policies: settings.policies.clone(),
    })
}

/// `store rebuild-projection`: under the writer lock on SQLite, so never beside a running
/// daemon there; on PostgreSQL refused while a replica holds the leader lease.
async fn rebuild_projection(settings: &Settings) -> anyhow::Result<ExitCode> {
    let _lock = match Store::sqlite_file(&settings.store.url) {
        Some(file) if !file.exists() => {
            eprintln!("error: no ledger at {}", file.display());
            return Ok(ExitCode::from(NO_LEDGER));
        }
        Some(file) => Some(slawatch::store::lock::WriterLock::acquire(&file)?),
        None => None,
    };
    let password = settings.store.password.as_ref().map(|p| p.expose());
    let store = Store::open_with(&settings.store.url, password).await?;
    // On PostgreSQL a running daemon holds the leader lease: never rebuild beside it.
    if let Store::Postgres(pg) = &store
        && let Some((holder, epoch)) = slawatch::store::lease::holder(pg).await?
    {
        store.close().await;
        anyhow::bail!(
            "replica {holder} holds the ledger's leader lease (epoch {epoch}): a daemon is running on this ledger; stop every replica, then rebuild"
        );
    }
    let started = std::time::Instant::now();
    store.clear_projection().await?;
    let rebuilt =
        slawatch::store::projection::rebuild(&store, tracker_rules(settings), &store).await?;
    store.close().await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "inquiry projection rebuilt: {} inquiries from {} events (up to seq {}) in {secs:.1} s ({:.0} events/s)",
        rebuilt.inquiries,
        rebuilt.events,
        rebuilt.head_seq,
        rebuilt.events as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `store check-projection`: rebuilds into a scratch database beside the system's temporary
/// files and compares.
async fn check_projection(settings: &Settings) -> anyhow::Result<ExitCode> {
    let Some(store) = open_for_reading(settings).await? else {
        return Ok(ExitCode::from(NO_LEDGER));
    };
    let dir = std::env::temp_dir().join(format!(
        "slawatch-projection-check-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    ));
    let scratch = Store::open(&format!("sqlite://{}/projection.db", dir.display())).await?;
    let report =
        slawatch::store::projection::check(&store, tracker_rules(settings), &scratch).await;
    scratch.close().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    println!(
        "inquiry projection checked up to seq {}: {} rows compared, {} changed since (skipped), {} differences",
        report.head_seq, report.rows_compared, report.skipped_newer, report.differences
    );
    for d in &report.first {
        println!(
            "  open_seq {} inquiry {}: {} differs\n    live:    {}\n    rebuilt: {}",
            d.open_seq,
            d.id,
            d.what,
            d.live.as_deref().unwrap_or("(no row)"),
            d.rebuilt.as_deref().unwrap_or("(no row)")
        );
    }
    if report.differences > 0 {
        println!(
            "the live projection differs from the ledger: run `slawatch store rebuild-projection` with the daemon stopped"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress on a terminal only: nothing is drawn when stderr is a pipe or a log file.
mod progress {
    use std::io::IsTerminal;

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    pub struct Bar(ProgressBar);

    impl Bar {
        pub fn new(total: u64) -> Bar {
            let target = if std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            };
            let bar = ProgressBar::with_draw_target(Some(total), target);
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} events ({eta} left)")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("replaying the ledger");
            Bar(bar)
        }

        pub fn set(&mut self, done: u64) {
            self.0.set_position(done);
        }

        pub fn finish(&mut self) {
            self.0.finish_and_clear();
        }
    }
}

fn format_left(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.abs();
    if secs >= 3600 {
        format!("{sign}{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{sign}{}m{:02}s", secs / 60, secs % 60)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

/// Sends one clearly marked test alert through each configured notifier on its own (no retry,
/// no fallback), so each path is proven separately.
async fn test_alert(settings: &Settings) -> anyhow::Result<ExitCode> {
    use slawatch::notify::{Alert, AlertKind};
    let n = &settings.notify;
    let mut names: Vec<String> = slawatch::config::NOTIFIERS
        .iter()
        .filter(|name| match **name {
            "smtp" => n.smtp.is_some(),
            "webhook" => n.webhook.is_some(),
            _ => n.alertmanager.is_some(),
        })
        .map(|s| s.to_string())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no notifier is configured under [notify]");
    }
    let now = Utc::now();
    let alert = Alert {
        kind: AlertKind::Warning,
        inquiry_id: InquiryId::from_display(format!("test-{}", now.timestamp())),
        channel: slawatch_core::domain::Channel::Email,
        language: settings.desk.default_language,
        customer: "slawatch test-alert".into(),
        subject: "Test alert: no action needed".into(),
        received_at: now - chrono::Duration::minutes(10),
        deadline_at: now + chrono::Duration::minutes(5),
        due_at: now,
        link: format!("{}/", settings.http.public_url),
        actions: None,
        recipient: None,
        monitor: None,
    };
    // With a rotation, the test goes to whoever is on call now, as a warning would.
    let alerts: Vec<Alert> = match n
        .oncall
        .as_ref()
        .map(|o| o.recipients(AlertKind::Warning, None, now, &[]))
    {
        Some(people) if !people.is_empty() => people
            .into_iter()
            .map(|r| Alert {
                recipient: Some(std::sync::Arc::new(r)),
                ..alert.clone()
            })
            .collect(),
        _ => vec![alert],
    };
    let mut failed = false;
    for name in names {
        let result = match slawatch::notify::dispatch::build_one(&name, n, settings.desk.time_zone)
        {
            Err(e) => Err(e.to_string()),
            Ok(notifier) => {
                let results = notifier.deliver(&alerts).await;
                Ok(alerts
                    .iter()
                    .zip(results)
                    .map(|(a, r)| (a.recipient.as_ref().map(|r| r.person.clone()), r))
                    .collect::<Vec<_>>())
            }
        };
        let results = match result {
            Ok(results) => results,
            Err(e) => vec![(
                None,
                Err(slawatch::notify::DeliveryError {
                    notifier: name.clone(),
                    message: e,
                }),
            )],
        };
        for (person, result) in results {
            let to = person.map(|p| format!(" to {p}")).unwrap_or_default();
            match result {
                Ok(()) => println!("{name}{to}: sent"),
                Err(e) => {
                    failed = true;
                    println!("{name}{to}: FAILED: {e}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `slawatch oncall`: who is on call at `at` in each rotation, and with `week` the shifts of the
/// 7 days from `at`.
fn print_oncall(settings: &Settings, at: DateTime<Utc>, week: bool) -> anyhow::Result<ExitCode> {
    let Some(oncall) = &settings.notify.oncall else {
        bail!("no on-call rotation is configured ([notify.oncall]); alerts go to notify.smtp.to");
    };
    let who = |name: Option<&str>| match name.and_then(|n| oncall.people.get(n)) {
        Some(p) => format!("{} <{}>", p.name, p.email),
        None => "NOBODY".to_string(),
    };
    let both = |r: &slawatch::notify::oncall::Rotation, t: DateTime<Utc>| {
        format!("{} ({} UTC)", r.local_text(t), t.format("%a %H:%M"))
    };
    for rotation in oncall.rotations.values() {
        let mut used_by: Vec<&str> = oncall
            .routes
            .iter()
            .filter(|(_, r)| **r == rotation.name)
            .map(|(policy, _)| policy.as_str())
            .collect();
        if oncall.default_rotation == rotation.name {
            used_by.insert(0, "default");
        }
        println!(
            "rotation {} ({}; policies: {})",
            rotation.name,
            rotation.time_zone.name(),
            if used_by.is_empty() {
                "none".to_string()
            } else {
                used_by.join(", ")
            }
        );
        println!("  at {}: {}", both(rotation, at), who(rotation.on_call(at)));
        if !rotation.escalation.is_empty() {
            let list: Vec<String> = rotation.escalation.iter().map(|n| who(Some(n))).collect();
            println!("  escalation (breaches): {}", list.join(", "));
        }
        println!("  chain: {}", oncall.chain(rotation));
        if week {
            println!("  next 7 days:");
            for shift in rotation.shifts(at, at + chrono::Duration::days(7)) {
                println!(
                    "    {} → {}  {}",
                    both(rotation, shift.start),
                    both(rotation, shift.end),
                    who(shift.person.as_deref())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
