//! The `mystery` command: parses arguments and calls one library function per subcommand.

use clap::{Parser, Subcommand, ValueEnum};
use mystery::commands::{self, ReportArgs};
use mystery::report::{CsvOptions, Format};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mystery",
    version,
    about = "Remote mystery-contact visits: enquiry emails and SIP test calls, measured"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "MYSTERY_CONFIG",
        default_value = "mystery.toml"
    )]
    config: PathBuf,
    /// Log lines as text (default) or as one JSON object per line, for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MYSTERY_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration; print every problem with file and line.
    Check,
    /// Run the daemon: schedules, visits, mailbox watcher, digests.
    Run,
    /// Plan one visit due now and print its id.
    Visit {
        business: String,
        scenario: String,
        /// Return once the visit has its outcome, and print it.
        #[arg(long)]
        wait: bool,
        /// Override the governance rules (paused, staff_notice, min_interval) for this visit.
        #[arg(long)]
        force: bool,
    },
    /// Per-business summary (table) or per-visit figures (--visits; CSV and JSON).
    Report {
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        business: Option<String>,
        /// Only visits due in this recent span, e.g. 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: FormatArg,
        /// List the messages that matched no visit.
        #[arg(long)]
        unmatched: bool,
        /// CSV: start with a UTF-8 BOM (Excel).
        #[arg(long)]
        bom: bool,
        /// CSV: field separator (use ';' for French spreadsheets).
        #[arg(long, default_value = ",")]
        separator: char,
        /// Table: one row per visit instead of the per-business summary.
        #[arg(long)]
        visits: bool,
        /// CSV/JSON: one row per business instead of one per visit.
        #[arg(long)]
        summary: bool,
    },
    /// Render, send or resend a group's digest (of the last slot, or of `--at`).
    Digest {
        group: String,
        #[arg(long, conflicts_with_all = ["preview", "resend"])]
        send: bool,
        #[arg(long)]
        preview: Option<PathBuf>,
        /// Send again a digest already claimed (uncertain after a crash, failed, or sent).
        #[arg(long, conflicts_with = "preview")]
        resend: bool,
        /// A slot of the group's cron, RFC 3339 (e.g. 2026-03-30T08:00:00+02:00).
        #[arg(long, value_parser = mystery::digest::command::parse_slot)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Apply `[storage] retention` now: drop old raw mail, recordings and transcripts.
    Purge {
        /// Count what would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read a password on standard input and print its argon2id hash, for `[[users]]`.
    HashPassword,
    /// Write a commented starter `mystery.toml` and `branches.csv` into DIR (default: here);
    /// never overwrites a file.
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Load a branch list (CSV or tab-separated text in any encoding, .xlsx, .ods) as one
    /// change: prints add/update/unchanged/remove per branch; exit 2 when a row is rejected.
    Import {
        file: PathBuf,
        /// The sheet of an .xlsx or .ods file (default: the first).
        #[arg(long)]
        sheet: Option<String>,
        /// Print the change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import the good rows even when some are rejected (default: all or nothing).
        #[arg(long)]
        partial: bool,
        /// Archive the imported branches that are not in the file (their visits are kept).
        #[arg(long)]
        prune: bool,
    },
    /// Write the imported branch list in the columns `import` reads.
    Export {
        #[arg(value_enum)]
        what: ExportWhat,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormatArg,
        /// The file to write (CSV goes to standard output without it; xlsx needs it).
        #[arg(long)]
        output: Option<PathBuf>,
        /// CSV: start with a UTF-8 BOM (Excel).
        #[arg(long)]
        bom: bool,
        /// CSV: field separator (use ';' for French spreadsheets).
        #[arg(long, default_value = ",")]
        separator: char,
    },
    /// Transcribe recordings (WAV) with the configured model, as call visits are; prints the
    /// timed segments and the speed. The configuration file is optional here.
    Transcribe {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A language code or `auto` (default: `[transcribe] language`, else fr).
        #[arg(long)]
        language: Option<String>,
        /// Threads (default: `[transcribe] threads`).
        #[arg(long)]
        threads: Option<usize>,
        /// A whisper.cpp ggml model file (default: `[transcribe] model`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// One JSON object per file instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportWhat {
    Branches,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormatArg {
    Csv,
    Xlsx,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Table,
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // sqlx's own notices ("relation … already exists, skipping") and its slow-query and
    // slow-pool warnings (a loaded machine) say nothing a user can act on; our errors do.
    let default_level = if matches!(cli.command, Command::Run) {
        "info,sqlx=error"
    } else {
        "warn,sqlx=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
        // async-imap traces every command it sends, LOGIN and its password included
        // (issue 7, secrets test): never below debug, whatever RUST_LOG says.
        .add_directive(
            "async_imap::imap_stream=debug"
                .parse()
                .expect("static directive"),
        );
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        // One object per line, the event's fields at the top level beside `level`,
        // `timestamp` and `target`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
        // Colour codes only on a terminal: a log file or journal gets plain, greppable text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check => commands::check(&cli.config, &mut out).await,
            Command::Run => commands::run(&cli.config).await.map(|()| 0),
            Command::Visit {
                business,
                scenario,
                wait,
                force,
            } => commands::visit(&cli.config, &business, &scenario, wait, force, &mut out).await,
            Command::Report {
                group,
                business,
                since,
                format,
                unmatched,
                bom,
                separator,
                visits,
                summary,
            } => {
                let format = match format {
                    FormatArg::Table => Format::Table,
                    FormatArg::Csv => Format::Csv,
                    FormatArg::Json => Format::Json,
                };
                let args = ReportArgs {
                    group,
                    business,
                    since,
                    format,
                    unmatched,
                    csv: CsvOptions {
                        bom,
                        separator: separator as u8,
                    },
                    visits,
                    summary,
                };
                commands::report(&cli.config, args, &mut out).await
            }
            Command::Digest {
                group,
                send,
                preview,
                resend,
                at,
            } => {
                // Imported branches belong to the digest as much as configured ones.
                match mystery::Context::open(&cli.config, mystery::clock::Clock::system()).await {
                    Ok(cx) => {
                        let args = mystery::digest::CommandArgs {
                            send,
                            resend,
                            preview: preview.as_deref(),
                            at,
                        };
                        mystery::digest::run_command(&cx, &group, args, &mut out).await
                    }
                    Err(e) => Err(e),
                }
            }
            Command::HashPassword => {
                commands::hash_password(&mut std::io::stdin().lock(), &mut out)
            }
            Command::Init { dir } => mystery::init::init(&dir, &mut out),
            Command::Purge { dry_run } => commands::purge(&cli.config, dry_run, &mut out).await,
            Command::Import {
                file,
                sheet,
                dry_run,
                partial,
                prune,
            } => {
                let args = mystery::import::ImportArgs {
                    file,
                    sheet,
                    dry_run,
                    partial,
                    prune,
                };
                mystery::import::import(&cli.config, &args, &mut out).await
            }
            Command::Export {
                what: ExportWhat::Branches,
                format,
                output,
                bom,
                separator,
            } => {
                let args = mystery::import::ExportArgs {
                    format: match format {
                        ExportFormatArg::Csv => mystery::import::ExportFormat::Csv,
                        ExportFormatArg::Xlsx => mystery::import::ExportFormat::Xlsx,
                    },
                    output,
                    bom,
                    separator: separator as u8,
                };
                mystery::import::export_branches(&cli.config, &args, &mut out).await
            }
            Command::Transcribe {
                files,
                language,
                threads,
                model,
                json,
            } => {
                let args = mystery::transcribe::command::Args {
                    files,
                    language,
                    threads,
                    model,
                    json,
                };
                tokio::task::block_in_place(|| {
                    mystery::transcribe::command::run(&cli.config, args, &mut out)
                })
            }
        }
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
